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

"""NUMA affinity in the scheduler: the pure terms (packing.NumaAsk), and
the filter and the weigher through nova's own handlers on host states
with a NUMA topology, the guest's host cells predicted by nova's own
numa_fit_instance_to_host."""

import uuid

import pytest
from nova import objects
from nova.scheduler import filters as nova_filters
from nova.scheduler import weights as nova_weights
from nova.tests.unit.scheduler import fakes
from nova.virt import hardware

from accel_inventory import contract, numa
from nova_accel_weigher import cells, filters, packing, usage, weighers
from tests.common.scheduler import RC

objects.register_all()
Room, Placement, Ask = packing.HostRoom, packing.Placement, packing.NumaAsk
# The cloud's own mix of a host of 4-function regions.
MIX = packing.cloud_mix([4])


# -- the pure terms

def test_a_fresh_region_opens_on_the_node_already_in_use():
    # Regions 0 and 1 on node 0 (region 0 half used), 2 and 3 on node 1
    # (whole). One more whole region's worth of functions: the fresh
    # regions 1 and 3 pack alike, the node term picks node 0's.
    room = Room(0, 0, (2, 4, 4, 4), (4, 4, 4, 4))
    placements = [Placement(0, 0, {3: 4}), Placement(0, 0, {1: 4})]
    nodes = (0, 0, 1, 1)
    without = packing.rank_placements(room, placements, MIX)
    assert without[0][1] == without[1][1]  # a tie: placement's order
    assert without[0][0] == 0
    ranked = packing.rank_placements(room, placements, MIX, Ask(nodes))
    assert ranked[0][0] == 1
    assert ranked[0][1] > ranked[1][1]


def test_the_node_term_comes_after_the_regions_own_terms():
    # A used region that fits on the whole node beats a fresh one on the
    # node in use: tighter regions first, nodes only among equals.
    room = Room(0, 0, (4, 4, 2), (4, 4, 4))
    nodes = (0, 0, 1)
    # Node 0 has nothing used; node 1 has region 2 half used.
    ranked = packing.rank_placements(
        room, [Placement(0, 0, {0: 1}), Placement(0, 0, {2: 1})], MIX,
        Ask(nodes))
    assert ranked[0][0] == 1


def test_without_a_numa_ask_best_fit_is_unchanged():
    room = Room(0, 0, (2, 4), (4, 4))
    placement = Placement(0, 0, {1: 2})
    assert packing.best_fit(room, placement) == (2 - 6, -2, 0, -4)
    assert len(packing.best_fit(room, placement, numa_ask=Ask((0, 1)))) == 6
    assert packing.best_fit(room, placement,
                            numa_ask=Ask((0, 1), pack=False)) == \
        packing.best_fit(room, placement)


def test_required_drops_placements_off_the_guests_nodes():
    room = Room(0, 0, (4, 4, 4), (4, 4, 4))
    placements = [Placement(0, 0, {0: 1}), Placement(0, 0, {1: 1}),
                  Placement(0, 0, {2: 1})]
    # Region 2's node is unknown: near no guest (nova's required too).
    ask = Ask((0, 1, None), local=frozenset({1}), strict=True)
    assert [i for i, _ in packing.rank_placements(room, placements, MIX,
                                                  ask)] == [1]
    # Two whole regions, one of them away: refused as a whole.
    both = Placement(0, 0, {0: 4, 1: 4})
    assert packing.rank_placements(room, [both], MIX, ask) == []


def test_preferred_ranks_nearness_before_packing():
    # Region 0 is half used on node 0, region 1 fresh on node 1: packing
    # alone takes region 0; the guest is on node 1.
    room = Room(0, 0, (2, 4), (4, 4))
    placements = [Placement(0, 0, {0: 1}), Placement(0, 0, {1: 1})]
    nodes = (0, 1)
    assert packing.rank_placements(room, placements, MIX,
                                   Ask(nodes))[0][0] == 0
    ask = Ask(nodes, local=frozenset({1}), prefer=True)
    ranked = packing.rank_placements(room, placements, MIX, ask)
    assert [i for i, _ in ranked] == [1, 0]
    # Nothing is dropped under preferred.
    far = Ask(nodes, local=frozenset({2}), prefer=True)
    assert [i for i, _ in packing.rank_placements(room, placements, MIX,
                                                  far)] == [0, 1]


