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

"""The filter and the weigher through nova's real handlers."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nova import objects
from nova import weights as nova_base_weights
from nova.scheduler import weights as nova_weights
from nova.tests.unit.scheduler import fakes

from nova_accel_weigher import filters, packing, rooms, usage, weighers

from tests.common.hypothesis_profiles import examples
from tests.common.scheduler import RC, candidate, host, run_filter
from tests.common.scheduler import summaries_of

objects.register_all()


class MemoryUsage:
    """Region usage held in memory; counts the calls like placement would."""

    def __init__(self, regions):
        self.regions = regions
        self.calls = []

    def __call__(self, key, classes):
        self.calls.append(key)
        return self.regions


@pytest.fixture
def region_usage():
    return {f"r{i}": packing.RegionUsage(4, 0, "card1") for i in (1, 2, 3)}


@pytest.fixture
def accel_filter(region_usage):
    f = filters.AccelTopologyFilter()
    f.usage_source = MemoryUsage(region_usage)
    return f


def spec():
    return objects.RequestSpec(instance_uuid=str(uuid.uuid4()))


def claim(region_usage, chosen):
    for rp, alloc in chosen["allocations"].items():
        old = region_usage[rp]
        region_usage[rp] = packing.RegionUsage(
            old.capacity, old.used + alloc["resources"][RC], old.card,
            old.numa_node, old.degraded)


def test_meeting_scenario_packs_one_two_one_then_two_whole_regions(
        accel_filter, region_usage):
    landed = []
    for amount in (1, 2, 1):
        h = host("h1", [candidate(r, amount=amount)
                        for r in ("r3", "r1", "r2")])
        [passed] = run_filter(accel_filter, [h], spec())
        chosen = passed.allocation_candidates[0]
        claim(region_usage, chosen)
        landed.append(next(iter(chosen["allocations"])))
    assert len(set(landed)) == 1
    pairs = [("r1", "r2"), ("r1", "r3"), ("r2", "r3")]
    h = host("h1", [candidate(a, b, amount=4) for a, b in pairs])
    [passed] = run_filter(accel_filter, [h], spec())
    # Only the pair of untouched regions still fits.
    assert len(passed.allocation_candidates) == 1
    assert landed[0] not in passed.allocation_candidates[0]["allocations"]


def test_degraded_region_is_dropped_and_host_fails_without_candidates(
        accel_filter, region_usage):
    region_usage["r1"] = packing.RegionUsage(4, 0, "card1", degraded=True)
    h = host("h1", [candidate("r1"), candidate("r2")])
    [passed] = run_filter(accel_filter, [h], spec())
    assert [list(c["allocations"]) for c in passed.allocation_candidates] \
        == [["r2"]]
    only_degraded = host("h2", [candidate("r1")])
    assert run_filter(accel_filter, [only_degraded], spec()) == []


def test_stale_candidates_of_a_multi_create_are_dropped(accel_filter,
                                                        region_usage):
    region_usage["r1"] = packing.RegionUsage(4, 4, "card1")
    h = host("h1", [candidate("r1"), candidate("r2")])
    [passed] = run_filter(accel_filter, [h], spec())
    assert [list(c["allocations"]) for c in passed.allocation_candidates] \
        == [["r2"]]


def test_one_usage_call_per_request_not_per_host(accel_filter):
    hosts = [host(f"h{i}", [candidate("r1"), candidate("r2")])
             for i in range(5)]
    request = spec()
    run_filter(accel_filter, hosts, request)
    # One call, made for this request: not one per host, even when every
    # host answers with the same key.
    assert accel_filter.usage_source.calls == [request.instance_uuid]


def test_usage_is_asked_again_at_every_pass_of_the_same_instance(
        accel_filter):
    # nova runs a pass per instance of a multi-create on the same request
    # spec, and a later move schedules the same instance again: each pass
    # must see the usage as it is then.
    request = spec()
    for _ in range(2):
        run_filter(accel_filter, [host("h1", [candidate("r1")]),
                                  host("h2", [candidate("r2")])], request)
    assert accel_filter.usage_source.calls == [request.instance_uuid] * 2


region_states = st.builds(
    packing.RegionUsage, capacity=st.integers(1, 4),
    used=st.integers(0, 4), card=st.sampled_from(["c1", "c2"]),
    numa_node=st.sampled_from([None, 0, 1]), degraded=st.booleans())


@examples(60)
@given(hosts=st.lists(st.lists(region_states, min_size=1, max_size=4),
                      min_size=1, max_size=6),
       amounts=st.lists(st.integers(1, 3), min_size=1, max_size=4),
       offered=st.integers(1, 4), pairs=st.booleans(),
       policy=st.sampled_from(packing.REGION_POLICIES),
       via_summaries=st.booleans())
def test_each_host_is_ranked_as_packing_rank_ranks_it_against_all_usage(
        hosts, amounts, offered, pairs, policy, via_summaries):
    """The filter reuses scores across hosts within a pass, and reads a
    host's regions from the request's summaries tree by tree (or gets all
    usage at once from its source); none of it may change an order or a
    score."""
    usage_all, states, summaries = {}, [], {}
    for h, regions in enumerate(hosts):
        names = []
        for r, region in enumerate(regions):
            name = f"h{h}r{r}"
            usage_all[name] = packing.RegionUsage(
                region.capacity, region.used, f"h{h}{region.card}",
                region.numa_node, region.degraded)
            names.append(name)
        summaries.update(summaries_of(
            {n: usage_all[n] for n in names}, root=f"h{h}"))
        # Placement leaves full regions out of the candidates; their
        # usage still counts in their card's fill.
        names = names[:offered]
        shapes = ([(a, b) for a in names for b in names if a != b]
                  if pairs and len(names) > 1 else [(n,) for n in names])
        cands = [candidate(*shape, amount=amounts[i % len(amounts)])
                 for i, shape in enumerate(shapes)]
        states.append(host(f"h{h}", cands))
    expected = {}
    for state in states:
        demands = [packing.region_demand(c)
                   for c in state.allocation_candidates]
        ranked = packing.rank(demands, usage_all, policy=policy)
        expected[state.host] = (
            [state.allocation_candidates[i] for i, _ in ranked],
            ranked[0][1] if ranked else None)
    f = filters.AccelTopologyFilter()
    request = spec()
    if via_summaries:
        usage.carry(request, summaries)
    else:
        f.usage_source = MemoryUsage(usage_all)
    filters.CONF.set_override("policy", policy, "accel_packing")
    try:
        passed = {s.host for s in run_filter(f, states, request)}
    finally:
        filters.CONF.clear_override("policy", "accel_packing")
    for state in states:
        order, best = expected[state.host]
        assert (state.host in passed) == bool(order)
        if order:
            assert state.allocation_candidates == order
            assert getattr(state, filters.SCORE_ATTR) == (
                request.instance_uuid, best)


def test_without_usage_placements_order_is_kept():
    f = filters.AccelTopologyFilter()
    f.usage_source = lambda key, classes: None
    candidates = [candidate("r3"), candidate("r1")]
    h = host("h1", candidates)
    assert f.host_passes(h, spec())
    assert h.allocation_candidates == candidates


def test_placement_failure_is_logged_and_keeps_order(caplog):
    class Broken:
        def get(self, *args, **kwargs):
            raise ConnectionRefusedError("placement is down")
    f = filters.AccelTopologyFilter()
    f.usage_source = usage.PlacementUsage(lambda: Broken(), 0.5)
    candidates = [candidate("r3"), candidate("r1")]
    h = host("h1", candidates)
    assert f.host_passes(h, spec())
    assert h.allocation_candidates == candidates
    assert "placement did not give region usage" in caplog.text


def test_request_without_accelerators_is_untouched(accel_filter):
    plain = [{"allocations": {"cn": {"resources": {"VCPU": 1}}},
              "mappings": {}}]
    h = host("h1", plain)
    assert accel_filter.host_passes(h, spec())
    assert h.allocation_candidates == plain
    assert accel_filter.usage_source.calls == []


def test_nova_pci_classes_pack_when_listed(region_usage):
    pci = "CUSTOM_PCI_8086_1520"
    filters.CONF.set_override("resource_classes", [pci], "accel_packing")
    try:
        regions = {"pf1": packing.RegionUsage(8, 3, "pf1"),
                   "pf2": packing.RegionUsage(8, 0, "pf2")}
        f = filters.AccelTopologyFilter()
        f.usage_source = MemoryUsage(regions)
        cands = [{"allocations": {pf: {"resources": {pci: 1}}},
                  "mappings": {}} for pf in ("pf2", "pf1")]
        h = host("h1", cands)
        assert f.host_passes(h, spec())
        assert list(h.allocation_candidates[0]["allocations"]) == ["pf1"]
    finally:
        filters.CONF.clear_override("resource_classes", "accel_packing")


def weigh(hosts, request):
    handler = nova_weights.HostWeightHandler()
    return handler.get_weighed_objects([weighers.AccelPackingWeigher()],
                                       hosts, request)


def test_weigher_prefers_the_host_whose_region_is_partly_used():
    regions = {"a1": packing.RegionUsage(4, 0, "ca"),
               "b1": packing.RegionUsage(4, 2, "cb")}
    f = filters.AccelTopologyFilter()
    f.usage_source = MemoryUsage(regions)
    fresh, used = host("fresh", [candidate("a1")]), host("used",
                                                         [candidate("b1")])
    request = spec()
    for h in (fresh, used):
        assert f.host_passes(h, request)
    ranked = weigh([fresh, used], request)
    assert [w.obj.host for w in ranked] == ["used", "fresh"]
    # A stale score from this request is not used for the next one.
    assert all(w.weight == 0.0 for w in weigh([fresh, used], spec()))


def test_aggregate_multiplier_overrides_the_option():
    h = host("h1", [])
    h.aggregates = [objects.Aggregate(
        id=1, name="a", hosts=["h1"],
        metadata={"accel_packing_weight_multiplier": "-2.0"})]
    assert weighers.AccelPackingWeigher().weight_multiplier(h) == -2.0


# -- host-fragmentation: every request, CPU-only ones too

GPU = "CUSTOM_ACCEL_GPU"


def gpu_host_tree(root, vcpus, vcpus_used, free_gpus, gpus=4):
    """One host's provider summaries: VCPU and MEMORY_MB on the root, a
    card of ``gpus`` regions of 1000 under it, the first ``free_gpus``
    of them free and the others full."""
    out = {root: {"resources": {
        "VCPU": {"capacity": vcpus, "used": vcpus_used},
        "MEMORY_MB": {"capacity": 262144, "used": 0}},
        "traits": [], "parent_provider_uuid": None,
        "root_provider_uuid": root}}
    out[f"{root}-card"] = {"resources": {}, "traits": [],
                           "parent_provider_uuid": root,
                           "root_provider_uuid": root}
    for g in range(gpus):
        out[f"{root}-gpu{g}"] = {
            "resources": {GPU: {"capacity": 1000,
                                "used": 0 if g < free_gpus else 1000}},
            "traits": [], "parent_provider_uuid": f"{root}-card",
            "root_provider_uuid": root}
    return out


def nova_host(name, vcpus, vcpus_used, free_ram_mb):
    """The HostState nova's RAM and CPU weighers read, with the one
    candidate placement gives a request for 8 VCPUs and no accelerator."""
    return fakes.FakeHostState(name, name, {
        "uuid": name, "free_ram_mb": free_ram_mb, "vcpus_total": vcpus,
        "vcpus_used": vcpus_used, "cpu_allocation_ratio": 1.0,
        "ram_allocation_ratio": 1.0, "free_disk_mb": 1024 * 1024,
        "disk_allocation_ratio": 1.0, "num_io_ops": 0, "num_instances": 0,
        "failed_builds": 0, "hypervisor_version": 9000000,
        "aggregates": [], "metrics": [], "pci_stats": None,
        "allocation_candidates": [{"allocations": {name: {"resources": {
            "VCPU": 8, "MEMORY_MB": 1024}}}, "mappings": {}}]})


@pytest.mark.parametrize("multiplier,expected", [(10.0, "busy"),
                                                 (1.0, "roomy")])
def test_a_cpu_only_request_goes_where_its_cpu_strands_no_gpu(
        multiplier, expected):
    """A whole GPU comes with 8 VCPUs in the mix (8 per 1000 units).
    ``roomy`` has 20 VCPUs left for 4 free GPUs: 8 more VCPUs taken leave
    12, which feed 1500 of its 4000 free units instead of 2500, a
    gradient of +1000 (score int(100 / (1 + e)) = 26). ``busy`` has no
    GPU free, so the request strands nothing there (score 50). Nova's own
    weighers prefer roomy (more free RAM and VCPUs; the others weigh both
    alike): roomy 1 + 1, busy 8/20 + 16384/262144 = 0.46. Ours names
    busy: at the default multiplier it decides (10.46 against 2), at 1.0
    it does not (1.46 against 2)."""
    request = objects.RequestSpec(instance_uuid=str(uuid.uuid4()),
                                  instance_group=None, image=None,
                                  pci_requests=None)
    usage.carry(request, {**gpu_host_tree("roomy", 24, 4, 4),
                          **gpu_host_tree("busy", 24, 16, 0)})
    hosts = [nova_host("roomy", 24, 4, 262144),
             nova_host("busy", 24, 16, 16384)]
    handler = nova_weights.HostWeightHandler()
    all_weighers = [cls() for cls in handler.get_matching_classes(
        ["nova.scheduler.weights.all_weighers"])]
    conf = weighers.CONF
    conf.set_override("task_mix", ["1:region1000:8", "1:0:8"],
                      "accel_packing")
    conf.set_override("weight_multiplier", multiplier, "accel_packing")
    try:
        # As nova normalises them (both hosts have accelerators: half
        # weights under prefer-plain-hosts, the same once normalised).
        assert list(nova_base_weights.normalize(
            weighers.AccelPackingWeigher().weigh_objects(
                [nova_weights.WeighedHost(h, 0.0) for h in hosts],
                request))) == [0.0, 1.0]
        weighed = handler.get_weighed_objects(
            [*all_weighers, weighers.AccelPackingWeigher()], hosts, request)
    finally:
        conf.clear_override("task_mix", "accel_packing")
        conf.clear_override("weight_multiplier", "accel_packing")
    assert weighed[0].obj.host == expected
    # Stock nova alone (all_weighers) takes roomy.
    assert handler.get_weighed_objects(
        all_weighers, hosts, request)[0].obj.host == "roomy"


def test_host_fragmentation_ranks_a_hosts_candidates_on_its_whole_room():
    """The filter orders candidates by the host's room, not the regions
    they touch alone: half a GPU goes to the GPU already half used, and
    the score left for the weigher is the best one's."""
    tree = gpu_host_tree("h1", 64, 0, 4)
    tree["h1-gpu1"]["resources"][GPU]["used"] = 500
    request = spec()
    usage.carry(request, tree)
    cands = [{"allocations": {
        "h1": {"resources": {"VCPU": 4, "MEMORY_MB": 1024}},
        f"h1-gpu{g}": {"resources": {GPU: 500}}}, "mappings": {}}
        for g in range(4)]
    state = host("h1", cands)
    conf = filters.CONF
    conf.set_override("task_mix", ["1:500:4", "1:region1000:8"],
                      "accel_packing")
    try:
        assert run_filter(filters.AccelTopologyFilter(), [state],
                          request) == [state]
    finally:
        conf.clear_override("task_mix", "accel_packing")
    assert list(state.allocation_candidates[0]["allocations"]) == [
        "h1", "h1-gpu1"]
    # Filling GPU 1 ends the 500 the whole-GPU kind could not use: a
    # gradient of -250 (half the mix), score int(100 / (1 + e^-0.25));
    # then best fit: 3000 left on the host, nothing left free in GPU 1,
    # 500 used before, a GPU of 1000.
    assert getattr(state, filters.SCORE_ATTR) == (
        request.instance_uuid, (56, -3000, 0, 500, -1000))


