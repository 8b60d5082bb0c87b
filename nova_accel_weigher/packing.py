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

"""How well an allocation candidate packs: the scoring functions.

The filter orders a host's allocation candidates with them, the weigher
ranks hosts with the best candidate's score, and the simulator replays
workloads through them. They are pure: usage comes in as data, a score
goes out.

``host-fragmentation`` (the default; ``placement_score``)
    FGD (Weng et al., USENIX ATC 2023) over the whole host: the free
    accelerator capacity the expected task mix could no longer use, its
    CPU, memory and all its regions counted, plus the capacity its CPU
    can no longer feed; a candidate scores how little it grows that,
    best fit breaking ties (``best_fit``), and the weigher gives the
    same weight to every host that scores best (``decisive_weights``),
    so that where the scores do not differ nova's own weighers decide.
    A request with a NUMA topology (``NumaAsk``) also breaks ties by the
    NUMA node already in use, and under its affinity policy drops or
    ranks placements by how near the guest they are.

Two region policies share one shape of score (higher is better), over the
regions one candidate touches (``score``):

``best-fit``
    Never open a fresh region while a used one fits, then leave the least
    free in the regions touched, then prefer the fuller card, then the
    NUMA nodes near the guest.
``fragmentation``
    In the spirit of FGD: prefer the placement that least grows the free
    capacity the expected request mix can no longer use; ties fall back
    to best fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter, methodcaller
from typing import Any, NamedTuple

from accel_inventory import numa
from accel_inventory.contract import ACCEL_PREFIX
# Re-exported: the scheduler's modules and the simulator name them here.
from accel_inventory.fragmentation import (  # noqa: F401
    HostRoom, TaskKind, TaskMix, cpu_shortfall, fragmentation,
    host_fragmentation, kinds_fit, kinds_loss, parse_task_mix,
    region_losses, task_mix)

POLICY_BEST_FIT = "best-fit"
POLICY_FRAGMENTATION = "fragmentation"
POLICY_HOST_FRAGMENTATION = "host-fragmentation"
# Scored by ``score``, one candidate's regions at a time.
REGION_POLICIES = (POLICY_BEST_FIT, POLICY_FRAGMENTATION)
POLICIES = REGION_POLICIES + (POLICY_HOST_FRAGMENTATION,)


@dataclass(frozen=True)
class RegionUsage:
    """What placement says of one region provider before the claim.

    ``capacity`` is what may be allocated at all: (total - reserved) x
    allocation ratio. ``card`` names the card (the parent provider), so
    regions of one card can be counted together.
    """

    capacity: int
    used: int
    card: str
    numa_node: int | None = None
    degraded: bool = False

    @property
    def free(self) -> int:
        return max(self.capacity - self.used, 0)


@dataclass(frozen=True)
class RequestShape:
    """One kind of request in the expected mix.

    ``whole_region`` shapes need a region of exactly ``functions`` functions
    (of any size when ``functions`` is ``ANY_SIZE``) with nothing used; the
    others need ``functions`` free functions in one region.
    """

    functions: int
    whole_region: bool
    weight: float


# A whole-region shape of every region's own size: what listing every
# region size the cloud has as a whole-region shape comes to when regions
# are scored one at a time (``fragment``).
ANY_SIZE = 0
# What a cloud is asked when the operator says nothing: one function, two,
# and whole regions (of every size the cloud has; ``cloud_mix``).
FUNCTION_SHAPES = ((1, 0.4), (2, 0.2))
WHOLE_REGIONS_WEIGHT = 0.4
DEFAULT_MIX: tuple[RequestShape, ...] = (
    *(RequestShape(n, False, w) for n, w in FUNCTION_SHAPES),
    RequestShape(ANY_SIZE, True, WHOLE_REGIONS_WEIGHT),
)


class Score(NamedTuple):
    """Compared as a tuple, higher is better: the first field that differs
    decides. ``tightness`` is minus the functions left free in the regions
    touched, so a tighter fit is higher."""

    primary: float
    tightness: float
    card_fill: float
    numa_match: float

    @property
    def value(self) -> float:
        """One number for the weigher; it keeps the tuple's order in the
        usual range (fewer than 1000 functions left free per request)."""
        return (self.primary * 1_000_000 + self.tightness * 1_000
                + self.card_fill * 10 + self.numa_match)


def accel_class_test(configured: Sequence[str] | None = None
                     ) -> Callable[[str], bool]:
    """Whether a resource class is one whose providers are regions: the
    ``configured`` classes, or without any every ``CUSTOM_ACCEL_`` class.
    A C-level callable, since region_demand asks it for every resource
    class of every candidate of every host."""
    if configured:
        return frozenset(configured).__contains__
    return methodcaller("startswith", ACCEL_PREFIX)


def is_accel_class(resource_class: str,
                   configured: Sequence[str] | None = None) -> bool:
    return accel_class_test(configured)(resource_class)


def region_demand(candidate: Mapping[str, Any],
                  configured: Sequence[str] | None = None) -> dict[str, int]:
    """Functions a nova allocation candidate takes from each region provider.

    ``candidate`` is nova's ``{'allocations': {rp: {'resources': {RC: n}}}}``.
    """
    is_accel = accel_class_test(configured)
    demand: dict[str, int] = {}
    for rp_uuid, alloc in candidate.get("allocations", {}).items():
        for rc, amount in alloc.get("resources", {}).items():
            if is_accel(rc):
                demand[rp_uuid] = demand.get(rp_uuid, 0) + int(amount)
    return demand


def fragment(capacity: int, free: int,
             mix: Iterable[RequestShape] = DEFAULT_MIX) -> float:
    """Free functions of one region that the request mix cannot use,
    weighted by how often each shape is asked for."""
    total = 0.0
    for shape in mix:
        if shape.whole_region:
            usable = free == capacity and shape.functions in (ANY_SIZE,
                                                               capacity)
            total += shape.weight * (0 if usable else free)
        else:
            total += shape.weight * (free % shape.functions)
    return total


def card_fill(usage: Mapping[str, RegionUsage]) -> dict[str, float]:
    """Share of each card's capacity already used."""
    used: dict[str, int] = {}
    capacity: dict[str, int] = {}
    for region in usage.values():
        used[region.card] = used.get(region.card, 0) + region.used
        capacity[region.card] = capacity.get(region.card, 0) + region.capacity
    return {card: (used[card] / capacity[card]) if capacity[card] else 1.0
            for card in capacity}


