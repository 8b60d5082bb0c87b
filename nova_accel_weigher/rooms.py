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

"""Hosts as the ``host-fragmentation`` policy sees them, from a request's
provider summaries.

Placement's summaries hold every provider of each tree in its answer
(``_build_provider_summaries`` reads the usage of whole trees by their
roots), for requests without accelerators too: a host's CPU and memory
left are its root's VCPU and MEMORY_MB, its regions every provider of an
accelerator class in the tree. ``HostRooms`` reads every host's room in
one pass (``read_rooms``), with what the request's earlier instances
claimed taken off, and scores allocation candidates as
``packing.rank_placements`` does, remembering what the regions' states
alone decide: the filter orders each host's candidates with it, the
weigher scores the candidate nova will claim. For a request with a NUMA
topology it also reads each region's NUMA node (its trait) and ranks with
the request's ``packing.NumaAsk``. Per request (a local of a filter or
weigher pass), never shared.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from accel_inventory.contract import DEGRADED_TRAIT, numa_node_among
from nova_accel_weigher import packing, usage

LOG = logging.getLogger(__name__)

CPU_CLASS = "VCPU"
MEMORY_CLASS = "MEMORY_MB"


@dataclass(frozen=True)
class MixRule:
    """The task mix a pass scores with: the operator's (``fixed``), or
    without one the cloud's own, ``packing.cloud_mix`` of the region
    sizes the request's provider summaries hold."""

    fixed: packing.TaskMix | None = None

    def of(self, sizes: Iterable[int]) -> packing.TaskMix:
        if self.fixed is not None:
            return self.fixed
        return packing.cloud_mix(sizes)


@functools.lru_cache(maxsize=8)
def configured_mix(task_mix: tuple[str, ...],
                   request_mix: tuple[tuple[str, str], ...]
                   ) -> MixRule | None:
    """``[accel_packing] task_mix``, or without it the shapes of
    ``request_mix`` (no CPU or memory), or without either the cloud's;
    None, logged once, if it does not parse. Remembered: the options
    rarely change and every pass asks."""
    try:
        if task_mix:
            return MixRule(packing.parse_task_mix(task_mix))
        if request_mix:
            return MixRule(packing.mix_of_shapes(
                packing.parse_mix(dict(request_mix))))
        return MixRule()
    except ValueError as exc:
        LOG.error("[accel_packing] %s; host-fragmentation falls back to "
                  "fragmentation until it is fixed.", exc)
        return None


def mix_from(opts) -> MixRule | None:
    """The mix of the ``[accel_packing]`` options ``opts``; None if they
    do not give one."""
    return configured_mix(tuple(opts.task_mix),
                          tuple(sorted(opts.request_mix.items())))


def claimed_by_provider(claimed: Sequence[Mapping[str, Any]]
                        ) -> dict[str, dict[str, int]]:
    """What the allocation requests claimed so far take, per provider and
    resource class (every class: CPU and memory count here too)."""
    amounts: dict[str, dict[str, int]] = {}
    for allocation_request in claimed:
        for rp, alloc in allocation_request["allocations"].items():
            by_rc = amounts.setdefault(rp, {})
            for rc, amount in alloc["resources"].items():
                by_rc[rc] = by_rc.get(rc, 0) + int(amount)
    return amounts


# What a provider nothing was claimed from has claimed.
_NOTHING: Mapping[str, int] = {}