def test_a_bad_task_mix_falls_back_to_fragmentation_and_says_so(caplog):
    regions = {"a1": packing.RegionUsage(4, 0, "ca"),
               "b1": packing.RegionUsage(4, 2, "cb")}
    request = spec()
    usage.carry(request, {**summaries_of({"a1": regions["a1"]}, root="ra"),
                          **summaries_of({"b1": regions["b1"]}, root="rb")})
    fresh, used = host("fresh", [candidate("a1")]), host("used",
                                                         [candidate("b1")])
    conf = filters.CONF
    conf.set_override("task_mix", ["half:2"], "accel_packing")
    try:
        assert run_filter(filters.AccelTopologyFilter(), [fresh, used],
                          request) == [fresh, used]
        ranked = weigh([fresh, used], request)
    finally:
        conf.clear_override("task_mix", "accel_packing")
    assert [w.obj.host for w in ranked] == ["used", "fresh"]
    # fragmentation's scores, not host-fragmentation's 0-100.
    assert isinstance(getattr(used, filters.SCORE_ATTR)[1], packing.Score)
    assert "bad task mix entry 'half:2'" in caplog.text


@pytest.mark.parametrize("corrupt", [
    lambda summaries: summaries["b1"]["resources"][RC].pop("used"),
    lambda summaries: summaries["b1"].update(resources=[RC]),
    lambda summaries: summaries.update(rb=None),
])
def test_summaries_not_as_placement_gives_them_keep_placements_order(
        monkeypatch, caplog, corrupt):
    """The filter reads every tree at once: a provider it cannot read
    costs the request its packing (placement's order, every host kept,
    every weight 0), one warning, and no second reading, never a
    traceback per host."""
    regions = {"a1": packing.RegionUsage(4, 0, "ca"),
               "a2": packing.RegionUsage(4, 2, "ca"),
               "b1": packing.RegionUsage(4, 2, "cb")}
    summaries = {
        **summaries_of({r: regions[r] for r in ("a1", "a2")}, root="ra"),
        **summaries_of({"b1": regions["b1"]}, root="rb")}
    corrupt(summaries)
    reads = []
    read_rooms = rooms.read_rooms
    monkeypatch.setattr(rooms, "read_rooms",
                        lambda *args: reads.append(1) or read_rooms(*args))
    request = spec()
    usage.carry(request, summaries)
    order = [candidate("a1"), candidate("a2")]
    hosts = [host("a", order), host("b", [candidate("b1")])]

    assert run_filter(filters.AccelTopologyFilter(), hosts,
                      request) == hosts
    weighed = weigh(hosts, request)

    assert hosts[0].allocation_candidates == order
    assert len(weighed) == 2
    assert len(reads) == 1  # the weigher reuses the filter's reading
    warnings = [r for r in caplog.records if "not as placement gives them"
                in r.getMessage()]
    assert [r.levelname for r in warnings] == ["WARNING"]
    assert not any(r.exc_info for r in caplog.records)