def score(demand: Mapping[str, int],
          usage: Mapping[str, RegionUsage],
          *,
          policy: str = POLICY_BEST_FIT,
          mix: Sequence[RequestShape] = DEFAULT_MIX,
          local_nodes: frozenset[int] | None = None,
          fill_by_card: Mapping[str, float] | None = None) -> Score | None:
    """Score one candidate's demand on its regions; None if unacceptable.

    A candidate is unacceptable when it touches a degraded region or asks a
    region for more than it has free (usage is fresher than the candidate
    list, which nova does not refresh between the instances of one
    multi-create request). Regions absent from ``usage`` are unknown to us
    and scored as neutral, so missing data never rejects a candidate.
    ``fill_by_card`` may be passed in when many candidates of one host are
    scored against the same usage. ``local_nodes`` are the NUMA nodes
    near the guest (``numa.local_nodes``), whose regions the last term
    prefers.
    """
    if policy not in REGION_POLICIES:
        raise ValueError(f"unknown region packing policy {policy!r}")
    if fill_by_card is None:
        fill_by_card = card_fill(usage)
    fresh = 0
    leftover = 0
    frag_delta = 0.0
    fills: list[float] = []
    numa_hits = 0
    known = 0
    for rp_uuid, amount in demand.items():
        region = usage.get(rp_uuid)
        if region is None:
            continue
        if region.degraded or amount > region.free:
            return None
        known += 1
        if region.used == 0:
            fresh += 1
        leftover += region.free - amount
        if policy == POLICY_FRAGMENTATION:
            frag_delta += (fragment(region.capacity, region.free - amount, mix)
                           - fragment(region.capacity, region.free, mix))
        fills.append(fill_by_card.get(region.card, 0.0))
        if local_nodes and numa.is_local(region.numa_node, local_nodes):
            numa_hits += 1
    if not known:
        return Score(0.0, 0.0, 0.0, 0.0)
    primary = -frag_delta if policy == POLICY_FRAGMENTATION else -fresh
    return Score(primary=primary,
                 tightness=-leftover,
                 card_fill=sum(fills) / len(fills),
                 numa_match=numa_hits / known)


