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

"""``accel-demo``: the meeting scenario on the bundled sample host, through
real placement and nova's real scheduler handlers.

The sample host is built as a fake sysfs and scanned by the real scanner,
its topology is printed, and its providers are published by
``accel_inventory.placement.Publisher`` to placement running in-process
(placement's own test fixture: its WSGI app, SQLite in memory). Then four
requests arrive, as flavors: 1, 2 and 1 functions of one FPGA region, then
two whole regions of 4. For each, nova's ``ResourceRequest`` turns the
flavor into placement's query, placement answers, and the host's
allocation candidates go through ``AccelTopologyFilter`` (usage from the
same placement) and ``AccelPackingWeigher`` run by nova's
``HostFilterHandler`` and ``HostWeightHandler`` (which, as in nova, does
not weigh a lone host: the filter's order decides); candidate ``[0]`` is
claimed in placement, as nova's scheduler does. The same requests are
replayed without the filter, where nova claims placement's first
candidate. Placement's candidate order is deterministic but undefined
(Python set order), so one stock run shows nothing but the order it got:
both are replayed under ``ORDERS`` candidate orders (placement's list
shuffled with seeds 1 to ``ORDERS``; the claims are removed between
replays), and the demo reports in how many each placed every request,
beside the landings of one order in which stock nova did not.

Needs nova and placement (the test requirements), which nova-accel never
requires: only this module imports them.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from accel_inventory import cli as inventory_cli
from accel_inventory import conf as inventory_conf
from accel_inventory import inventory as inventory_scan
from accel_inventory import model
from accel_inventory import placement
from accel_inventory import provider_tree
from accel_inventory import sample
from accel_inventory.usage import Parser

HOSTNAME = "sample-host"
FPGA_CLASS = "CUSTOM_ACCEL_FPGA"
PROJECT = "6f1a3e0c-0000-4000-8000-00000000aaaa"
USER = "6f1a3e0c-0000-4000-8000-00000000bbbb"
# What nova-compute would report on the compute node's own provider; the
# flavors ask for some of it, so the candidates look like nova's.
ROOT_INVENTORY = {"VCPU": 16, "MEMORY_MB": 65536, "DISK_GB": 500}
# Candidate orders each way is replayed under.
ORDERS = 20
WITH_FILTER, STOCK = "with AccelTopologyFilter", "stock nova"


@dataclass(frozen=True)
class Ask:
    """One request of the scenario, as a flavor's extra specs."""

    label: str
    extra_specs: dict[str, str]


def meeting_scenario() -> list[Ask]:
    """Users asking 1, 2 and 1 functions, then one asking two whole
    regions (README, Scheduling: the flavors)."""
    def functions(n: int) -> Ask:
        return Ask(f"{n} function{'s' if n > 1 else ''} of a region", {
            f"resources1:{FPGA_CLASS}": str(n),
            "trait1:CUSTOM_ACCEL_REGION": "required"})

    whole = {}
    for group in ("1", "2"):
        whole[f"resources{group}:{FPGA_CLASS}"] = "4"
        whole[f"trait{group}:CUSTOM_ACCEL_REGION_SIZE_4"] = "required"
    whole["group_policy"] = "isolate"
    return [functions(1), functions(2), functions(1),
            Ask("2 whole regions of 4", whole)]


def scan_sample_host(workdir: str) -> model.Inventory:
    """Build the sample host's sysfs and scan it with the real scanner,
    as ``accel-inventory show --sample`` does."""
    conf = inventory_conf.load([])
    root = sample.build_sample_host(os.path.join(workdir, "sys"))
    conf.set_override("sysfs_root", root, group="inventory")
    conf.set_override("cache_path", os.path.join(workdir, "inventory.json"),
                      group="inventory")
    conf.set_override("hostname", HOSTNAME, group="inventory")
    inv, _changes = inventory_scan.refresh(conf)
    return inv