def test_socket_takes_every_node_of_the_guests_sockets():
    sockets = {0: 0, 1: 0, 2: 1, 3: None}
    assert numa.local_nodes(contract.NUMA_SOCKET, {0}, sockets) == {0, 1}
    assert numa.local_nodes(contract.NUMA_SOCKET, {3}, sockets) == {3}
    assert numa.local_nodes(contract.NUMA_REQUIRED, {0}, sockets) == {0}


@pytest.mark.parametrize("text, ids", [
    ("0", {0}), ("0-3", {0, 1, 2, 3}), ("0-3,^2", {0, 1, 3}),
    ("1,5-6", {1, 5, 6}), ("", set())])
def test_cpu_and_node_lists_as_the_kernel_and_libvirt_write_them(text, ids):
    assert numa.parse_id_list(text) == ids


@pytest.mark.parametrize("text", ["a", "3-1", "0-99999999", "1-", "-1"])
def test_garbage_lists_are_refused(text):
    with pytest.raises(ValueError):
        numa.parse_id_list(text)


def test_policy_names():
    assert numa.policy_of(" Required ") == contract.NUMA_REQUIRED
    assert numa.policy_of(None) is None
    with pytest.raises(ValueError, match="required, preferred, socket"):
        numa.policy_of("legacy")


# -- the filter and the weigher in nova's handlers

def host_cell(cell_id, pinned=(), socket=0):
    cpus = set(range(4 * cell_id, 4 * cell_id + 4))
    return objects.NUMACell(
        id=cell_id, cpuset=set(), pcpuset=cpus, memory=8192, cpu_usage=0,
        memory_usage=0, pinned_cpus=set(pinned),
        siblings=[{cpu} for cpu in sorted(cpus)],
        mempages=[objects.NUMAPagesTopology(size_kb=4, total=2097152,
                                            used=0)],
        network_metadata=objects.NetworkMetadata(physnets=set(),
                                                 tunneled=False),
        socket=socket)


class NumaHost:
    """A host of two NUMA cells, two 4-function regions on each node;
    ``pinned`` the host CPUs of cell 0 already pinned (cell 0 has 0-3)."""

    def __init__(self, name, used=(0, 0, 0, 0), pinned=()):
        self.name = name
        self.root = str(uuid.uuid5(uuid.NAMESPACE_DNS, name))
        self.card = f"{self.root}-card"
        self.regions = [f"{self.root}-r{r}" for r in range(4)]
        self.used = used
        self.topology = objects.NUMATopology(cells=[
            host_cell(0, pinned), host_cell(1)])

    def node_of(self, region):
        return self.regions.index(region) // 2

    def summaries(self):
        tree = {"root_provider_uuid": self.root}
        out = {self.root: {**tree, "parent_provider_uuid": None,
                           "traits": [], "resources": {
                               "PCPU": {"capacity": 8, "used": 0},
                               "MEMORY_MB": {"capacity": 16384, "used": 0}}},
               self.card: {**tree, "parent_provider_uuid": self.root,
                           "traits": [], "resources": {}}}
        for region, used in zip(self.regions, self.used, strict=True):
            out[region] = {**tree, "parent_provider_uuid": self.card,
                           "traits": [contract.numa_trait(
                               self.node_of(region))],
                           "resources": {RC: {"capacity": 4, "used": used}}}
        return out

    def state(self):
        candidates = [{"allocations": {
            self.root: {"resources": {"PCPU": 2, "MEMORY_MB": 512}},
            region: {"resources": {RC: 1}}},
            "mappings": {"": [self.root], "1": [region]}}
            for region in self.regions]
        return fakes.FakeHostState(self.name, self.name, {
            "uuid": self.root, "allocation_candidates": candidates,
            "numa_topology": self.topology, "free_ram_mb": 16384,
            "free_disk_mb": 100000, "vcpus_total": 8, "vcpus_used": 0,
            "cpu_allocation_ratio": 1.0, "ram_allocation_ratio": 1.0,
            "disk_allocation_ratio": 1.0, "num_io_ops": 0,
            "num_instances": 0, "aggregates": [], "pci_stats": None,
            "hypervisor_version": 9000000, "failed_builds": 0,
            "cell_uuid": "cell1", "limits": {}})


def spec(policy=None, pinned=2):
    extra = {f"resources1:{RC}": "1"}
    if policy:
        extra[contract.NUMA_AFFINITY_SPEC] = policy
    topology = objects.InstanceNUMATopology(cells=[
        objects.InstanceNUMACell(id=0, cpuset=set(),
                                 pcpuset=set(range(pinned)), memory=512,
                                 cpu_policy="dedicated")]) if pinned else None
    return objects.RequestSpec(
        instance_uuid=str(uuid.uuid4()), num_instances=1,
        numa_topology=topology, pci_requests=None, instance_group=None,
        flavor=objects.Flavor(memory_mb=512, vcpus=2, root_gb=1,
                              ephemeral_gb=0, swap=0, extra_specs=extra),
        image=objects.ImageMeta(properties=objects.ImageMetaProps()))


