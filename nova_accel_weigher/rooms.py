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
accelerator class in the tree. ``HostRooms`` reads each host's room
once per pass (``room_state``), with what the request's earlier
instances claimed taken off, and scores allocation candidates as
``packing.rank_placements`` does, each distinct room and placement shape
once: the filter orders each host's candidates with it, the weigher
scores the candidate nova will claim. Per request (a local of a filter
or weigher pass), never shared.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from accel_inventory.contract import DEGRADED_TRAIT
from nova_accel_weigher import packing, usage

LOG = logging.getLogger(__name__)

CPU_CLASS = "VCPU"
MEMORY_CLASS = "MEMORY_MB"


@functools.lru_cache(maxsize=8)
def configured_mix(task_mix: tuple[str, ...],
                   request_mix: tuple[tuple[str, str], ...]
                   ) -> packing.TaskMix | None:
    """``[accel_packing] task_mix``, or without it the shapes of
    ``request_mix`` (no CPU or memory); None, logged once, if it does not
    parse. Remembered: the options rarely change and every pass asks."""
    try:
        if task_mix:
            return packing.parse_task_mix(task_mix)
        return packing.mix_of_shapes(packing.parse_mix(dict(request_mix)))
    except ValueError as exc:
        LOG.error("[accel_packing] %s; host-fragmentation falls back to "
                  "fragmentation until it is fixed.", exc)
        return None


def mix_from(opts) -> packing.TaskMix | None:
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


def room_state(summaries: Mapping[str, Any], providers: Sequence[str],
               is_accel: Callable[[str], bool],
               claimed: Mapping[str, Mapping[str, int]]
               ) -> tuple[tuple, dict[str, int]]:
    """One tree's room as the fields of a ``packing.HostRoom`` (CPU,
    memory, each region's free capacity and capacity, model), and each
    region provider's index in it. A region is a provider with inventory
    of an accelerator class; its model is that class; a degraded region
    (or card) has nothing free. A plain tuple, no object: the filter reads
    every host that reaches it, and across them the same few rooms recur
    (``HostRooms`` numbers them)."""
    cpu = memory = 0
    free: list[int] = []
    capacity: list[int] = []
    index: dict[str, int] = {}
    model = ""
    # The last card read, and whether it is degraded: a card's regions
    # mostly follow each other.
    card, card_degraded = None, False
    for rp in providers:
        summary = summaries[rp]
        resources = summary.get("resources")
        if not resources:
            continue
        region_capacity = region_used = 0
        region_class = None
        # Placement's summaries hold integers, read as they are (as
        # usage.RegionStates reads them).
        for rc, r in resources.items():
            if rc == CPU_CLASS:
                cpu += r["capacity"] - r["used"]
            elif rc == MEMORY_CLASS:
                memory += r["capacity"] - r["used"]
            elif is_accel(rc):
                region_capacity += r["capacity"]
                region_used += r["used"]
                region_class = rc
        taken = claimed.get(rp) if claimed else None
        if taken:
            # Only what the provider has: a claim was drawn from it.
            for rc, amount in taken.items():
                if rc not in resources:
                    continue
                if rc == CPU_CLASS:
                    cpu -= amount
                elif rc == MEMORY_CLASS:
                    memory -= amount
                elif is_accel(rc):
                    region_used += amount
        if region_class is None:
            continue
        parent = summary.get("parent_provider_uuid") or rp
        if parent != card:
            card = parent
            card_degraded = DEGRADED_TRAIT in (
                summaries.get(parent, _NOTHING).get("traits") or ())
        index[rp] = len(free)
        capacity.append(region_capacity)
        free.append(0 if card_degraded
                    or DEGRADED_TRAIT in (summary.get("traits") or ())
                    else max(region_capacity - region_used, 0))
        model = model or region_class
    return (max(cpu, 0), max(memory, 0), tuple(free), tuple(capacity),
            model), index


