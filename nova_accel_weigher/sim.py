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

"""``accel-sim``: replay accelerator requests on a simulated cloud.

Our policies go through the very functions the filter and the weigher
call, so what the simulator shows is what the scheduler does.
``host-fragmentation`` (the default) is nova with both:
``packing.rank_placements`` orders each host's candidates,
``packing.decisive_weights`` is our weigher's say, added to nova's RAM and
CPU weighers' as nova adds them (``baselines.nova_best``), for every
request, requests without accelerators too. ``best-fit`` and
``fragmentation`` go through ``packing.rank`` and ``Score.value``
(requests without accelerators weigh alike there: nova's weighers place
those, as ``stock-nova`` does). The others model what nova does without
us: ``stock-nova`` its default weighers and placement's arbitrary
candidate order (``baselines``), ``placement-order`` first fit (the first
host and the first candidate in a fixed order), ``random`` what
``randomize_allocation_candidates`` gives, ``spread`` the emptiest region;
``fgd`` and ``paper-best-fit`` are the FGD paper's policies.

``--defrag-every T --defrag-moves M`` runs the defragmentation planner
(``accel_defrag.planner``, what ``accel-defrag plan`` and the Watcher
strategy run) during the replay: every T seconds (fill mode: every T
arrivals), as many whole regions of the whole-region requests' size as
such requests asked for in vain since the last time, with at most M
migrations, moved at once (``defrag_step``).

A ``numa`` cluster's hosts have NUMA nodes, each with its regions and
its dedicated CPUs, and a ``numa`` workload mixes requests with pinned
CPUs (a guest on one host cell, as nova's fit spreads them) under the
``required`` and ``preferred`` affinity policies, pinned ones without a
policy, and requests without a NUMA topology. ``stock-nova`` places the
first two as it places any (the hook then refuses a ``required`` guest's
far region at its start, and nova tries its alternates);
``host-fragmentation`` is our filter's and weigher's ``packing.NumaAsk``,
``host-fragmentation-no-numa-term`` the same without the NUMA node term
of the tie-break.

``Policy.choose`` looks at every host for every request. ``HostIndex``
makes the same choices on large clusters (10,000 hosts, 200,000 requests
in about a minute here; BENCHMARKS.rst) by keeping, for each request
shape, the hosts that fit and their keys up to date as hosts change.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import heapq
import importlib.util
import itertools
import json
import math
import os
import random
import sys
import textwrap
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from accel_defrag import cluster as defrag_cluster
from accel_defrag import planner as defrag_planner
from accel_inventory import contract
from accel_inventory import numa
from accel_inventory.contract import (NUMA_POLICIES, NUMA_PREFERRED,
                                      NUMA_REQUIRED)
from nova_accel_weigher import baselines, packing
from nova_accel_weigher import conf as accel_conf

SCORED_POLICIES = {"best-fit": packing.POLICY_BEST_FIT,
                   "fragmentation": packing.POLICY_FRAGMENTATION}
# Modelled in baselines.py; each looks at every host for every request.
# Our filter and weigher; the second without the NUMA node term.
HOST_FRAGMENTATION = ("host-fragmentation",
                      "host-fragmentation-no-numa-term")
SCANNED_POLICIES = ("stock-nova", "fgd", "paper-best-fit",
                    *HOST_FRAGMENTATION)
POLICIES = ("placement-order", "random", "spread", "best-fit",
            "fragmentation") + SCANNED_POLICIES
# What places requests with pinned CPUs (a NUMA topology).
NUMA_AWARE = ("stock-nova", *HOST_FRAGMENTATION)
# Nova's [scheduler] max_attempts: the host chosen and two alternates.
MAX_ATTEMPTS = 3
DEFAULT_FUNCTIONS_PER_GPU = 4
MILLI_PER_GPU = 1000
# Events of a replay, ordered so that at one instant a departure frees
# its capacity before an arrival asks for it.
DEPARTURE, ARRIVAL = -1, 0


@dataclass
class Region:
    name: str
    card: str
    capacity: int
    used: int = 0
    node: int | None = None  # its NUMA node, where the cluster has them

    @property
    def free(self) -> int:
        return self.capacity - self.used


@dataclass
class Host:
    """``cpu`` and ``memory`` capacities of 0 are not modelled: only the
    openb trace gives them. Placement leaves out a host without room for
    them, so no policy sees it; packing scores accelerators only."""

    name: str
    regions: list[Region]
    cpu: int = 0
    memory: int = 0
    cpu_used: int = 0
    memory_used: int = 0
    model: str = ""  # the GPU model, which a request may ask for
    # Per NUMA node (a host cell), its dedicated CPUs and those pinned.
    cells: list[int] = field(default_factory=list)
    cells_used: list[int] = field(default_factory=list)
    _node: baselines.NodeState | None = field(
        default=None, repr=False, compare=False)

    def guest_cell(self, request: Request) -> int | None:
        """The host cell nova's fit gives a guest of ``request.pinned``
        CPUs on one cell (its default, spreading, strategy: the cell
        with the most free dedicated CPUs, the first among equals); None
        when none has room (NUMATopologyFilter turns the host down)."""
        best = None
        for cell, total in enumerate(self.cells):
            free = total - self.cells_used[cell]
            if free >= request.pinned and (
                    best is None
                    or free > self.cells[best] - self.cells_used[best]):
                best = cell
        return best

    def nova_free_cpu(self) -> int:
        """The CPU nova's CPU weigher sees free: the CPU modelled for
        packing and the dedicated CPUs of the cells not pinned (our
        packing reads VCPU, not the cells' PCPU)."""
        return (self.cpu - self.cpu_used + sum(self.cells)
                - sum(self.cells_used))

    def has_room(self, request: Request) -> bool:
        return ((not self.cpu or self.cpu - self.cpu_used >= request.cpu)
                and (not self.memory
                     or self.memory - self.memory_used >= request.memory)
                and (not request.gpu_spec or self.model in request.gpu_spec))

    def node_state(self) -> baselines.NodeState:
        """What the FGD paper's policies see, kept until the host
        changes."""
        if self._node is None:
            self._node = baselines.NodeState(
                self.cpu - self.cpu_used, tuple(r.free for r in self.regions),
                self.model)
        return self._node

    def usage(self) -> dict[str, packing.RegionUsage]:
        return {r.name: packing.RegionUsage(r.capacity, r.used, r.card)
                for r in self.regions}

    def free(self) -> int:
        return sum(r.free for r in self.regions)

    def state(self) -> tuple[tuple[int, int, int], ...]:
        """All that packing sees of this host, names left out: two hosts
        in the same state give the same scores to the same candidates."""
        cards: dict[str, int] = {}
        return tuple((cards.setdefault(r.card, len(cards)), r.capacity,
                      r.used) for r in self.regions)


@dataclass(frozen=True)
class Request:
    """``functions`` from one region, or ``whole_regions`` whole regions
    (then ``functions`` is the size of each)."""

    arrival: float
    duration: float
    functions: int
    whole_regions: int = 0
    cpu: int = 0  # milli-CPU on the host, as the openb trace gives it
    memory: int = 0  # MiB
    gpu_spec: frozenset[str] = frozenset()  # GPU models allowed; any
    # A soft server group's number and policy (soft-affinity or
    # soft-anti-affinity); -1: none.
    group: int = -1
    group_policy: str = ""
    # Dedicated CPUs pinned on one host cell (a NUMA topology; 0: none),
    # and the flavor's nova_accel:numa_affinity_policy.
    pinned: int = 0
    affinity: str | None = None

    @property
    def task_type(self) -> baselines.TaskType:
        return baselines.TaskType(
            self.cpu, self.functions,
            self.whole_regions or (1 if self.functions else 0),
            self.gpu_spec)

    @property
    def asked(self) -> int:
        """Functions asked in all."""
        return self.functions * max(self.whole_regions, 1)

    def kind(self, weight: float = 1.0) -> packing.TaskKind:
        return packing.TaskKind(
            self.cpu, self.memory, self.functions,
            self.whole_regions or (1 if self.functions else 0),
            self.gpu_spec, weight, bool(self.whole_regions))


def task_mix(requests: Sequence[Request]) -> packing.TaskMix:
    """The mix ``host-fragmentation`` is configured with, as an operator
    would write it from what the cloud is asked: the most popular kinds
    that make up 95% of the requests (FGD's typical tasks)."""
    kinds = baselines.typical_types(r.kind() for r in requests)
    if not kinds:
        return packing.task_mix([packing.TaskKind(0, 0, 0, 0)])
    return packing.task_mix(dataclasses.replace(k, weight=w)
                            for k, w in kinds)


# -- clusters ---------------------------------------------------------------

def _host(name: str, cards: Sequence[tuple[int, int]], cpu: int = 0,
          memory: int = 0, model: str = "",
          numa_cells: Sequence[int] = ()) -> Host:
    """With ``numa_cells`` (each node's dedicated CPUs), card ``c`` is on
    node ``c``."""
    regions = [Region(f"{name}/c{c}/r{r}", f"{name}/c{c}", size,
                      node=c if numa_cells else None)
               for c, (count, size) in enumerate(cards)
               for r in range(count)]
    return Host(name, regions, cpu, memory, model=model,
                cells=list(numa_cells), cells_used=[0] * len(numa_cells))


class SpecError(ValueError):
    """A bad ``--cluster``, ``--workload`` or option value, or an input
    file that does not hold what its spec promises: one line saying what
    is wrong and what is expected."""


# Sizes past these would exhaust memory building the cluster or the
# workload long before a result: refused up front instead.
MAX_HOSTS = 1_000_000
MAX_REGIONS = 4096
MAX_FUNCTIONS = 1_000_000
MAX_REQUESTS = 10_000_000
MAX_FILL = 10.0


def _count(text: str, what: str, spec: str, maximum: int,
           minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if not minimum <= value <= maximum:
        raise SpecError(f"{what} in {spec!r} must be a whole number from "
                        f"{minimum} to {maximum:,}, not {text!r}")
    return value


def _read_csv(path: str, columns: Sequence[str], what: str
              ) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV file with their line numbers, once its header is
    known to have ``columns``."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames
                                                       or ())]
            if missing:
                raise SpecError(
                    f"{what} {path} lacks the column(s) "
                    f"{', '.join(missing)}; expected a header with "
                    f"{', '.join(columns)}")
            return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise SpecError(f"cannot read {what} {path}: {reason}") from None


