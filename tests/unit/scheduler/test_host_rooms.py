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

"""rooms.HostRooms, the host-fragmentation filter's fast path, against
the plain reading it stands for: each host's room read from its tree of
provider summaries with the request's claims taken off, each candidate
made a packing.Placement, and packing.rank_placements on them, with no
room, score or ranking remembered; for requests with a NUMA topology too,
with each region's NUMA node read from its trait."""

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from accel_inventory import contract
from nova_accel_weigher import packing, rooms, usage

from tests.common.hypothesis_profiles import examples
from tests.common.scheduler import RC

OTHER_RC = "CUSTOM_ACCEL_GPU"
# CPU and memory asked, a model, whole regions, and no accelerator at all.
MIX = packing.parse_task_mix([
    "0.2:1:2:1024", f"0.5:region4:0:0:{RC}", "0.1:2xregion2",
    "0.2:0:4:2048"])
# No CPU or memory asked: hosts' CPU and memory only say what fits.
CPU_BLIND_MIX = packing.parse_task_mix(["0.6:1", f"0.3:region4:0:0:{RC}",
                                        "0.1:2xregion2"])


def plain_room(summaries, root, claimed):
    """The host's room read one provider at a time, the obvious way."""
    cpu = memory = 0
    free, capacity, index, model, nodes = [], [], {}, "", []
    for rp, summary in summaries.items():
        if summary["root_provider_uuid"] != root:
            continue
        taken = claimed.get(rp, {})
        region_capacity = region_used = 0
        region_class = None
        for rc, r in summary["resources"].items():
            left = r["capacity"] - r["used"] - taken.get(rc, 0)
            if rc == "VCPU":
                cpu += left
            elif rc == "MEMORY_MB":
                memory += left
            elif rc.startswith("CUSTOM_ACCEL_"):
                region_capacity += r["capacity"]
                region_used += r["used"] + taken.get(rc, 0)
                region_class = rc
        if region_class is None:
            continue
        card = summaries[summary["parent_provider_uuid"]]
        degraded = (contract.DEGRADED_TRAIT in summary["traits"]
                    or contract.DEGRADED_TRAIT in card["traits"])
        index[rp] = len(free)
        nodes.append(contract.numa_node_among(summary["traits"]))
        capacity.append(region_capacity)
        free.append(0 if degraded
                    else max(region_capacity - region_used, 0))
        model = model or region_class
    return packing.HostRoom(max(cpu, 0), max(memory, 0), tuple(free),
                            tuple(capacity), model), index, tuple(nodes)


def plain_rank(summaries, root, claimed, candidates, mix, numa_ask=None):
    room, index, nodes = plain_room(summaries, root, claimed)
    placements = []
    for candidate in candidates:
        cpu = memory = 0
        taken = {}
        for rp, alloc in candidate["allocations"].items():
            for rc, amount in alloc["resources"].items():
                if rc == "VCPU":
                    cpu += amount
                elif rc == "MEMORY_MB":
                    memory += amount
                elif rp in index and rc.startswith("CUSTOM_ACCEL_"):
                    taken[index[rp]] = taken.get(index[rp], 0) + amount
        placements.append(packing.Placement(cpu, memory, taken))
    if numa_ask is not None:
        numa_ask = dataclasses.replace(numa_ask, nodes=nodes)
    return packing.rank_placements(room, placements, mix, numa_ask)


# Regions left whole often: the mix's whole-region kinds can use them.
region = st.fixed_dictionaries({
    "capacity": st.sampled_from([2, 4]),
    "used": st.sampled_from([0, 0, 0, 1, 2, 3, 4]),
    "degraded": st.sampled_from([False, False, True]),
    "other_class": st.booleans(),
    "node": st.sampled_from([None, 0, 1, 1])})
tree = st.fixed_dictionaries({
    "cpu_used": st.sampled_from([0, 3, 13, 14, 15, 16]),
    "memory_used": st.sampled_from([0, 1024, 3072, 4000, 4096]),
    "card_degraded": st.booleans(),
    "regions": st.lists(region, min_size=0, max_size=4)})
allocation = st.tuples(
    st.integers(0, 4),  # a region's number; 4 (or one absent): elsewhere
    st.lists(st.tuples(st.sampled_from([RC, OTHER_RC, "VCPU"]),
                       st.integers(0, 3)), min_size=1, max_size=2))
host_candidates = st.lists(st.tuples(
    st.integers(0, 4), st.sampled_from([0, 1024, 2048]),
    st.lists(allocation, max_size=2)), min_size=1, max_size=6)


