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

"""packing.placement_score, the host-fragmentation policy, on cases
checked by hand: FGD's formula over the whole host, plus the capacity the
host's CPU can no longer feed."""

import math

import pytest

from nova_accel_weigher import baselines, packing
from nova_accel_weigher.packing import HostRoom, Placement, TaskKind

SHARE = TaskKind(1000, 0, 500, 1, frozenset(), 0.5)  # half a GPU
WHOLE = TaskKind(2000, 0, 1000, 1, frozenset(), 0.5)
KINDS = (SHARE, WHOLE)
GPUS = (1000, 1000, 1000)


def mix(cpu_per_unit):
    return packing.TaskMix(KINDS, 1000, cpu_per_unit)


def best(room, kind, cpu_per_unit):
    """The best region for ``kind`` (one region) with its FGD score (the
    first of the ranking's scores)."""
    placements = [Placement(kind.cpu, kind.memory, {i: kind.amount})
                  for i in range(len(room.free))]
    index, score = packing.rank_placements(room, placements,
                                           mix(cpu_per_unit))[0]
    return score[0], (index,)


def points(gradient):
    return int(100 / (1 + math.exp(-gradient / 1000)))


def test_without_the_cpu_term_it_is_fgd():
    room = HostRoom(10_000, 65_536, (1000, 600, 200), GPUS, "T4")
    node = baselines.NodeState(10_000, (1000, 600, 200), "T4")
    typical = tuple((baselines.TaskType(k.cpu, k.amount, k.regions,
                                        k.models), k.weight) for k in KINDS)
    assert packing.host_fragmentation(room, mix(0)) == \
        baselines.fragmentation(node, typical) == 500
    # As the hand-checked FGD case: GPU 1 (600 -> 100) scores 54.
    assert best(room, SHARE, 0) == \
        baselines.fgd_score(node, typical[0][0], typical, 1000) == (54, (1,))


def test_capacity_the_cpu_cannot_feed_counts_as_lost():
    tight = HostRoom(2500, 65_536, (1000, 1000), GPUS[:2])
    # At 2 milli-CPU per milli-GPU, 2500 CPU feeds 1250 of the 2000 free.
    assert packing.host_fragmentation(tight, mix(2)) == 750
    # SHARE on GPU 0 leaves 1500 CPU: WHOLE cannot run (0.5 x 1500 lost)
    # and 1500 CPU feeds 750 of the 1500 free (750 lost): 1500 after, a
    # gradient of -750.
    assert best(tight, SHARE, 2) == (
        points(-750), (0,)) == (32, (0,))
    roomy = HostRoom(10_000, 65_536, (1000, 1000), GPUS[:2])
    # 9000 CPU left feeds all; only WHOLE loses the 500 left on GPU 0.
    assert best(roomy, SHARE, 2) == (43, (0,))


def test_cpu_only_requests_go_where_no_gpu_is_stranded():
    cpu_only = Placement(1000, 0, {})
    full = HostRoom(2500, 65_536, (0, 0), GPUS[:2])
    free = HostRoom(2500, 65_536, (1000, 1000), GPUS[:2])
    assert packing.placement_score(full, cpu_only, mix(0)) == 50
    # 1500 CPU left: WHOLE cannot run, 0.5 x 2000 lost.
    assert packing.placement_score(free, cpu_only, mix(0)) == \
        points(-1000) == 26


def test_what_does_not_fit_is_none():
    room = HostRoom(10_000, 1024, (300, 1000, 1000), GPUS, "T4")
    assert packing.placement_score(room, Placement(0, 2048, {1: 500}),
                                   mix(0)) is None
    assert packing.placement_score(room, Placement(0, 0, {0: 500}),
                                   mix(0)) is None
    assert packing.placement_score(room, Placement(20_000, 0, {}),
                                   mix(0)) is None


def test_a_whole_kind_uses_only_wholly_free_regions_of_its_size():
    whole4 = TaskKind(0, 0, 4, 1, frozenset(), 1.0, whole=True)
    one = packing.task_mix([whole4])
    # A region of 8 never serves a whole region of 4: all its free is lost
    # to the kind; the wholly free region of 4 loses nothing.
    assert packing.host_fragmentation(
        HostRoom(0, 0, (8, 4, 3), (8, 4, 4)), one) == 8 + 3


def test_the_mix_gives_the_unit_and_the_cpu_per_unit():
    m = packing.task_mix([TaskKind(4000, 0, 500, 1, weight=3),
                          TaskKind(8000, 0, 1000, 2, weight=1, whole=True),
                          TaskKind(2000, 0, 0, 0, weight=4)])
    assert m.unit == 1000
    # Accelerator kinds: CPU 3/8 x 4000 + 1/8 x 8000 = 2500 per
    # 3/8 x 500 + 1/8 x 2000 = 437.5 units asked.
    assert m.cpu_per_unit == pytest.approx(2500 / 437.5)
    assert [k.weight for k in m.kinds] == [0.375, 0.125, 0.5]


