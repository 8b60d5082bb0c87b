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

"""Benchmark: publishing a 64-region host to placement.

Measures, and prints (never asserts), the wall time and request count of:
a first publish (creates 16 card and 64 region providers), an unchanged
republish by the same publisher (what the agent pays every round), the
same by a fresh publisher without and with the state a one-shot
``accel-inventory publish`` saves beside the cache, and
an allocation read with 8 regions allocated. Against placement over HTTP
on a real PostgreSQL server (installed and started like the integration
tests do) and against placement in-process on SQLite.

Run: ``python -m tests.bench.bench_publish`` (as root on a fresh machine:
it may apt-get install PostgreSQL).
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile
import time
import uuid

from accel_inventory import conf as inventory_conf
from accel_inventory import model
from accel_inventory import placement
from accel_inventory import provider_tree
from tests.common.placement_builders import make_card

CARDS, REGIONS, FUNCTIONS = 16, 4, 4
ALLOCATED = 8
REPEAT = 5


def host_inventory(hostname: str) -> model.Inventory:
    return model.Inventory(hostname=hostname, cards=[
        make_card(i, regions=REGIONS, functions=FUNCTIONS, numa_node=i % 2)
        for i in range(CARDS)])


def client_for(endpoint: str, tmp: str) -> placement.Client:
    path = pathlib.Path(tmp) / f"{uuid.uuid4().hex}.conf"
    path.write_text(f"[placement]\nauth_type = admin_token\n"
                    f"endpoint = {endpoint}\ntoken = admin\n")
    conf = inventory_conf.load(["--config-file", str(path)])
    inventory_conf.register_placement_opts(conf)
    return placement.Client(placement.load_adapter(conf))


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(label: str, endpoint: str, tmp: str) -> list[str]:
    rows = []
    firsts, first_requests = [], None
    for _ in range(REPEAT):
        # A new host each time: a first publish into a populated placement.
        hostname = f"bench-{uuid.uuid4().hex[:8]}"
        raw = client_for(endpoint, tmp)
        assert raw.call("POST", "/resource_providers",
                        {"name": hostname}).status_code == 200
        inv = host_inventory(hostname)
        publisher = placement.Publisher(client_for(endpoint, tmp))
        seconds, report = timed(
            lambda p=publisher, i=inv: p.publish(i))
        firsts.append(seconds)
        first_requests = report.requests
    rows.append((f"first publish ({CARDS} cards, {CARDS * REGIONS} "
                 f"regions)", firsts, first_requests))

    again = [timed(lambda: publisher.publish(inv)) for _ in range(REPEAT)]
    rows.append(("unchanged republish, same publisher",
                 [s for s, _ in again], again[-1][1].requests))

    fresh = [timed(lambda: placement.Publisher(
        client_for(endpoint, tmp)).publish(inv)) for _ in range(REPEAT)]
    rows.append(("unchanged republish, fresh publisher",
                 [s for s, _ in fresh], fresh[-1][1].requests))

    def with_saved_state():
        restarted = placement.Publisher(client_for(endpoint, tmp))
        restarted.import_state(publisher.export_state())
        return restarted.publish(inv)

    saved = [timed(with_saved_state) for _ in range(REPEAT)]
    rows.append(("unchanged republish, fresh publisher + saved state",
                 [s for s, _ in saved], saved[-1][1].requests))

    for i in range(ALLOCATED):
        region = inv.cards[i].regions[0]
        rp = provider_tree.provider_uuid(hostname, region.id)
        response = raw.call("PUT", f"/allocations/{uuid.uuid4()}", {
            "allocations": {rp: {"resources": {region.resource_class: 2}}},
            "project_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
            "consumer_generation": None})
        assert response.status_code == 204, response.text
    publisher.publish(inv)
    reads = []
    for _ in range(REPEAT):
        start = publisher.client.requests
        seconds, _ = timed(lambda: publisher.read_allocations(inv))
        reads.append((seconds, publisher.client.requests - start))
    rows.append((f"allocation read, {ALLOCATED} of {CARDS * REGIONS} "
                 f"regions allocated", [s for s, _ in reads], reads[-1][1]))

    lines = [f"{label}:"]
    for name, seconds, requests in rows:
        lines.append(f"  {name:<52} median {statistics.median(seconds):7.3f}"
                     f" s  (min {min(seconds):.3f}, max {max(seconds):.3f},"
                     f" n={len(seconds)})  {requests} requests")
    return lines


def main() -> int:
    from tests.integration.placement import pg_placement
    from placement.tests.functional.fixtures import placement as fx

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        with pg_placement.postgres() as db_url:
            with pg_placement.placement_server(db_url) as endpoint:
                out += measure("placement over HTTP (wsgiref, one thread) "
                               "on PostgreSQL", endpoint, tmp)
        service = fx.PlacementFixture()
        service.setUp()
        try:
            out += measure("placement in-process (wsgi-intercept) on "
                           "SQLite in memory", service.endpoint, tmp)
        finally:
            service.cleanUp()
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