def summaries_of(trees):
    summaries = {"sharing": {"resources": {"DISK_GB": {
        "capacity": 100, "used": 0}}, "traits": [],
        "parent_provider_uuid": None, "root_provider_uuid": "sharing"}}
    for t, host in enumerate(trees):
        root, card = f"h{t}", f"h{t}card"
        summaries[root] = {"resources": {
            "VCPU": {"capacity": 16, "used": host["cpu_used"]},
            "MEMORY_MB": {"capacity": 4096, "used": host["memory_used"]}},
            "traits": [], "parent_provider_uuid": None,
            "root_provider_uuid": root}
        summaries[card] = {
            "resources": {}, "parent_provider_uuid": root,
            "root_provider_uuid": root,
            "traits": [contract.DEGRADED_TRAIT] if host["card_degraded"]
            else []}
        for r, spec in enumerate(host["regions"]):
            summaries[f"h{t}r{r}"] = {
                "resources": {OTHER_RC if spec["other_class"] else RC: {
                    "capacity": spec["capacity"], "used": spec["used"]}},
                "traits": ["CUSTOM_ACCEL_REGION"] + (
                    [contract.DEGRADED_TRAIT] if spec["degraded"] else []) + (
                    [contract.numa_trait(spec["node"])]
                    if spec["node"] is not None else []),
                "parent_provider_uuid": card, "root_provider_uuid": root}
    return summaries


def candidates_of(t, specs):
    out = []
    for cpu, memory, allocations in specs:
        allocs = {f"h{t}": {"resources": {"VCPU": cpu, "MEMORY_MB": memory}}}
        for r, resources in allocations:
            rp = f"h{t}r{r}" if r < 4 else "sharing"
            allocs.setdefault(rp, {"resources": {}})
            allocs[rp]["resources"].update(resources)
        out.append({"allocations": allocs})
    return out


@examples(80)
@given(mix=st.sampled_from([MIX, CPU_BLIND_MIX, None]),
       trees=st.lists(tree, min_size=1, max_size=5),
       candidate_specs=st.lists(host_candidates, min_size=5, max_size=5),
       claims=st.lists(st.tuples(st.integers(0, 30), st.sampled_from(
           [RC, OTHER_RC, "VCPU", "MEMORY_MB"]), st.integers(1, 2)),
           max_size=4),
       numa_ask=st.one_of(st.none(), st.builds(
           packing.NumaAsk, st.just(()),
           st.sampled_from([None, frozenset(), frozenset({0}),
                            frozenset({1}), frozenset({0, 1})]),
           st.booleans(), st.booleans(), st.booleans())))
def test_host_rooms_rank_as_rank_placements_on_the_plain_room(
        mix, trees, candidate_specs, claims, numa_ask):
    """The regions' states, what they alone decide of a score, and
    rankings are each remembered (by regions' state, placement shape and
    what the mix reads of CPU and memory, and the request's NUMA ask);
    no order or score may differ from working everything out afresh for
    every host. ``mix`` None is the cloud's own: packing.cloud_mix of
    every region's capacity."""
    summaries = summaries_of(trees)
    request = usage.RequestPlacement(summaries)
    names = sorted(summaries)
    request.claimed = [{"allocations": {names[i % len(names)]: {
        "resources": {rc: n}}}} for i, rc, n in claims]
    claimed = rooms.claimed_by_provider(request.claimed)
    host_rooms = rooms.HostRooms(request, [], rooms.MixRule(mix),
                                 numa_nodes=numa_ask is not None)
    if mix is None:
        mix = packing.cloud_mix(
            r["capacity"] for summary in summaries.values()
            for rc, r in summary["resources"].items()
            if rc.startswith(contract.ACCEL_PREFIX))
    # Hosts often share a room and candidates' shapes: every host is
    # ranked twice, and hosts again with another's candidates shape.
    for _ in range(2):
        for t in range(len(trees)):
            candidates = candidates_of(t, candidate_specs[t])
            assert host_rooms.rank(candidates, numa_ask) == plain_rank(
                summaries, f"h{t}", claimed, candidates, mix, numa_ask)


def test_a_candidate_on_no_known_host_ranks_nothing():
    request = usage.RequestPlacement(summaries_of([]))
    host_rooms = rooms.HostRooms(request, [], rooms.MixRule(MIX))
    assert host_rooms.rank([{"allocations": {"elsewhere": {
        "resources": {"VCPU": 1}}}}]) == []
    assert host_rooms.rank([]) == []