class Placement:
    """Placement in-process, the sample host's providers published in it."""

    def __init__(self, inv: model.Inventory, workdir: str):
        from placement.tests.functional.fixtures import placement as fx

        self._fixture = fx.PlacementFixture()
        self._fixture.setUp()
        config = os.path.join(workdir, f"placement-{uuid.uuid4()}.conf")
        with open(config, "w") as f:
            f.write(f"[placement]\nauth_type = admin_token\n"
                    f"endpoint = {self._fixture.endpoint}\ntoken = admin\n")
        conf = inventory_conf.load(["--config-file", config])
        inventory_conf.register_placement_opts(conf)
        self.adapter = placement.load_adapter(conf)
        self.client = placement.Client(self.adapter)
        self.root = self._json("POST", "/resource_providers",
                               {"name": inv.hostname})["uuid"]
        self._json("PUT", f"/resource_providers/{self.root}/inventories", {
            "resource_provider_generation": 0,
            "inventories": {rc: {"total": total}
                            for rc, total in ROOT_INVENTORY.items()}})
        placement.Publisher(self.client).publish(inv)

    def close(self) -> None:
        self._fixture.cleanUp()

    def _json(self, method: str, url: str, body=None):
        response = self.client.call(method, url, body)
        if response.status_code not in (200, 201, 204):
            raise RuntimeError(f"placement: {method} {url}: "
                               f"{response.status_code} {response.text}")
        return response.json() if response.content else None

    def candidates(self, querystring: str) -> list[dict]:
        """Allocation requests for the root's host, in placement's order,
        as nova gives them to a host state."""
        answer = self._json("GET", f"/allocation_candidates?{querystring}")
        return [c for c in answer["allocation_requests"]
                if self.root in c["allocations"]]

    def claim(self, consumer: str, candidate: dict) -> None:
        self._json("PUT", f"/allocations/{consumer}", {
            "allocations": candidate["allocations"],
            "project_id": PROJECT, "user_id": USER,
            "consumer_generation": None})

    def release(self, consumer: str) -> None:
        self._json("DELETE", f"/allocations/{consumer}")


@dataclass
class Landing:
    regions: list[str]  # region ids, in the candidate's order


def replay(service: Placement, inv: model.Inventory, asks: Sequence[Ask],
           *, with_filter: bool, order: int) -> list[Landing | None]:
    """Schedule ``asks`` one by one, each host's candidates in
    placement's order shuffled with seed ``order``; None where no
    candidate was left. The claims are removed afterwards."""
    from nova import objects
    from nova.scheduler import filters as nova_filters
    from nova.scheduler import utils as scheduler_utils
    from nova.scheduler import weights as nova_weights
    from nova.tests.unit.scheduler import fakes

    from nova_accel_weigher import filters, usage, weighers

    objects.register_all()
    region_ids = {
        provider_tree.provider_uuid(inv.hostname, region.id): region.id
        for card in inv.cards for region in card.regions}
    shuffle = random.Random(order).shuffle
    accel_filter = filters.AccelTopologyFilter()
    accel_filter.usage_source = usage.PlacementUsage(
        lambda: service.adapter, timeout=5.0)
    landings: list[Landing | None] = []
    claimed = []
    try:
        for ask in asks:
            flavor = objects.Flavor(
                vcpus=1, memory_mb=512, root_gb=1, ephemeral_gb=0, swap=0,
                extra_specs=dict(ask.extra_specs))
            spec = objects.RequestSpec(
                instance_uuid=str(uuid.uuid4()), flavor=flavor,
                image=objects.ImageMeta(properties=objects.ImageMetaProps()),
                is_bfv=False)
            query = scheduler_utils.ResourceRequest.from_request_spec(
                spec).to_querystring()
            candidates = service.candidates(query)
            shuffle(candidates)
            host = fakes.FakeHostState(inv.hostname, inv.hostname, {
                "uuid": service.root, "aggregates": [],
                "allocation_candidates": candidates})
            hosts = [host]
            if with_filter:
                hosts = list(nova_filters.HostFilterHandler()
                             .get_filtered_objects([accel_filter], hosts,
                                                   spec) or [])
                # nova's handler leaves a lone host unweighed; with more
                # hosts this is where the packed one comes first.
                hosts = [w.obj for w in nova_weights.HostWeightHandler()
                         .get_weighed_objects(
                             [weighers.AccelPackingWeigher()], hosts, spec)]
            if not hosts or not hosts[0].allocation_candidates:
                landings.append(None)
                continue
            chosen = hosts[0].allocation_candidates[0]
            service.claim(spec.instance_uuid, chosen)
            claimed.append(spec.instance_uuid)
            landings.append(Landing(
                [region_ids[rp] for rp in chosen["allocations"]
                 if rp in region_ids]))
        return landings
    finally:
        for consumer in claimed:
            service.release(consumer)


