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

"""packing.host_score, the simulator's host-fragmentation policy, on
cases checked by hand: FGD's formula over the whole host, plus the
capacity the host's CPU can no longer feed."""

import math

from nova_accel_weigher import baselines, packing
from nova_accel_weigher.packing import HostRoom, TaskKind

SHARE = TaskKind(1000, 0, 500, 1, frozenset(), 0.5)  # half a GPU
WHOLE = TaskKind(2000, 0, 1000, 1, frozenset(), 0.5)
KINDS = (SHARE, WHOLE)
GPUS = (1000, 1000, 1000)


def points(gradient):
    return int(100 / (1 + math.exp(-gradient / 1000)))


def test_without_the_cpu_term_it_is_fgd():
    room = HostRoom(10_000, 65_536, (1000, 600, 200), GPUS, "T4")
    node = baselines.NodeState(10_000, (1000, 600, 200), "T4")
    typical = tuple((baselines.TaskType(k.cpu, k.amount, k.regions,
                                        k.models), k.weight) for k in KINDS)
    assert packing.host_fragmentation(room, KINDS, 0) == \
        baselines.fragmentation(node, typical) == 500
    # As the hand-checked FGD case: GPU 1 (600 -> 100) scores 54.
    assert packing.host_score(room, SHARE, KINDS, 1000, 0) == \
        baselines.fgd_score(node, typical[0][0], typical, 1000) == (54, (1,))


def test_capacity_the_cpu_cannot_feed_counts_as_lost():
    tight = HostRoom(2500, 65_536, (1000, 1000), GPUS[:2])
    # At 2 milli-CPU per milli-GPU, 2500 CPU feeds 1250 of the 2000 free.
    assert packing.host_fragmentation(tight, KINDS, 2) == 750
    # SHARE on GPU 0 leaves 1500 CPU: WHOLE cannot run (0.5 x 1500 lost)
    # and 1500 CPU feeds 750 of the 1500 free (750 lost): 1500 after, a
    # gradient of -750.
    assert packing.host_score(tight, SHARE, KINDS, 1000, 2) == (
        points(-750), (0,)) == (32, (0,))
    roomy = HostRoom(10_000, 65_536, (1000, 1000), GPUS[:2])
    # 9000 CPU left feeds all; only WHOLE loses the 500 left on GPU 0.
    assert packing.host_score(roomy, SHARE, KINDS, 1000, 2) == (43, (0,))


def test_cpu_only_requests_go_where_no_gpu_is_stranded():
    cpu_only = TaskKind(1000, 0, 0, 0, frozenset(), 1.0)
    full = HostRoom(2500, 65_536, (0, 0), GPUS[:2])
    free = HostRoom(2500, 65_536, (1000, 1000), GPUS[:2])
    assert packing.host_score(full, cpu_only, KINDS, 1000, 0) == (50, ())
    # 1500 CPU left: WHOLE cannot run, 0.5 x 2000 lost.
    assert packing.host_score(free, cpu_only, KINDS, 1000, 0) == (
        points(-1000), ()) == (26, ())


def test_what_does_not_fit_is_none_and_whole_takes_the_first_free():
    room = HostRoom(10_000, 1024, (300, 1000, 1000), GPUS, "T4")
    two = TaskKind(0, 0, 1000, 2, frozenset(), 1.0)
    assert packing.host_score(room, two, KINDS, 1000, 0)[1] == (1, 2)
    assert packing.host_score(room, TaskKind(0, 2048, 500, 1, frozenset(),
                                             1.0), KINDS, 1000, 0) is None
    assert packing.host_score(room, TaskKind(0, 0, 500, 1, frozenset(
        {"A10"}), 1.0), KINDS, 1000, 0) is None
    assert packing.host_score(room, TaskKind(0, 0, 1000, 3, frozenset(),
                                             1.0), KINDS, 1000, 0) is None