def _field(row: dict[str, str], column: str, path: str, line: int,
           kind: Callable[[str], float] = int, default: str | None = None,
           minimum: float = 0):
    text = (row.get(column) or "").strip() or default
    try:
        value = kind(text) if text is not None else None
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise SpecError(f"{path}:{line}: {column} must be a "
                        f"{'whole ' if kind is int else ''}number >= "
                        f"{minimum}, not {text!r}")
    return value


CLUSTERS = ("meeting | homogeneous:HOSTS:RxF | mixed:HOSTS | "
            "numa:HOSTS:NODES:RxF:CPUS (NODES NUMA nodes per host, each "
            "with a card of R regions of F functions and CPUS dedicated "
            "CPUs) | openb:NODES.csv "
            "(a GPU is 4 functions, the vGPU view) | openb-milli:NODES.csv "
            "(a GPU is 1000 milli-GPU, the FGD paper's view) | "
            "plain:HOSTS:MILLI_CPU:MEMORY_MIB (hosts without accelerators); "
            "join several with + (e.g. openb-milli:NODES.csv+plain:100:"
            "96000:393216)")


def build_cluster(spec: str) -> list[Host]:
    if "+" in spec:
        hosts = [h for part in spec.split("+") for h in build_cluster(part)]
        names = [h.name for h in hosts]
        if len(set(names)) != len(names):
            raise SpecError(f"cluster {spec!r} names a host twice; join "
                            f"clusters whose host names differ")
        return hosts
    family, _, arg = spec.partition(":")
    if family == "plain":
        fields = arg.split(":")
        if len(fields) != 3:
            raise SpecError(f"cluster {spec!r}: expected plain:HOSTS:"
                            f"MILLI_CPU:MEMORY_MIB (e.g. plain:100:96000:"
                            f"393216)")
        count = _count(fields[0], "HOSTS", spec, MAX_HOSTS)
        cpu = _count(fields[1], "MILLI_CPU", spec, MAX_FUNCTIONS * 1000)
        memory = _count(fields[2], "MEMORY_MIB", spec, MAX_FUNCTIONS * 1000)
        return [_host(f"plain{i}", [], cpu, memory) for i in range(count)]
    if family == "meeting" and not arg:
        return [_host("host1", [(3, 4)])]
    if family == "homogeneous":
        hosts, sep, shape = arg.partition(":")
        regions, x, functions = shape.lower().partition("x")
        if not (sep and x):
            raise SpecError(f"cluster {spec!r}: expected homogeneous:HOSTS:"
                            f"RxF (e.g. homogeneous:10:3x4)")
        count = _count(hosts, "HOSTS", spec, MAX_HOSTS)
        card = (_count(regions, "R (regions)", spec, MAX_REGIONS),
                _count(functions, "F (functions)", spec, MAX_FUNCTIONS))
        return [_host(f"host{i}", [card]) for i in range(count)]
    if family == "numa":
        fields = arg.split(":")
        if len(fields) != 4 or "x" not in fields[2].lower():
            raise SpecError(f"cluster {spec!r}: expected numa:HOSTS:NODES:"
                            f"RxF:CPUS (e.g. numa:20:2:2x4:16)")
        count = _count(fields[0], "HOSTS", spec, MAX_HOSTS)
        nodes = _count(fields[1], "NODES", spec, 64)
        regions, _, functions = fields[2].lower().partition("x")
        card = (_count(regions, "R (regions)", spec, MAX_REGIONS),
                _count(functions, "F (functions)", spec, MAX_FUNCTIONS))
        cpus = _count(fields[3], "CPUS", spec, MAX_FUNCTIONS)
        return [_host(f"host{i}", [card] * nodes, numa_cells=[cpus] * nodes)
                for i in range(count)]
    if family == "mixed":
        shapes = [(1, 4), (2, 4), (3, 4), (4, 2)]
        return [_host(f"host{i}", [shapes[i % 4], shapes[(i + 1) % 4],
                                   (1, 1), (1, 8)])
                for i in range(_count(arg, "HOSTS", spec, MAX_HOSTS))]
    if family in ("openb", "openb-milli") and arg:
        size = (MILLI_PER_GPU if family == "openb-milli"
                else DEFAULT_FUNCTIONS_PER_GPU)
        rows = _read_csv(arg, ("sn", "cpu_milli", "memory_mib", "gpu"),
                         "openb node list")
        return [_host(row["sn"], [(1, size)] * gpus,
                      _field(row, "cpu_milli", arg, line),
                      _field(row, "memory_mib", arg, line),
                      (row.get("model") or "").strip())
                for line, row in rows
                for gpus in [_field(row, "gpu", arg, line)] if gpus]
    raise SpecError(f"unknown cluster {spec!r}; expected {CLUSTERS}")


# -- workloads --------------------------------------------------------------

WORKLOADS = ("meeting | poisson:N[:RATE] | numa:N[:RATE] | csv:FILE | "
             "openb:PODS.csv")
# numa:N[:RATE]'s kinds: (functions, whole regions, pinned CPUs,
# affinity policy) and their weights.
NUMA_KINDS = (((1, 0, 4, NUMA_REQUIRED), 15),
              (("region", 1, 8, NUMA_REQUIRED), 10),
              ((1, 0, 4, NUMA_PREFERRED), 10),
              ((2, 0, 4, None), 10),
              ((1, 0, 0, None), 25), ((2, 0, 0, None), 15),
              (("region", 1, 0, None), 15))


