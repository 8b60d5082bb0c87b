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

"""How fragmented a host is: FGD's measure, the free accelerator
capacity the expected task mix could no longer use
(``host_fragmentation``), and the plain figures an operator graphs and
plans with (``RegionFill``, ``class_figures``: whole free regions per
size, fragmented functions, the largest request still placeable).

The scheduler's ``host-fragmentation`` policy scores placements by how
little they grow it (``nova_accel_weigher.packing``), the simulator
replays through that, and the agent exports it for every host at every
round (``accel_inventory.metrics``): one function, here, where both
packages can import it (``accel_inventory`` imports neither of the
others). Pure: room and mix come in as data, a number goes out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

@dataclass(frozen=True)
class TaskKind:
    """One kind of request in the expected mix, as a host sees it:
    ``amount`` from each of ``regions`` regions (0 regions: no
    accelerator), whole regions of exactly ``amount`` when ``whole``;
    ``models`` the region models (resource classes in nova) it may use,
    empty for any; ``weight`` its share of the mix."""

    cpu: int
    memory: int
    amount: int
    regions: int
    models: frozenset[str] = frozenset()
    weight: float = 1.0
    whole: bool = False

    def uses(self, free: int, capacity: int) -> bool:
        """Whether one region with ``free`` of ``capacity`` can serve one
        of this kind's regions."""
        if self.whole:
            return free == capacity == self.amount
        return free >= self.amount


@dataclass(frozen=True)
class TaskMix:
    """The expected mix and what is derived from it alone: ``unit``, the
    largest amount a kind asks of one region (one GPU's capacity in the
    openb traces), scales a gradient; ``cpu_per_unit``, the CPU the
    accelerator kinds ask per unit of accelerator, says how much free
    capacity a host's CPU can still feed."""

    kinds: tuple[TaskKind, ...]
    unit: int
    cpu_per_unit: float


@dataclass(frozen=True)
class HostRoom:
    """What a host has left: CPU, memory, each region's free capacity and
    its capacity (in a fixed order) and its model (the regions' resource
    class in nova). A degraded region is given as having nothing free."""

    cpu: int
    memory: int
    free: tuple[int, ...]
    capacity: tuple[int, ...]
    model: str = ""


def task_mix(kinds: Iterable[TaskKind]) -> TaskMix:
    """The mix of ``kinds``, weights normalised to sum to 1."""
    kinds = tuple(kinds)
    total = sum(k.weight for k in kinds)
    if not kinds or total <= 0:
        raise ValueError("the task mix needs at least one positive weight")
    kinds = tuple(dataclasses.replace(k, weight=k.weight / total)
                  for k in kinds)
    accel = [k for k in kinds if k.regions]
    asked = sum(k.weight * k.amount * k.regions for k in accel)
    cpu = sum(k.weight * k.cpu for k in accel)
    return TaskMix(kinds, max((k.amount for k in accel), default=1),
                   cpu / asked if asked else 0.0)


def host_fragmentation(room: HostRoom, mix: TaskMix) -> float:
    """Free capacity the mix cannot use, expected over its kinds: all of
    it for a kind that cannot run on the host now (no accelerator asked,
    another model, too little CPU or memory, too few regions it can use),
    else the free capacity of the regions it cannot use (FGD's
    definition, memory checked too); plus the free capacity beyond what
    the host's CPU can feed at the mix's CPU per unit, which FGD's
    one-task look misses when CPU runs out before the regions.

    Worked out in three parts (``region_losses``, ``kinds_fit``,
    ``fragmentation``) so that the filter can remember the regions' part
    across hosts whose CPU and memory differ."""
    idle, losses = region_losses(room.free, room.capacity, room.model, mix)
    return fragmentation(idle, losses, kinds_fit(room.cpu, room.memory, mix),
                         room.cpu, mix)


def region_losses(free: tuple[int, ...], capacity: tuple[int, ...],
                  model: str, mix: TaskMix) -> tuple[int, tuple[int, ...]]:
    """The regions' part of ``host_fragmentation``: the free capacity in
    all, and per kind of the mix what of it the kind cannot use when CPU
    and memory let it run (all of it if the regions do not)."""
    idle = sum(free)
    losses = []
    for kind in mix.kinds:
        lost = idle
        if kind.regions and (not kind.models or model in kind.models):
            usable = 0
            unusable_free = 0
            for f, c in zip(free, capacity, strict=True):
                if kind.uses(f, c):
                    usable += 1
                else:
                    unusable_free += f
            if usable >= kind.regions:
                lost = unusable_free
        losses.append(lost)
    return idle, tuple(losses)


def kinds_fit(cpu: int, memory: int, mix: TaskMix) -> tuple[bool, ...]:
    """Per kind of the mix, whether ``cpu`` and ``memory`` let it run."""
    return tuple(cpu >= kind.cpu and memory >= kind.memory
                 for kind in mix.kinds)


def fragmentation(idle: int, losses: tuple[int, ...], fit: tuple[bool, ...],
                  cpu: int, mix: TaskMix) -> float:
    """``host_fragmentation`` from its parts: ``kinds_loss`` and the free
    capacity ``cpu`` cannot feed."""
    return kinds_loss(idle, losses, fit, mix) + cpu_shortfall(idle, cpu, mix)


def kinds_loss(idle: int, losses: tuple[int, ...], fit: tuple[bool, ...],
               mix: TaskMix) -> float:
    """What the kinds lose of ``idle``, weighted: their region loss where
    CPU and memory let them run, all of it where not."""
    total = 0.0
    for kind, lost, fits in zip(mix.kinds, losses, fit, strict=True):
        total += kind.weight * (lost if fits else idle)
    return total


