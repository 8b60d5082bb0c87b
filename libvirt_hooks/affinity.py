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

"""NUMA affinity at a domain's start: the devices it is given, near the
host cells its XML really puts the guest on.

The scheduler chose the regions from nova's prediction of the guest's
cells (nova_accel_weigher.cells); the compute's own claim fits again and
may choose other cells, and a device's node is what its firmware reports
now. So the hook at ``prepare begin`` and the attach worker read the
cells the domain XML has (``<numatune>``, ``<cputune>``: domain.guest_numa,
its pinned CPUs mapped to nodes through sysfs) and the node of each
function given (hostview.function_node). A placement claim first takes,
within each region it holds, the free functions near the guest
(claim_sync.near_functions); what is still elsewhere is refused under
``required`` and ``socket`` and said once under ``preferred``
(``judgement``). A domain whose XML places its guest nowhere (no NUMA
topology) is not looked at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from accel_inventory import cache, claim_sync, model, numa
from accel_inventory.contract import NUMA_AFFINITY_SPEC, NUMA_SOCKET
from libvirt_hooks import domain as domain_xml
from libvirt_hooks import hostview


@dataclass(frozen=True)
class Nearness:
    """Where a domain's guest is: its host NUMA nodes, the nodes near it
    under its policy (``numa.local_nodes``), the policy (None: its flavor
    names none), and a note when the policy written is not one."""

    policy: str | None
    guest_nodes: frozenset[int]
    local: frozenset[int]
    note: str | None = None


def of_domain(dom: domain_xml.Domain, sysfs_root: str) -> Nearness | None:
    """The domain's ``Nearness``; None when its XML puts the guest on no
    host NUMA node. Raises domain.DomainXMLError for a node or CPU list
    that is not one."""
    guest = domain_xml.guest_numa(dom)
    if not guest.placed:
        return None
    nodes = set(guest.memory_nodes)
    if guest.vcpu_cpus:
        by_cpu = hostview.cpu_nodes(sysfs_root)
        nodes.update(by_cpu[cpu] for cpu in guest.vcpu_cpus if cpu in by_cpu)
    if not nodes:
        return None
    note = None
    try:
        policy = numa.policy_of(guest.policy)
    except ValueError as exc:
        policy, note = None, f"{NUMA_AFFINITY_SPEC}: {exc}; ignored"
    sockets = (hostview.node_sockets(sysfs_root) if policy == NUMA_SOCKET
               else None)
    return Nearness(policy, frozenset(nodes),
                    numa.local_nodes(policy, nodes, sockets), note)


def _nodes_of(inv: model.Inventory, regions: Iterable[model.Region],
              sysfs_root: str) -> dict[str, int | None]:
    card_of = {r.id: c for c in inv.cards for r in c.regions}
    return {f.id: hostview.function_node(sysfs_root, card_of[r.id], r, f)
            for r in regions for f in r.functions}


def keep_near(cache_path: str, lock_timeout: float, consumer: str,
              near: Nearness, sysfs_root: str) -> model.Inventory | None:
    """Make ``consumer``'s placement claim hold functions near its guest
    where its regions have free ones (``claim_sync.near_functions``) and
    save it; the inventory saved, or None when nothing changed."""
    inv = cache.load(cache_path)
    if inv is None:
        return None
    node_of = _nodes_of(inv, claim_sync.regions_held(inv, consumer),
                        sysfs_root)
    if claim_sync.near_functions(inv, consumer, node_of, near.local) is None:
        return None

    def nearer(current: model.Inventory) -> model.Inventory:
        return claim_sync.near_functions(current, consumer, node_of,
                                         near.local) or current

    return cache.update(cache_path, nearer, lock_timeout, validate=False)


def far_functions(inv: model.Inventory, function_ids: Iterable[str],
                  near: Nearness, sysfs_root: str) -> dict[str, str]:
    """Of ``function_ids``, those not near the guest, each with where it
    is ("0000:3b:01.0 on NUMA node 1")."""
    index = inv.function_index()
    far = {}
    for fid in function_ids:
        if fid not in index:
            continue
        card, region, function = index[fid]
        node = hostview.function_node(sysfs_root, card, region, function)
        if not numa.is_local(node, near.local):
            where = function.address or card.address or "no address"
            far[fid] = (f"{fid} ({where}) on NUMA node {node}"
                        if node is not None
                        else f"{fid} ({where}) reporting no NUMA node")
    return far


# What an operator does about a device refused for being far.
FIX = ("rescan ('accel-inventory scan') so that the scheduler sees the "
       "devices' nodes, then move the server ('openstack server migrate') "
       "or free a region there")


def away(near: Nearness) -> str:
    """Why a device is far: where it is not, and who asks."""
    nodes = ",".join(str(n) for n in sorted(near.guest_nodes))
    where = (f"the NUMA node(s) {nodes} of the guest's CPUs and memory"
             if near.policy != NUMA_SOCKET else
             f"the socket of the guest's NUMA node(s) {nodes} (nodes "
             f"{','.join(str(n) for n in sorted(near.local))})")
    return (f"not on {where}, as its flavor's "
            f"{NUMA_AFFINITY_SPEC}={near.policy} asks")


def judgement(near: Nearness, far: dict[str, str]
              ) -> tuple[str | None, str | None]:
    """What to say of the functions ``far`` from the guest: a refusal
    (``required``, ``socket``), or a warning (``preferred``); one line
    each, None when there is nothing to say."""
    if not far or near.policy is None:
        return None, None
    said = f"{'; '.join(far.values())}: {away(near)}"
    if numa.strict(near.policy):
        return f"{said}; {FIX}", None
    return None, (f"{said}; it starts all the same, each access crossing "
                  f"the NUMA interconnect")