def build_workload(spec: str, seed: int, region_size: int, *,
                   timed: bool = True) -> list[Request]:
    """``timed=False`` (fill mode) needs no arrival times or lifetimes:
    every request arrives at 0 and stays."""
    family, _, arg = spec.partition(":")
    if family == "meeting" and not arg:
        return [Request(0, math.inf, 1), Request(1, math.inf, 2),
                Request(2, math.inf, 1),
                Request(3, math.inf, region_size, whole_regions=2)]
    if family in ("poisson", "numa"):
        # poisson:N[:RATE]: N arrivals, RATE a second (1 by default), each
        # staying 400 s on average, so about 400 x RATE at once.
        count, _, rate = arg.partition(":")
        count_ = _count(count, "N", spec, MAX_REQUESTS)
        try:
            rate_ = float(rate or 1.0)
        except ValueError:
            rate_ = 0.0
        if not 0 < rate_ < math.inf:
            raise SpecError(f"RATE in {spec!r} must be a number > 0, not "
                            f"{rate!r}")
        rng = random.Random(seed)
        requests, now = [], 0.0
        for _ in range(count_):
            now += rng.expovariate(rate_)
            if family == "numa":
                kinds, weights = zip(*NUMA_KINDS, strict=True)
                functions, whole, pinned, policy = rng.choices(
                    kinds, weights=weights)[0]
                requests.append(Request(
                    now, rng.expovariate(1 / 400.0),
                    region_size if functions == "region" else functions,
                    whole, pinned=pinned, affinity=policy))
                continue
            shape = rng.choices([(1, 0), (2, 0), (3, 0), (region_size, 1)],
                                weights=[40, 25, 15, 20])[0]
            requests.append(Request(now, rng.expovariate(1 / 400.0),
                                    shape[0], shape[1]))
        return requests
    if family == "csv" and arg:
        times = ("arrival", "duration") if timed else ()
        return [Request(
            _field(r, "arrival", arg, line, float) if timed else 0.0,
            _field(r, "duration", arg, line, float) if timed else math.inf,
            _field(r, "functions", arg, line, minimum=1),
            _field(r, "whole_region", arg, line, default="0"))
            for line, r in _read_csv(arg, times + ("functions",),
                                     "csv workload")]
    if family == "openb" and arg:
        return _openb_pods(arg, region_size, timed)
    raise SpecError(f"unknown workload {spec!r}; expected {WORKLOADS}")


