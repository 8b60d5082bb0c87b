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

"""NUMA affinity as the scheduler and the hook both judge it.

A request's ``nova_accel:numa_affinity_policy`` (contract.py) says which
host NUMA nodes are near its guest: the guest's own cells (``required``,
``preferred``), or every cell of their sockets (``socket``). The filter
works that out from nova's prediction of the guest's cells, the hook and
the attach worker from the cells the domain XML really has; both ask
``local_nodes`` and ``is_local``, so that they cannot disagree. Pure and
standard library only: the hook imports it at a domain start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from accel_inventory.contract import (NUMA_POLICIES, NUMA_PREFERRED,
                                      NUMA_SOCKET)

# Policies under which a device away from the guest is refused.
STRICT_POLICIES = frozenset(NUMA_POLICIES) - {NUMA_PREFERRED}
# What a list of CPUs or nodes may hold at most: a crafted "0-4294967295"
# must not build a set of four billion numbers.
MAX_ID = 1 << 16


def policy_of(value: str | None) -> str | None:
    """The policy a flavor's extra spec names; None when it names none.
    Raises ValueError naming the choices for any other value."""
    if value is None:
        return None
    policy = value.strip().lower()
    if policy not in NUMA_POLICIES:
        raise ValueError(f"NUMA affinity policy {value!r} is none of "
                         f"{', '.join(NUMA_POLICIES)}")
    return policy


def parse_id_list(text: str) -> frozenset[int]:
    """A list of CPUs or NUMA nodes as the kernel (``cpulist``) and
    libvirt (``cpuset``, ``nodeset``) write it: ``0-3,8,^2`` (``^N``
    excludes N). Raises ValueError on anything else."""
    included: set[int] = set()
    excluded: set[int] = set()
    for item in text.replace(" ", "").split(","):
        if not item:
            continue
        into = excluded if item.startswith("^") else included
        first, dash, last = item.lstrip("^").partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{text!r} is not a list of CPUs or nodes")
        low, high = int(first), int(last) if dash else int(first)
        if high < low or high > MAX_ID:
            raise ValueError(f"{text!r} is not a list of CPUs or nodes")
        into.update(range(low, high + 1))
    return frozenset(included - excluded)


def local_nodes(policy: str | None, guest_nodes: Iterable[int],
                socket_of: Mapping[int, int | None] | None = None
                ) -> frozenset[int]:
    """The host NUMA nodes near a guest on ``guest_nodes``: those nodes,
    and under ``socket`` every node of their sockets (``socket_of`` maps
    a node to its socket; a node whose socket is unknown is near only
    itself)."""
    guest = frozenset(guest_nodes)
    if policy != NUMA_SOCKET or not socket_of:
        return guest
    sockets = {socket_of.get(node) for node in guest} - {None}
    return guest | {node for node, socket in socket_of.items()
                    if socket is not None and socket in sockets}


def is_local(node: int | None, local: frozenset[int]) -> bool:
    """Whether a device on ``node`` is near the guest. A device that
    reports no node is near none: as nova's ``required`` treats a PCI
    device without NUMA affinity."""
    return node is not None and node in local


def strict(policy: str | None) -> bool:
    """Whether ``policy`` refuses a device away from the guest."""
    return policy in STRICT_POLICIES
