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

"""The planner on hand-checked clouds, and against brute force."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel_defrag import cluster as cl
from accel_defrag import planner
from tests.common import hypothesis_profiles
from tests.common.defrag_builders import RC, build, greedy_moves



def spare(count=4, prefix="y"):
    """Regions of 4 with two servers of one function each: room for two
    functions in each, none whole, each dearer to free (two moves) than
    a region of one server."""
    return [[(f"{prefix}{i}a", 1), (f"{prefix}{i}b", 1)]
            for i in range(count)]


def target(count, **kw):
    return planner.Target(RC, 4, count, **kw)


def replay(cluster, plan):
    """The cloud after the plan's moves, applied independently of the
    planner: each server's functions moved region to region."""
    used = {u: r.used for u, r in cluster.regions.items()}
    for move in plan.moves:
        server = cluster.servers[move.server]
        assert move.source == server.host != move.destination
        for src, dst in move.regions:
            amount = server.regions[src]
            used[src] -= amount
            used[dst] += amount
            assert used[dst] <= cluster.regions[dst].capacity
            dst_region = cluster.regions[dst]
            assert dst_region.host == move.destination
            assert (dst_region.resource_class, dst_region.size) == (
                cluster.regions[src].resource_class,
                cluster.regions[src].size)
    return used


def whole(cluster, used):
    return {u for u, r in cluster.regions.items() if used[u] == 0}


def test_one_move_fills_the_tightest_hole_never_a_whole_region():
    cloud = build({"a": [[("s1", 1)], [("s2", 2), ("s3", 1)]],
                   "b": [[("t1", 3)], [], [("t2", 1)]]})
    plan = planner.plan(cloud, target(1))
    assert [(m.server, m.destination, m.regions) for m in plan.moves] == [
        ("s1", "b", (("a/r0", "b/r0"),))]
    assert plan.freed == ["a/r0"] and plan.moves[0].frees == ("a/r0",)
    # b/r1 stays whole: 1 whole region before, 2 after; free functions
    # outside them: a/r0 3, a/r1 1, b/r0 1, b/r2 3, then a/r1 and b/r2.
    assert plan.before == (1, 3 + 1 + 1 + 3) and plan.after == (2, 1 + 3)
    assert whole(cloud, replay(cloud, plan)) == {"a/r0", "b/r1"}


def test_greedy_is_not_optimal_where_servers_span_regions():
    """Free 2 regions of host a. Alone, p is cheapest (one server), so
    greedy takes it, then any other region costs two: 3 moves. But b
    and c each hold two functions of both q and r: moving those two
    frees both regions, 2 moves, the optimum (checked by hand: no single
    move frees two regions, so 2 is the fewest)."""
    cloud = build({
        "a": [[("p1", 1)], [("b", 2), ("c", 2)], [("b", 2), ("c", 2)],
              [("d", 1), ("e", 1)]],
        "spare": spare()})
    assert greedy_moves(cloud, RC, 4, 2) == 3

    plan = planner.plan(cloud, target(2))

    assert sorted(m.server for m in plan.moves) == ["b", "c"]
    assert sorted(plan.freed) == ["a/r1", "a/r2"] and plan.exact
    used = replay(cloud, plan)
    assert {"a/r1", "a/r2"} <= whole(cloud, used)
    assert plan.after[0] == plan.before[0] + 2


def test_max_moves_frees_the_most_within_them():
    cloud = build({
        "a": [[("p1", 1)], [("b", 2), ("c", 2)], [("b", 2), ("c", 2)],
              [("d", 1), ("e", 1)]],
        "spare": spare(6)})
    assert len(planner.plan(cloud, target(4, max_moves=1)).freed) == 1
    two = planner.plan(cloud, target(4, max_moves=2))
    assert sorted(two.freed) == ["a/r1", "a/r2"] and two.met
    three = planner.plan(cloud, target(4, max_moves=3))
    assert len(three.freed) == 3 and len(three.moves) == 3
    assert planner.plan(cloud, target(4, max_moves=0)).moves == []


def test_what_cannot_be_reached_is_said():
    cloud = build({"a": [[("s1", 1)], [("s2", 1)]], "spare": spare()})
    plan = planner.plan(cloud, target(5))
    assert len(plan.freed) == 2 and not plan.met
    assert "2 of the 5 regions asked can be freed" in plan.notes[0]


