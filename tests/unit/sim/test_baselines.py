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

"""The FGD paper's policies and stock nova's weighers, on cases checked by
hand against the paper's definitions (and its simulator's arithmetic)."""

import math
import random

import pytest

from nova_accel_weigher import baselines, sim
from nova_accel_weigher.baselines import NodeState, TaskType

SHARE = TaskType(1000, 500, 1, frozenset())  # half a GPU
WHOLE = TaskType(2000, 1000, 1, frozenset())
TYPICAL = ((SHARE, 0.5), (WHOLE, 0.5))


def test_fragmentation_by_hand():
    node = NodeState(10_000, (1000, 600, 200), "T4")
    # SHARE runs: only the 200 left is too small for it -> 0.5 x 200.
    # WHOLE runs: 600 and 200 are too small for it -> 0.5 x 800.
    assert baselines.fragmentation(node, TYPICAL) == 100 + 400
    # Without the CPU WHOLE asks for, all 1800 idle is lost to it.
    starved = node._replace(cpu_left=1500)
    assert baselines.fragmentation(starved, TYPICAL) == 100 + 900
    # A type of another GPU model cannot use any of it either.
    other = TaskType(1000, 500, 1, frozenset({"A10"}))
    assert baselines.fragmentation(node, ((other, 1.0),)) == 1800
    # Nor can a CPU-only type (the paper counts it so).
    cpu_only = TaskType(1000, 0, 0, frozenset())
    assert baselines.fragmentation(node, ((cpu_only, 1.0),)) == 1800


def test_fgd_takes_the_gpu_the_formula_prefers():
    node = NodeState(10_000, (1000, 600, 200), "T4")
    # Before: 500 (above). On GPU 0 (1000 -> 500): SHARE loses the 200
    # (100), WHOLE finds no whole GPU and loses all 1300 idle (650): 750,
    # a gradient of -250. On GPU 1 (600 -> 100): SHARE loses 100 + 200
    # (150), WHOLE the same 300 (150): 300, a gradient of +200. GPU 2 has
    # too little.
    def points(delta):
        return int(100 / (1 + math.exp(-delta / 1000)))

    assert (points(-250), points(200)) == (43, 54)
    assert baselines.fgd_score(node, SHARE, TYPICAL, 1000) == (54, (1,))


def test_fgd_keeps_cpu_for_the_gpus_left():
    roomy = NodeState(10_000, (1000, 1000), "T4")
    tight = NodeState(2500, (1000, 1000), "T4")
    # On ``tight`` the task leaves 1500 CPU, too little for WHOLE, so the
    # 1500 milli-GPU left are all lost to it (SHARE still fits both GPUs).
    tight_after = baselines.fragmentation(
        baselines.take(tight, SHARE, (0,)), TYPICAL)
    assert tight_after == 0.5 * 0 + 0.5 * 1500
    roomy_score, _ = baselines.fgd_score(roomy, SHARE, TYPICAL, 1000)
    tight_score, _ = baselines.fgd_score(tight, SHARE, TYPICAL, 1000)
    assert roomy_score > tight_score


def test_whole_gpu_tasks_take_the_first_free_gpus():
    node = NodeState(10_000, (300, 1000, 1000, 1000), "T4")
    two = TaskType(0, 1000, 2, frozenset())
    assert baselines.fgd_score(node, two, TYPICAL, 1000)[1] == (1, 2)
    assert baselines.best_fit_gpus(node, two, 1000) == (1, 2)
    assert baselines.best_fit_gpus(node, SHARE, 1000) == (1,)
    assert baselines.best_fit_gpus(
        node._replace(gpu_left=(900, 600, 1000)), SHARE, 1000) == (1,)


def test_typical_types_keep_the_popular_ones_up_to_95_percent():
    a, b, c = (TaskType(i, 1000, 1, frozenset()) for i in (1, 2, 3))
    tasks = [a] * 60 + [b] * 36 + [c] * 4
    # a and b make up 96 of 100: c is left out, the rest renormalised.
    assert baselines.typical_types(tasks) == ((a, 60 / 96), (b, 36 / 96))
    assert baselines.typical_types([]) == ()


def test_best_fit_score_and_normalisation_by_hand():
    node = NodeState(64_000, (1000, 500), "T4")
    # CPU left 63000 of 128000 and GPU left 1000 of 8000, weighed 0.5 each.
    raw = baselines.best_fit_raw(node, SHARE, 1000)
    assert raw == int((1 - (63_000 / 128_000 + 1000 / 8000) / 2) * 100) == 69
    assert baselines.normalize_scores([69, 70, 72]) == [0, 33, 100]
    assert baselines.normalize_scores([5, 5]) == [0, 0]


def test_stock_nova_divides_by_the_largest_as_nova_does():
    # nova's RAM and CPU weighers set minval = 0: free RAM 100, 60, 50 is
    # 1, 0.6, 0.5 (not min-max's 1, 0.2, 0); free CPU 10, 20, 30 is 1/3,
    # 2/3, 1. Sums 1.33, 1.27, 1.5: host 2 (min-max would tie 0 and 2).
    assert baselines.nova_normalize([100, 60, 50]) == [1.0, 0.6, 0.5]
    assert baselines.nova_best([100, 60, 50], [10, 20, 30]) == 2
    # Negative weights are clamped to 0 first; all 0 normalises to 0.
    assert baselines.nova_normalize([-5, 10]) == [0.0, 1.0]
    assert baselines.nova_normalize([0, 0]) == [0.0, 0.0]
    # Equal sums: the first in host order wins (nova's sort is stable).
    assert baselines.nova_best([20, 10], [10, 20]) == 0
    assert baselines.nova_best([10, 10], [4, 4]) == 0
    assert baselines.nova_best([7], [1]) == 0


@pytest.mark.parametrize("policy", ["fgd", "paper-best-fit"])
def test_ties_go_to_the_first_node_by_name(policy):
    hosts = [sim._host(name, [(1, 1000)] * 2, 64_000, 65_536)
             for name in ("b", "a", "c")]
    chooser = sim.Policy(policy, (), random.Random(1),
                         typical=((SHARE, 1.0),), unit=1000)
    request = sim.Request(0, math.inf, 500, cpu=1000)
    host, demand = chooser.choose(hosts, request)
    assert host.name == "a" and demand == {"a/c0/r0": 500}


def test_stock_nova_claims_placement_order_not_the_best_packing():
    hosts = [sim._host(f"h{i}", [(4, 4)], 64_000, 65_536) for i in range(2)]
    hosts[0].memory_used = 1024  # h1 has more RAM free: nova spreads there
    chooser = sim.Policy("stock-nova", (), random.Random(1), seed=7)
    request = sim.Request(0, math.inf, 1, memory=512)
    host, demand = chooser.choose(hosts, request)
    assert host is hosts[1]
    assert demand == sim.placement_order(hosts[1], request, 7)[0]
    # The order is fixed for a run and differs between runs.
    orders = {tuple(next(iter(c)) for c in sim.placement_order(
        hosts[1], request, seed)) for seed in range(6)}
    assert len(orders) > 1
