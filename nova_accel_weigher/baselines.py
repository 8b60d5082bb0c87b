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

"""The simulator's models of schedulers other than ours: pure functions.

``stock-nova``
    Nova's default weighers (``all_weighers``, multipliers 1.0): each
    weigher's raw weights normalised to [0, 1] over the hosts that passed
    the filters (``nova.weights.normalize``), summed; the heaviest host
    wins, the first in host order among equals (nova's sort is stable).
    The RAM, CPU, disk and I/O weighers set ``minval = 0``, so each host's
    weight is its free RAM (vCPUs) over the largest free RAM (vCPUs) of
    the hosts, not a min-max rescaling. Of the weighers only RAM and CPU
    see a difference between simulated hosts: disk, I/O, PCI, build
    failures, hypervisor version and server groups weigh every host alike,
    which adds the same to each (0, or 1.0 for disk).

The FGD paper's policies (Weng et al., "Beware of Fragmentation:
Scheduling GPU-Sharing Workloads with Fragmentation Gradient Descent",
USENIX ATC 2023), as its simulator (hkust-adsl/kubernetes-scheduler-
simulator, the source of its published figures) computes them, in units
of one GPU's capacity ``unit`` (1000 milli-GPU in the paper):

``fgd``
    A node's fragmentation for a task type is the free GPU capacity that
    type cannot use: all of it if the type cannot run there (no GPU asked,
    wrong GPU model, too few GPUs with room, too little CPU), else the
    free capacity of each GPU with less free than the type's per-GPU ask.
    A node's expected fragmentation weighs the types by their share of the
    trace's tasks (the most popular types that make up 95% of the tasks,
    the paper's typical pods). A placement scores
    ``int(sigmoid((before - after) / unit) * 100)``; a shared task tries
    every GPU that fits and keeps the first best.
``paper-best-fit``
    ``int((1 - (cpu left after / 128 CPUs + GPU left after / 8 GPUs) / 2)
    * 100)``, normalised over the feasible nodes in integers as the
    paper's simulator does; a shared task takes the fitting GPU with the
    least free.

Both leave ties between nodes to the scheduler: the paper's simulator
patches kube-scheduler's ``selectHost`` to take the first node by name
among the best (for reproducibility), which packs equal nodes in name
order. The caller breaks them so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

TYPICAL_SHARE = 0.95
MAX_SPEC_CPU = 128_000  # milli-CPU, the paper's normaliser for best fit
MAX_SPEC_GPUS = 8


class TaskType(NamedTuple):
    """What FGD tells tasks apart by (memory is not among it)."""

    cpu: int
    per_gpu: int  # capacity asked of each GPU; 0 for a CPU-only task
    gpus: int
    models: frozenset[str]  # GPU models it may run on; empty: any


class NodeState(NamedTuple):
    cpu_left: int
    gpu_left: tuple[int, ...]  # free capacity of each GPU, in GPU order
    model: str


def typical_types(tasks: Iterable[TaskType],
                  share: float = TYPICAL_SHARE
                  ) -> tuple[tuple[TaskType, float], ...]:
    """The most popular task types that together make up ``share`` of the
    tasks, with their popularity renormalised to sum to 1."""
    counts = Counter(tasks)
    total = sum(counts.values())
    if not total:
        return ()
    chosen, covered = [], 0
    for task, count in sorted(counts.items(), key=lambda tc: -tc[1]):
        if covered >= share * total:
            break
        chosen.append((task, count))
        covered += count
    return tuple((task, count / covered) for task, count in chosen)


def runs_on(node: NodeState, task: TaskType) -> bool:
    """Whether the node's model, GPUs and CPU can take the task now."""
    if task.models and node.model not in task.models:
        return False
    if node.cpu_left < task.cpu:
        return False
    return sum(1 for left in node.gpu_left
               if left >= task.per_gpu) >= task.gpus


def fragmentation(node: NodeState,
                  typical: Sequence[tuple[TaskType, float]]) -> float:
    """The node's expected fragmentation under the typical task mix."""
    idle = sum(node.gpu_left)
    total = 0.0
    for task, popularity in typical:
        if task.per_gpu and runs_on(node, task):
            total += popularity * sum(left for left in node.gpu_left
                                      if left < task.per_gpu)
        else:
            total += popularity * idle
    return total


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def take(node: NodeState, task: TaskType, gpus: Sequence[int]) -> NodeState:
    left = list(node.gpu_left)
    for g in gpus:
        left[g] -= task.per_gpu
    return NodeState(node.cpu_left - task.cpu, tuple(left), node.model)


def exclusive_gpus(node: NodeState, task: TaskType, unit: int
                   ) -> tuple[int, ...]:
    """A whole-GPU task takes the first wholly free GPUs."""
    free = [g for g, left in enumerate(node.gpu_left) if left == unit]
    return tuple(free[:task.gpus])