def test_kinds_decide_live_cold_or_not_at_all():
    cloud = build({"a": [[("s1", 1)], [("s2", 1)], [("s3", 1)]],
                   "spare": spare()}, move="live")
    cloud.regions["a/r1"].move = "cold"
    cloud.regions["a/r2"].move = "none"
    plan = planner.plan(cloud, target(3))
    how = {m.server: (m.how, m.why) for m in plan.moves}
    assert how["s1"][0] == "live" and "CUSTOM_ACCEL_MOVE_LIVE" in how["s1"][1]
    assert how["s2"][0] == "cold" and "a/r1 keeps state" in how["s2"][1]
    assert "s3" not in how
    assert "whose kind cannot move" in plan.left_out["a/r2"]
    # A server holding a live and a cold function moves cold.
    cloud = build({"a": [[("s1", 1)], [("s1", 1)]], "spare": spare()},
                  move="live")
    cloud.regions["a/r1"].move = "cold"
    [move] = planner.plan(cloud, target(2)).moves
    assert move.how == "cold"


def test_fewest_moves_then_fewest_cold_ones():
    cloud = build({"a": [[("cold1", 1)], [("live1", 1)]], "spare": spare()})
    cloud.regions["a/r1"].move = "live"
    [move] = planner.plan(cloud, target(1)).moves
    assert move.server == "live1"


def test_a_host_needs_room_for_the_whole_server():
    cloud = build({"a": [[("s1", 1)]], "b": [[("t1", 1)]]},
                  room={"b": {"VCPU": 1, "MEMORY_MB": 262144,
                              "DISK_GB": 2000}})
    plan = planner.plan(cloud, target(1))
    # s1 cannot go to b (one VCPU left, it takes two); t1 can go to a.
    assert [(m.server, m.destination) for m in plan.moves] == [("t1", "a")]
    cloud.hosts["a"].free["DISK_GB"] = 5
    plan = planner.plan(cloud, target(1))
    assert plan.moves == [] and "no host has room" in plan.left_out["a/r0"]


def test_competing_for_the_last_hole_plans_one_and_says_why_not_more():
    cloud = build({"a": [[("s1", 1)], [("s2", 1)]],
                   "b": [[("t1", 3)]]}, pinned=("b",))
    plan = planner.plan(cloud, target(2))
    assert len(plan.moves) == 1 and len(plan.freed) == 1
    [dropped] = [r for r in ("a/r0", "a/r1") if r not in plan.freed]
    assert "no room left" in plan.left_out[dropped]
    replay(cloud, plan)


def test_a_whole_region_of_the_size_is_neither_source_nor_destination():
    cloud = build({"a": [[("whole", 4)], [("s1", 1)]],
                   "b": [[], [("t1", 2)]]})
    plan = planner.plan(cloud, target(2))
    assert "takes the whole region" in plan.left_out["a/r0"]
    # s1 and t1 can each go only where the other is (b/r0 stays whole):
    # one of the two regions is freed, the other said why not.
    assert len(plan.moves) == 1 and len(plan.freed) == 1
    [move] = plan.moves
    assert move.regions in ((("a/r1", "b/r1"),), (("b/r1", "a/r1"),))
    assert "b/r0" not in dict(move.regions).values()
    assert whole(cloud, replay(cloud, plan)) >= {"b/r0"}


def test_same_host_moves_only_where_the_compute_node_allows():
    cloud = build({"a": [[("s1", 1)], [("s2", 2)]]})
    assert planner.plan(cloud, target(1)).moves == []
    assert planner.plan(cloud, target(1, same_host=True)).moves == []
    allowed = build({"a": [[("s1", 1)], [("s2", 2)]]},
                    same_host_moves={"a"})
    plan = planner.plan(allowed, target(1, same_host=True))
    assert [(m.server, m.destination) for m in plan.moves] == [("s1", "a")]
    assert any("COMPUTE_SAME_HOST_COLD_MIGRATE" in n for n in
               planner.plan(allowed, target(1)).notes)


