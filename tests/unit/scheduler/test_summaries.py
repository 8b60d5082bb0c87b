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

"""Region usage from the request's own provider summaries: what nova's
scheduler got with its candidates, carried on the RequestSpec by the wrap
of SchedulerManager._get_all_host_states, with the claims of a
multi-create's earlier instances added."""

import logging
import uuid

import pytest
from nova import objects
from nova.scheduler import manager as scheduler_manager
from nova.scheduler import utils as scheduler_utils

from nova_accel_weigher import filters, packing, usage

from tests.common.scheduler import candidate, host, run_filter
from tests.common.scheduler import summaries_of

RC = "CUSTOM_ACCEL_FPGA"

objects.register_all()


def spec_with(summaries):
    spec_obj = objects.RequestSpec(instance_uuid=str(uuid.uuid4()))
    usage.carry(spec_obj, summaries)
    return spec_obj


def test_usage_of_one_tree_adds_the_claims_made_so_far():
    regions = {"r1": packing.RegionUsage(4, 1, "card", 0),
               "r2": packing.RegionUsage(4, 0, "card", 1)}
    summaries = summaries_of(regions)
    summaries.update(summaries_of(
        {"x1": packing.RegionUsage(4, 0, "other-card")}, root="other"))
    tree = usage.trees(summaries)["root"]
    claimed = usage.claimed_amounts(
        [candidate("r1", amount=2), candidate("r2")], [RC])

    got = usage.usage_from_summaries(summaries, [RC], tree, claimed)

    assert got == {"r1": packing.RegionUsage(4, 3, "card", 0),
                   "r2": packing.RegionUsage(4, 1, "card", 1)}


def test_a_degraded_card_degrades_its_regions():
    regions = {"r1": packing.RegionUsage(4, 0, "card")}
    got = usage.usage_from_summaries(
        summaries_of(regions, degraded_cards=("card",)), [RC])
    assert got["r1"].degraded


def test_the_filter_reads_the_requests_summaries_and_asks_nobody(
        monkeypatch):
    def no_call(key, classes):
        raise AssertionError("the filter asked for usage")
    monkeypatch.setattr(filters, "_placement_usage", no_call)
    regions = {"r1": packing.RegionUsage(4, 0, "card"),
               "r2": packing.RegionUsage(4, 2, "card"),
               "r3": packing.RegionUsage(4, 0, "card", degraded=True)}
    request = spec_with(summaries_of(regions))
    h = host("h1", [candidate(r) for r in ("r3", "r1", "r2")])

    [passed] = run_filter(filters.AccelTopologyFilter(), [h], request)

    assert [list(c["allocations"]) for c in passed.allocation_candidates] \
        == [["r2"], ["r1"]]


def test_each_instance_of_a_multi_create_sees_the_earlier_claims():
    regions = {"r1": packing.RegionUsage(4, 0, "card"),
               "r2": packing.RegionUsage(4, 0, "card"),
               "r3": packing.RegionUsage(4, 0, "card")}
    request = spec_with(summaries_of(regions))
    landed = []
    for _ in range(3):
        # nova reuses the host's candidate list for every instance
        h = host("h1", [candidate(r, amount=2) for r in ("r1", "r2", "r3")])
        [passed] = run_filter(filters.AccelTopologyFilter(), [h], request)
        chosen = passed.allocation_candidates[0]
        usage.record_claim(request, chosen)
        landed.append(next(iter(chosen["allocations"])))
    # The first two fill one region, the third half fills another.
    assert landed[0] == landed[1] != landed[2]


def test_a_new_request_starts_without_the_earlier_ones_claims():
    request = spec_with(summaries_of(
        {"r1": packing.RegionUsage(4, 0, "card")}))
    usage.record_claim(request, candidate("r1", amount=4))
    usage.carry(request, summaries_of(
        {"r1": packing.RegionUsage(4, 0, "card")}))
    assert usage.request_placement(request).claimed == []


def test_without_summaries_the_filter_falls_back_and_says_why_once(
        monkeypatch, caplog):
    asked = []

    def memory(key, classes):
        asked.append(key)
        return {"r1": packing.RegionUsage(4, 1, "card"),
                "r2": packing.RegionUsage(4, 0, "card")}
    monkeypatch.setattr(filters, "_placement_usage", memory)
    monkeypatch.setattr(filters, "_warned", set())
    f = filters.AccelTopologyFilter()
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        spec_obj = objects.RequestSpec(instance_uuid=str(uuid.uuid4()))
        [passed] = run_filter(f, [host("h1", [candidate("r2"),
                                              candidate("r1")])], spec_obj)
        assert list(passed.allocation_candidates[0]["allocations"]) == ["r1"]
    assert len(asked) == 2
    assert caplog.text.count("without the provider summaries") == 1


def test_install_wraps_nova_once_and_says_so(monkeypatch, caplog):
    manager_cls = scheduler_manager.SchedulerManager
    real_states = getattr(manager_cls._get_all_host_states, filters._WRAPPED)
    real_claim = getattr(scheduler_utils.claim_resources, filters._WRAPPED)
    monkeypatch.setattr(manager_cls, "_get_all_host_states", real_states)
    monkeypatch.setattr(scheduler_utils, "claim_resources", real_claim)
    caplog.set_level(logging.INFO)

    filters.install()
    filters.install()

    assert getattr(manager_cls._get_all_host_states,
                   filters._WRAPPED) is real_states
    assert getattr(scheduler_utils.claim_resources,
                   filters._WRAPPED) is real_claim
    assert caplog.text.count("reading region usage from the provider "
                             "summaries") == 1


def test_the_wrap_carries_the_summaries_and_records_claims(monkeypatch):
    seen = []

    def states(self, context, spec_obj, provider_summaries):
        seen.append(usage.request_placement(spec_obj).summaries)
        return iter(())

    def claim(ctx, client, spec_obj, instance_uuid, alloc_req,
              allocation_request_version=None):
        return alloc_req["ok"]
    wrapped_states = filters._wrap_host_states(states)
    wrapped_claim = filters._wrap_claim(claim)
    spec_obj = objects.RequestSpec(instance_uuid=str(uuid.uuid4()))

    wrapped_states(None, None, spec_obj, {"rp": {}})
    for ok in (True, False):
        assert wrapped_claim(None, None, spec_obj, "i",
                             {"ok": ok, "allocations": {}}) is ok

    assert seen == [{"rp": {}}]
    assert usage.request_placement(spec_obj).claimed == [
        {"ok": True, "allocations": {}}]


@pytest.mark.parametrize("target", ["states", "claim"])
def test_a_nova_whose_functions_differ_is_not_wrapped(monkeypatch, caplog,
                                                      target):
    manager_cls = scheduler_manager.SchedulerManager

    def other(self, context, spec_obj, provider_summaries, extra):
        """A later nova's signature."""

    def other_claim(ctx, client, request, consumer):
        """A later nova's signature."""
    states = getattr(manager_cls._get_all_host_states, filters._WRAPPED)
    claim = getattr(scheduler_utils.claim_resources, filters._WRAPPED)
    if target == "states":
        states = other
    else:
        claim = other_claim
    monkeypatch.setattr(manager_cls, "_get_all_host_states", states)
    monkeypatch.setattr(scheduler_utils, "claim_resources", claim)
    monkeypatch.setattr(filters, "_hook_problem", None)

    filters.install()

    assert manager_cls._get_all_host_states is states
    assert scheduler_utils.claim_resources is claim
    assert filters._hook_problem in caplog.text
    assert "will ask placement for region usage itself" in caplog.text