def rank(demands: Sequence[Mapping[str, int]],
         usage: Mapping[str, RegionUsage],
         *,
         policy: str = POLICY_BEST_FIT,
         mix: Sequence[RequestShape] = DEFAULT_MIX,
         local_nodes: frozenset[int] | None = None
         ) -> list[tuple[int, Score]]:
    """Indexes of the acceptable demands, best first, with their scores.

    The sort is stable, so equal scores keep placement's order.
    """
    fills = card_fill(usage)
    scored = []
    for index, demand in enumerate(demands):
        s = score(demand, usage, policy=policy, mix=mix,
                  local_nodes=local_nodes, fill_by_card=fills)
        if s is not None:
            scored.append((index, s))
    scored.sort(key=lambda item: item[1], reverse=True)
    return scored


def parse_mix(spec: Mapping[str, str] | Iterable[str]
              ) -> tuple[RequestShape, ...]:
    """Parse ``{'1': '0.4', '2': '0.2', 'region4': '0.4'}`` (an oslo.config
    DictOpt) into request shapes; weights are normalised to sum to 1.
    Empty: ``DEFAULT_MIX``."""
    if not spec:
        return DEFAULT_MIX
    items = spec.items() if isinstance(spec, Mapping) else (
        entry.split(":", 1) for entry in spec)
    shapes = []
    for key, weight in items:
        key = key.strip()
        whole = key.startswith("region")
        size = int(key[len("region"):] if whole else key)
        w = float(weight)
        if size < 1 or w < 0:
            raise ValueError(f"bad request mix entry {key}:{weight}")
        shapes.append((size, whole, w))
    total = sum(w for _, _, w in shapes)
    if not shapes or total <= 0:
        raise ValueError("request mix needs at least one positive weight")
    return tuple(RequestShape(size, whole, w / total)
                 for size, whole, w in shapes)


# -- host level ---------------------------------------------------------------
# The ``host-fragmentation`` policy. The filter orders a host's candidates
# with ``rank_placements`` (rooms.py reads the host from the request's
# provider summaries), the weigher weighs the best hosts with
# ``decisive_weights`` (``plain_host_weights`` for requests without
# accelerators, when so configured), and the simulator goes through them.
# FGD's measure itself, ``host_fragmentation``, and the task mix it is taken
# against are accel_inventory.fragmentation's: the agent exports it too.


# A gradient of this many units already scores 0 or 100.
_STEEPEST = 50.0


class Placement(NamedTuple):
    """What one allocation candidate takes of a host: CPU, memory and an
    amount from each region it touches, by the region's index."""

    cpu: int
    memory: int
    taken: Mapping[int, int]


def placement_score(room: HostRoom, placement: Placement, mix: TaskMix,
                    before: float | None = None) -> int | None:
    """The policy: how well ``placement`` packs the host, higher is
    better; None if it does not fit. FGD's ``int(sigmoid(-gradient /
    unit) * 100)``: the rounding makes placements of near gradients tie,
    and ties filled in a fixed host order keep whole hosts free (without
    it FGD loses 2.5 points on the openb trace). ``before`` (the room's
    ``host_fragmentation``) may be passed in when many placements on one
    host are scored."""
    if room.cpu < placement.cpu or room.memory < placement.memory:
        return None
    free = list(room.free)
    for index, amount in placement.taken.items():
        if amount > free[index]:
            return None
        free[index] -= amount
    if before is None:
        before = host_fragmentation(room, mix)
    after = host_fragmentation(HostRoom(
        room.cpu - placement.cpu, room.memory - placement.memory,
        tuple(free), room.capacity, room.model), mix)
    return gradient_score(before, after, mix)