def _openb_pods(path: str, region_size: int, timed: bool) -> list[Request]:
    """Every task, CPU-only ones too (they take CPU and memory a GPU task
    may need, as in the paper's simulator). ``gpu_spec`` lists the GPU
    models a task may run on, ``|``-separated."""
    milli_per_function = MILLI_PER_GPU / region_size
    columns = ("cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
    if timed:
        columns += ("creation_time", "deletion_time")
    requests = []
    for line, row in _read_csv(path, columns, "openb pod list"):
        gpus = _field(row, "num_gpu", path, line)
        milli = _field(row, "gpu_milli", path, line, default="0")
        start, end = 0.0, math.inf
        if timed:
            start = _field(row, "creation_time", path, line, float, "0")
            end = _field(row, "deletion_time", path, line, float, "inf",
                         minimum=start)
        host_share = {"cpu": _field(row, "cpu_milli", path, line, default="0"),
                      "memory": _field(row, "memory_mib", path, line,
                                       default="0"),
                      "gpu_spec": frozenset(
                          m.strip() for m in (row.get("gpu_spec") or ""
                                              ).split("|") if m.strip())}
        if gpus == 0:
            requests.append(Request(start, end - start, 0, **host_share))
        elif gpus == 1 and milli < MILLI_PER_GPU:
            requests.append(Request(start, end - start, max(
                1, math.ceil(milli / milli_per_function)), **host_share))
        else:
            requests.append(Request(start, end - start, region_size,
                                    whole_regions=gpus, **host_share))
    return requests


SOFT_POLICIES = ("soft-affinity", "soft-anti-affinity")


def soft_groups(requests: Sequence[Request], share: float, size: int,
                policy: str, seed: int) -> list[Request]:
    """``requests`` with ``share`` of those that ask accelerators (drawn
    with ``seed``) made members of soft server groups of ``policy``,
    ``size`` members each, in the order they come."""
    rng = random.Random(seed)
    chosen = [i for i, r in enumerate(requests)
              if r.functions and rng.random() < share]
    grouped = list(requests)
    for n, i in enumerate(chosen):
        grouped[i] = dataclasses.replace(grouped[i], group=n // size,
                                         group_policy=policy)
    return grouped


def request_mix(requests: Sequence[Request]) -> tuple[packing.RequestShape,
                                                       ...]:
    counts: dict[tuple[int, bool], int] = {}
    for r in requests:
        if not r.functions:
            continue  # asks for no accelerator
        key = (r.functions, bool(r.whole_regions))
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    return tuple(packing.RequestShape(size, whole, n / total)
                 for (size, whole), n in sorted(counts.items()))


# -- choosing ---------------------------------------------------------------

Shape = tuple[int, int]  # (functions, whole regions), as in Request


def shape_of(request: Request) -> Shape:
    return (request.functions, request.whole_regions)


def fits(host: Host, request: Request) -> bool:
    """Whether the host has accelerators for the request (what
    ``accel_candidates`` gives), without listing them, and a cell for its
    pinned CPUs (what NUMATopologyFilter asks)."""
    if request.pinned and host.guest_cell(request) is None:
        return False
    if not request.functions:
        return True
    if request.whole_regions:
        return sum(1 for r in host.regions
                   if r.used == 0 and r.capacity == request.functions
                   ) >= request.whole_regions
    return any(r.free >= request.functions for r in host.regions)


def candidates(host: Host, request: Request) -> list[dict[str, int]]:
    """What placement would return for this host, in its fixed order."""
    return accel_candidates(host, request) if host.has_room(request) else []


def accel_candidates(host: Host, request: Request) -> list[dict[str, int]]:
    """``candidates`` as if the host had CPU and memory to spare."""
    if not request.functions:
        return [{}]
    if request.whole_regions:
        whole = [r.name for r in host.regions
                 if r.used == 0 and r.capacity == request.functions]
        return [{name: request.functions for name in combo}
                for combo in itertools.islice(
                    itertools.combinations(whole, request.whole_regions),
                    64)]
    return [{r.name: request.functions} for r in host.regions
            if r.free >= request.functions]


def emptiest(host: Host, cands: Sequence[dict[str, int]]) -> dict[str, int]:
    """``spread``'s candidate: the one on the regions with most free."""
    free = {r.name: r.free for r in host.regions}
    return max(cands, key=lambda c: sum(free[n] for n in c))


def host_room(host: Host) -> packing.HostRoom:
    """What ``host-fragmentation`` sees of a host."""
    return packing.HostRoom(
        host.cpu - host.cpu_used, host.memory - host.memory_used,
        tuple(r.free for r in host.regions),
        tuple(r.capacity for r in host.regions), host.model)


def placed_on(host: Host, request: Request, candidate: dict[str, int]
              ) -> packing.Placement:
    """What ``candidate`` takes of ``host``, as packing reads it."""
    index = {r.name: i for i, r in enumerate(host.regions)}
    return packing.Placement(request.cpu, request.memory, {
        index[name]: amount for name, amount in candidate.items()})


def numa_ask(host: Host, request: Request) -> packing.NumaAsk | None:
    """What the filter asks of ``host``'s regions for a request with
    pinned CPUs and accelerators (None for the others): the regions'
    nodes, and under an affinity policy the guest's cell as nova's fit
    gives it (``Host.guest_cell``)."""
    if not (request.pinned and request.functions):
        return None
    nodes = tuple(r.node for r in host.regions)
    cell = host.guest_cell(request) if request.affinity else None
    if cell is None:
        return packing.NumaAsk(nodes)
    return packing.NumaAsk(
        nodes, numa.local_nodes(request.affinity, {cell}),
        strict=numa.strict(request.affinity),
        prefer=request.affinity == NUMA_PREFERRED)


def placement_order(host: Host, request: Request, seed: int
                    ) -> list[dict[str, int]]:
    """``candidates`` in an order that packing knows nothing of, fixed for
    a run: placement lists sibling providers in Python set order, which
    follows the providers' uuids (and PYTHONHASHSEED), not their usage."""
    def arbitrary(demand: dict[str, int]) -> list[int]:
        return sorted(zlib.crc32(f"{seed}/{name}".encode()) for name in demand)
    return sorted(candidates(host, request), key=arbitrary)


@dataclass
class Policy:
    """``typical`` is the trace's task mix as FGD reads it, ``unit`` one
    GPU's capacity (a region's), ``seed`` fixes placement's order."""

    name: str
    mix: tuple[packing.RequestShape, ...]
    rng: random.Random
    typical: tuple[tuple[baselines.TaskType, float], ...] = ()
    unit: int = MILLI_PER_GPU
    seed: int = 1
    # host-fragmentation: the configured task mix (``task_mix`` of the
    # workload; without it, that of ``mix``, as the option's default) and
    # our weigher's multiplier
    task_mix: packing.TaskMix | None = None
    multiplier: float = accel_conf.DEFAULT_WEIGHT_MULTIPLIER
    # host-fragmentation: ``[accel_packing] plain_requests``
    plain_requests: str = accel_conf.PREFER_PLAIN_HOSTS
    # Where a soft server group's members are: per host name, how many
    # (set by simulate; nova's hint weighers read it).
    group_hosts: Callable[[int], dict[str, int]] | None = None
    _fgd: dict[tuple, tuple[int, tuple[int, ...]]] = field(
        default_factory=dict, repr=False)

    def __post_init__(self):
        if self.task_mix is None and self.name in HOST_FRAGMENTATION:
            self.task_mix = packing.mix_of_shapes(self.mix)

    def scans(self, request: Request) -> bool:
        """Whether ``choose`` looks at every host for this request (as
        opposed to through a ``HostIndex``). A request without
        accelerators weighs 0 in our weigher under the region policies, so
        nova's own weighers place it there, as under stock nova. A
        request with pinned CPUs is always looked at host by host."""
        return self.name in SCANNED_POLICIES or bool(request.pinned) or (
            self.name in SCORED_POLICIES and not request.functions)

    def best_scored(self, host: Host, request: Request
                    ) -> tuple[float, int] | None:
        """A scored policy's best candidate of ``host``: its
        ``Score.value`` and its index in ``accel_candidates``; None if none
        is acceptable. CPU and memory are left to the caller."""
        ranked = packing.rank(accel_candidates(host, request), host.usage(),
                              policy=SCORED_POLICIES[self.name],
                              mix=self.mix)
        if not ranked:
            return None
        index, score = ranked[0]
        return score.value, index

    def choose(self, hosts: list[Host], request: Request
               ) -> tuple[Host, dict[str, int]] | None:
        """Look at every host: the reference that ``HostIndex`` must
        agree with."""
        if self.scans(request):
            return self._scanned(hosts, request)
        if self.name in SCORED_POLICIES:
            return self._scored(hosts, request)
        feasible = ((h, c) for h in hosts
                    for c in [candidates(h, request)] if c)
        if self.name == "placement-order":
            host, cands = next(feasible, (None, None))
            return (host, cands[0]) if host else None
        feasible = list(feasible)
        if not feasible:
            return None
        if self.name == "random":
            host, cands = self.rng.choice(feasible)
            return host, self.rng.choice(cands)
        # spread: the host with most free, then the emptiest regions
        host, cands = max(feasible, key=lambda hc: hc[0].free())
        return host, emptiest(host, cands)

    def _scored(self, hosts, request):
        best = None
        for host in hosts:
            found = self.best_scored(host, request) if host.has_room(
                request) else None
            if found and (best is None or found[0] > best[0]):
                best = (found[0], host, found[1])
        if best is None:
            return None
        _, host, index = best
        return host, accel_candidates(host, request)[index]

    def _scanned(self, hosts: list[Host], request: Request
                 ) -> tuple[Host, dict[str, int]] | None:
        feasible = [h for h in hosts
                    if h.has_room(request) and fits(h, request)]
        if not feasible:
            return None
        if self.name == "fgd":
            task = request.task_type
            scored = [self._fgd_score(h, task) for h in feasible]
            return self._draw(feasible, [s for s, _ in scored],
                              [g for _, g in scored], request)
        if self.name in HOST_FRAGMENTATION:
            return self._host_fragmentation(feasible, request)
        if self.name == "paper-best-fit":
            task = request.task_type
            raw = [baselines.best_fit_raw(h.node_state(), task, self.unit)
                   for h in feasible]
            return self._draw(feasible, baselines.normalize_scores(raw),
                              None, request)
        free_ram = [h.memory - h.memory_used for h in feasible]
        free_cpu = [h.nova_free_cpu() for h in feasible]
        hint = self._hint(feasible, request)
        others = ((1.0, hint),) if hint else ()
        if not (request.pinned and numa.strict(request.affinity)):
            best = feasible[baselines.nova_best(free_ram, free_cpu, others)]
            return best, placement_order(best, request, self.seed)[0]
        # Stock nova knows nothing of our policy: it claims the first
        # candidate of its best host, the hook refuses the start when that
        # region is far from the guest's cell, and nova tries the
        # alternates it chose with the host.
        for index in baselines.nova_ranked(free_ram, free_cpu, others)[
                :MAX_ATTEMPTS]:
            host = feasible[index]
            candidate = placement_order(host, request, self.seed)[0]
            ask = numa_ask(host, request)
            if packing.numa_key(placed_on(host, request, candidate),
                                ask) is not None:
                return host, candidate
        return None

    def _hint(self, feasible: list[Host], request: Request
              ) -> list[float] | None:
        """Nova's soft-(anti-)affinity weigher's raw weights for a member
        of a soft group; None for others."""
        if request.group < 0 or self.group_hosts is None:
            return None
        on_host = self.group_hosts(request.group)
        return baselines.hint_weights(
            [on_host.get(h.name, 0) for h in feasible], request.group_policy)

    def _host_fragmentation(self, feasible: list[Host], request: Request
                            ) -> tuple[Host, dict[str, int]] | None:
        """What nova does with our filter and weigher under
        ``host-fragmentation``: on each host the filter puts first the
        candidate ``packing.rank_placements`` ranks best (placement's
        order among equals), the weigher gives ``packing.decisive_weights``
        of those scores (for a request without accelerators what
        ``plain_requests`` says), and nova adds them, times the
        multiplier, to its default weighers' (``baselines.nova_best``),
        which decide among equally weighted hosts. A host's best score is
        remembered by all it depends on (its room and the ask), so hosts
        in one state share it."""
        ask = (request.cpu, request.memory, request.functions,
               request.whole_regions)
        scores: list[tuple[int, ...] | None] = []
        for host in feasible:
            room = host_room(host)
            key = ("host", ask, room, self._numa_ask(host, request))
            found = self._fgd.get(key, self)
            if found is self:
                if len(self._fgd) > 2_000_000:
                    self._fgd.clear()
                ranked = self._rank_host(host, room, request,
                                         accel_candidates(host, request))
                found = self._fgd[key] = ranked[0][1] if ranked else None
            scores.append(found)
        if request.pinned and numa.strict(request.affinity):
            # The filter turns down the hosts without a region near the
            # guest's cell.
            kept = [i for i, score in enumerate(scores) if score is not None]
            if not kept:
                return None
            feasible = [feasible[i] for i in kept]
            scores = [scores[i] for i in kept]
        hint = self._hint(feasible, request)
        first = baselines.hint_leaders(hint) if hint else None
        if first is None:
            weights = self._weights(feasible, scores, request)
        else:
            # Weighed among the hosts the hint puts first only (hints.py).
            among = iter(self._weights(
                [h for h, lead in zip(feasible, first, strict=True) if lead],
                [s for s, lead in zip(scores, first, strict=True) if lead],
                request))
            weights = [next(among) if lead else 0.0 for lead in first]
        host = feasible[baselines.nova_best(
            [h.memory - h.memory_used for h in feasible],
            [h.nova_free_cpu() for h in feasible],
            ((self.multiplier, weights),
             *(((1.0, hint),) if hint else ())))]
        cands = placement_order(host, request, self.seed)
        ranked = self._rank_host(host, host_room(host), request, cands)
        if not ranked:
            return None  # the filter turned every host down
        return host, cands[ranked[0][0]]

    def _weights(self, hosts: list[Host], scores: Sequence, request: Request
                 ) -> list[float]:
        """Our weigher's weights over ``hosts`` (weighers.py)."""
        if request.functions:
            return packing.decisive_weights(scores)
        if self.plain_requests == accel_conf.IGNORE:
            return [0.0] * len(hosts)
        if self.plain_requests == accel_conf.PREFER_PLAIN_HOSTS:
            return packing.plain_host_weights(
                scores, [bool(h.regions) for h in hosts])
        return packing.decisive_weights(scores)

    def _rank_host(self, host: Host, room: packing.HostRoom,
                   request: Request, cands: Sequence[dict[str, int]]
                   ) -> list[tuple[int, tuple[int, ...]]]:
        """The filter on one host: ``packing.rank_placements`` of
        ``cands``."""
        return packing.rank_placements(
            room, [placed_on(host, request, c) for c in cands],
            self.task_mix, self._numa_ask(host, request))

    def _numa_ask(self, host: Host, request: Request
                  ) -> packing.NumaAsk | None:
        """``numa_ask``, without the NUMA node term under
        ``host-fragmentation-no-numa-term``."""
        ask = numa_ask(host, request)
        if ask is not None and self.name != HOST_FRAGMENTATION[0]:
            ask = dataclasses.replace(ask, pack=False)
        return ask

    def _fgd_score(self, host: Host, task: baselines.TaskType
                   ) -> tuple[int, tuple[int, ...]]:
        """``baselines.fgd_score``, remembered by all it depends on: on a
        large cluster most hosts are in a state already scored."""
        key = (task, host.node_state())
        found = self._fgd.get(key)
        if found is None:
            if len(self._fgd) > 2_000_000:
                self._fgd.clear()
            found = self._fgd[key] = baselines.fgd_score(
                key[1], task, self.typical, self.unit)
        return found

    def _draw(self, feasible: list[Host], scores: Sequence[int],
              gpus: Sequence[tuple[int, ...]] | None, request: Request
              ) -> tuple[Host, dict[str, int]]:
        """The best host, the first by name among equals (the paper's
        simulator patches kube-scheduler's ``selectHost`` so, for
        reproducibility), with the GPUs the policy gives the request there
        (best fit's when ``gpus`` is None)."""
        top = max(scores)
        index = min((i for i, s in enumerate(scores) if s == top),
                    key=lambda i: feasible[i].name)
        host = feasible[index]
        taken = gpus[index] if gpus is not None else baselines.best_fit_gpus(
            host.node_state(), request.task_type, self.unit)
        return host, {host.regions[g].name: request.functions for g in taken}


class _FeasibleHosts:
    """The positions of the hosts that fit one shape, as a Fenwick tree:
    how many there are and the k-th of them in O(log hosts)."""

    def __init__(self, size: int):
        self._tree = [0] * (size + 1)
        self._bits = bytearray(size)
        self.count = 0

    def set(self, position: int, feasible: bool) -> None:
        if self._bits[position] == feasible:
            return
        self._bits[position] = feasible
        delta = 1 if feasible else -1
        self.count += delta
        i = position + 1
        while i < len(self._tree):
            self._tree[i] += delta
            i += i & -i

    def positions(self) -> list[int]:
        return [p for p, bit in enumerate(self._bits) if bit]

    def kth(self, k: int) -> int:
        """The position of the k-th feasible host, from 0."""
        position, bit = 0, 1 << (len(self._tree) - 1).bit_length()
        while bit:
            step = position + bit
            if step < len(self._tree) and self._tree[step] <= k:
                position = step
                k -= self._tree[step]
            bit >>= 1
        return position


class _BestHosts:
    """Each host's key for one shape (smaller is better; the host's
    position is its last part, so keys never tie) in a heap. Only the
    newest entry of a host is live: the others are dropped when they
    surface, and the heap is rebuilt when they outnumber the hosts."""

    def __init__(self, size: int):
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, tuple[float, int]] = {}
        self._size = size

    def set(self, position: int, key: tuple[float, int] | None) -> None:
        if key is None:
            self._live.pop(position, None)
            return
        self._live[position] = key
        heapq.heappush(self._heap, key)
        if len(self._heap) > 2 * self._size + 64:
            self._heap = list(self._live.values())
            heapq.heapify(self._heap)

    def best(self, acceptable: Callable[[int], bool]) -> int | None:
        """The best live host that is ``acceptable``."""
        passed = []
        found = None
        while self._heap:
            key = self._heap[0]
            if self._live.get(key[1]) is not key:
                heapq.heappop(self._heap)
            elif acceptable(key[1]):
                found = key[1]
                break
            else:
                passed.append(heapq.heappop(self._heap))
        for key in passed:
            heapq.heappush(self._heap, key)
        return found


