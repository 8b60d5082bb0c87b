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

"""A cloud's accelerators as placement holds them, as plain data: hosts
(compute node root providers) with the room their root has left,
regions (our region providers) with capacity, use and move capability,
and servers (placement consumers) with what each takes where.

The reader (``accel_defrag.reader``) fills it from placement, the
simulator from its replay; the cluster view and the planner read it.
Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from accel_inventory import contract, fragmentation


@dataclass
class Region:
    """One region provider: ``size`` is its functions (its inventory's
    total, what its size trait says), ``capacity`` what may be allocated
    (total less reserved, times the allocation ratio), ``used`` what is;
    ``move`` its move capability (contract.MOVE_CAPABILITIES)."""

    uuid: str
    name: str
    host: str
    card: str
    resource_class: str
    size: int
    capacity: int
    used: int = 0
    degraded: bool = False
    move: str = contract.MOVE_NONE

    @property
    def fill(self) -> fragmentation.RegionFill:
        return fragmentation.RegionFill(self.resource_class, self.size,
                                        self.capacity, self.used,
                                        self.degraded)


@dataclass
class Host:
    """One compute node: its root provider's UUID and name (the
    hypervisor host name), and what its root has left of each class
    (VCPU, MEMORY_MB, DISK_GB...). ``same_host_moves``: nova may cold
    migrate a server to the host it is on (the compute node reports
    COMPUTE_SAME_HOST_COLD_MIGRATE)."""

    uuid: str
    name: str
    free: dict[str, int] = field(default_factory=dict)
    same_host_moves: bool = False


@dataclass
class Server:
    """One consumer holding functions of our regions: ``root`` what it
    takes of its host's root provider, ``regions`` the functions it
    takes of each region, ``elsewhere`` the other providers it holds
    (nova's PCI or bandwidth providers...), which a move must find room
    for too and the planner does not model."""

    uuid: str
    host: str
    root: dict[str, int] = field(default_factory=dict)
    regions: dict[str, int] = field(default_factory=dict)
    elsewhere: tuple[str, ...] = ()


@dataclass
class Cluster:
    hosts: dict[str, Host] = field(default_factory=dict)
    regions: dict[str, Region] = field(default_factory=dict)
    servers: dict[str, Server] = field(default_factory=dict)

    def regions_of(self, host: str) -> list[Region]:
        return [r for r in self.regions.values() if r.host == host]

    def move_of(self, server: Server) -> str:
        """How ``server`` can move: as the least movable of its regions'
        kinds allows."""
        return contract.least_movable(self.regions[r].move
                                      for r in server.regions)


def host_figures(cluster: Cluster
                 ) -> dict[str, dict[str, fragmentation.ClassFigures]]:
    """Per host (by UUID, in host name order) and resource class: whole
    free regions by size, fragmented functions, the largest request."""
    by_host: dict[str, list[fragmentation.RegionFill]] = {
        h: [] for h in sorted(cluster.hosts,
                              key=lambda h: cluster.hosts[h].name)}
    for region in cluster.regions.values():
        by_host.setdefault(region.host, []).append(region.fill)
    return {h: fragmentation.class_figures(fills)
            for h, fills in by_host.items()}


def totals(regions: Iterable[Region], resource_class: str,
           size: int) -> tuple[int, int]:
    """Whole free regions of ``resource_class`` and ``size``, and the
    fragmented functions of ``resource_class``, over ``regions``."""
    whole = fragmented = 0
    for region in regions:
        if region.resource_class != resource_class:
            continue
        fill = region.fill
        fragmented += fill.fragmented
        if region.size == size and fill.whole_free:
            whole += 1
    return whole, fragmented


def holders(cluster: Cluster) -> Mapping[str, list[str]]:
    """The servers holding functions of each region, in server order."""
    held: dict[str, list[str]] = {r: [] for r in cluster.regions}
    for uuid in sorted(cluster.servers):
        for region in cluster.servers[uuid].regions:
            if region in held:
                held[region].append(uuid)
    return held