def cpu_shortfall(idle: int, cpu: int, mix: TaskMix) -> float:
    """Free accelerator capacity beyond what ``cpu`` can feed."""
    if mix.cpu_per_unit > 0:
        return max(0.0, idle - cpu / mix.cpu_per_unit)
    return 0.0


def parse_task_mix(entries: Iterable[str]) -> TaskMix:
    """Parse ``[accel_packing] task_mix``: entries
    ``WEIGHT:SHAPE[:VCPU[:MEMORY_MB[:CLASS|CLASS...]]]``, SHAPE being
    ``N`` (N functions of one region), ``regionN`` (a whole region of N),
    ``KxregionN`` (K whole regions of N) or ``0`` (no accelerator)."""
    kinds = []
    for entry in entries:
        fields = entry.strip().split(":")
        try:
            if not 2 <= len(fields) <= 5:
                raise ValueError
            weight = float(fields[0])
            count, x, shape = fields[1].strip().partition("x")
            whole = (shape if x else count).startswith("region")
            amount = int((shape if x else count).removeprefix("region"))
            regions = int(count) if x else (1 if amount else 0)
            cpu, memory = (int(f) for f in (fields[2:4] + ["0", "0"])[:2])
            models = frozenset(m.strip() for m in (
                fields[4] if len(fields) > 4 else "").split("|")
                if m.strip())
            if (weight < 0 or amount < 0 or regions < 0 or cpu < 0
                    or memory < 0 or bool(amount) != bool(regions)
                    or (x and not whole)):
                raise ValueError
        except ValueError:
            raise ValueError(
                f"bad task mix entry {entry!r}; expected WEIGHT:SHAPE"
                f"[:VCPU[:MEMORY_MB[:CLASS|CLASS]]], SHAPE one of N, "
                f"regionN, KxregionN, 0") from None
        kinds.append(TaskKind(cpu, memory, amount, regions, models, weight,
                              whole))
    return task_mix(kinds)


def needs_host_room(mix: TaskMix) -> bool:
    """Whether ``host_fragmentation`` against ``mix`` depends on the
    host's CPU and memory left (else any room gives the same number)."""
    return mix.cpu_per_unit > 0 or any(k.cpu or k.memory for k in mix.kinds)


# -- the figures ------------------------------------------------------------


@dataclass(frozen=True)
class RegionFill:
    """One region as the figures see it: its resource class, its size
    (its functions, what its size trait says), its capacity (what may be
    allocated: total less reserved, times the allocation ratio), what is
    allocated, and whether it is degraded (nothing new lands there)."""

    resource_class: str
    size: int
    capacity: int
    used: int
    degraded: bool = False

    @property
    def free(self) -> int:
        return 0 if self.degraded else max(self.capacity - self.used, 0)

    @property
    def whole_free(self) -> bool:
        """Whether a request for the whole region (its size, with the size
        trait) can have it now."""
        return (not self.degraded and self.used == 0
                and self.capacity >= self.size > 0)

    @property
    def fragmented(self) -> int:
        """Its free functions outside a whole free region."""
        return 0 if self.whole_free else self.free


@dataclass(frozen=True)
class ClassFigures:
    """One resource class of one host (or of any set of regions): whole
    free regions by size, free functions outside them (``fragmented``),
    the most functions one region can still give (``largest``: the
    largest request of one group placeable now) and the largest
    whole-region request placeable now (``largest_whole``: count and
    size of the size whose whole free regions hold the most functions)."""

    resource_class: str
    regions: int
    capacity: int
    used: int
    free: int
    fragmented: int
    degraded: int
    largest: int
    whole_free: dict[int, int] = field(default_factory=dict)

    @property
    def whole_free_regions(self) -> int:
        return sum(self.whole_free.values())

    @property
    def largest_whole(self) -> tuple[int, int]:
        """(count, size); (0, 0) when no region is whole free."""
        if not self.whole_free:
            return (0, 0)
        size = max(self.whole_free,
                   key=lambda s: (s * self.whole_free[s], s))
        return (self.whole_free[size], size)


def class_figures(regions: Iterable[RegionFill]) -> dict[str, ClassFigures]:
    """The figures of ``regions`` per resource class, in class order."""
    by_class: dict[str, list[RegionFill]] = {}
    for region in regions:
        by_class.setdefault(region.resource_class, []).append(region)
    figures = {}
    for rc in sorted(by_class):
        members = by_class[rc]
        whole: dict[int, int] = {}
        for r in members:
            if r.whole_free:
                whole[r.size] = whole.get(r.size, 0) + 1
        figures[rc] = ClassFigures(
            resource_class=rc, regions=len(members),
            capacity=sum(r.capacity for r in members),
            used=sum(r.used for r in members),
            free=sum(r.free for r in members),
            fragmented=sum(r.fragmented for r in members),
            degraded=sum(r.degraded for r in members),
            largest=max((r.free for r in members), default=0),
            whole_free=dict(sorted(whole.items())))
    return figures


def room_of(regions: Sequence[RegionFill], cpu: int = 0,
            memory: int = 0) -> HostRoom:
    """The host's room as ``host_fragmentation`` takes it, as the
    scheduler reads it from placement's summaries: each region's free
    capacity (none when degraded) and its capacity, the model the first
    region's class."""
    return HostRoom(cpu, memory, tuple(r.free for r in regions),
                    tuple(r.capacity for r in regions),
                    regions[0].resource_class if regions else "")
