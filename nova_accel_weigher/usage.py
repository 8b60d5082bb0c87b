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
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol

from accel_inventory import numa
from accel_inventory.contract import DEGRADED_TRAIT, numa_node_among
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

    __slots__ = ("summaries", "claimed", "_trees", "rooms", "cells")

    def __init__(self, summaries: Mapping[str, Any]):
        self.summaries = summaries
        self.claimed: list[Mapping[str, Any]] = []
        self._trees: dict[str, list[str]] | None = None
        # What rooms.for_request read of the summaries for the instance
        # being placed, so that the weigher's pass reuses the filter's.
        self.rooms: tuple[tuple, Any] | None = None
        # The host cells nova predicts for the guest, per (instance,
        # host): fitted by the filter, read again by the weigher
        # (cells.numa_ask).
        self.cells: dict[tuple, Any] = {}

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
        tree = by_root.get(root)
        if tree is None:
            by_root[root] = [rp_uuid]
        else:
            tree.append(rp_uuid)
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


def region_load(resources: Mapping[str, Any] | None,
                resource_classes: Iterable[str],
                taken: Mapping[str, int] | None) -> tuple[int, int] | None:
    """A provider's capacity and use of ``resource_classes`` from its
    summary's ``resources``, with what claims made since the summaries
    ``taken`` from it added; None if it has none of those classes (it is
    not a region)."""
    if not resources:
        return None
    capacity = used = 0
    found = False
    for rc in resource_classes:
        r = resources.get(rc)
        if r is not None:
            capacity += r["capacity"]
            used += r["used"]
            found = True
    if not found:
        return None
    if taken:
        used += sum(taken.get(rc, 0) for rc in resource_classes)
    return capacity, used


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
        load = region_load(summary.get("resources"), classes,
                           claimed.get(rp_uuid))
        if load is None:
            continue
        capacity, used = load
        traits = summary.get("traits") or ()
        parent = summary.get("parent_provider_uuid") or rp_uuid
        degraded = card_degraded.get(parent)
        if degraded is None:
            degraded = card_degraded[parent] = DEGRADED_TRAIT in (
                summaries.get(parent, {}).get("traits") or ())
        usage[rp_uuid] = packing.RegionUsage(
            int(capacity), int(used), parent, numa_node_among(traits),
            degraded or DEGRADED_TRAIT in traits)
    return usage


