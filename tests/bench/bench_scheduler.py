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

"""Benchmark: what AccelTopologyFilter and AccelPackingWeigher add to a
scheduling request.

Measures, and prints (never asserts):

- stock: nova's default filters that FakeHostState supports
  (ComputeCapabilities, ImageProperties, the two server-group filters) and
  ``all_weighers``, through nova's real HostFilterHandler and
  HostWeightHandler, on 1,000 hosts with one card of 8 regions each and 8
  allocation candidates per host (one per region), half of the regions
  partly used and each host's CPU and memory in use its own;
- ours: the same pass plus AccelTopologyFilter and AccelPackingWeigher,
  the filter reading the request's provider summaries as nova's scheduler
  hands them over (every host's tree, as placement answers nova), under
  the default options and under a ``task_mix`` that asks CPU and memory,
  and again under ``fragmentation`` and with usage injected as the
  filter's ``usage_source`` (regions ready-made, as before the
  summaries); the added cost as a ratio to stock, all in the same run;
  and the same for a request without accelerators (under
  host-fragmentation the weigher weighs it too); and both again with the
  host states handed over as nova's scheduler hands them, each host's
  candidates deep-copied as the filters pull it (SchedulerManager's
  ``hosts_with_alloc_reqs``), which is part of nova's own pass; and the
  least a filter that scores every candidate and a weigher must add: a
  weigher that weighs nothing (nova's own handling of one more weigher),
  and beside it a filter that only reads the summaries and the candidates
  once; and a request with a NUMA topology (two pinned CPUs) on hosts of
  two NUMA cells whose regions alternate between the nodes, stock with
  NUMATopologyFilter (which fits the guest to every candidate) against
  ours beside it, without an affinity policy (the NUMA node term only)
  and under ``required`` (one more fit per host);
- the filter's one placement call (GET /allocation_candidates with
  provider summaries) against placement in-process (real code, SQLite in
  memory) holding the same 1,000 hosts x 8 regions, half of the regions
  partly used.

Run: ``python -m tests.bench.bench_scheduler [--hosts N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
import uuid

from nova import objects
from nova.scheduler import filters as nova_filters
from nova.scheduler import weights as nova_weights
from nova.tests.unit.scheduler import fakes

from accel_inventory import contract
from nova_accel_weigher import filters, packing, usage, weighers

RC = "CUSTOM_ACCEL_FPGA"
REGIONS = 8
FUNCTIONS = 4
VCPUS = 16
CPU_RATIO = 4.0
MEMORY_MB = 65536
# A task mix that asks CPU and memory (as an operator writes it from the
# flavors, install/scheduler.rst): a host's CPU and memory then enter
# every score.
CPU_TASK_MIX = ["0.5:1:2:2048", "0.2:2:4:4096",
                f"0.2:region{FUNCTIONS}:8:16384", "0.1:0:4:8192"]
# The [accel_packing] options a run may set.
OPTIONS = ("policy", "task_mix")
STOCK_FILTERS = ("ComputeCapabilitiesFilter", "ImagePropertiesFilter",
                 "ServerGroupAntiAffinityFilter", "ServerGroupAffinityFilter")

objects.register_all()


class Host:
    """One compute host of the benchmark: its providers and candidates."""

    def __init__(self, index: int):
        self.name = f"host{index:05d}"
        self.root = str(uuid.uuid5(uuid.NAMESPACE_DNS, self.name))
        self.card = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{self.name}/card"))
        self.regions = [str(uuid.uuid5(uuid.NAMESPACE_DNS,
                                       f"{self.name}/r{r}"))
                        for r in range(REGIONS)]
        # Half the regions partly used, in a pattern that differs by host.
        self.used = [(index + r) % FUNCTIONS if r % 2 else 0
                     for r in range(REGIONS)]
        # CPU and memory in use differ from host to host, as in a cloud:
        # hosts whose regions are alike still differ in what is left (the
        # periods, 37 and 53, are prime, so no two of 1,000 hosts have the
        # same CPU, memory and regions' use).
        self.cpu_used = 1 + index % 37
        self.memory_used = 512 * (1 + index % 53)

    def candidates(self) -> list[dict]:
        return [{"allocations": {
                    self.root: {"resources": {"VCPU": 1, "MEMORY_MB": 512,
                                              "DISK_GB": 1}},
                    region: {"resources": {RC: 1}}},
                 "mappings": {"": [self.root], "1": [region]}}
                for region in self.regions]

    def summaries(self) -> dict[str, dict]:
        """This host's tree as placement's provider_summaries give it."""
        tree = {"root_provider_uuid": self.root}
        out = {self.root: {**tree, "parent_provider_uuid": None, "traits": [],
                           "resources": {
                               "VCPU": {"capacity": int(VCPUS * CPU_RATIO),
                                        "used": self.cpu_used},
                               "MEMORY_MB": {"capacity": MEMORY_MB,
                                             "used": self.memory_used},
                               "DISK_GB": {"capacity": 1000, "used": 1}}},
               self.card: {**tree, "parent_provider_uuid": self.root,
                           "traits": [], "resources": {}}}
        for region, used in zip(self.regions, self.used, strict=True):
            out[region] = {**tree, "parent_provider_uuid": self.card,
                           "traits": ["CUSTOM_ACCEL_REGION",
                                      "CUSTOM_ACCEL_NUMA_0"],
                           "resources": {RC: {"capacity": FUNCTIONS,
                                              "used": used}}}
        return out

    def usage(self) -> dict[str, packing.RegionUsage]:
        return {region: packing.RegionUsage(FUNCTIONS, used, self.card, 0)
                for region, used in zip(self.regions, self.used, strict=True)}


def host_states(hosts: list[Host], candidates=None
                ) -> list[fakes.FakeHostState]:
    """Nova's host states of ``hosts``, with each host's own candidates or
    those ``candidates`` (root uuid -> list, as placement answered)
    gives."""
    return [fakes.FakeHostState(h.name, h.name, {
        "uuid": h.root,
        "allocation_candidates": (h.candidates() if candidates is None
                                  else list(candidates[h.root])),
        "free_ram_mb": MEMORY_MB - h.memory_used, "free_disk_mb": 100_000,
        "vcpus_total": VCPUS, "vcpus_used": h.cpu_used, "num_io_ops": i % 3,
        "cpu_allocation_ratio": CPU_RATIO, "ram_allocation_ratio": 1.0,
        "disk_allocation_ratio": 1.0,
        "num_instances": i % 4, "hypervisor_version": 9_000_000,
        "cell_uuid": "cell1", "aggregates": [], "failed_builds": 0})
        for i, h in enumerate(hosts)]


def request_spec(policy: str | None = None, pinned: int = 0
                 ) -> objects.RequestSpec:
    """A request for one function; with ``pinned``, a NUMA topology of
    that many dedicated CPUs on one guest cell, and ``policy`` its
    flavor's nova_accel:numa_affinity_policy."""
    extra_specs = {f"resources1:{RC}": "1"}
    if policy:
        extra_specs[contract.NUMA_AFFINITY_SPEC] = policy
    return objects.RequestSpec(
        instance_uuid=str(uuid.uuid4()), num_instances=1,
        flavor=objects.Flavor(memory_mb=512, vcpus=max(pinned, 1),
                              root_gb=1, ephemeral_gb=0, swap=0,
                              extra_specs=extra_specs),
        image=objects.ImageMeta(properties=objects.ImageMetaProps()),
        numa_topology=objects.InstanceNUMATopology(cells=[
            objects.InstanceNUMACell(
                id=0, cpuset=set(), pcpuset=set(range(pinned)),
                memory=512, cpu_policy="dedicated")]) if pinned else None,
        instance_group=None, pci_requests=None)