def test_the_task_mix_option_parses_and_refuses_bad_entries():
    m = packing.parse_task_mix(["3:500:4000:8192:T4|A10",
                                "1:2xregion1000:8000", "4:0:2000"])
    assert m.kinds[0] == TaskKind(4000, 8192, 500, 1,
                                  frozenset({"T4", "A10"}), 0.375)
    assert m.kinds[1] == TaskKind(8000, 0, 1000, 2, frozenset(), 0.125,
                                  True)
    assert m.kinds[2] == TaskKind(2000, 0, 0, 0, frozenset(), 0.5)
    for bad in ("x:1", "1", "1:2x4", "-1:2", "1:region", "1:2:a",
                "1:2:3:4:5:6"):
        with pytest.raises(ValueError, match="bad task mix entry"):
            packing.parse_task_mix([bad])


def test_the_weigher_weighs_every_best_host_alike_never_by_name():
    assert packing.decisive_weights([40, 55, None, 55]) == [
        0.0, 1.0, 0.0, 1.0]
    assert packing.decisive_weights([(50, -2), (50, 0), (49, 0)]) == [
        0.0, 1.0, 0.0]
    assert packing.decisive_weights([None, None]) == [0.0, 0.0]
    # No difference, no opinion: equal weights normalise to 0 in nova.
    assert packing.decisive_weights([(50, 0, 0, 0, 0)] * 3) == [1.0] * 3


def test_plain_servers_prefer_hosts_without_accelerators():
    # Two plain hosts, then accelerator hosts where the server strands
    # 5 and nothing: plain hosts first, and among accelerator hosts the
    # one that strands nothing.
    assert packing.plain_host_weights(
        [50, 50, 45, 50], [False, False, True, True]) == [
        1.0, 1.0, 0.0, 0.5]
    # Only accelerator hosts: nova normalises 0.5 and 0 to 1 and 0.
    assert packing.plain_host_weights([45, 50], [True, True]) == [0.0, 0.5]


def test_best_fit_breaks_ties_fuller_host_then_smallest_region_fuller():
    cloud = packing.cloud_mix([8, 2, 4])
    room = HostRoom(0, 0, (8, 2, 4), (8, 2, 4))
    two = [Placement(0, 0, {i: 2}) for i in range(3)]
    # The 2-function region, whatever order the placements come in: with
    # every size in the mix, breaking the 8 costs its whole size and
    # taking the 2 costs nothing more.
    assert packing.rank_placements(room, two, cloud)[0][0] == 1
    assert packing.rank_placements(room, two[::-1], cloud)[0][0] == 1
    # Under a mix that names no size, FGD cannot tell them apart: best
    # fit does.
    shares = packing.task_mix([TaskKind(0, 0, 1, 1), TaskKind(0, 0, 2, 1)])
    ranked = packing.rank_placements(room, two, shares)
    assert ranked[0][1][0] == ranked[2][1][0]
    assert [i for i, _ in ranked] == [1, 2, 0]
    # Equal leftovers: the fuller region first (4 of 8 used against a
    # whole 4), so that the whole one stays whole.
    half = HostRoom(0, 0, (4, 4), (8, 4))
    assert packing.best_fit(half, Placement(0, 0, {0: 2})) > \
        packing.best_fit(half, Placement(0, 0, {1: 2}))
    # The same placement on a fuller host is the better fit.
    assert packing.best_fit(HostRoom(0, 0, (2, 0), (2, 2)),
                            Placement(0, 0, {0: 2})) > \
        packing.best_fit(HostRoom(0, 0, (2, 2), (2, 2)),
                         Placement(0, 0, {0: 2}))
    # No accelerator taken, no opinion.
    assert packing.best_fit(room, Placement(1, 1, {})) == packing.NO_FIT


def test_the_cloud_mix_names_every_region_size():
    cloud = packing.cloud_mix([4, 8, 4, 2, 0])
    whole = {k.amount: k.weight for k in cloud.kinds if k.whole}
    assert whole == pytest.approx({2: 0.4 / 3, 4: 0.4 / 3, 8: 0.4 / 3})
    shared = {k.amount: k.weight for k in cloud.kinds if not k.whole}
    assert shared == pytest.approx({1: 0.4, 2: 0.2})
    # A cloud without regions: the function shapes alone.
    assert [k.whole for k in packing.cloud_mix([]).kinds] == [False, False]


def test_a_plain_server_packs_cpu_only_where_accelerators_ask_cpu():
    cpu_only = Placement(1000, 0, {})
    busy = HostRoom(2000, 65_536, (0, 0), GPUS[:2])
    idle = HostRoom(9000, 65_536, (0, 0), GPUS[:2])
    plain_host = HostRoom(2000, 65_536, (), ())
    # The mix's accelerator kinds ask CPU: among hosts where the server
    # strands nothing, the one with the least CPU left fits best.
    assert packing.best_fit(busy, cpu_only, cpu_aware=True) > \
        packing.best_fit(idle, cpu_only, cpu_aware=True)
    ranked = packing.rank_placements(busy, [cpu_only], mix(2))
    assert ranked[0][1][1:] == packing.cpu_fit(2000, 1000)
    # No opinion on hosts without accelerators, nor under a mix whose
    # requests ask no CPU.
    assert packing.best_fit(plain_host, cpu_only, cpu_aware=True) == \
        packing.NO_FIT
    assert packing.best_fit(busy, cpu_only) == packing.NO_FIT
    assert packing.rank_placements(busy, [cpu_only], mix(0))[0][1][1:] \
        == packing.NO_FIT