class RegionStates:
    """The regions one filter pass knows, each by the number of its state:
    what a score depends on of a region (capacity, use, NUMA node, whether
    it is degraded, its card's fill). Across a thousand hosts the same few
    states recur, so a candidate's shape (see ShapeRanker) is a short tuple
    of small ints, and each shape is scored once per pass.

    Regions come ready-made (``admit``) or are read from provider
    summaries tree by tree (``read_tree``). Pure: no I/O, and one object
    per pass, never shared between requests.
    """

    __slots__ = ("number", "region", "fill", "_numbers", "_traits")

    def __init__(self) -> None:
        # Per region provider, the number of its state.
        self.number: dict[str, int] = {}
        # Per state number, one region in that state and its card's fill
        # (what scoring a new shape reads).
        self.region: list[packing.RegionUsage] = []
        self.fill: list[float] = []
        self._numbers: dict[tuple, int] = {}
        # NUMA node and degraded mark by a region's traits, parsed once.
        self._traits: dict[tuple, tuple[int | None, bool]] = {}

    def admit(self, regions: Mapping[str, packing.RegionUsage]) -> None:
        """Number ``regions``, which hold whole cards (one tree, or all):
        card fill over them is each card's own."""
        fills = packing.card_fill(regions)
        number = self.number
        for rp_uuid, region in regions.items():
            number[rp_uuid] = self._number(region, fills[region.card])

    def _number(self, region: packing.RegionUsage, fill: float) -> int:
        key = (region.capacity, region.used, region.numa_node,
               region.degraded, fill)
        n = self._numbers.get(key)
        if n is None:
            n = self._numbers[key] = len(self.region)
            self.region.append(region)
            self.fill.append(fill)
        return n

    def read_tree(self, summaries: Mapping[str, Any],
                  providers: Iterable[str],
                  resource_classes: Sequence[str],
                  claimed: Mapping[str, Mapping[str, int]]) -> None:
        """Number the regions among ``providers`` (one whole tree of
        ``summaries``), as ``admit(usage_from_summaries(summaries,
        resource_classes, providers, claimed))`` would, without building a
        RegionUsage per region: the filter reads every tree that reaches
        it (some 8,000 regions at 1,000 hosts)."""
        rows = []
        # Per card, its regions' capacity and use; summed in locals while
        # the regions of one card follow each other, as they mostly do.
        cards: dict[str, Any] = {}
        card_now, capacity_now, used_now = None, 0, 0
        traits_read, last_traits, last_read = self._traits, None, None
        for rp_uuid in providers:
            summary = summaries[rp_uuid]
            load = region_load(summary.get("resources"), resource_classes,
                               claimed.get(rp_uuid) if claimed else None)
            if load is None:
                continue
            capacity, used = load
            # Regions of a card mostly carry the same traits: comparing
            # with the last list (in C) is the cheap way to know.
            traits = summary.get("traits") or ()
            if traits != last_traits:
                last_traits = traits
                last_read = traits_read.get(tuple(traits))
                if last_read is None:
                    last_read = traits_read[tuple(traits)] = (
                        numa_node_among(traits), DEGRADED_TRAIT in traits)
            card = summary.get("parent_provider_uuid") or rp_uuid
            rows.append((rp_uuid, capacity, used, card, last_read))
            if card != card_now:
                _add_to_card(cards, card_now, capacity_now, used_now)
                card_now, capacity_now, used_now = card, 0, 0
            capacity_now += capacity
            used_now += used
        _add_to_card(cards, card_now, capacity_now, used_now)
        for card, (capacity, used) in cards.items():
            cards[card] = ((used / capacity) if capacity else 1.0,
                           DEGRADED_TRAIT in (summaries.get(card, {})
                                              .get("traits") or ()))
        number, numbers = self.number, self._numbers
        for rp_uuid, capacity, used, card, (numa_node, degraded) in rows:
            fill, card_degraded = cards[card]
            degraded = degraded or card_degraded
            n = numbers.get((capacity, used, numa_node, degraded, fill))
            if n is None:
                n = self._number(packing.RegionUsage(
                    int(capacity), int(used), card, numa_node, degraded),
                    fill)
            number[rp_uuid] = n


def _add_to_card(cards: dict[str, Any], card: str | None, capacity: int,
                 used: int) -> None:
    if card is None:
        return
    totals = cards.get(card)
    if totals is None:
        cards[card] = [capacity, used]
    else:
        totals[0] += capacity
        totals[1] += used


