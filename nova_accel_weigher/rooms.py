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
accelerator class in the tree. ``HostRooms`` turns them into
``packing.HostRoom`` once per host and pass, with what the request's
earlier instances claimed taken off, and scores allocation candidates
with ``packing.rank_placements``: the filter orders each host's
candidates with it, the weigher scores the candidate nova will claim.
Per request (a local of a filter or weigher pass), never shared.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
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


def room_of(summaries: Mapping[str, Any], providers: Sequence[str],
            is_accel: Callable[[str], bool],
            claimed: Mapping[str, Mapping[str, int]]
            ) -> tuple[packing.HostRoom, dict[str, int]]:
    """One tree's room, and each region provider's index in it. A region
    is a provider with inventory of an accelerator class; its model is
    that class; a degraded region (or card) has nothing free."""
    cpu = memory = 0
    free: list[int] = []
    capacity: list[int] = []
    index: dict[str, int] = {}
    model = ""
    for rp in providers:
        summary = summaries[rp]
        taken = claimed.get(rp, {})
        region_capacity = region_used = 0
        region_class = None
        for rc, r in (summary.get("resources") or {}).items():
            left = int(r["capacity"]) - int(r["used"]) - taken.get(rc, 0)
            if rc == CPU_CLASS:
                cpu += left
            elif rc == MEMORY_CLASS:
                memory += left
            elif is_accel(rc):
                region_capacity += int(r["capacity"])
                region_used += int(r["used"]) + taken.get(rc, 0)
                region_class = rc
        if region_class is None:
            continue
        parent = summary.get("parent_provider_uuid") or rp
        degraded = (DEGRADED_TRAIT in (summary.get("traits") or ())
                    or DEGRADED_TRAIT in (summaries.get(parent, {}).get(
                        "traits") or ()))
        index[rp] = len(free)
        capacity.append(region_capacity)
        free.append(0 if degraded else max(region_capacity - region_used, 0))
        model = model or region_class
    return packing.HostRoom(max(cpu, 0), max(memory, 0), tuple(free),
                            tuple(capacity), model), index


class HostRooms:
    """One pass's rooms and scores under ``host-fragmentation``."""

    def __init__(self, request: usage.RequestPlacement,
                 resource_classes: Sequence[str], mix: packing.TaskMix):
        self.request = request
        self.mix = mix
        self._is_accel = packing.accel_class_test(resource_classes)
        self._claimed = claimed_by_provider(request.claimed)
        self._rooms: dict[str, tuple[packing.HostRoom, dict[str, int]]] = {}
        self._ranks: dict[tuple, list[tuple[int, int]]] = {}

    def room(self, root: str) -> tuple[packing.HostRoom, dict[str, int]]:
        found = self._rooms.get(root)
        if found is None:
            found = self._rooms[root] = room_of(
                self.request.summaries, self.request.tree(root),
                self._is_accel, self._claimed)
        return found

    def root(self, candidate: Mapping[str, Any]) -> str | None:
        """The root of the host's tree: that of the provider the candidate
        takes CPU, memory or accelerators from (not a sharing one's)."""
        for rp, alloc in candidate["allocations"].items():
            if any(rc in (CPU_CLASS, MEMORY_CLASS) or self._is_accel(rc)
                   for rc in alloc["resources"]):
                return self.request.root_of(rp)
        return None

    def rank(self, candidates: Sequence[Mapping[str, Any]]
             ) -> list[tuple[int, int]]:
        """``packing.rank_placements`` of one host's candidates: indexes
        of those that fit, best first, with their scores (none when the
        summaries do not hold the host). Hosts in the same room with
        candidates of the same shape share the answer."""
        root = self.root(candidates[0]) if candidates else None
        if root is None:
            return []
        room, index = self.room(root)
        placements = []
        for candidate in candidates:
            cpu = memory = 0
            taken: dict[int, int] = {}
            for rp, alloc in candidate["allocations"].items():
                for rc, amount in alloc["resources"].items():
                    if rc == CPU_CLASS:
                        cpu += amount
                    elif rc == MEMORY_CLASS:
                        memory += amount
                    elif rp in index and self._is_accel(rc):
                        taken[index[rp]] = taken.get(index[rp], 0) + amount
            placements.append(packing.Placement(cpu, memory, taken))
        key = (room, tuple((p.cpu, p.memory, tuple(sorted(p.taken.items())))
                           for p in placements))
        ranked = self._ranks.get(key)
        if ranked is None:
            ranked = self._ranks[key] = packing.rank_placements(
                room, placements, self.mix)
        return ranked