def schedule(hosts, spec_obj):
    """Nova's filter and weigher handlers over ``hosts``: the weighed
    host states, best first, and what the filter left of each one's
    candidates."""
    summaries = {}
    for h in hosts:
        summaries.update(h.summaries())
    usage.carry(spec_obj, summaries)
    states = [h.state() for h in hosts]
    passed = list(nova_filters.HostFilterHandler().get_filtered_objects(
        [filters.AccelTopologyFilter()], states, spec_obj))
    weighed = nova_weights.HostWeightHandler().get_weighed_objects(
        [weighers.AccelPackingWeigher()], passed, spec_obj)
    return [w.obj for w in weighed]


def first_region(state):
    [region] = [rp for rp, alloc in
                state.allocation_candidates[0]["allocations"].items()
                if RC in alloc["resources"]]
    return region


@pytest.fixture
def fits(monkeypatch):
    """Every call of nova's fit, counted."""
    calls = []
    real = hardware.numa_fit_instance_to_host

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(hardware, "numa_fit_instance_to_host", counted)
    return calls


def test_required_gives_a_region_on_the_guests_cell(fits):
    # Cell 0's CPUs are nearly all pinned: nova's fit puts the guest on
    # cell 1; node 0's half used region would pack best.
    hosts = [NumaHost(name, used=(2, 0, 0, 0), pinned=(0, 1, 2))
             for name in ("h1", "h2")]
    states = schedule(hosts, spec(contract.NUMA_REQUIRED))
    assert len(states) == 2
    for host, state in zip(hosts, sorted(states, key=lambda s: s.host),
                           strict=True):
        regions = {rp for c in state.allocation_candidates
                   for rp in c["allocations"] if rp != host.root}
        assert {host.node_of(r) for r in regions} == {1}
    # One fit per host, however many candidates; the weigher fits none of
    # its own.
    assert len(fits) == 2


def test_without_a_policy_packing_decides_and_nothing_is_fitted(fits):
    host = NumaHost("h1", used=(2, 0, 0, 0), pinned=(0, 1, 2))
    [state] = schedule([host], spec())
    assert first_region(state) == host.regions[0]
    assert fits == []


def test_required_fails_a_host_without_a_region_on_the_cell():
    # Node 1's regions are full; the guest can only go to cell 1.
    host = NumaHost("h1", used=(0, 0, 4, 4), pinned=(0, 1, 2))
    assert schedule([host], spec(contract.NUMA_REQUIRED)) == []
    # Under preferred it goes to node 0, the next best.
    [state] = schedule([host], spec(contract.NUMA_PREFERRED))
    assert host.node_of(first_region(state)) == 0


def test_preferred_prefers_the_host_with_a_region_near_its_guest():
    # On "far" the guest lands on cell 1, whose regions are full; on
    # "near" (nothing pinned: nova's fit takes cell 0) near free regions.
    far = NumaHost("far", used=(2, 0, 4, 4), pinned=(0, 1, 2))
    near = NumaHost("near", used=(0, 0, 0, 0))
    best = schedule([far, near], spec(contract.NUMA_PREFERRED))[0]
    assert best.host == "near"
    assert host_node(near, best) == 0
    # Without a policy the partly used region on "far" packs best.
    assert schedule([far, near], spec())[0].host == "far"


def host_node(host, state):
    return host.node_of(first_region(state))


def test_a_request_without_numa_topology_ranks_as_before(fits):
    host = NumaHost("h1", used=(0, 0, 2, 0))
    plain = spec(contract.NUMA_REQUIRED, pinned=0)
    assert cells.numa_request(plain) is None
    [state] = schedule([host], plain)
    assert first_region(state) == host.regions[2]
    assert fits == []


def test_a_bad_policy_value_is_said_once_and_ignored(caplog, monkeypatch):
    monkeypatch.setattr(cells, "_warned", set())
    host = NumaHost("h1", used=(2, 0, 0, 0), pinned=(0, 1, 2))
    for _ in range(2):
        [state] = schedule([host], spec("legacy"))
    assert first_region(state) == host.regions[0]
    assert caplog.text.count("nova_accel:numa_affinity_policy") == 1