class HostRooms:
    """One pass's rooms and scores under ``host-fragmentation``.

    Across a thousand hosts the same few rooms recur: each distinct room
    (``room_state``) gets a number, its ``host_fragmentation`` is worked
    out once, and each placement's score is remembered by the room's
    number and the placement's shape (CPU, memory, and the amount taken
    from each region by the region's index), as is each host's ranking by
    the room and its candidates' shapes. Scores and order are those of
    ``packing.rank_placements`` on the room."""

    __slots__ = ("request", "mix", "_is_accel", "_claimed", "_hosts",
                 "_numbers", "_rooms", "_before", "_scores", "_ranks")

    def __init__(self, request: usage.RequestPlacement,
                 resource_classes: Sequence[str], mix: packing.TaskMix):
        self.request = request
        self.mix = mix
        self._is_accel = packing.accel_class_test(resource_classes)
        self._claimed = claimed_by_provider(request.claimed)
        # Per root: its room's number and its regions' indexes.
        self._hosts: dict[str, tuple[int, dict[str, int]]] = {}
        # Per room state, its number; per number, the room and its
        # host_fragmentation.
        self._numbers: dict[tuple, int] = {}
        self._rooms: list[packing.HostRoom] = []
        self._before: list[float] = []
        # Per (room number, placement shape), its placement_score; per
        # (room number, candidates' shapes), rank_placements' answer.
        self._scores: dict[tuple, int | None] = {}
        self._ranks: dict[tuple, list[tuple[int, int]]] = {}

    def _host(self, root: str) -> tuple[int, dict[str, int]]:
        found = self._hosts.get(root)
        if found is None:
            state, index = room_state(
                self.request.summaries, self.request.tree(root),
                self._is_accel, self._claimed)
            number = self._numbers.get(state)
            if number is None:
                number = self._numbers[state] = len(self._rooms)
                room = packing.HostRoom(*state)
                self._rooms.append(room)
                self._before.append(
                    packing.host_fragmentation(room, self.mix))
            found = self._hosts[root] = (number, index)
        return found

    def root(self, candidate: Mapping[str, Any]) -> str | None:
        """The root of the host's tree: that of the provider the candidate
        takes CPU, memory or accelerators from (not a sharing one's)."""
        is_accel = self._is_accel
        for rp, alloc in candidate["allocations"].items():
            for rc in alloc["resources"]:
                if rc == CPU_CLASS or rc == MEMORY_CLASS or is_accel(rc):
                    return self.request.root_of(rp)
        return None

    def rank(self, candidates: Sequence[Mapping[str, Any]]
             ) -> list[tuple[int, int]]:
        """``packing.rank_placements`` of one host's candidates: indexes
        of those that fit, best first, with their scores (none when the
        summaries do not hold the host). Hosts in the same room with
        candidates of the same shapes share the answer."""
        root = self.root(candidates[0]) if candidates else None
        if root is None:
            return []
        number, index = self._host(root)
        is_accel = self._is_accel
        shapes = []
        for candidate in candidates:
            # What placement_score reads of the candidate: CPU and memory
            # from any provider, accelerators from the host's regions.
            cpu = memory = 0
            taken: tuple[int, ...] = ()
            for rp, alloc in candidate["allocations"].items():
                resources = alloc["resources"]
                region = index.get(rp)
                if region is None:
                    cpu += resources.get(CPU_CLASS, 0)
                    memory += resources.get(MEMORY_CLASS, 0)
                    continue
                amount = 0
                for rc, n in resources.items():
                    if rc == CPU_CLASS:
                        cpu += n
                    elif rc == MEMORY_CLASS:
                        memory += n
                    elif is_accel(rc):
                        amount += n
                taken += (region, amount)
            shapes.append((cpu, memory) + taken)
        key = (number, tuple(shapes))
        ranked = self._ranks.get(key)
        if ranked is None:
            ranked = []
            for i, shape in enumerate(shapes):
                s = self._score(number, shape)
                if s is not None:
                    ranked.append((i, s))
            ranked.sort(key=itemgetter(1), reverse=True)
            self._ranks[key] = ranked
        return ranked

    def _score(self, number: int, shape: tuple[int, ...]) -> int | None:
        key = (number, shape)
        try:
            return self._scores[key]
        except KeyError:
            pass
        taken = dict(zip(shape[2::2], shape[3::2], strict=True))
        s = self._scores[key] = packing.placement_score(
            self._rooms[number], packing.Placement(shape[0], shape[1], taken),
            self.mix, self._before[number])
        return s
