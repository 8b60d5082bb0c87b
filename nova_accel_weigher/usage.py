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

"""Region usage for the filter: what a scheduling request already knows.

Nova's scheduler gets, with its own allocation candidates, placement's
``provider_summaries`` of exactly the provider trees it will consider
(capacity, use and traits of every provider in them, bounded by
``[scheduler] max_placement_results``), then drops them before the filters
run. ``carry`` puts them on the request's own RequestSpec (where nova's
scheduler hands them over: see filters.py), with the allocation requests
claimed so far for its earlier instances, so that the filter reads usage
without a placement call of its own and a multi-create's second instance
sees the first one's claim. Per request, never on the filter: nova 2026.2
schedules concurrent requests in native threads through one filter object.

``PlacementUsage`` is the fallback when a request arrives without them: one
call per instance being scheduled, never per host. Turning summaries into
``packing.RegionUsage`` is a pure function; the calls are at the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from accel_inventory.contract import DEGRADED_TRAIT, numa_node_of
from nova_accel_weigher import packing

LOG = logging.getLogger(__name__)

MICROVERSION = "1.34"
# The RequestSpec attribute that carries a request's RequestPlacement. Not
# a field: nova never serialises, saves or copies it.
REQUEST_ATTR = "_nova_accel_placement"


class UsageSource(Protocol):
    def __call__(self, request_key: str, resource_classes: Iterable[str]
                 ) -> Mapping[str, packing.RegionUsage] | None: ...


class RequestPlacement:
    """What nova's scheduler got from placement for one request: the
    provider summaries of its candidates and the allocation requests it
    has claimed so far, one per instance already placed."""

    __slots__ = ("summaries", "claimed", "_trees")

    def __init__(self, summaries: Mapping[str, Any]):
        self.summaries = summaries
        self.claimed: list[Mapping[str, Any]] = []
        self._trees: dict[str, list[str]] | None = None

    def tree(self, root_uuid: str) -> list[str]:
        """The providers of the tree rooted at ``root_uuid``. The index is
        built at the first question and kept for the request's later
        instances (the summaries do not change within a request)."""
        if self._trees is None:
            self._trees = trees(self.summaries)
        return self._trees.get(root_uuid, [])

    def root_of(self, rp_uuid: str) -> str | None:
        summary = self.summaries.get(rp_uuid)
        if summary is None:
            return None
        return summary.get("root_provider_uuid") or rp_uuid


def carry(spec_obj, provider_summaries: Mapping[str, Any] | None) -> None:
    """Put this request's summaries on its RequestSpec (None: the request
    has none, as for a rebuild). Replaces what an earlier pass left."""
    setattr(spec_obj, REQUEST_ATTR,
            None if provider_summaries is None
            else RequestPlacement(provider_summaries))


def record_claim(spec_obj, allocation_request: Mapping[str, Any]) -> None:
    """Remember that nova claimed ``allocation_request`` for one instance
    of this request."""
    request = request_placement(spec_obj)
    if request is not None:
        request.claimed.append(allocation_request)


def request_placement(spec_obj) -> RequestPlacement | None:
    return getattr(spec_obj, REQUEST_ATTR, None)


def trees(summaries: Mapping[str, Any]) -> dict[str, list[str]]:
    """Provider uuids by the uuid of their tree's root."""
    by_root: dict[str, list[str]] = {}
    for rp_uuid, summary in summaries.items():
        root = summary.get("root_provider_uuid") or rp_uuid
        by_root.setdefault(root, []).append(rp_uuid)
    return by_root


def claimed_amounts(claimed: Iterable[Mapping[str, Any]],
                    resource_classes: Iterable[str]
                    ) -> dict[str, dict[str, int]]:
    """Per provider and resource class, what the claimed allocation
    requests take of ``resource_classes``."""
    classes = set(resource_classes)
    amounts: dict[str, dict[str, int]] = {}
    for allocation_request in claimed:
        for rp_uuid, alloc in allocation_request["allocations"].items():
            for rc, amount in alloc["resources"].items():
                if rc in classes:
                    by_rc = amounts.setdefault(rp_uuid, {})
                    by_rc[rc] = by_rc.get(rc, 0) + int(amount)
    return amounts


def usage_from_summaries(summaries: Mapping[str, Any],
                         resource_classes: Iterable[str],
                         providers: Iterable[str] | None = None,
                         claimed: Mapping[str, Mapping[str, int]]
                         | None = None,
                         ) -> dict[str, packing.RegionUsage]:
    """Placement's ``provider_summaries`` as region usage.

    A region is a provider with inventory of one of ``resource_classes``;
    its card is its parent. It is degraded when it or its card carries
    CUSTOM_ACCEL_DEGRADED. Only ``providers`` are read when given (one
    tree, say); ``claimed`` (see claimed_amounts) is added to what the
    summaries say is used, since they were taken before those claims.

    The filter runs this for every host that reaches it (some 8,000
    regions at 1,000 hosts), hence plain loops and no per-region calls.
    """
    classes = tuple(set(resource_classes))
    claimed = claimed or {}
    card_degraded: dict[str, bool] = {}
    usage = {}
    for rp_uuid in summaries if providers is None else providers:
        summary = summaries[rp_uuid]
        resources = summary.get("resources") or {}
        capacity = used = 0
        found = False
        for rc in classes:
            r = resources.get(rc)
            if r is not None:
                capacity += r["capacity"]
                used += r["used"]
                found = True
        if not found:
            continue
        taken = claimed.get(rp_uuid)
        if taken:
            used += sum(taken.get(rc, 0) for rc in classes)
        traits = summary.get("traits") or ()
        parent = summary.get("parent_provider_uuid") or rp_uuid
        degraded = card_degraded.get(parent)
        if degraded is None:
            degraded = card_degraded[parent] = DEGRADED_TRAIT in (
                summaries.get(parent, {}).get("traits") or ())
        usage[rp_uuid] = packing.RegionUsage(
            int(capacity), int(used), parent, _numa_node(traits),
            degraded or DEGRADED_TRAIT in traits)
    return usage


class PlacementUsage:
    """Asks placement for the usage of the regions of ``resource_classes``.

    The filter's fallback when a request carries no summaries: called once
    per pass over the hosts; it keeps no answer itself, since the same
    request key (an instance) comes back with other usage when the
    instance is moved later.
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


def _numa_node(traits: Iterable[str]) -> int | None:
    for trait in traits:
        node = numa_node_of(trait)
        if node is not None:
            return node
    return None
