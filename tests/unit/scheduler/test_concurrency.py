# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Concurrent requests through one filter and one weigher object.

Nova 2026.2 runs nova-scheduler in native threads, and its HostManager
builds each filter and weigher once: concurrent requests run the same
objects at once. Each request must still end as it would alone, reading
its own provider summaries (or, without them, asking for usage once).
"""

import collections
import random
import sys
import threading
import uuid

import pytest
from nova import objects
from nova.scheduler import filters as nova_filters
from nova.scheduler import weights as nova_weights
from nova.tests.unit.scheduler import fakes

from nova_accel_weigher import filters, packing, usage, weighers
from tests.common.scheduler import summaries_of

RC = "CUSTOM_ACCEL_FPGA"
HOSTS = 40
REGIONS = 4
REQUESTS = 8

objects.register_all()


class UsageByRequest:
    """Each request sees its own usage (as if placement moved between
    them), so a request served with another's state ends differently. Calls
    are counted per request; the barrier holds every request's first call
    until all have started, so that their passes overlap."""

    def __init__(self, usage_by_key, barrier=None):
        self.usage_by_key = usage_by_key
        self.barrier = barrier
        self.calls = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, key, classes):
        with self._lock:
            self.calls[key] += 1
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        return self.usage_by_key[key]


def region(h, r):
    return f"h{h}r{r}"


def usage_for(seed):
    """Usage that differs by request: which regions are partly used."""
    rng = random.Random(seed)
    return {region(h, r): packing.RegionUsage(4, rng.randrange(4),
                                              f"h{h}card")
            for h in range(HOSTS) for r in range(REGIONS)}


def host_states():
    return [fakes.FakeHostState(f"h{h}", f"h{h}", {
        "allocation_candidates": [
            {"allocations": {region(h, r): {"resources": {RC: 1}}},
             "mappings": {"1": [region(h, r)]}} for r in range(REGIONS)],
        "aggregates": []}) for h in range(HOSTS)]


def schedule(accel_filter, accel_weigher, spec_obj):
    """One request through nova's handlers: the weighed hosts, each with
    the candidate the filter put first."""
    hosts = nova_filters.HostFilterHandler().get_filtered_objects(
        [accel_filter], host_states(), spec_obj)
    weighed = nova_weights.HostWeightHandler().get_weighed_objects(
        [accel_weigher], hosts, spec_obj)
    return [(w.obj.host, w.weight,
             list(w.obj.allocation_candidates[0]["allocations"]))
            for w in weighed]


@pytest.fixture
def switch_often():
    # Switch threads every few microseconds, so that the passes interleave
    # host by host as they do under load.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def summaries_for(regions):
    out = {}
    for h in range(HOSTS):
        out.update(summaries_of({region(h, r): regions[region(h, r)]
                                 for r in range(REGIONS)}, root=f"h{h}"))
    return out


@pytest.mark.parametrize("via", ["source", "summaries"])
def test_concurrent_requests_end_as_alone(switch_often, monkeypatch, via):
    specs = [objects.RequestSpec(instance_uuid=str(uuid.uuid4()))
             for _ in range(REQUESTS)]
    usage_by_key = {s.instance_uuid: usage_for(i) for i, s in
                    enumerate(specs)}
    if via == "summaries":
        for s in specs:
            usage.carry(s, summaries_for(usage_by_key[s.instance_uuid]))
        # What nova's scheduler would do without them must not happen.
        monkeypatch.setattr(filters, "_placement_usage",
                            UsageByRequest({}))

    def accel_filter(barrier=None):
        f = filters.AccelTopologyFilter()
        if via == "source":
            f.usage_source = UsageByRequest(usage_by_key, barrier)
        return f

    alone = {s.instance_uuid: schedule(accel_filter(),
                                       weighers.AccelPackingWeigher(), s)
             for s in specs}
    # The requests must differ, or a mix-up could not show.
    assert len({str(r) for r in alone.values()}) == REQUESTS

    shared_filter = accel_filter(threading.Barrier(REQUESTS))
    shared_weigher = weighers.AccelPackingWeigher()
    together, errors = {}, []

    def run(spec_obj):
        try:
            together[spec_obj.instance_uuid] = schedule(
                shared_filter, shared_weigher, spec_obj)
        except Exception as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    if via == "source":
        assert shared_filter.usage_source.calls == {
            s.instance_uuid: 1 for s in specs}
    else:
        assert not filters._placement_usage.calls
    assert together == alone
