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

"""The host NUMA cells nova will give a request's guest, and what a
request with a NUMA topology asks of a host's regions.

Nova builds a RequestSpec's ``numa_topology`` from the flavor and image
(pinned CPUs, ``hw:numa_nodes``, hugepages); requests without one are
none of this module's business and cost one attribute test per pass.
Which host cells such a guest gets is decided after the filters, by
``nova.virt.hardware.numa_fit_instance_to_host`` when nova consumes the
host it picked (``HostState.consume_from_request``) and again in the
compute's claim, each time on the host's topology as nova holds it then.
NUMATopologyFilter runs the same fit on every candidate and keeps only
its limits (``host_state.limits['numa_topology']``), which are what nova
consumes with: the prediction here is that very call, once per host (the
cells do not depend on which of our regions a candidate takes), with
those limits where NUMATopologyFilter left them, and it is kept on the
request so that the weigher never fits again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nova import objects
from nova.virt import hardware

from accel_inventory import numa
from accel_inventory.contract import NUMA_AFFINITY_SPEC, NUMA_PREFERRED
from nova_accel_weigher import packing, usage

LOG = logging.getLogger(__name__)

_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class NumaRequest:
    """A request with a NUMA topology: its flavor's affinity policy
    (None when it names none; the NUMA node term of the packing score
    applies all the same)."""

    policy: str | None


def _field(spec_obj, name: str):
    try:
        return getattr(spec_obj, name)
    except Exception:  # an unset field of a nova object raises
        return None


def numa_request(spec_obj) -> NumaRequest | None:
    """The request's NUMA side; None for a request without a NUMA
    topology (most requests: nothing more is read)."""
    if not _field(spec_obj, "numa_topology"):
        return None
    flavor = _field(spec_obj, "flavor")
    specs = (_field(flavor, "extra_specs") or {}) if flavor else {}
    try:
        return NumaRequest(numa.policy_of(specs.get(NUMA_AFFINITY_SPEC)))
    except ValueError as exc:
        # Nova's API refuses the value where our validator is installed
        # (see extra_specs); a flavor from before it gets this, once.
        _warn_once(f"{NUMA_AFFINITY_SPEC}: {exc}; such requests are placed "
                   f"without NUMA affinity")
        return NumaRequest(None)


def _warn_once(message: str) -> None:
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    LOG.warning("AccelTopologyFilter: %s", message)


def guest_cells(host_state, spec_obj,
                candidates: Sequence[Mapping[str, Any]]
                ) -> frozenset[int] | None:
    """The host cells ``numa_fit_instance_to_host`` gives the request on
    ``host_state`` now; None when the host has no NUMA topology or the
    guest does not fit (NUMATopologyFilter then turns the host down)."""
    host_topology = _field(host_state, "numa_topology")
    if not host_topology:
        return None
    limits = (getattr(host_state, "limits", None) or {}).get("numa_topology")
    if limits is None:
        # As NUMATopologyFilter builds them, where it did not run first.
        limits = objects.NUMATopologyLimits(
            cpu_allocation_ratio=host_state.cpu_allocation_ratio,
            ram_allocation_ratio=host_state.ram_allocation_ratio)
        network_metadata = _field(spec_obj, "network_metadata")
        if network_metadata:
            limits.network_metadata = network_metadata
    pci_requests = _field(spec_obj, "pci_requests")
    # The fit fills the topology's CPU pinning in: a copy, as
    # NUMATopologyFilter does.
    fitted = hardware.numa_fit_instance_to_host(
        host_topology, spec_obj.numa_topology.obj_clone(),
        provider_mapping=candidates[0].get("mappings") if candidates
        else None,
        limits=limits,
        pci_requests=pci_requests.requests if pci_requests else None,
        pci_stats=_field(host_state, "pci_stats"))
    if fitted is None:
        return None
    return frozenset(cell.id for cell in fitted.cells)


def sockets(host_state) -> dict[int, int | None]:
    """Each host cell's socket, as the compute reported it."""
    return {cell.id: _field(cell, "socket")
            for cell in host_state.numa_topology.cells}


def numa_ask(numa_req: NumaRequest, host_state, spec_obj,
             candidates: Sequence[Mapping[str, Any]],
             request: usage.RequestPlacement | None,
             cache: dict | None = None) -> packing.NumaAsk:
    """What the request asks of ``host_state``'s regions (their nodes are
    put in by the ranking). Under an affinity policy the nodes near the
    guest come from ``guest_cells``, fitted once per host and instance:
    kept on ``request`` (shared by the filter and the weigher) or, for a
    request without summaries, in ``cache``."""
    if numa_req.policy is None:
        return packing.NumaAsk(())
    kept = request.cells if request is not None else cache
    key = (len(request.claimed) if request is not None else 0,
           host_state.uuid)
    cells = kept.get(key, _UNSEEN) if kept is not None else _UNSEEN
    if cells is _UNSEEN:
        cells = guest_cells(host_state, spec_obj, candidates)
        if kept is not None:
            kept[key] = cells
    if cells is None:
        return packing.NumaAsk(())
    local = numa.local_nodes(numa_req.policy, cells, sockets(host_state))
    return packing.NumaAsk((), local, strict=numa.strict(numa_req.policy),
                           prefer=numa_req.policy == NUMA_PREFERRED)


_UNSEEN = object()