def _where(landing: Landing | None) -> str:
    if landing is None:
        return "no valid host"
    return ", ".join(region.rsplit("/", 1)[-1] for region in landing.regions)


def placed_all(landings: Sequence[Landing | None]) -> bool:
    return all(landing is not None for landing in landings)


def run(out: TextIO) -> dict[str, list[list[Landing | None]]]:
    """The whole demo, printed to ``out``; returns both ways' landings,
    one list per candidate order."""
    asks = meeting_scenario()
    with tempfile.TemporaryDirectory(prefix="nova-accel-demo-") as workdir:
        inv = scan_sample_host(workdir)
        out.write("The bundled sample host, scanned from its fake sysfs:\n\n")
        out.write("\n".join(inventory_cli.render_tree(
            inv, inventory_scan.current_boot_id())) + "\n\n")
        service = Placement(inv, workdir)
        try:
            runs = {name: [replay(service, inv, asks,
                                  with_filter=name == WITH_FILTER,
                                  order=order)
                           for order in range(1, ORDERS + 1)]
                    for name in (WITH_FILTER, STOCK)}
        finally:
            service.close()
    shown = next((i for i, landings in enumerate(runs[STOCK])
                  if not placed_all(landings)), 0)
    out.write("The meeting scenario, scheduled through placement (in-process"
              ", SQLite) and nova's\nHostFilterHandler and HostWeightHandler;"
              " nova claims the first candidate left.\nStock nova claims "
              "placement's first candidate, an order that is deterministic "
              "but\nundefined, so both are replayed under "
              f"{ORDERS} orders (placement's list shuffled with\nseeds 1 to "
              f"{ORDERS}). The landings of order {shown + 1}"
              + (", one in which stock nova did not place all four"
                 if not placed_all(runs[STOCK][shown]) else "")
              + ":\n\n")
    fpga = next(card for card in inv.cards if any(
        region.resource_class == FPGA_CLASS for region in card.regions))
    out.write(f"rN is region N of card {fpga.id} (4 functions each).\n\n")
    heads = ["request", *runs]
    rows = [[f"{i}. {ask.label}",
             *(_where(r[shown][i - 1]) for r in runs.values())]
            for i, ask in enumerate(asks, 1)]
    widths = [max(len(row[c]) for row in [heads, *rows])
              for c in range(len(heads))]
    for row in [heads, ["-" * w for w in widths], *rows]:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(
            row, widths, strict=True)).rstrip() + "\n")
    for name, orders in runs.items():
        out.write(f"\n{name}: placed all {len(asks)} requests in "
                  f"{sum(map(placed_all, orders))} of {ORDERS} orders")
    out.write("\n")
    return runs


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    Parser(
        prog="accel-demo", description=__doc__.split("\n\n")[0]
    ).parse_args(argv)
    # Importing nova warns that eventlet is deprecated; it is nova's
    # concern, not the demo's.
    warnings.filterwarnings("ignore", module="futurist")
    run(out or sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