class ShapeRanker:
    """``packing.rank`` of a host's candidates against a pass's region
    states, each score remembered by all it depends on: the amounts and the
    states of the regions a candidate takes, not which regions they are.
    Providers that are not known regions count for nothing in a score, so
    they are left out of its shape."""

    __slots__ = ("states", "classes", "policy", "mix", "_scores",
                 "_scores_near")

    def __init__(self, states: RegionStates, resource_classes: Sequence[str],
                 policy: str, mix: Sequence[packing.RequestShape]) -> None:
        self.states = states
        self.classes = tuple(resource_classes)
        self.policy = policy
        self.mix = mix
        self._scores: dict[tuple, packing.Score | None] = {}
        # The same, per set of NUMA nodes near the guest.
        self._scores_near: dict[frozenset[int], dict] = {}

    def rank(self, candidates: Sequence[Mapping[str, Any]],
             numa_ask: packing.NumaAsk | None = None
             ) -> list[tuple[int, packing.Score]]:
        """Indexes of the acceptable candidates, best first, with their
        scores; equal scores keep placement's order (as packing.rank).
        With a ``numa_ask`` that names the nodes near the guest, the
        score prefers regions there, ``strict`` refuses the others and
        ``prefer`` puts what a candidate takes there first (the regions'
        nodes are their states'; ``numa_ask.nodes`` is not read)."""
        local = numa_ask.local if numa_ask is not None else None
        if local is not None and (numa_ask.strict or numa_ask.prefer):
            return self._rank_near(candidates, numa_ask)
        return self._rank(candidates, local)

    def _rank(self, candidates: Sequence[Mapping[str, Any]],
              local: frozenset[int] | None
              ) -> list[tuple[int, packing.Score]]:
        classes = self.classes
        scores = (self._scores if local is None
                  else self._scores_near.setdefault(local, {}))
        number = self.states.number
        # Most requests ask for one class: one lookup, no call.
        single = classes[0] if len(classes) == 1 else None
        scored = []
        for index, candidate in enumerate(candidates):
            shape = ()
            for rp_uuid, alloc in candidate["allocations"].items():
                n = number.get(rp_uuid)
                if n is not None:
                    amount = (alloc["resources"].get(single, 0) if single
                              else _amount(alloc["resources"], classes))
                    if amount:
                        shape += (n, amount)
            score = scores.get(shape, _UNSEEN)
            if score is _UNSEEN:
                score = scores[shape] = self._score(candidate, local)
            if score is not None:
                scored.append((index, score))
        scored.sort(key=itemgetter(1), reverse=True)
        return scored

    def _rank_near(self, candidates: Sequence[Mapping[str, Any]],
                   numa_ask: packing.NumaAsk
                   ) -> list[tuple[int, packing.Score]]:
        """``rank`` under a ``strict`` or ``prefer`` NUMA ask."""
        local, states = numa_ask.local, self.states
        kept = []
        for index, score in self._rank(candidates, local):
            near = total = 0
            for rp_uuid, alloc in candidates[index]["allocations"].items():
                n = states.number.get(rp_uuid)
                if n is not None:
                    amount = _amount(alloc["resources"], self.classes)
                    total += amount
                    if numa.is_local(states.region[n].numa_node, local):
                        near += amount
            if numa_ask.strict and near < total:
                continue
            kept.append((near if numa_ask.prefer else 0, index, score))
        # Stable: equal nearness keeps the score's order.
        kept.sort(key=itemgetter(0), reverse=True)
        return [(index, score) for _near, index, score in kept]

    def _score(self, candidate: Mapping[str, Any],
               local: frozenset[int] | None) -> packing.Score | None:
        states = self.states
        demand: dict[str, int] = {}
        regions: dict[str, packing.RegionUsage] = {}
        fills: dict[str, float] = {}
        for rp_uuid, alloc in candidate["allocations"].items():
            n = states.number.get(rp_uuid)
            if n is not None:
                amount = _amount(alloc["resources"], self.classes)
                if amount:
                    # A region in the same state scores as this one; one
                    # card's regions share its fill.
                    region = states.region[n]
                    demand[rp_uuid] = amount
                    regions[rp_uuid] = region
                    fills[region.card] = states.fill[n]
        return packing.score(demand, regions, policy=self.policy,
                             mix=self.mix, local_nodes=local,
                             fill_by_card=fills)


_UNSEEN = object()


def _amount(resources: Mapping[str, int], classes: Iterable[str]) -> int:
    """Functions one allocation takes of the request's region classes."""
    total = 0
    for rc in classes:
        n = resources.get(rc)
        if n:
            total += n
    return total


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
                adapter = self._adapter_factory()
                # As the agent's client: the timeout bounds the whole
                # answer, not each read (a placement that drips would hold
                # the scheduling request for ever).
                from accel_inventory import placement

                placement.with_deadline(adapter.session, self._timeout)
                self._adapter = adapter
            # A redirect is never followed: keystoneauth would send nova's
            # token to wherever it points.
            response = self._adapter.get(
                "/allocation_candidates", params=params,
                microversion=MICROVERSION, timeout=self._timeout,
                raise_exc=False, redirect=False)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: "
                                   f"{response.text[:200]}")
            # An answer of another shape is the same as none: read inside
            # the try, so that it is one line, not a traceback per host.
            return usage_from_summaries(
                response.json()["provider_summaries"], resource_classes)
        except Exception as exc:  # nothing may raise into nova
            LOG.warning("AccelTopologyFilter: placement did not give region "
                        "usage (%s: %s); this request keeps placement's "
                        "candidate order. Check [placement] in nova.conf "
                        "and placement's health.", type(exc).__name__, exc)
            return None
