"""Region usage from placement: the one call per scheduling request.

Filters never see placement's provider summaries, so the filter asks for
them once per instance being scheduled (placement changed after the
previous instance's claim: that is how a multi-create accounts for what
its earlier instances took), never once per host. Turning the answer into
``packing.RegionUsage`` is a pure function; the call is at the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from nova_accel_weigher import packing

LOG = logging.getLogger(__name__)

DEGRADED_TRAIT = "CUSTOM_ACCEL_DEGRADED"
NUMA_TRAIT_PREFIX = "CUSTOM_ACCEL_NUMA_"
MICROVERSION = "1.34"


class UsageSource(Protocol):
    def __call__(self, request_key: str, resource_classes: Iterable[str]
                 ) -> Mapping[str, packing.RegionUsage] | None: ...


def _numa(traits: Iterable[str]) -> int | None:
    for trait in traits:
        if trait.startswith(NUMA_TRAIT_PREFIX):
            suffix = trait[len(NUMA_TRAIT_PREFIX):]
            if suffix.isdigit():
                return int(suffix)
    return None


def usage_from_summaries(summaries: Mapping[str, Any],
                         resource_classes: Iterable[str]
                         ) -> dict[str, packing.RegionUsage]:
    """Placement's ``provider_summaries`` as region usage.

    A region is a provider with inventory of one of ``resource_classes``;
    its card is its parent. It is degraded when it or its card carries
    CUSTOM_ACCEL_DEGRADED.
    """
    classes = set(resource_classes)
    usage = {}
    for rp_uuid, summary in summaries.items():
        resources = summary.get("resources", {})
        mine = [resources[rc] for rc in classes if rc in resources]
        if not mine:
            continue
        parent = summary.get("parent_provider_uuid") or rp_uuid
        traits = set(summary.get("traits", ()))
        parent_traits = set(summaries.get(parent, {}).get("traits", ()))
        usage[rp_uuid] = packing.RegionUsage(
            capacity=int(sum(r["capacity"] for r in mine)),
            used=int(sum(r["used"] for r in mine)),
            card=parent,
            numa_node=_numa(traits),
            degraded=DEGRADED_TRAIT in traits | parent_traits)
    return usage


class PlacementUsage:
    """Asks placement for the usage of the regions of ``resource_classes``.

    The filter calls it once per pass over the hosts; it keeps no answer
    itself, since the same request key (an instance) comes back with other
    usage when the instance is moved later.
    """

    def __init__(self, adapter_factory, timeout: float):
        self._adapter_factory = adapter_factory
        self._adapter = None
        self._timeout = timeout

    def __call__(self, request_key, resource_classes):
        return self._fetch(sorted(resource_classes))

    def _fetch(self, resource_classes):
        params = {f"resources{i}": f"{rc}:1"
                  for i, rc in enumerate(resource_classes, 1)}
        if len(params) > 1:
            params["group_policy"] = "none"
        try:
            if self._adapter is None:
                self._adapter = self._adapter_factory()
            response = self._adapter.get(
                "/allocation_candidates", params=params,
                microversion=MICROVERSION, timeout=self._timeout,
                raise_exc=False)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: "
                                   f"{response.text[:200]}")
            summaries = response.json()["provider_summaries"]
        except Exception as exc:  # nothing may raise into nova
            LOG.warning("AccelTopologyFilter: placement did not give region "
                        "usage (%s); this request keeps placement's "
                        "candidate order. Check [placement] in nova.conf "
                        "and placement's health.", exc)
            return None
        return usage_from_summaries(summaries, resource_classes)
