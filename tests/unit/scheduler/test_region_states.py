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

"""The filter's fast path, against the plain functions it stands for:
usage.RegionStates reads a tree of provider summaries as
usage_from_summaries and packing.card_fill would, and usage.ShapeRanker
ranks a host's candidates as packing.rank does."""

from hypothesis import given
from hypothesis import strategies as st

from accel_inventory import contract
from nova_accel_weigher import packing, usage

from tests.common.hypothesis_profiles import examples
from tests.common.scheduler import RC, summaries_of

OTHER_RC = "CUSTOM_ACCEL_GPU"

regions = st.builds(
    packing.RegionUsage, capacity=st.integers(1, 4),
    used=st.integers(0, 4), card=st.sampled_from(["c1", "c2"]),
    numa_node=st.sampled_from([None, 0, 1]), degraded=st.booleans())


def state_of(states, rp):
    n = states.number[rp]
    r = states.region[n]
    return (r.capacity, r.used, r.numa_node, r.degraded, states.fill[n])


@examples(60)
@given(trees=st.lists(st.lists(regions, min_size=1, max_size=5),
                      min_size=1, max_size=4),
       degraded_card=st.booleans(), claims=st.lists(
           st.tuples(st.integers(0, 19), st.integers(1, 2)), max_size=4))
def test_read_tree_numbers_regions_as_the_plain_reading_states_them(
        trees, degraded_card, claims):
    summaries, roots, names = {}, [], []
    for t, tree in enumerate(trees):
        root = f"t{t}"
        tree_regions = {f"{root}r{r}": packing.RegionUsage(
            region.capacity, region.used, f"{root}{region.card}",
            region.numa_node, region.degraded)
            for r, region in enumerate(tree)}
        summaries.update(summaries_of(
            tree_regions, root=root,
            degraded_cards=(f"{root}c1",) if degraded_card else ()))
        roots.append(root)
        names += list(tree_regions)
    claimed = usage.claimed_amounts(
        [{"allocations": {names[i % len(names)]: {"resources": {RC: n}}}}
         for i, n in claims], [RC])
    index = usage.trees(summaries)
    states = usage.RegionStates()
    for root in roots:
        states.read_tree(summaries, index[root], (RC,), claimed)

    for root in roots:
        plain = usage.usage_from_summaries(summaries, [RC], index[root],
                                           claimed)
        fills = packing.card_fill(plain)
        for rp, r in plain.items():
            assert state_of(states, rp) == (
                r.capacity, r.used, r.numa_node, r.degraded, fills[r.card])
    # One number per distinct state: equal states share it.
    assert len(set(states.number.values())) == len(
        {state_of(states, rp) for rp in states.number})


def test_regions_of_one_card_with_other_traits_get_other_states():
    # The traits of the previous region are reused only when equal.
    summaries = summaries_of({
        "r0": packing.RegionUsage(4, 1, "card", 0),
        "r1": packing.RegionUsage(4, 1, "card", 1),
        "r2": packing.RegionUsage(4, 1, "card", 1, degraded=True),
        "r3": packing.RegionUsage(4, 1, "card", 1)})
    states = usage.RegionStates()
    states.read_tree(summaries, list(summaries), (RC,), {})
    assert [state_of(states, rp)[2:4] for rp in ("r0", "r1", "r2", "r3")] \
        == [(0, False), (1, False), (1, True), (1, False)]


def test_read_tree_counts_both_classes_of_a_two_class_request():
    summaries = summaries_of({"r0": packing.RegionUsage(4, 1, "card")})
    summaries["r0"]["resources"][OTHER_RC] = {"capacity": 2, "used": 2}
    summaries["r0"]["traits"].append(contract.numa_trait(3))
    states = usage.RegionStates()
    states.read_tree(summaries, list(summaries), (RC, OTHER_RC), {})
    assert state_of(states, "r0") == (6, 3, 3, False, 0.5)


def candidate(allocations):
    return {"allocations": {rp: {"resources": dict(resources)}
                            for rp, resources in allocations}}


allocation = st.tuples(
    st.sampled_from(["r0", "r1", "r2", "r3", "root", "elsewhere"]),
    st.lists(st.tuples(st.sampled_from([RC, OTHER_RC, "VCPU"]),
                       st.integers(1, 3)), min_size=1, max_size=2))


@examples(80)
@given(usage_all=st.dictionaries(
           st.sampled_from(["r0", "r1", "r2", "r3"]), regions, min_size=1),
       candidates=st.lists(st.lists(allocation, min_size=1, max_size=3),
                           min_size=1, max_size=8),
       classes=st.sampled_from([(RC,), (RC, OTHER_RC)]),
       policy=st.sampled_from(packing.REGION_POLICIES))
def test_shape_ranker_ranks_as_packing_rank(usage_all, candidates, classes,
                                            policy):
    """Each shape is scored once and remembered; no order or score may
    differ from scoring every candidate against all usage."""
    candidates = [candidate(c) for c in candidates]
    demands = [packing.region_demand(c, list(classes)) for c in candidates]
    expected = packing.rank(demands, usage_all, policy=policy)
    states = usage.RegionStates()
    states.admit(usage_all)
    ranker = usage.ShapeRanker(states, classes, policy, packing.DEFAULT_MIX)

    # Twice: the second time every score comes from the remembered shapes.
    assert ranker.rank(candidates) == expected
    assert ranker.rank(candidates) == expected
