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

"""The providers an inventory should have in placement, and the steps
from what placement holds to them. Pure: no I/O (the publisher in
``placement`` applies the steps).

Layout: the compute node's root provider (found by the hypervisor host
name) > one provider per card > one provider per region. Provider UUIDs
are ``uuid5(NOVA_ACCEL_NAMESPACE, f"{hostname}:{card or region id}")``:
they follow the card's identity, never its address, so a card that moved
to another slot keeps its providers and every allocation on them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accel_inventory import contract, kinds, model
from accel_inventory.contract import (CARD_TRAIT, DEGRADED_TRAIT, OWNER_TRAIT,
                                     REGION_TRAIT)

# Fixed for the project: changing it would orphan every published provider.
NOVA_ACCEL_NAMESPACE = uuid.UUID("5b0d5a7e-3c1f-5e8a-9d62-4e6f0a1c7b39")

_CUSTOM_NAME = re.compile(r"^CUSTOM_[A-Z0-9_]+$")
_MAX_NAME = 200


def provider_uuid(hostname: str, entity_id: str) -> str:
    """The provider UUID of a card or region id on ``hostname``."""
    return str(uuid.uuid5(NOVA_ACCEL_NAMESPACE, f"{hostname}:{entity_id}"))


def provider_name(hostname: str, entity_id: str) -> str:
    """A readable, unique provider name within placement's 200 chars.

    A long topology-path card id is shortened with a digest so that two
    long ids never collide.
    """
    name = f"{hostname}:{entity_id}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{name[:_MAX_NAME - 17]}~{digest}"


def card_traits(card: model.Card) -> frozenset[str]:
    traits = {OWNER_TRAIT, CARD_TRAIT, contract.vendor_trait(card.vendor_id),
              contract.product_trait(card.vendor_id, card.product_id),
              contract.move_trait(kinds.of(card).move)}
    if card.degraded:
        traits.add(DEGRADED_TRAIT)
    return frozenset(traits)


def region_traits(card: model.Card, region: model.Region) -> frozenset[str]:
    """A region's traits; an FPGA region's also say which bitstreams fit
    its partial-reconfiguration region and which accelerators its ports
    hold now (kinds.fpga_region)."""
    traits = {OWNER_TRAIT, REGION_TRAIT,
              contract.region_size_trait(region.size),
              contract.kind_trait(card.kind),
              contract.move_trait(kinds.of(card).move)}
    traits.update(contract.fpga_compat_trait(c)
                  for c in region.attrs.get("fpga_compat_ids", []))
    traits.update(contract.fpga_afu_trait(a)
                  for a in region.attrs.get("fpga_afu_ids", []))
    if card.numa_node is not None and card.numa_node >= 0:
        traits.add(contract.numa_trait(card.numa_node))
    if card.degraded:
        traits.add(DEGRADED_TRAIT)
    return frozenset(traits)


def region_inventories(card: model.Card, region: model.Region,
                       cleaning: Collection[str] = ()
                       ) -> dict[str, dict[str, Any]]:
    """One inventory of the region's class, ``total`` = its functions.

    A degraded card's regions reserve everything, and a region its
    withheld functions (vanished ones kept for their holders, VFs that
    cannot take the region's vGPU type now) and those that wait to be
    cleaned (``cleaning``, function ids: a released function is offered
    again only once it is clean): nothing new lands there, and placement
    keeps the allocations already made (it accepts usage above capacity).
    A region without functions has no inventory, since
    placement refuses a total of zero.
    """
    if region.size == 0:
        return {}
    return {region.resource_class: {
        "total": region.size,
        "reserved": region.size if card.degraded else sum(
            kinds.withheld(card, f) or f.id in cleaning
            for f in region.functions),
        "min_unit": 1, "max_unit": region.size, "step_size": 1,
        "allocation_ratio": 1.0}}


@dataclass(frozen=True)
class ProviderSpec:
    """What one of our providers should look like in placement."""

    uuid: str
    name: str
    parent_uuid: str
    source_id: str  # the card or region id it mirrors
    inventories: dict[str, dict[str, Any]] = field(hash=False)
    traits: frozenset[str]


def desired_tree(inventory: model.Inventory,
                 root_uuid: str) -> list[ProviderSpec]:
    """The providers ``inventory`` should have under ``root_uuid``.

    Parents come before their children, in inventory order.
    """
    host = inventory.hostname
    specs = []
    for card in inventory.cards:
        card_uuid = provider_uuid(host, card.id)
        specs.append(ProviderSpec(
            uuid=card_uuid, name=provider_name(host, card.id),
            parent_uuid=root_uuid, source_id=card.id, inventories={},
            traits=card_traits(card)))
        for region in card.regions:
            specs.append(ProviderSpec(
                uuid=provider_uuid(host, region.id),
                name=provider_name(host, region.id),
                parent_uuid=card_uuid, source_id=region.id,
                inventories=region_inventories(card, region,
                                               inventory.cleaning),
                traits=region_traits(card, region)))
    return specs


def invalid_names(specs: Iterable[ProviderSpec]) -> dict[str, str]:
    """Specs whose traits or resource classes placement would refuse.

    Maps the source id to the offending names, so the caller can skip
    that card and say which profile to fix.
    """
    bad = {}
    for spec in specs:
        names = sorted(n for n in set(spec.traits) | set(spec.inventories)
                       if not _CUSTOM_NAME.match(n) or len(n) > 255)
        if names:
            bad[spec.source_id] = ", ".join(names)
    return bad


@dataclass
class ProviderState:
    """What placement holds for one provider, as far as we have read it.

    ``inventories``, ``traits`` and ``allocations`` are None until read.
    They stay valid while ``generation`` is unchanged, except non-empty
    allocations: placement removes allocations without a generation bump.
    """

    uuid: str
    name: str
    parent_uuid: str | None
    generation: int
    inventories: dict[str, dict[str, Any]] | None = None
    traits: frozenset[str] | None = None
    allocations: dict[str, dict[str, int]] | None = None


@dataclass(frozen=True)
class Step:
    """One change to apply: create, move, inventories, traits or remove."""

    action: str
    uuid: str
    spec: ProviderSpec | None = None


_INVENTORY_FIELDS = ("total", "reserved", "min_unit", "max_unit",
                     "step_size", "allocation_ratio")


def normal_inventories(inventories: Mapping[str, Mapping[str, Any]]) -> dict:
    """Inventories as placement compares them: every field, numbers as
    floats, so that 1 and 1.0 are no change."""
    return {rc: tuple(float(inv.get(k, 0)) for k in _INVENTORY_FIELDS)
            for rc, inv in inventories.items()}


def diff(desired: list[ProviderSpec],
         actual: Mapping[str, ProviderState]) -> list[Step]:
    """The steps that turn ``actual`` (our providers) into ``desired``.

    Creates and updates come in ``desired`` order (parents first);
    removals of providers we own but no longer want come last, children
    before parents. Every state in ``actual`` must have its inventories
    and traits read.
    """
    steps = []
    wanted = {spec.uuid for spec in desired}
    for spec in desired:
        have = actual.get(spec.uuid)
        if have is None:
            steps.append(Step("create", spec.uuid, spec))
            continue
        if have.name != spec.name or have.parent_uuid != spec.parent_uuid:
            steps.append(Step("move", spec.uuid, spec))
        if have.traits != spec.traits:
            steps.append(Step("traits", spec.uuid, spec))
        if (normal_inventories(have.inventories or {})
                != normal_inventories(spec.inventories)):
            steps.append(Step("inventories", spec.uuid, spec))
    unwanted = [s for s in actual.values() if s.uuid not in wanted]
    parents = {s.parent_uuid for s in unwanted}
    # Leaves first: a provider is removable only once its children are gone.
    unwanted.sort(key=lambda s: (s.uuid in parents, s.uuid))
    steps.extend(Step("remove", s.uuid) for s in unwanted)
    return steps


def retired(state: ProviderState) -> tuple[dict[str, dict[str, Any]],
                                           frozenset[str]]:
    """Inventories and traits of a provider we no longer want but that
    still holds allocations: everything reserved and marked degraded, so
    nothing new lands there while the allocations stay."""
    inventories = {rc: dict(inv, reserved=inv["total"])
                   for rc, inv in (state.inventories or {}).items()}
    return inventories, frozenset(state.traits or ()) | {DEGRADED_TRAIT}