def read_rooms(summaries: Mapping[str, Any], is_accel: Callable[[str], bool],
               claimed: Mapping[str, Mapping[str, int]],
               numa_nodes: bool = False
               ) -> dict[str, tuple[int, int, tuple, dict[str, int],
                                    tuple[int | None, ...]]]:
    """Every tree's room, in one pass over the summaries: per root, its
    CPU and memory left, its regions' state (each region's free capacity,
    their capacities, their model), each region provider's index in it
    and, with ``numa_nodes``, each region's NUMA node (its trait; else
    nothing). A region is a provider with inventory of an accelerator
    class; its model is that class; a degraded region (or card) has
    nothing free; ``claimed`` (see claimed_by_provider) is taken off. One
    pass over some 10,000 providers at 1,000 hosts: plain loops, no call
    per provider."""
    # Per root: CPU, memory, free, capacity, model, region indexes and
    # nodes, filled as its providers come (a tree's providers mostly
    # follow each other: the last root read is kept at hand).
    reading: dict[str, list] = {}
    last_root = room = None
    card, card_degraded = None, False
    for rp, summary in summaries.items():
        resources = summary.get("resources")
        if not resources:
            continue
        root = summary.get("root_provider_uuid") or rp
        if root != last_root:
            last_root = root
            room = reading.get(root)
            if room is None:
                room = reading[root] = [0, 0, [], [], "", {}, []]
        region_capacity = region_used = 0
        region_class = None
        # Placement's summaries hold integers, read as they are.
        for rc, r in resources.items():
            if rc == CPU_CLASS:
                room[0] += r["capacity"] - r["used"]
            elif rc == MEMORY_CLASS:
                room[1] += r["capacity"] - r["used"]
            elif is_accel(rc):
                region_capacity += r["capacity"]
                region_used += r["used"]
                region_class = rc
        if claimed:
            # Only what the provider has: a claim was drawn from it.
            for rc, amount in claimed.get(rp, _NOTHING).items():
                if rc not in resources:
                    continue
                if rc == CPU_CLASS:
                    room[0] -= amount
                elif rc == MEMORY_CLASS:
                    room[1] -= amount
                elif is_accel(rc):
                    region_used += amount
        if region_class is None:
            continue
        parent = summary.get("parent_provider_uuid") or rp
        if parent != card:
            card = parent
            card_degraded = DEGRADED_TRAIT in (
                summaries.get(parent, _NOTHING).get("traits") or ())
        free = room[2]
        room[5][rp] = len(free)
        traits = summary.get("traits") or ()
        free.append(0 if card_degraded or DEGRADED_TRAIT in traits
                    else max(region_capacity - region_used, 0))
        room[3].append(region_capacity)
        if not room[4]:
            room[4] = region_class
        if numa_nodes:
            room[6].append(numa_node_among(traits))
    return {root: (max(cpu, 0), max(memory, 0),
                   (tuple(free), tuple(capacity), model), index,
                   tuple(nodes))
            for root, (cpu, memory, free, capacity, model, index, nodes)
            in reading.items()}


class UnreadableSummaries(ValueError):
    """The request's provider summaries are not as placement gives them."""


def for_request(request: usage.RequestPlacement,
                resource_classes: Sequence[str], mix: MixRule,
                numa_nodes: bool = False) -> HostRooms:
    """The HostRooms of the instance of ``request`` being placed: the
    filter's and the weigher's passes over it share one reading of the
    summaries (and one word if they cannot be read); the next instance
    of a multi-create, with one more claim, gets its own. ``numa_nodes``
    (a request with a NUMA topology) reads the regions' NUMA nodes too."""
    key = (tuple(resource_classes), mix, len(request.claimed), numa_nodes)
    if request.rooms is None or request.rooms[0] != key:
        request.rooms = (key, HostRooms(request, resource_classes, mix,
                                        numa_nodes))
    return request.rooms[1]