def gradient_score(before: float, after: float, mix: TaskMix) -> int:
    """``placement_score`` of a placement that takes the host's
    fragmentation from ``before`` to ``after``."""
    gradient = max(-_STEEPEST, min(_STEEPEST, (after - before) / mix.unit))
    return int(100 / (1 + math.exp(gradient)))


@dataclass(frozen=True)
class NumaAsk:
    """What a request with a NUMA topology (pinned CPUs,
    ``hw:numa_nodes``, hugepages) asks of one host's regions.

    ``nodes`` is each region's NUMA node (None: unknown), in the room's
    order. ``local`` are the nodes near the guest (``numa.local_nodes``
    of nova's prediction of its host cells), None when its flavor names
    no affinity policy (or nova predicts no fit); then ``strict`` drops
    every placement that takes from a region elsewhere (``required``,
    ``socket``) and ``prefer`` ranks placements by what they take near
    the guest before packing (``preferred``). ``pack`` adds the NUMA
    node term to ``best_fit`` (the simulator compares without it)."""

    nodes: tuple[int | None, ...]
    local: frozenset[int] | None = None
    strict: bool = False
    prefer: bool = False
    pack: bool = True


# What best_fit says of a placement that takes no accelerator: nothing.
NO_FIT = (0, 0, 0, 0)


def best_fit(room: HostRoom, placement: Placement,
             cpu_aware: bool = False,
             numa_ask: NumaAsk | None = None) -> tuple[int, ...]:
    """What breaks ties between placements ``placement_score`` rates
    alike, higher is better: the least accelerator capacity left on the
    host (the fuller host: the same for every candidate of one host, so
    it only ranks hosts), then the least left free in the regions taken
    from (the smallest region that fits), the most already used in them
    (the fuller region) and the smallest of them, so that where packing's
    outcome differs, placement's arbitrary order never decides. A
    placement that takes no accelerator has no opinion (``NO_FIT``),
    but on a host with regions under a mix whose accelerator requests
    ask CPU (``cpu_aware``: its ``cpu_per_unit``) it fits best where it
    leaves the least CPU, so that CPU stays together where accelerators
    need it.

    For a request with a NUMA topology (``numa_ask``), a placement that
    takes accelerators is also rated, after the region terms, by the
    NUMA nodes already in use, then the least left free on them
    (``numa_node_fill``), so that a fresh region is opened on a node
    that already serves guests and whole nodes' accelerators stay free
    for the requests that need them near their own cells."""
    left = used = size = taken = 0
    for index, amount in placement.taken.items():
        if not amount:
            continue
        free, capacity = room.free[index], room.capacity[index]
        left += free - amount
        used += capacity - free
        size += capacity
        taken += amount
    if not taken:
        if cpu_aware and room.free:
            return cpu_fit(room.cpu, placement.cpu)
        return NO_FIT
    fit = (taken - sum(room.free), -left, used, -size)
    if numa_ask is None or not numa_ask.pack:
        return fit
    in_use, node_left = numa_node_fill(room, placement, numa_ask.nodes)
    return (*fit, in_use, -node_left)


def cpu_fit(cpu: int, taken: int) -> tuple[int, ...]:
    """``best_fit`` of a placement that takes ``taken`` CPU and no
    accelerator from a host with regions and ``cpu`` left."""
    return (taken - cpu, 0, 0, 0)


def numa_node_fill(room: HostRoom, placement: Placement,
                   nodes: Sequence[int | None]) -> tuple[int, int]:
    """Of the NUMA nodes ``placement`` takes regions from (those whose
    node is known): how many already have accelerator capacity in use,
    and what the placement leaves free on them."""
    touched = {nodes[index] for index, amount in placement.taken.items()
               if amount} - {None}
    if not touched:
        return 0, 0
    in_use = left = 0
    for node in touched:
        node_used = node_free = 0
        for index, region_node in enumerate(nodes):
            if region_node == node:
                node_free += room.free[index]
                node_used += room.capacity[index] - room.free[index]
        in_use += node_used > 0
        left += node_free
    return in_use, left - sum(amount for index, amount in
                              placement.taken.items()
                              if nodes[index] in touched)