def numa_topology(index: int) -> objects.NUMATopology:
    """Two host cells of 8 dedicated CPUs each, some pinned (a pattern
    that differs by host)."""
    cells = []
    for cell in range(2):
        cpus = set(range(8 * cell, 8 * cell + 8))
        pinned = set(sorted(cpus)[:(index + 3 * cell) % 7])
        cells.append(objects.NUMACell(
            id=cell, cpuset=set(), pcpuset=cpus, memory=MEMORY_MB // 2,
            cpu_usage=0, memory_usage=0, pinned_cpus=pinned,
            siblings=[{cpu} for cpu in sorted(cpus)],
            mempages=[objects.NUMAPagesTopology(
                size_kb=4, total=MEMORY_MB // 2 * 256, used=0)],
            network_metadata=objects.NetworkMetadata(physnets=set(),
                                                     tunneled=False),
            socket=0))
    return objects.NUMATopology(cells=cells)


def on_two_nodes(summaries: dict[str, dict]) -> dict[str, dict]:
    """``summaries`` with every second region of a card on NUMA node 1."""
    out = {}
    for rp, summary in summaries.items():
        traits = summary["traits"]
        if contract.numa_trait(0) in traits and rp[-1] in "13579bdf":
            summary = dict(summary, traits=[
                contract.numa_trait(1) if t == contract.numa_trait(0)
                else t for t in traits])
        out[rp] = summary
    return out


def one_pass(filter_objs, weigher_objs, states, spec) -> float:
    """CPU seconds of one filter and weigher pass (see weighed_pass)."""
    return weighed_pass(filter_objs, weigher_objs, states, spec)[0]


def weighed_pass(filter_objs, weigher_objs, states, spec):
    """CPU seconds of one filter and weigher pass, and nova's weighed hosts
    it gives, best first. The pass is single-threaded CPU work; CPU time
    keeps the other load of a shared machine out of the ratio, as wall time
    does not. The garbage collector waits until the pass is over (as in
    timeit): a collection of what earlier passes left would land in
    whichever pass came next."""
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        passed = list(nova_filters.HostFilterHandler().get_filtered_objects(
            filter_objs, states, spec))
        weighed = nova_weights.HostWeightHandler().get_weighed_objects(
            weigher_objs, passed, spec)
        return time.process_time() - start, weighed
    finally:
        gc.enable()


class ReadingOnly(nova_filters.BaseHostFilter):
    """The least a filter that scores every candidate exactly must do:
    read each provider's usage in the request's summaries and each
    candidate's allocations once, computing nothing. Beside stock, it
    says what is left of a budget for the work itself."""

    def filter_all(self, filter_obj_list, spec_obj):
        for summary in usage.request_placement(spec_obj).summaries.values():
            for resource in summary["resources"].values():
                resource["used"]
        hosts = list(filter_obj_list)
        for host in hosts:
            for candidate in host.allocation_candidates:
                for allocation in candidate["allocations"].values():
                    allocation["resources"]
        return hosts


class WeighsNothing(nova_weights.BaseHostWeigher):
    """One more weigher that nova calls and normalises: its own cost."""

    def weigh_objects(self, weighed_obj_list, weight_properties):
        return [0.0] * len(weighed_obj_list)

    def _weigh_object(self, host_state, weight_properties):
        return 0.0


def scheduling_passes(hosts: list[Host], repeat: int):
    """Stock, ours on summaries and ours on injected usage, alternated so
    all see the same machine load; the candidate lists are rebuilt outside
    the timing, as nova copies them for every request."""
    handler = nova_filters.HostFilterHandler()
    by_name = {cls.__name__: cls for cls in handler.get_all_classes()}
    stock_filters = [by_name[name]() for name in STOCK_FILTERS]
    stock_weighers = [cls() for cls in nova_weights.all_weighers()]
    ours_weighers = [*stock_weighers, weighers.AccelPackingWeigher()]
    summaries = {}
    regions = {}
    for h in hosts:
        summaries.update(h.summaries())
        regions.update(h.usage())
    injected = filters.AccelTopologyFilter()
    injected.usage_source = lambda key, classes: regions
    ours_filters = [*stock_filters, filters.AccelTopologyFilter()]
    injected_filters = [*stock_filters, injected]
    numa_filters = [*stock_filters, by_name["NUMATopologyFilter"]()]
    ours_numa_filters = [*numa_filters, filters.AccelTopologyFilter()]
    numa_summaries = on_two_nodes(summaries)
    topologies = [numa_topology(i) for i in range(len(hosts))]

    def with_summaries():
        spec = request_spec()
        usage.carry(spec, summaries)
        return spec

    def numa_spec(policy=None):
        def spec():
            numa = request_spec(policy, pinned=2)
            usage.carry(numa, numa_summaries)
            return numa
        return spec

    def numa_states():
        states = host_states(hosts)
        for state, topology in zip(states, topologies, strict=True):
            state.numa_topology = topology
            state.limits = {}
        return states

    # A request without accelerators: placement's one candidate per host
    # takes the root's VCPU, MEMORY_MB and DISK_GB only. Our filter lets
    # it pass; under host-fragmentation our weigher weighs it too.
    cpu_only = {h.root: [{"allocations": {h.root: {"resources": {
        "VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 1}}},
        "mappings": {"": [h.root]}}] for h in hosts}

    def accel_states():
        return host_states(hosts)

    def cpu_only_states():
        return host_states(hosts, cpu_only)

    by_root = {h.root: h.candidates() for h in hosts}

    def states_as_nova_hands_them():
        # SchedulerManager._schedule hands the filters a generator that
        # deep-copies each host's candidates as the host is pulled
        # (hosts_with_alloc_reqs): that copy is part of nova's own pass.
        def pulled(states):
            for state in states:
                state.allocation_candidates = copy.deepcopy(
                    by_root[state.uuid])
                yield state
        return pulled(host_states(hosts))

    # Each run: filters, weighers, its request, its host states and the
    # [accel_packing] options it runs under (the others at their default).
    fragmentation = {"policy": packing.POLICY_FRAGMENTATION}
    runs = {"stock": (stock_filters, stock_weighers, request_spec,
                      accel_states, {}),
            "summaries": (ours_filters, ours_weighers, with_summaries,
                          accel_states, {}),
            "summaries, CPU task mix": (
                ours_filters, ours_weighers, with_summaries, accel_states,
                {"task_mix": CPU_TASK_MIX}),
            "stock, candidates copied": (
                stock_filters, stock_weighers, request_spec,
                states_as_nova_hands_them, {}),
            "summaries, candidates copied": (
                ours_filters, ours_weighers, with_summaries,
                states_as_nova_hands_them, {}),
            "summaries, fragmentation": (
                ours_filters, ours_weighers, with_summaries, accel_states,
                fragmentation),
            "injected": (injected_filters, ours_weighers, request_spec,
                         accel_states, fragmentation),
            "stock, no accelerator": (stock_filters, stock_weighers,
                                      request_spec, cpu_only_states, {}),
            "weighs nothing": (stock_filters,
                               [*stock_weighers, WeighsNothing()],
                               request_spec, accel_states, {}),
            "reading only": ([*stock_filters, ReadingOnly()],
                             [*stock_weighers, WeighsNothing()],
                             with_summaries, accel_states, {}),
            "ours, no accelerator": (ours_filters, ours_weighers,
                                     with_summaries, cpu_only_states, {}),
            "stock, NUMA": (numa_filters, stock_weighers, numa_spec(),
                            numa_states, {}),
            "ours, NUMA": (ours_numa_filters, ours_weighers, numa_spec(),
                           numa_states, {}),
            "ours, NUMA, required": (
                ours_numa_filters, ours_weighers,
                numa_spec(contract.NUMA_REQUIRED), numa_states, {})}
    seconds = {name: [] for name in runs}
    for _ in range(repeat):
        for name, (filter_objs, weigher_objs, spec, states,
                   options) in runs.items():
            for option in OPTIONS:
                if option in options:
                    filters.CONF.set_override(option, options[option],
                                              "accel_packing")
                else:
                    filters.CONF.clear_override(option, "accel_packing")
            seconds[name].append(one_pass(filter_objs, weigher_objs,
                                          states(), spec()))
    for option in OPTIONS:
        filters.CONF.clear_override(option, "accel_packing")
    return seconds


REGION_TRAITS = ("CUSTOM_ACCEL_REGION", "CUSTOM_ACCEL_NUMA_0",
                 f"CUSTOM_ACCEL_REGION_SIZE_{FUNCTIONS}")
# What nova 34's computes put on their root provider, and its scheduler
# requires (request_filter.owner_nova_filter).
ROOT_TRAITS = ("OWNER_NOVA",)


def fill_placement(hosts: list[Host]) -> None:
    """Write the hosts' providers straight into placement's tables (the
    API would take minutes for 10,000 providers); placement's own code
    then answers the usage call."""
    import sqlalchemy as sa
    from placement import db_api
    from placement.db.sqlalchemy import models

    ctx_manager = db_api.placement_context_manager
    with ctx_manager.writer.using(_Context()) as session:
        conn = session.connection()
        conn.execute(sa.insert(models.ResourceClass.__table__),
                     [{"name": RC}])
        # The standard traits (ROOT_TRAITS) are placement's already.
        conn.execute(sa.insert(models.Trait.__table__),
                     [{"name": t} for t in REGION_TRAITS])
        insert_hosts(conn, hosts)


def insert_hosts(conn, hosts: list[Host]) -> None:
    """The hosts' providers, inventories, traits and allocations, in one
    multi-row insert per table. The resource class and the traits must
    exist already (their ids are read here); standard resource classes
    have the ids of their place in os-resource-classes, as in placement."""
    import os_resource_classes
    import sqlalchemy as sa
    from placement.db.sqlalchemy import models

    rc_id = conn.execute(sa.select(models.ResourceClass.id).where(
        models.ResourceClass.name == RC)).scalar_one()
    standard = {name: os_resource_classes.STANDARDS.index(name)
                for name in ("VCPU", "MEMORY_MB", "DISK_GB")}
    trait_ids = dict(conn.execute(sa.select(
        models.Trait.name, models.Trait.id)).all())
    providers, inventories, traits = [], [], []
    next_id = 1
    for h in hosts:
        root_id, card_id = next_id, next_id + 1
        providers += [
            {"id": root_id, "uuid": h.root, "name": h.name,
             "generation": 1, "root_provider_id": root_id,
             "parent_provider_id": None},
            {"id": card_id, "uuid": h.card, "name": f"{h.name}:card",
             "generation": 1, "root_provider_id": root_id,
             "parent_provider_id": root_id}]
        for name, total, ratio in (("VCPU", VCPUS, CPU_RATIO),
                                   ("MEMORY_MB", MEMORY_MB, 1.0),
                                   ("DISK_GB", 1000, 1.0)):
            inventories.append(_inventory(root_id, standard[name], total,
                                          ratio))
        traits += [{"resource_provider_id": root_id,
                    "trait_id": trait_ids[t]} for t in ROOT_TRAITS]
        for r, region in enumerate(h.regions):
            region_id = card_id + 1 + r
            providers.append({
                "id": region_id, "uuid": region,
                "name": f"{h.name}:r{r}", "generation": 1,
                "root_provider_id": root_id,
                "parent_provider_id": card_id})
            inventories.append(_inventory(region_id, rc_id, FUNCTIONS))
            traits += [{"resource_provider_id": region_id,
                        "trait_id": trait_ids[t]} for t in REGION_TRAITS]
        next_id = card_id + 1 + REGIONS
    conn.execute(sa.insert(models.ResourceProvider.__table__), providers)
    conn.execute(sa.insert(models.Inventory.__table__), inventories)
    conn.execute(sa.insert(models.ResourceProviderTrait.__table__), traits)
    _allocate(conn, models, hosts, providers, rc_id, standard)


def _inventory(rp_id: int, rc_id: int, total: int,
               allocation_ratio: float = 1.0) -> dict:
    return {"resource_provider_id": rp_id, "resource_class_id": rc_id,
            "total": total, "reserved": 0, "min_unit": 1,
            "max_unit": total, "step_size": 1,
            "allocation_ratio": allocation_ratio}


def _allocate(conn, models, hosts, providers, rc_id, standard) -> None:
    """One consumer per used region, holding its used functions, and one
    per host holding the CPU and memory its root has in use."""
    import sqlalchemy as sa

    conn.execute(sa.insert(models.Project.__table__),
                 [{"id": 1, "external_id": "bench"}])
    conn.execute(sa.insert(models.User.__table__),
                 [{"id": 1, "external_id": "bench"}])
    ids = {p["uuid"]: p["id"] for p in providers}
    consumers, allocations = [], []
    for h in hosts:
        for region, used in zip(h.regions, h.used, strict=True):
            if not used:
                continue
            consumer = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{region}/c"))
            consumers.append({"uuid": consumer, "project_id": 1,
                              "user_id": 1, "generation": 1})
            allocations.append({"resource_provider_id": ids[region],
                                "consumer_id": consumer,
                                "resource_class_id": rc_id, "used": used})
        consumer = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{h.root}/c"))
        consumers.append({"uuid": consumer, "project_id": 1, "user_id": 1,
                          "generation": 1})
        allocations += [
            {"resource_provider_id": ids[h.root], "consumer_id": consumer,
             "resource_class_id": standard["VCPU"], "used": h.cpu_used},
            {"resource_provider_id": ids[h.root], "consumer_id": consumer,
             "resource_class_id": standard["MEMORY_MB"],
             "used": h.memory_used}]
    conn.execute(sa.insert(models.Consumer.__table__), consumers)
    conn.execute(sa.insert(models.Allocation.__table__), allocations)


class _Context:
    """The minimum oslo.db's enginefacade needs to open a transaction."""


def placement_call(hosts: list[Host], repeat: int):
    """Seconds of PlacementUsage's one call and the regions it read, and
    seconds of nova's own allocation candidates call."""
    from keystoneauth1 import adapter, session, token_endpoint
    from placement.tests.functional.fixtures import placement as fx

    service = fx.PlacementFixture()
    service.setUp()
    try:
        start = time.perf_counter()
        fill_placement(hosts)
        fill = time.perf_counter() - start
        ksa = adapter.Adapter(session.Session(
            auth=token_endpoint.Token(service.endpoint, service.token)),
            service_type="placement")
        source = usage.PlacementUsage(lambda: ksa, timeout=60.0)
        seconds, regions = [], None
        for i in range(repeat):
            start = time.perf_counter()
            regions = source(f"request-{i}", [RC])
            seconds.append(time.perf_counter() - start)
            if regions is None:
                raise SystemExit("placement gave no usage (logged above)")
        expected = {}
        for h in hosts:
            expected.update(h.usage())
        if regions != expected:
            raise SystemExit("placement's usage differs from what was "
                             "written to its tables")
        # For scale: nova's own call for the same request, as the scheduler
        # sends it (limit = [scheduler] max_placement_results).
        nova_query = {"resources": "DISK_GB:1,MEMORY_MB:512,VCPU:1",
                      "resources1": f"{RC}:1", "limit": "1000"}
        nova_seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            response = ksa.get("/allocation_candidates", params=nova_query,
                               microversion="1.36", raise_exc=False)
            nova_seconds.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise SystemExit(f"nova's query failed: {response.text}")
        return fill, seconds, regions, nova_seconds
    finally:
        service.cleanUp()


# What main prints of the passes: a label, the run, and the run it is a
# ratio to (None: none).
REPORT = (
    ("stock nova filters + all_weighers", "stock", None),
    ("+ ours, on the request's summaries, default policy", "summaries",
     "stock"),
    ("+ ours, on the request's summaries, a CPU task_mix",
     "summaries, CPU task mix", "stock"),
    ("+ ours, on the request's summaries, fragmentation",
     "summaries, fragmentation", "stock"),
    ("+ ours, on injected usage, fragmentation", "injected", "stock"),
    ("+ a weigher that weighs nothing", "weighs nothing", "stock"),
    ("+ that, and a filter that only reads summaries and candidates",
     "reading only", "stock"),
    ("stock, with nova's copy of each host's candidates", "stock, "
     "candidates copied", None),
    ("+ ours, default policy, on that pass",
     "summaries, candidates copied", "stock, candidates copied"),
    ("a request without accelerators, stock", "stock, no accelerator",
     None),
    ("+ ours (host-fragmentation weighs it)", "ours, no accelerator",
     "stock, no accelerator"),
    ("a NUMA request, stock with NUMATopologyFilter", "stock, NUMA", None),
    ("+ ours, no affinity policy (NUMA node term)", "ours, NUMA",
     "stock, NUMA"),
    ("+ ours, required (one fit per host)", "ours, NUMA, required",
     "stock, NUMA"))


def describe(seconds: list[float]) -> str:
    return (f"median {statistics.median(seconds) * 1000:8.1f} ms  "
            f"(min {min(seconds) * 1000:.1f}, max {max(seconds) * 1000:.1f},"
            f" n={len(seconds)})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--skip-placement", action="store_true",
                        help="only the filter and weigher pass")
    args = parser.parse_args(argv)
    hosts = [Host(i) for i in range(args.hosts)]

    seconds = scheduling_passes(hosts, args.repeat)
    print(f"{args.hosts} hosts x {REGIONS} regions, {REGIONS} allocation "
          f"candidates per host")
    for label, name, base in REPORT:
        line = f"  {label:<61} (CPU) {describe(seconds[name])}"
        if base is not None:
            ratio = statistics.median(seconds[name]) / statistics.median(
                seconds[base])
            line += f"  {ratio:.2f}x"
        print(line)
    if args.skip_placement:
        return 0
    fill, seconds, regions, nova_seconds = placement_call(hosts, args.repeat)
    print(f"placement in-process on SQLite ({len(regions)} regions; filling "
          f"its tables took {fill:.1f} s), wall time")
    print(f"  the filter's usage call (all regions)   {describe(seconds)}")
    print(f"  nova's own candidates call, limit=1000  "
          f"{describe(nova_seconds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