def test_degraded_and_reserved_regions_are_left_out():
    cloud = build({"a": [[("s1", 1)], [("s2", 1)]], "spare": spare()})
    cloud.regions["a/r0"].degraded = True
    cloud.regions["a/r1"].capacity = 3
    plan = planner.plan(cloud, target(2))
    assert plan.moves == []
    assert {r: why for r, why in plan.left_out.items()
            if r.startswith("a/")} == {
        "a/r0": "degraded",
        "a/r1": "part of it is reserved (a vanished function): it cannot "
                "be whole"}


def test_a_server_holding_other_providers_is_not_moved():
    cloud = build({"a": [[("s1", 1)]], "spare": spare()})
    cloud.servers["s1"].elsewhere = ("a_0000:81:00.0",)
    plan = planner.plan(cloud, target(1))
    assert plan.moves == [] and "also holds resources" in \
        plan.left_out["a/r0"]


def test_more_linked_regions_than_the_exact_search_is_greedy_and_says_so():
    regions = 2 + planner.EXACT_REGIONS
    chain = [[(f"s{i}", 1), (f"s{i + 1}", 1)] for i in range(regions)]
    cloud = build({"a": chain, "spare": spare(regions)},
                  room={"spare": {"VCPU": 1000, "MEMORY_MB": 10 ** 7,
                                  "DISK_GB": 10 ** 5}})
    plan = planner.plan(cloud, target(2))
    assert not plan.exact and any("greedily" in n for n in plan.notes)
    assert len(plan.freed) == 2
    # Two neighbours share a server: 3 moves, the optimum here too.
    assert len(plan.moves) == 3
    replay(cloud, plan)


def brute_force(cloud, count):
    """The fewest holders whose moves free ``count`` used regions, over
    every set of regions (destinations not limited)."""
    held = cl.holders(cloud)
    used = [r for r in sorted(cloud.regions) if cloud.regions[r].used]
    best = None
    for k in range(count, len(used) + 1):
        for regions in itertools.combinations(used, k):
            servers = set().union(*(held[r] for r in regions))
            best = len(servers) if best is None else min(best, len(servers))
        if best is not None:
            return best
    return None


@st.composite
def crowded_host(draw):
    """One host of up to 6 regions whose servers take one function of
    one or two of them, and a spare host with room for all."""
    count = draw(st.integers(2, 6))
    regions = [[] for _ in range(count)]
    for index in range(draw(st.integers(1, 10))):
        picked = draw(st.lists(st.integers(0, count - 1), min_size=1,
                               max_size=2, unique=True))
        if all(len(regions[p]) < 4 for p in picked):
            for p in picked:
                regions[p].append((f"s{index}", 1))
    spare = [[(f"y{i}", 1)] for i in range(12)]
    return build({"a": regions, "spare": spare},
                 room={"spare": {"VCPU": 1000, "MEMORY_MB": 10 ** 7,
                                 "DISK_GB": 10 ** 5}})


@hypothesis_profiles.examples(150)
@given(crowded_host(), st.integers(1, 4))
def test_the_plan_is_the_fewest_moves_brute_force_finds(cloud, count):
    plan = planner.plan(cloud, target(count))
    used_regions = sum(1 for r in cloud.regions.values()
                       if r.host == "a" and r.used)
    expected = brute_force(build_only_a(cloud), min(count, used_regions))
    # More than asked when a server's move empties a second region too.
    assert len(plan.freed) >= min(count, used_regions)
    assert len(plan.moves) == (expected or 0)
    used = replay(cloud, plan)
    assert set(plan.freed) <= whole(cloud, used)
    assert plan.after[0] == plan.before[0] + len(plan.freed)


def build_only_a(cloud):
    only = cl.Cluster(hosts={"a": cloud.hosts["a"]},
                      regions={u: r for u, r in cloud.regions.items()
                               if r.host == "a"},
                      servers={u: s for u, s in cloud.servers.items()
                               if s.host == "a"})
    return only


def test_bad_targets_are_refused():
    with pytest.raises(ValueError, match="1 or more"):
        planner.plan(build({"a": []}), target(0))
    with pytest.raises(ValueError, match="0 or more"):
        planner.plan(build({"a": []}), target(1, max_moves=-1))