def numa_affinity(placement: Placement, numa_ask: NumaAsk
                  ) -> tuple[int, int]:
    """What ``placement`` takes from regions near the guest, and in all."""
    local = numa_ask.local or frozenset()
    near = total = 0
    for index, amount in placement.taken.items():
        total += amount
        if numa.is_local(numa_ask.nodes[index], local):
            near += amount
    return near, total


def numa_key(placement: Placement, numa_ask: NumaAsk | None
             ) -> tuple[int, ...] | None:
    """What the request's affinity policy puts before packing in a
    placement's score: None when ``strict`` refuses it, ``(near,)``
    under ``prefer`` (what it takes near the guest), else nothing."""
    if numa_ask is None or numa_ask.local is None:
        return ()
    if not (numa_ask.strict or numa_ask.prefer):
        return ()
    near, total = numa_affinity(placement, numa_ask)
    if numa_ask.strict:
        return None if near < total else ()
    return (near,)


def rank_placements(room: HostRoom, placements: Sequence[Placement],
                    mix: TaskMix, numa_ask: NumaAsk | None = None
                    ) -> list[tuple[int, tuple[int, ...]]]:
    """Indexes of the placements that fit, best first, with their scores:
    ``placement_score`` then ``best_fit``, compared as a tuple (after
    ``numa_key``, which may also refuse a placement, for a request with a
    NUMA topology). Equal scores keep the given order (the sort is
    stable); they pack alike."""
    before = host_fragmentation(room, mix)
    cpu_aware = mix.cpu_per_unit > 0
    scored = []
    for index, placement in enumerate(placements):
        first = numa_key(placement, numa_ask)
        if first is None:
            continue
        s = placement_score(room, placement, mix, before)
        if s is not None:
            scored.append((index, (*first, s, *best_fit(
                room, placement, cpu_aware, numa_ask))))
    scored.sort(key=itemgetter(1), reverse=True)
    return scored


def decisive_weights(scores: Sequence[Any]) -> list[float]:
    """The weigher's weights: 1.0 for every host whose score is the best,
    0.0 for the others and for those without a score. Nova normalises
    each weigher's weights to [0, 1] and adds them times their
    multipliers: where every host scores alike the weights are equal and
    normalise to 0, so nova's own weighers decide exactly as without
    this one (among equally best hosts too); else the best hosts gain the
    multiplier, which decides whenever it exceeds what the other
    weighers' multipliers can add between hosts (RAM and CPU: 2.0 by
    default)."""
    best = max((s for s in scores if s is not None), default=None)
    if best is None:
        return [0.0] * len(scores)
    return [1.0 if s is not None and s == best else 0.0 for s in scores]


def plain_host_weights(scores: Sequence[Any], accelerated: Sequence[bool]
                       ) -> list[float]:
    """``prefer-plain-hosts``: the weights for a request without
    accelerators. Hosts without accelerators weigh 1.0 (nova's weighers
    decide among them); hosts with accelerators weigh half their
    ``decisive_weights`` among themselves, so that where no plain host
    is left the server goes where it strands the least."""
    among = decisive_weights([s for s, a in zip(scores, accelerated,
                                                strict=True) if a])
    weights = []
    for has_accelerators in accelerated:
        weights.append(among.pop(0) / 2 if has_accelerators else 1.0)
    return weights


def mix_of_shapes(shapes: Iterable[RequestShape]) -> TaskMix:
    """The host-level mix of a ``request_mix`` (no CPU or memory)."""
    return task_mix(TaskKind(0, 0, s.functions, 1, frozenset(), s.weight,
                             s.whole_region) for s in shapes)


def cloud_mix(sizes: Iterable[int]) -> TaskMix:
    """The host-level mix when the operator configures none: one and two
    functions, and a whole region of every size in ``sizes`` (the regions
    the request's provider summaries hold), the whole regions sharing
    their weight equally, so that a request for two functions leaves a
    2-function region's neighbours of 4 and 8 whole."""
    whole = sorted({size for size in sizes if size > 0})
    return task_mix([
        *(TaskKind(0, 0, n, 1, frozenset(), w) for n, w in FUNCTION_SHAPES),
        *(TaskKind(0, 0, size, 1, frozenset(),
                   WHOLE_REGIONS_WEIGHT / len(whole), True)
          for size in whole)])