class HostRooms:
    """One pass's rooms and scores under ``host-fragmentation``.

    The rooms of every tree are read at the first question
    (``read_rooms``), and with them the mix when it is the cloud's.
    Hosts differ in CPU and memory left, but across a thousand hosts the
    same few states of the regions recur: each gets a number, and what
    ``packing.placement_score`` works out of it alone
    (``packing.region_losses``, the regions after a placement and its
    ``packing.best_fit``) is remembered by it, as is a host's ranking by
    all it depends on (see ``rank``). Scores and order are those of
    ``packing.rank_placements`` on the host's room."""

    __slots__ = ("request", "mix", "_rule", "_is_accel", "_claimed",
                 "_numa_nodes", "_hosts", "_unreadable", "_cpu_blind",
                 "_numbers", "_regions", "_losses", "_after", "_kinds_loss",
                 "_ranks")

    def __init__(self, request: usage.RequestPlacement,
                 resource_classes: Sequence[str], mix: MixRule,
                 numa_nodes: bool = False):
        self.request = request
        self._rule = mix
        self._numa_nodes = numa_nodes
        # Known once the summaries are read.
        self.mix: packing.TaskMix | None = None
        self._is_accel = packing.accel_class_test(resource_classes)
        self._claimed = claimed_by_provider(request.claimed)
        self._hosts: dict[str, tuple] | None = None
        # Why the summaries could not be read, once found: every later
        # question gets the same answer without reading them again.
        self._unreadable: UnreadableSummaries | None = None
        # Whether the mix asks no CPU or memory: a host's CPU and memory
        # then only say which placements fit.
        self._cpu_blind = False
        # Per regions' state, its number; per number, the state and its
        # region_losses; per (number, regions taken, NUMA ask), the number
        # after, the placement's best fit and what its NUMA ask puts
        # first.
        self._numbers: dict[tuple, int] = {}
        self._regions: list[tuple] = []
        self._losses: list[tuple[int, tuple[int, ...]]] = []
        self._after: dict[tuple, int | None] = {}
        # Per (number, kinds that fit), kinds_loss; per host context and
        # candidates' shapes, the ranking.
        self._kinds_loss: dict[tuple, float] = {}
        self._ranks: dict[tuple, list[tuple[int, int]]] = {}

    def _number(self, regions: tuple) -> int:
        number = self._numbers.get(regions)
        if number is None:
            number = self._numbers[regions] = len(self._regions)
            self._regions.append(regions)
            self._losses.append(packing.region_losses(*regions, self.mix))
        return number

    def _read(self) -> dict[str, tuple]:
        if self._unreadable is not None:
            raise self._unreadable
        number = self._number
        try:
            rooms = read_rooms(self.request.summaries, self._is_accel,
                               self._claimed, self._numa_nodes)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            self._unreadable = UnreadableSummaries(
                f"the request's provider summaries are not as placement "
                f"gives them ({type(exc).__name__}: {exc})")
            LOG.warning("%s; AccelTopologyFilter keeps placement's order and "
                        "AccelPackingWeigher weighs every host 0 for this "
                        "request.", self._unreadable)
            raise self._unreadable from None
        self._know_mix(rooms.values())
        self._hosts = {
            root: (cpu, memory, number(regions), index, nodes)
            for root, (cpu, memory, regions, index, nodes) in rooms.items()}
        return self._hosts

    def _know_mix(self, rooms: Iterable[tuple]) -> None:
        capacities = {room[2][1] for room in rooms}
        mix = self.mix = self._rule.of(
            size for sizes in capacities for size in sizes)
        self._cpu_blind = mix.cpu_per_unit <= 0 and not any(
            kind.cpu or kind.memory for kind in mix.kinds)

    def accelerated(self, candidates: Sequence[Mapping[str, Any]]
                    ) -> bool | None:
        """Whether the host of ``candidates`` has regions; None when the
        summaries do not hold it."""
        root = self.root(candidates[0]) if candidates else None
        if root is None:
            return None
        hosts = self._hosts if self._hosts is not None else self._read()
        found = hosts.get(root)
        if found is None:
            return None
        return bool(self._regions[found[2]][1])

    def root(self, candidate: Mapping[str, Any]) -> str | None:
        """The root of the host's tree: that of the provider the candidate
        takes CPU, memory or accelerators from (not a sharing one's)."""
        is_accel = self._is_accel
        for rp, alloc in candidate["allocations"].items():
            for rc in alloc["resources"]:
                if rc == CPU_CLASS or rc == MEMORY_CLASS or is_accel(rc):
                    return self.request.root_of(rp)
        return None

    def rank(self, candidates: Sequence[Mapping[str, Any]],
             numa_ask: packing.NumaAsk | None = None
             ) -> list[tuple[int, tuple[int, ...]]]:
        """``packing.rank_placements`` of one host's candidates: indexes
        of those that fit, best first, with their scores (none when the
        summaries do not hold the host); UnreadableSummaries if the
        summaries cannot be read. ``numa_ask`` is the request's, the
        host's region nodes put in (its ``nodes`` are not read). Hosts
        whose regions are in the same state, with candidates of the same
        shapes, share the answer when their CPU and memory cannot tell
        them apart: under a mix that asks none, when both cover every
        candidate."""
        root = self.root(candidates[0]) if candidates else None
        if root is None:
            return []
        hosts = self._hosts if self._hosts is not None else self._read()
        found = hosts.get(root)
        if found is None:
            return []
        cpu, memory, number, index, nodes = found
        is_accel = self._is_accel
        shapes = []
        most_cpu = most_memory = 0
        for candidate in candidates:
            # What placement_score reads of the candidate: CPU and memory
            # from any provider, accelerators from the host's regions.
            taken_cpu = taken_memory = 0
            taken: tuple[int, ...] = ()
            for rp, alloc in candidate["allocations"].items():
                resources = alloc["resources"]
                region = index.get(rp)
                if region is None:
                    taken_cpu += resources.get(CPU_CLASS, 0)
                    taken_memory += resources.get(MEMORY_CLASS, 0)
                    continue
                amount = 0
                for rc, n in resources.items():
                    if rc == CPU_CLASS:
                        taken_cpu += n
                    elif rc == MEMORY_CLASS:
                        taken_memory += n
                    elif is_accel(rc):
                        amount += n
                taken += (region, amount)
            if taken_cpu > most_cpu:
                most_cpu = taken_cpu
            if taken_memory > most_memory:
                most_memory = taken_memory
            shapes.append((taken_cpu, taken_memory, taken))
        if self._cpu_blind:
            # Only ``cpu >= taken`` is asked of them.
            cpu, memory = min(cpu, most_cpu), min(memory, most_memory)
        key = (number, cpu, memory, tuple(shapes))
        if numa_ask is not None:
            numa_ask = dataclasses.replace(numa_ask, nodes=nodes)
            key += (numa_ask,)
        ranked = self._ranks.get(key)
        if ranked is None:
            ranked = self._ranks[key] = self._rank(number, cpu, memory,
                                                   shapes, numa_ask)
        return ranked

    def _rank(self, number: int, cpu: int, memory: int,
              shapes: Sequence[tuple], numa_ask: packing.NumaAsk | None
              ) -> list[tuple[int, tuple[int, ...]]]:
        mix = self.mix
        losses = self._losses
        before = (self._loss(number, packing.kinds_fit(cpu, memory, mix))
                  + packing.cpu_shortfall(losses[number][0], cpu, mix))
        ranked = []
        cpu_aware = mix.cpu_per_unit > 0
        # A host's candidates mostly take the same CPU and memory: what
        # the kinds can still run after them is worked out once.
        last_taken, fit = None, ()
        for i, (taken_cpu, taken_memory, taken) in enumerate(shapes):
            if cpu < taken_cpu or memory < taken_memory:
                continue
            placed = self._after_placement(number, taken, numa_ask)
            if placed is None:
                continue
            after, best_fit, first = placed
            if (best_fit == packing.NO_FIT and cpu_aware
                    and self._regions[number][1]):
                best_fit = packing.cpu_fit(cpu, taken_cpu)
            cpu_left = cpu - taken_cpu
            if (taken_cpu, taken_memory) != last_taken:
                last_taken = (taken_cpu, taken_memory)
                fit = packing.kinds_fit(cpu_left, memory - taken_memory,
                                        mix)
            ranked.append((i, (*first, packing.gradient_score(
                before,
                self._loss(after, fit)
                + packing.cpu_shortfall(losses[after][0], cpu_left, mix),
                mix), *best_fit)))
        ranked.sort(key=itemgetter(1), reverse=True)
        return ranked

    def _loss(self, number: int, fit: tuple[bool, ...]) -> float:
        """packing.kinds_loss of regions' state ``number`` when the kinds
        that ``fit`` can run."""
        key = (number, fit)
        loss = self._kinds_loss.get(key)
        if loss is None:
            idle, losses = self._losses[number]
            loss = self._kinds_loss[key] = packing.kinds_loss(
                idle, losses, fit, self.mix)
        return loss

    def _after_placement(self, number: int, taken: tuple[int, ...],
                         numa_ask: packing.NumaAsk | None
                         ) -> tuple[int, tuple[int, ...], tuple[int, ...]
                                    ] | None:
        """The number of the regions' state once ``taken`` (region index,
        amount, ...) is taken from state ``number``, the placement's
        ``packing.best_fit`` and its ``packing.numa_key``; None if it
        does not fit or the request's NUMA affinity refuses it."""
        key = (number, taken) if numa_ask is None else (number, taken,
                                                        numa_ask)
        try:
            return self._after[key]
        except KeyError:
            pass
        free, capacity, model = self._regions[number]
        left = list(free)
        placed = None
        for region, amount in zip(taken[0::2], taken[1::2], strict=True):
            if amount > left[region]:
                break
            left[region] -= amount
        else:
            amounts: dict[int, int] = {}
            for region, amount in zip(taken[0::2], taken[1::2],
                                      strict=True):
                amounts[region] = amounts.get(region, 0) + amount
            placement = packing.Placement(0, 0, amounts)
            first = packing.numa_key(placement, numa_ask)
            if first is not None:
                placed = (self._number((tuple(left), capacity, model)),
                          packing.best_fit(packing.HostRoom(
                              0, 0, free, capacity, model), placement,
                              numa_ask=numa_ask), first)
        self._after[key] = placed
        return placed