def fgd_score(node: NodeState, task: TaskType,
              typical: Sequence[tuple[TaskType, float]], unit: int
              ) -> tuple[int, tuple[int, ...]]:
    """FGD's score of the node for a task that runs on it, and the GPUs
    the task takes there."""
    before = fragmentation(node, typical)

    def scored(gpus: tuple[int, ...]) -> int:
        after = fragmentation(take(node, task, gpus), typical)
        return int(_sigmoid((before - after) / unit) * 100)

    if task.gpus == 1 and task.per_gpu < unit:
        best: tuple[int, tuple[int, ...]] | None = None
        for g, left in enumerate(node.gpu_left):
            if left >= task.per_gpu:
                s = scored((g,))
                if best is None or s > best[0]:
                    best = (s, (g,))
        assert best is not None, "fgd_score needs a node the task runs on"
        return best
    gpus = exclusive_gpus(node, task, unit) if task.gpus else ()
    return scored(gpus), gpus


def best_fit_raw(node: NodeState, task: TaskType, unit: int) -> int:
    """The paper's best-fit score before normalisation."""
    cpu_after = (node.cpu_left - task.cpu) / MAX_SPEC_CPU
    gpu_after = ((sum(node.gpu_left) - task.per_gpu * task.gpus)
                 / (MAX_SPEC_GPUS * unit))
    return int((1.0 - (cpu_after * 0.5 + gpu_after * 0.5)) * 100)


def best_fit_gpus(node: NodeState, task: TaskType, unit: int
                  ) -> tuple[int, ...]:
    if task.gpus == 1 and task.per_gpu < unit:
        fitting = [g for g, left in enumerate(node.gpu_left)
                   if left >= task.per_gpu]
        return (min(fitting, key=lambda g: node.gpu_left[g]),)
    return exclusive_gpus(node, task, unit) if task.gpus else ()


def normalize_scores(scores: Sequence[int]) -> list[int]:
    """The paper's simulator's NormalizeScore: to 0-100 in integers."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [0] * len(scores)
    return [(s - low) * 100 // (high - low) for s in scores]


def nova_normalize(weights: Sequence[float]) -> list[float]:
    """``nova.weights.normalize`` as nova's RAM, CPU, disk and I/O
    weighers call it: they set ``minval = 0`` and no ``maxval``, so a
    weight (clamped at 0 first, as ``BaseWeigher.weigh_objects`` does) is
    divided by the largest; all 0 when the largest is 0."""
    clamped = [max(float(w), 0.0) for w in weights]
    high = max(clamped, default=0.0)
    if high == 0.0:
        return [0.0] * len(clamped)
    return [w / high for w in clamped]


def nova_best(free_ram: Sequence[float], free_cpu: Sequence[float],
              others: Sequence[tuple[float, Sequence[float]]] = ()) -> int:
    """The index of the host nova's default weighers put first, with
    ``others`` (a multiplier and raw weights per host, min-max normalised
    as nova's weighers without ``minval``/``maxval`` are) after them."""
    if len(free_ram) <= 1:
        return 0
    totals = _nova_totals(free_ram, free_cpu, others)
    best = 0
    for i, total in enumerate(totals):
        if total > totals[best]:
            best = i
    return best


def nova_ranked(free_ram: Sequence[float], free_cpu: Sequence[float],
                others: Sequence[tuple[float, Sequence[float]]] = ()
                ) -> list[int]:
    """Every host's index in the order nova's weighers rank them (its
    choice, then the alternates it keeps for a reschedule); ``nova_best``
    is the first."""
    totals = _nova_totals(free_ram, free_cpu, others)
    return sorted(range(len(totals)), key=lambda i: -totals[i])


def _nova_totals(free_ram: Sequence[float], free_cpu: Sequence[float],
                 others: Sequence[tuple[float, Sequence[float]]]
                 ) -> list[float]:
    totals = [0.0] * len(free_ram)
    # The order nova adds them in (all_weighers lists CPU before RAM).
    for multiplier, weights in ((1.0, nova_normalize(free_cpu)),
                                (1.0, nova_normalize(free_ram)),
                                *((m, min_max_normalize(w))
                                  for m, w in others)):
        for i, w in enumerate(weights):
            totals[i] += multiplier * w
    return totals


def min_max_normalize(weights: Sequence[float]) -> list[float]:
    """``nova.weights.normalize`` without bounds: to [0, 1] between the
    smallest and the largest; all 0 when they are equal."""
    low, high = min(weights, default=0.0), max(weights, default=0.0)
    if high == low:
        return [0.0] * len(weights)
    return [(w - low) / (high - low) for w in weights]


def hint_weights(members_on_host: Sequence[int], policy: str) -> list[float]:
    """Nova's soft-affinity (``soft-affinity``: members of the group on
    the host) or soft-anti-affinity weigher's raw weights (minus them)."""
    sign = -1.0 if policy == "soft-anti-affinity" else 1.0
    return [sign * n for n in members_on_host]


def hint_leaders(raw: Sequence[float]) -> list[bool] | None:
    """The hosts nova's hint weigher (multiplier 1.0) puts first, as
    ``nova_accel_weigher.hints.leaders`` asks nova; None when it puts
    every host first."""
    weights = min_max_normalize(raw)
    top = max(weights, default=0.0)
    first = [w == top for w in weights]
    return None if all(first) else first