class HostIndex:
    """Chooses exactly as ``Policy.choose`` does without looking at every
    host for every request.

    For each request shape asked so far it keeps which hosts fit and, for
    ``spread`` and the scored policies, each host's key (best score, then
    host order) in a heap. A change to a host only marks it dirty; each
    shape re-keys its dirty hosts when next asked. Scores still come from
    ``Policy.best_scored`` (so from ``packing.rank``), remembered per
    host state: hosts in the same state share the score. A shape counts
    accelerators only; a host without the request's CPU or memory is
    passed over when choosing, in key order, as the full scan leaves it
    out.
    """

    def __init__(self, hosts: list[Host], policy: Policy):
        self.hosts = hosts
        self.policy = policy
        self._position = {id(h): i for i, h in enumerate(hosts)}
        self._shapes: dict[Shape, tuple[_FeasibleHosts | _BestHosts,
                                        set[int]]] = {}
        self._scores: dict[tuple, tuple[float, int] | None] = {}

    def changed(self, host: Host) -> None:
        position = self._position[id(host)]
        for _, dirty in self._shapes.values():
            dirty.add(position)

    def choose(self, request: Request
               ) -> tuple[Host, dict[str, int]] | None:
        if self.policy.scans(request):
            return self.policy.choose(self.hosts, request)
        shape = shape_of(request)
        if shape not in self._shapes:
            self._shapes[shape] = (
                _FeasibleHosts(len(self.hosts))
                if self.policy.name in ("placement-order", "random")
                else _BestHosts(len(self.hosts)),
                set(range(len(self.hosts))))
        hosts, dirty = self._shapes[shape]
        for position in dirty:
            self._update(hosts, position, request)
        dirty.clear()
        if isinstance(hosts, _FeasibleHosts):
            return self._pick_feasible(hosts, request)
        position = hosts.best(
            lambda p: self.hosts[p].has_room(request))
        if position is None:
            return None
        host = self.hosts[position]
        if self.policy.name == "spread":
            return host, emptiest(host, candidates(host, request))
        _, index = self._scored(host, request)
        return host, accel_candidates(host, request)[index]

    def _update(self, hosts, position: int, request: Request) -> None:
        host = self.hosts[position]
        if isinstance(hosts, _FeasibleHosts):
            hosts.set(position, fits(host, request))
            return
        key = None
        if self.policy.name == "spread":
            if fits(host, request):
                key = (-host.free(), position)
        else:
            found = self._scored(host, request)
            if found is not None:
                key = (-found[0], position)
        hosts.set(position, key)

    def _pick_feasible(self, hosts: _FeasibleHosts, request: Request):
        if not (request.cpu or request.memory or request.gpu_spec):
            count, kth = hosts.count, hosts.kth
        else:
            # Hosts without room are out, as placement leaves them out.
            roomy = [p for p in hosts.positions()
                     if self.hosts[p].has_room(request)]
            count, kth = len(roomy), roomy.__getitem__
        if not count:
            return None
        if self.policy.name == "placement-order":
            host = self.hosts[kth(0)]
            return host, candidates(host, request)[0]
        # random.choice(seq) is seq[randbelow(len(seq))]: the same draws
        # as the reference's choice over its list of feasible hosts.
        host = self.hosts[kth(self.policy.rng.choice(range(count)))]
        return host, self.policy.rng.choice(candidates(host, request))

    def _scored(self, host: Host, request: Request
                ) -> tuple[float, int] | None:
        state = (shape_of(request), host.state())
        if state not in self._scores:
            if len(self._scores) > 1_000_000:
                self._scores.clear()
            self._scores[state] = self.policy.best_scored(host, request)
        return self._scores[state]


# -- metrics ----------------------------------------------------------------

def whole_free(hosts: Sequence[Host]) -> int:
    return sum(1 for h in hosts for r in h.regions if r.used == 0)


def fragmentation(hosts: Sequence[Host]) -> int:
    """Free functions outside whole free regions."""
    return sum(r.free for h in hosts for r in h.regions if r.used)


def compaction_bound(hosts: Sequence[Host]) -> int:
    """Whole regions that would be free if each host's used functions were
    packed perfectly into its largest regions first."""
    return sum(_host_compaction_bound(h) for h in hosts)


def _host_compaction_bound(host: Host) -> int:
    used = sum(r.used for r in host.regions)
    if not used:
        return len(host.regions)
    bound = 0
    for region in sorted(host.regions, key=lambda r: -r.capacity):
        if used >= region.capacity:
            used -= region.capacity
        elif used > 0:
            used = 0
        else:
            bound += 1
    return bound


@dataclass
class Result:
    # "none": requests without accelerators (CPU and memory only)
    asked: dict[str, int] = field(default_factory=lambda: {
        "function": 0, "region": 0, "none": 0})
    rejected: dict[str, int] = field(default_factory=lambda: {
        "function": 0, "region": 0, "none": 0})
    timeline: list[tuple[float, float, int]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    migrations: int = 0
    freed_regions: int = 0
    # Requests with pinned CPUs under each affinity policy: how many were
    # asked, rejected, and placed with every region on the guest's cell.
    numa: dict[str, list[int]] = field(default_factory=lambda: {
        policy: [0, 0, 0] for policy in NUMA_POLICIES})


def fill_order(requests: Sequence[Request], target: float, seed: int
               ) -> list[Request]:
    """Fill mode's arrivals, tuned to ``target`` functions asked as the
    FGD paper's simulator tunes its trace: the trace in a shuffled order,
    less requests taken out at random while it asks more than the target,
    or else followed by requests drawn from it at random (with
    replacement) until the next would pass the target."""
    rng = random.Random(seed)
    order = list(requests)
    rng.shuffle(order)
    asked = sum(r.asked for r in order)
    while asked > target and order:
        asked -= order.pop(rng.randrange(len(order))).asked
    if any(r.asked for r in requests):
        while True:
            extra = rng.choice(requests)
            if asked + extra.asked > target:
                break
            asked += extra.asked
            order.append(extra)
    return order


# -- defragmentation ---------------------------------------------------------

# The planner's names for what the simulator does not model: every region
# of a host is of its GPU model (a class), and every server moves live.
_SIM_CLASS = "ACCEL"


def _region_class(host: Host) -> str:
    return host.model or _SIM_CLASS


def _server_name(placed: int) -> str:
    """A server's name for the planner, by the order it was placed in:
    the planner breaks ties by name, so names must not follow memory
    addresses (``id``), or the same replay would differ between runs."""
    return f"s{placed:09d}"


def planner_cluster(hosts: Sequence[Host],
                    held: dict[int, tuple[Host, dict[str, int]]],
                    servers: dict[int, tuple[int, Request]]
                    ) -> defrag_cluster.Cluster:
    """The replay's state as the planner reads placement: a host's CPU
    and memory left (when modelled), its regions, the servers holding
    functions (``servers``: by the key of ``held``, the order each was
    placed in and its request) and what each takes."""
    cloud = defrag_cluster.Cluster()
    for host in hosts:
        free = ({"VCPU": host.cpu - host.cpu_used,
                 "MEMORY_MB": host.memory - host.memory_used}
                if host.cpu or host.memory else {})
        cloud.hosts[host.name] = defrag_cluster.Host(host.name, host.name,
                                                     free)
        for region in host.regions:
            cloud.regions[region.name] = defrag_cluster.Region(
                uuid=region.name, name=region.name, host=host.name,
                card=region.card, resource_class=_region_class(host),
                size=region.capacity, capacity=region.capacity,
                used=region.used, move=contract.MOVE_LIVE)
    for key, (host, demand) in held.items():
        if not demand:
            continue
        placed, request = servers[key]
        root = ({"VCPU": request.cpu, "MEMORY_MB": request.memory}
                if host.cpu or host.memory else {})
        name = _server_name(placed)
        cloud.servers[name] = defrag_cluster.Server(
            uuid=name, host=host.name, root=root, regions=dict(demand))
    return cloud


def defrag_step(hosts: list[Host],
                held: dict[int, tuple[Host, dict[str, int]]],
                servers: dict[int, tuple[int, Request]], size: int,
                wanted: int,
                moves: int, index: HostIndex | None = None,
                cells: dict[int, int | None] | None = None
                ) -> tuple[int, int]:
    """Free up to ``wanted`` whole regions of ``size`` with at most
    ``moves`` migrations (the planner's plan, per region class), applied
    to the replay; returns the migrations made and the regions freed.
    ``cells``: where each placed request's pinned CPUs are, kept current
    as servers move."""
    cells = {} if cells is None else cells
    cloud = planner_cluster(hosts, held, servers)
    by_name = {h.name: h for h in hosts}
    keys = {_server_name(placed): key
            for key, (placed, _) in servers.items()}
    made = freed = 0
    for rc in sorted({_region_class(h) for h in hosts}):
        if made >= moves:
            break
        plan = defrag_planner.plan(cloud, defrag_planner.Target(
            rc, size, wanted, max_moves=moves - made))
        for move in plan.moves:
            key = keys[move.server]
            request = servers[key][1]
            _apply(held[key], request, -1, index, cells.get(key))
            destination = by_name[move.destination]
            placed = (destination, dict(
                (dst, held[key][1][src]) for src, dst in move.regions))
            cell = (destination.guest_cell(request) if request.pinned
                    else None)
            _apply(placed, request, +1, index, cell)
            held[key] = placed
            cells[key] = cell
            made += 1
        freed += len(plan.freed)
        if plan.moves:
            cloud = planner_cluster(hosts, held, servers)
    return made, freed


def check_numa_policies(policies: Sequence[str],
                        requests: Sequence[Request]) -> None:
    """SpecError when a workload with pinned CPUs is to run under a policy
    that models no NUMA."""
    blind = [p for p in policies if p not in NUMA_AWARE]
    if blind and any(r.pinned for r in requests):
        raise SpecError(f"a workload with pinned CPUs runs under "
                        f"{', '.join(NUMA_AWARE)} only, not "
                        f"{', '.join(blind)}")


def simulate(cluster_spec: str, requests: Sequence[Request], policy: str,
             mode: str, fill_to: float, seed: int, *, indexed: bool = True,
             progress: Progress | None = None,
             multiplier: float = accel_conf.DEFAULT_WEIGHT_MULTIPLIER,
             plain_requests: str = accel_conf.PREFER_PLAIN_HOSTS,
             defrag_every: float | None = None, defrag_moves: int = 0
             ) -> Result:
    """Replay ``requests`` under ``policy``; ``multiplier`` and
    ``plain_requests`` are our weigher's under ``host-fragmentation``
    (``[accel_packing]`` options). ``indexed`` chooses through a
    ``HostIndex``; without it every host is looked at for every request
    (the same choices, far slower on large clusters). ``defrag_every``
    (seconds; arrivals in fill mode) and ``defrag_moves`` run
    ``defrag_step`` during the replay."""
    hosts = build_cluster(cluster_spec)
    check_numa_policies([policy], requests)
    capacity = sum(r.capacity for h in hosts for r in h.regions)
    sizes = [r.capacity for h in hosts for r in h.regions]
    policy_ = Policy(policy, request_mix(requests), random.Random(seed),
                     typical=baselines.typical_types(
                         r.task_type for r in requests),
                     unit=max(set(sizes), key=sizes.count), seed=seed,
                     task_mix=task_mix(requests), multiplier=multiplier,
                     plain_requests=plain_requests)
    index = HostIndex(hosts, policy_) if indexed else None
    result = Result()
    if mode == "fill":
        events = [(0.0, ARRIVAL, r) for r in fill_order(
            requests, fill_to * capacity, seed)]
    else:
        events = sorted(
            [(r.arrival, ARRIVAL, r) for r in requests]
            + [(r.arrival + r.duration, DEPARTURE, r) for r in requests
               if math.isfinite(r.duration)],
            key=lambda e: (e[0], e[1]))
    held: dict[int, tuple[Host, dict[str, int]]] = {}
    servers: dict[int, tuple[int, Request]] = {}
    members: dict[int, list[int]] = {}
    # The host cell each placed request's pinned CPUs are on.
    cells: dict[int, int | None] = {}

    def group_hosts(group: int) -> dict[str, int]:
        # Read from ``held``, which moves (defrag_step) keep current.
        on_host: dict[str, int] = {}
        for key in members.get(group, ()):
            placed = held.get(key)
            if placed:
                name = placed[0].name
                on_host[name] = on_host.get(name, 0) + 1
        return on_host

    policy_.group_hosts = group_hosts
    whole_sizes = sorted({r.functions for r in requests if r.whole_regions})
    defrag = bool(defrag_every and defrag_moves and whole_sizes)
    next_defrag = defrag_every if defrag else math.inf
    defrag_size = max(whole_sizes, key=lambda s: sum(
        1 for r in requests if r.whole_regions and r.functions == s),
        default=0)
    wanted = arrivals = 0
    samples: list[dict[str, float]] = []
    every = max(len(events) // 200, 1)
    for step, (when, event, request) in enumerate(events):
        if progress:
            progress.update(step, len(events))
        clock = arrivals if mode == "fill" else when
        if clock >= next_defrag:
            # As an operator would: only for the whole regions that
            # requests asked for in vain since the last time.
            if wanted:
                made, freed = defrag_step(hosts, held, servers, defrag_size,
                                          wanted, defrag_moves, index,
                                          cells)
                result.migrations += made
                result.freed_regions += freed
            wanted = 0
            next_defrag = clock + defrag_every
        if event == DEPARTURE:
            placed = held.pop(id(request), None)
            servers.pop(id(request), None)
            if placed:
                _apply(placed, request, -1, index,
                       cells.pop(id(request), None))
            continue
        arrivals += 1
        label = ("region" if request.whole_regions
                 else "function" if request.functions else "none")
        result.asked[label] += 1
        choice = (index.choose(request) if index
                  else policy_.choose(hosts, request))
        counts = result.numa.get(request.affinity) if request.pinned \
            else None
        if counts is not None:
            counts[0] += 1
        if choice is None:
            result.rejected[label] += 1
            if request.functions == defrag_size:
                wanted += request.whole_regions
            if counts is not None:
                counts[1] += 1
        else:
            cell = choice[0].guest_cell(request) if request.pinned else None
            if counts is not None and all(
                    region.node == cell for region in choice[0].regions
                    if region.name in choice[1]):
                counts[2] += 1
            _apply(choice, request, +1, index, cell)
            held[id(request)] = choice
            cells[id(request)] = cell
            servers[id(request)] = (step, request)
            if request.group >= 0:
                members.setdefault(request.group, []).append(id(request))
        if step % every == 0:
            samples.append(_state(hosts, capacity))
            result.timeline.append((
                when if mode == "replay" else step,
                sum(result.rejected.values()) / sum(result.asked.values()),
                samples[-1]["fragmentation"]))
    if progress:
        progress.done(len(events))
    # Fill mode reports the state it ends in (the paper's method); replay
    # the mean over the run, since everything has left by its end.
    final = _state(hosts, capacity)
    state = final if mode == "fill" or not samples else {
        key: sum(s[key] for s in samples) / len(samples) for key in final}
    placed_accel = sum(result.asked[k] - result.rejected[k]
                       for k in ("region", "function"))
    result.metrics = {
        "region_rejection_rate": _rate(result, "region"),
        "function_rejection_rate": _rate(result, "function"),
        **state,
        "requests": sum(result.asked.values()),
        "region_accepted": result.asked["region"] - result.rejected["region"],
        "migrations": result.migrations,
        "freed_regions": result.freed_regions,
        "migrated_share": (result.migrations / placed_accel
                           if placed_accel else 0.0),
    }
    if any(asked for asked, _, _ in result.numa.values()):
        required, preferred = (result.numa[p] for p in (NUMA_REQUIRED,
                                                        NUMA_PREFERRED))
        result.metrics.update({
            "required_asked": required[0],
            "required_rejected": required[1],
            "required_rejection_rate": (required[1] / required[0]
                                        if required[0] else 0.0),
            "preferred_near_share": (preferred[2] / preferred[0]
                                     if preferred[0] else 1.0)})
    return result


def _state(hosts: Sequence[Host], capacity: int) -> dict[str, float]:
    bound = compaction_bound(hosts)
    free_whole = whole_free(hosts)
    state = {
        "utilisation": sum(r.used for h in hosts for r in h.regions)
        / capacity,
        "fragmentation": fragmentation(hosts),
        "whole_free_regions": free_whole,
        "compaction_bound": bound,
        "bound_fraction": free_whole / bound if bound else 1.0,
    }
    nodes = [(h, node) for h in hosts for node in range(len(h.cells))]
    if nodes:
        # NUMA nodes whose accelerators are all free.
        state["whole_free_nodes"] = sum(
            all(r.used == 0 for r in h.regions if r.node == node)
            for h, node in nodes) / len(nodes)
    return state


def _rate(result: Result, label: str) -> float:
    asked = result.asked[label]
    return result.rejected[label] / asked if asked else 0.0


def _apply(placed: tuple[Host, dict[str, int]], request: Request,
           sign: int, index: HostIndex | None = None,
           cell: int | None = None) -> None:
    """Take (``sign`` +1) or give back (-1) what ``request`` holds of the
    host it was ``placed`` on, its pinned CPUs from ``cell``."""
    host, demand = placed
    for region in host.regions:
        region.used += sign * demand.get(region.name, 0)
    host.cpu_used += sign * request.cpu
    host.memory_used += sign * request.memory
    if cell is not None:
        host.cells_used[cell] += sign * request.pinned
    host._node = None
    if index:
        index.changed(host)


class Progress:
    """A one-line progress bar on a terminal: the share of events done,
    redrawn at most every 1/200 of the run."""

    def __init__(self, label: str, stream: TextIO):
        self.label = label
        self.stream = stream
        self.started = time.monotonic()
        self._next = 0

    def update(self, step: int, total: int) -> None:
        if step < self._next:
            return
        self._next = step + max(total // 200, 1)
        self._draw(step, total)

    def done(self, total: int) -> None:
        self._draw(total, total)
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, step: int, total: int) -> None:
        share = step / total if total else 1.0
        bar = "#" * int(share * 30)
        self.stream.write(
            f"\raccel-sim: {self.label:<16} [{bar:<30}] {share:6.1%} "
            f"{step}/{total} events, {time.monotonic() - self.started:.0f} s")
        self.stream.flush()


# -- command line -----------------------------------------------------------

def _table(results: dict[str, Result]) -> str:
    keys = ["region_rejection_rate", "function_rejection_rate",
            "utilisation", "fragmentation", "bound_fraction"]
    heads = ["policy", "region rej.", "function rej.", "utilisation",
             "fragmentation", "of bound"]
    if any(r.migrations for r in results.values()):
        keys += ["migrations", "migrated_share"]
        heads += ["migrations", "migrated"]
    if any("required_rejection_rate" in r.metrics for r in results.values()):
        keys += ["required_rejection_rate", "preferred_near_share",
                 "whole_free_nodes"]
        heads += ["required rej.", "preferred near", "free nodes"]
    lines = ["  ".join(f"{h:>15}" for h in heads)]
    for name, res in results.items():
        cells = [name] + [f"{res.metrics[k]:.4f}" if isinstance(
            res.metrics[k], float) else str(res.metrics[k]) for k in keys]
        lines.append("  ".join(f"{c:>15}" for c in cells))
    return "\n".join(lines)


def _plot(results: dict[str, Result], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    fig, (top, bottom) = pyplot.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, res in results.items():
        xs = [t for t, _, _ in res.timeline]
        top.plot(xs, [r for _, r, _ in res.timeline], label=name)
        bottom.plot(xs, [f for _, _, f in res.timeline], label=name)
    top.set_ylabel("rejection rate")
    bottom.set_ylabel("fragmented functions")
    bottom.set_xlabel("time")
    top.legend()
    fig.savefig(path)


class _Formatter(argparse.HelpFormatter):
    """argparse's, without breaking a policy's name at its hyphens."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width,
                             break_on_hyphens=False)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (argparse's own print the usage too)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= MAX_FILL:
        raise ValueError(text)
    return value


# How argparse names the expected type.
_share.__name__ = f"share (> 0, at most {MAX_FILL:g})"


def _soft_groups(text: str) -> tuple[float, int, str]:
    share, _, rest = text.partition(":")
    size, _, policy = rest.partition(":")
    try:
        value = (float(share), int(size), policy)
    except ValueError:
        value = None
    if (value is None or not 0 <= value[0] <= 1 or value[1] < 1
            or policy not in SOFT_POLICIES):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not SHARE:SIZE:POLICY (a share from 0 to 1, a "
            f"whole number of members >= 1, "
            f"{' or '.join(SOFT_POLICIES)})")
    return value


def _multiplier(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_multiplier.__name__ = "finite number"


def _interval(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise ValueError(text)
    return value


_interval.__name__ = "number above 0"


def _moves(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


_moves.__name__ = "whole number, 0 or more"


def check_plot_target(path: str) -> None:
    """Refuse before the run what would fail after it."""
    folder = os.path.dirname(path) or "."
    if os.path.isdir(path):
        raise SpecError(f"--plot {path} is a folder; expected a file name")
    if not os.path.isdir(folder):
        raise SpecError(f"--plot {path}: folder {folder} " + (
            "is not a folder" if os.path.exists(folder)
            else "does not exist"))
    if not os.access(folder, os.W_OK):
        raise SpecError(f"--plot {path}: folder {folder} is not writable")
    if importlib.util.find_spec("matplotlib") is None:
        raise SpecError("--plot needs matplotlib, which is not installed")


def build_parser() -> argparse.ArgumentParser:
    """accel-sim's parser (also the source of its CLI reference)."""
    parser = _Parser(
        prog="accel-sim", formatter_class=_Formatter,
        description="Replay accelerator requests on a simulated cloud "
        "under several placement policies, side by side.")
    parser.add_argument("--cluster", default="meeting", help=CLUSTERS)
    parser.add_argument("--workload", default="meeting", help=WORKLOADS)
    parser.add_argument("--mode", choices=("replay", "fill"),
                        default="replay",
                        help="replay: arrivals and departures in time order; "
                             "fill: requests that never leave, drawn until "
                             "--fill-to")
    parser.add_argument("--fill-to", type=_share, default=1.3,
                        help="fill mode: stop once the requested functions "
                             f"reach this share of capacity (> 0, at most "
                             f"{MAX_FILL:g})")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the workload's random draws")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="comma-separated, from: " + ", ".join(POLICIES)
                        + " (stock-nova: nova's default weighers and "
                        "placement's order; placement-order: first fit; "
                        "host-fragmentation (the scheduler's default), "
                        "fragmentation, "
                        "best-fit: the filter's policies, the first with "
                        "our weigher among nova's; "
                        "host-fragmentation-no-numa-term: the first "
                        "without its NUMA node term, for numa workloads; "
                        "fgd, paper-best-fit: the FGD paper's)")
    parser.add_argument("--weight-multiplier", type=_multiplier,
                        default=accel_conf.DEFAULT_WEIGHT_MULTIPLIER,
                        help="host-fragmentation: our weigher's multiplier "
                             "beside nova's RAM and CPU weighers (1.0 "
                             "each); above their 2.0 it decides "
                             "([accel_packing] weight_multiplier, default "
                             "%(default)s)")
    parser.add_argument("--plain-requests",
                        choices=[c for c, _ in accel_conf.PLAIN_REQUESTS],
                        default=accel_conf.PREFER_PLAIN_HOSTS,
                        help="host-fragmentation: what our weigher does with "
                             "a request that asks no accelerator "
                             "([accel_packing] plain_requests, default "
                             "%(default)s)")
    parser.add_argument("--defrag-every", type=_interval, metavar="T",
                        help="run the defragmentation planner every T "
                             "seconds of the replay (fill mode: every T "
                             "arrivals), freeing as many whole regions of "
                             "the whole-region requests' size as such "
                             "requests were refused since the last time")
    parser.add_argument("--defrag-moves", type=_moves, default=0,
                        metavar="M",
                        help="with --defrag-every: at most M migrations "
                             "each time")
    parser.add_argument("--soft-groups", type=_soft_groups,
                        metavar="SHARE:SIZE:POLICY",
                        help="make SHARE (0 to 1) of the requests that ask "
                             "accelerators members of soft server groups of "
                             "SIZE, POLICY soft-affinity or "
                             "soft-anti-affinity; stock-nova and "
                             "host-fragmentation weigh them with nova's hint "
                             "weigher, ours only among the hosts it puts "
                             "first")
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON document")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="write a chart of each policy's rejection rate "
                             "and fragmented functions over time (needs "
                             "matplotlib)")
    parser.add_argument("--progress", action="store_true",
                        help="draw a progress bar on stderr even when it is "
                             "not a terminal")
    parser.add_argument("--no-index", dest="indexed", action="store_false",
                        help="look at every host for every request (the "
                             "reference the host index must agree with)")
    return parser


def main(argv: Sequence[str] | None = None, out=None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)
    policies = [p.strip() for p in args.policies.split(",")]
    unknown = [p or "(empty)" for p in policies if p not in POLICIES]
    if unknown:
        parser.error(f"unknown policies: {', '.join(unknown)}; expected "
                     f"some of {', '.join(POLICIES)}")
    if bool(args.defrag_every) != bool(args.defrag_moves):
        parser.error("--defrag-every and --defrag-moves go together")
    try:
        if args.plot:
            check_plot_target(args.plot)
        hosts = build_cluster(args.cluster)
        sizes = [r.capacity for h in hosts for r in h.regions]
        if not sizes:
            raise SpecError(f"cluster {args.cluster!r} has no accelerators")
        requests = build_workload(
            args.workload, args.seed,
            max(set(sizes), key=lambda s: (sizes.count(s), s)),
            timed=args.mode == "replay")
        if args.soft_groups:
            requests = soft_groups(requests, *args.soft_groups, args.seed)
        check_numa_policies(policies, requests)
    except SpecError as exc:
        parser.exit(2, f"accel-sim: {exc}\n")
    results = {}
    draw = args.progress or sys.stderr.isatty()
    for name in policies:
        if not draw:
            print(f"accel-sim: {name}...", file=sys.stderr)
        results[name] = simulate(
            args.cluster, requests, name, args.mode, args.fill_to, args.seed,
            indexed=args.indexed,
            progress=Progress(name, sys.stderr) if draw else None,
            multiplier=args.weight_multiplier,
            plain_requests=args.plain_requests,
            defrag_every=args.defrag_every, defrag_moves=args.defrag_moves)
    if args.json:
        json.dump({"policies": {n: r.metrics for n, r in results.items()}},
                  out, indent=1, sort_keys=True)
        out.write("\n")
    else:
        out.write(_table(results) + "\n")
    if args.plot:
        _plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
