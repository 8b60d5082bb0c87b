"""Mirror the inventory into placement and read back who holds what.

Layout: the compute node's root provider (found by the hypervisor host
name) > one provider per card > one provider per region. Provider UUIDs
are ``uuid5(NOVA_ACCEL_NAMESPACE, f"{hostname}:{card or region id}")``:
they follow the card's identity, never its address, so a card that moved
to another slot keeps its providers and every allocation on them.

The module has a pure half and an edge. ``desired_tree`` (inventory ->
provider specs), ``diff`` (specs vs. what placement holds -> steps) and
``assign`` (allocations -> concrete functions per consumer) do no I/O and
are what the unit tests exercise. ``Publisher`` is the only code that
speaks to placement.

Requests are kept few because the agent runs this every minute on every
compute host: the publisher remembers each provider's generation with the
inventories, traits and (empty) allocations it last saw, and placement
bumps the generation at every change of them, so a publish with nothing
changed costs one listing of the tree. Emptied allocations are the
exception (placement does not bump the generation when allocations are
removed), so a region that held allocations is read again at every sync.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from accel_inventory import claims, contract, model
from accel_inventory.contract import (CARD_TRAIT, DEGRADED_TRAIT, OWNER_TRAIT,
                                     REGION_TRAIT)

LOG = logging.getLogger(__name__)

# Fixed for the project: changing it would orphan every published provider.
NOVA_ACCEL_NAMESPACE = uuid.UUID("5b0d5a7e-3c1f-5e8a-9d62-4e6f0a1c7b39")

# Nova speaks 1.36; 1.37 is only needed to move a provider to a new parent.
MICROVERSION = "1.36"
REPARENT_MICROVERSION = "1.37"

CLAIM_SOURCE = "placement"

_CUSTOM_NAME = re.compile(r"^CUSTOM_[A-Z0-9_]+$")
_MAX_NAME = 200


# ---------------------------------------------------------------- pure half

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
              contract.product_trait(card.vendor_id, card.product_id)}
    if card.degraded:
        traits.add(DEGRADED_TRAIT)
    return frozenset(traits)


def region_traits(card: model.Card, region: model.Region) -> frozenset[str]:
    traits = {OWNER_TRAIT, REGION_TRAIT,
              contract.region_size_trait(region.size),
              contract.kind_trait(card.kind)}
    if card.numa_node is not None and card.numa_node >= 0:
        traits.add(contract.numa_trait(card.numa_node))
    if card.degraded:
        traits.add(DEGRADED_TRAIT)
    return frozenset(traits)


def region_inventories(card: model.Card,
                       region: model.Region) -> dict[str, dict[str, Any]]:
    """One inventory of the region's class, ``total`` = its functions.

    A degraded card's regions reserve everything, and a region its
    vanished functions (kept for their holders): nothing new lands there,
    and placement keeps the allocations already made (it accepts usage
    above capacity). A region without functions has no inventory, since
    placement refuses a total of zero.
    """
    if region.size == 0:
        return {}
    return {region.resource_class: {
        "total": region.size,
        "reserved": region.size if card.degraded else sum(
            card.vanished(f) for f in region.functions),
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
                inventories=region_inventories(card, region),
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


def _normal(inventories: Mapping[str, Mapping[str, Any]]) -> dict:
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
        if _normal(have.inventories or {}) != _normal(spec.inventories):
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


def holdings(inventory: model.Inventory,
             allocations: Mapping[str, Mapping[str, Mapping[str, int]]]
             ) -> dict[str, dict[str, int]]:
    """Functions each consumer holds per region, from provider allocations.

    ``allocations`` maps a region provider's UUID to placement's
    ``{consumer: {resource class: amount}}`` for it. Regions missing from
    it were not read and are missing from the result too.
    """
    by_uuid = {provider_uuid(inventory.hostname, r.id): r
               for c in inventory.cards for r in c.regions}
    result: dict[str, dict[str, int]] = {}
    for rp_uuid, consumers in allocations.items():
        region = by_uuid.get(rp_uuid)
        if region is None:
            continue
        result[region.id] = {
            consumer: amounts[region.resource_class]
            for consumer, amounts in consumers.items()
            if amounts.get(region.resource_class, 0) > 0}
    return result


@dataclass
class SyncResult:
    inventory: model.Inventory
    changed: list[str]   # consumers whose claim was recorded or released
    problems: list[str]  # what the operator should look at


def assign(inventory: model.Inventory,
           held: Mapping[str, Mapping[str, int]],
           boot_id: str | None = None) -> SyncResult:
    """Give each consumer concrete functions matching its allocations.

    ``held`` is ``holdings()``: per region read, how many functions each
    consumer holds. Functions a consumer already has stay its own (ids,
    not addresses, so this survives rescans and re-enumeration); missing
    ones come from the region's free functions, lowest index first.
    Claims this sync made (source ``placement``) shrink or go when the
    allocation does, unless the domain is running in this boot: its
    devices are attached, and giving them away would hand one function to
    two guests. Claims made by the hook or an operator are never taken
    away, only topped up. Regions not in ``held`` are left as they are.
    """
    region_of = {fid: region.id
                 for fid, (_c, region, _f) in
                 inventory.function_index().items()}
    regions = {r.id: r for c in inventory.cards for r in c.regions}
    problems: list[str] = []
    want = {(consumer, rid): n for rid, per in held.items()
            for consumer, n in per.items() if rid in regions and n > 0}

    new_functions: dict[str, list[str]] = {}
    for consumer, claim in inventory.claims.items():
        kept: list[str] = []
        for fid in claim.functions:
            rid = region_of.get(fid)
            mine = sum(1 for k in kept if region_of.get(k) == rid)
            if rid not in held or mine < want.get((consumer, rid), 0):
                kept.append(fid)
            elif claim.source != CLAIM_SOURCE:
                kept.append(fid)
                problems.append(
                    f"{consumer} holds {fid} by a {claim.source} claim but "
                    f"placement allocates it fewer functions of {rid}")
            elif claim.is_running(boot_id):
                kept.append(fid)
                problems.append(
                    f"{consumer} is running with {fid} but placement no "
                    f"longer allocates it; the function is released when "
                    f"the domain stops")
        new_functions[consumer] = kept

    taken = {fid for fids in new_functions.values() for fid in fids}
    for consumer, rid in sorted(want):
        fids = new_functions.setdefault(consumer, [])
        need = want[consumer, rid] - sum(
            1 for f in fids if region_of.get(f) == rid)
        if need <= 0:
            continue
        free = [f.id for f in regions[rid].functions if f.id not in taken]
        fids.extend(free[:need])
        taken.update(free[:need])
        if len(free) < need:
            problems.append(
                f"placement allocates {want[consumer, rid]} functions of "
                f"{rid} to {consumer} but only {len(free)} more are free on "
                f"the host; check the claims with 'accel-inventory show'")

    # Shrinking claims first frees what growing ones may take.
    order = sorted(new_functions, key=lambda c: (
        not set(new_functions[c]) <= set(claims.functions_of(inventory, c)),
        c))
    new = inventory
    changed = []
    for consumer in order:
        fids = new_functions[consumer]
        old = inventory.claims.get(consumer)
        if old is not None and old.functions == fids:
            continue
        if not fids:
            if old is not None:
                new = claims.release_claim(new, consumer)
                changed.append(consumer)
            continue
        claim = (dataclasses.replace(old, functions=fids) if old is not None
                 else model.Claim(consumer=consumer, functions=fids,
                                  source=CLAIM_SOURCE))
        new = claims.record_claim(new, claim, boot_id=boot_id)
        changed.append(consumer)
    return SyncResult(new, changed, problems)


# --------------------------------------------------------------------- edge

class PlacementError(Exception):
    """Placement refused or failed a request; the message says which."""


class PlacementUnavailable(PlacementError):
    """Placement cannot be reached (down, wrong endpoint, auth failure)."""


class _Conflict(Exception):
    """A provider's generation changed under us: re-read and retry.

    ``names`` says that placement no longer knows a trait or resource
    class we created (its database was reset): create them again.
    """

    def __init__(self, rp_uuid: str, names: bool = False):
        super().__init__(rp_uuid)
        self.uuid = rp_uuid
        self.names = names


_UNKNOWN_NAME = ("No such trait", "Unknown resource class",
                 "No such resource class")


def _unknown_name(response) -> bool:
    return response.status_code == 400 and any(
        text in response.text for text in _UNKNOWN_NAME)


def load_adapter(conf):
    """A keystoneauth1 adapter from the ``[placement]`` group, as nova
    builds its own: auth plugin, then session, then adapter."""
    from keystoneauth1 import exceptions as ks_exc
    from keystoneauth1 import loading as ks_loading

    group = "placement"
    try:
        auth = ks_loading.load_auth_from_conf_options(conf, group)
        session = ks_loading.load_session_from_conf_options(conf, group,
                                                            auth=auth)
        return ks_loading.load_adapter_from_conf_options(
            conf, group, session=session, auth=auth)
    except ks_exc.ClientException as e:
        raise PlacementError(f"the [placement] options are incomplete: "
                             f"{e}") from e


class Client:
    """A thin placement client over a keystoneauth1 adapter.

    Counts its requests (the tests and the benchmark read ``requests``) and
    turns every failure to reach placement into PlacementUnavailable.
    """

    def __init__(self, adapter, microversion: str = MICROVERSION):
        self.adapter = adapter
        self.microversion = microversion
        self.requests = 0

    def call(self, method: str, url: str, body: Any = None,
             microversion: str | None = None):
        from keystoneauth1 import exceptions as ks_exc

        self.requests += 1
        kwargs: dict[str, Any] = {
            "raise_exc": False,
            "microversion": microversion or self.microversion,
            "headers": {"Accept": "application/json"}}
        if body is not None:
            kwargs["json"] = body
        try:
            return self.adapter.request(url, method, **kwargs)
        except ks_exc.ClientException as e:
            raise PlacementUnavailable(
                f"cannot reach placement for {method} {url} (is it up, and "
                f"are the [placement] options right?): {e}") from e


def _error(response, what: str) -> PlacementError:
    detail = ""
    try:
        errors = response.json().get("errors", [])
        if errors:
            detail = ": " + errors[0].get("detail", "").strip().replace(
                "\n", " ")
    except ValueError:
        detail = f": {response.text[:200]}"
    cls = PlacementUnavailable if response.status_code in (
        401, 403, 500, 502, 503, 504) else PlacementError
    return cls(f"placement answered {response.status_code} to {what}"
               f"{detail}")


def _error_code(response) -> str:
    try:
        return response.json()["errors"][0].get("code", "")
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


@dataclass
class PublishReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)   # unwanted, allocated
    skipped: dict[str, str] = field(default_factory=dict)  # bad names
    failed: dict[str, str] = field(default_factory=dict)   # refused
    attempts: int = 0
    requests: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


class Publisher:
    """Publishes one host's inventory and reads its allocations.

    Keep one Publisher for the life of the agent: what it remembers is
    what makes an unchanged publish cost one request.
    """

    def __init__(self, client: Client, *, compute_node: str | None = None,
                 max_attempts: int = 4):
        self.client = client
        self.compute_node = compute_node
        self.max_attempts = max_attempts
        self.root_uuid: str | None = None
        self.root_name: str | None = None  # the provider name it was for
        self._known: dict[str, ProviderState] = {}
        self._exists: set[str] = set()  # traits and classes ensured

    # -- publish

    def publish(self, inventory: model.Inventory) -> PublishReport:
        """Make placement match ``inventory``; retry generation conflicts.

        Raises PlacementUnavailable when placement cannot be reached (the
        cache is untouched; the next publish starts over) and
        PlacementError when it refuses a change.
        """
        start = self.client.requests
        report = PublishReport()
        for attempt in range(1, self.max_attempts + 1):
            report.attempts = attempt
            # What earlier attempts wrote stays reported; what they could
            # not do is decided again.
            report.failed.clear()
            report.skipped.clear()
            try:
                self._publish_once(inventory, report)
                break
            except _Conflict as c:
                LOG.info("Provider %s changed under us (generation "
                         "conflict); re-reading it (attempt %d of %d)",
                         c.uuid, attempt, self.max_attempts)
                self._known.pop(c.uuid, None)
                if c.names:
                    self._exists.clear()
        else:
            raise PlacementError(
                f"gave up publishing after {self.max_attempts} generation "
                f"conflicts; another client keeps changing providers of "
                f"{inventory.hostname}. The next publish tries again.")
        report.requests = self.client.requests - start
        return report

    def _publish_once(self, inventory: model.Inventory,
                      report: PublishReport) -> None:
        self._ensure_trait(OWNER_TRAIT)
        had_providers = bool(self._known)
        root = self._root(inventory)
        actual = self._read_tree(root)
        if not actual and had_providers and inventory.cards:
            # Our providers vanished: the compute node may have been
            # re-created under a new UUID. Look it up again once.
            self.root_uuid = self.root_name = None
            root = self._root(inventory)
            actual = self._read_tree(root)
        specs = desired_tree(inventory, root)
        bad = invalid_names(specs)
        for source_id, names in bad.items():
            LOG.error("Not publishing %s: placement refuses the names %s. "
                      "Fix the resource class in its profile.",
                      source_id, names)
        report.skipped.update(bad)
        skip = {model.card_id_of(s) for s in bad}
        # Providers of a skipped card are neither updated nor removed.
        for spec in specs:
            if model.card_id_of(spec.source_id) in skip:
                actual.pop(spec.uuid, None)
        specs = [s for s in specs
                 if model.card_id_of(s.source_id) not in skip]
        steps = diff(specs, actual)
        # Custom names are created only when a write needs them.
        for step in steps:
            if step.action in ("create", "traits"):
                for name in sorted(step.spec.traits):
                    self._ensure_trait(name)
            if step.action in ("create", "inventories"):
                for name in step.spec.inventories:
                    self._ensure_class(name)
        failed: set[str] = set()
        for step in steps:
            if step.spec is not None and step.spec.parent_uuid in failed:
                failed.add(step.uuid)
                report.failed[step.spec.source_id] = (
                    "not published: its card's provider failed")
                continue
            try:
                self._apply(step, report)
            except PlacementUnavailable:
                raise
            except PlacementError as e:
                # One provider placement refuses (say, a resource class
                # changed while still allocated) must not hold back the
                # others; it is retried at every publish.
                source = step.spec.source_id if step.spec else step.uuid
                LOG.error("Cannot publish %s: %s", source, e)
                report.failed[source] = str(e)
                failed.add(step.uuid)

    def _root(self, inventory: model.Inventory) -> str:
        name = self.compute_node or inventory.hostname
        if self.root_uuid and self.root_name == name:
            return self.root_uuid
        response = self.client.call(
            "GET", f"/resource_providers?name={quote(name, safe='')}")
        if response.status_code != 200:
            raise _error(response, f"the lookup of provider {name}")
        found = response.json()["resource_providers"]
        if not found:
            raise PlacementError(
                f"no resource provider named {name} in placement: nova-"
                f"compute has not registered this host yet, or [agent] "
                f"compute_node does not match its hypervisor hostname")
        self.root_uuid, self.root_name = found[0]["uuid"], name
        return self.root_uuid

    def _read_tree(self, root: str) -> dict[str, ProviderState]:
        """Our providers under ``root``, each with inventories and traits.

        One listing; providers whose generation we saw last are not read
        again.
        """
        response = self.client.call(
            "GET", f"/resource_providers?in_tree={root}"
                   f"&required={OWNER_TRAIT}")
        if _unknown_name(response):
            raise _Conflict(root, names=True)
        if response.status_code != 200:
            raise _error(response, f"the listing of the tree of {root}")
        listed = response.json()["resource_providers"]
        fresh = {}
        for rp in listed:
            known = self._known.get(rp["uuid"])
            if known is None or known.generation != rp["generation"]:
                known = self._read_provider(rp)
            fresh[rp["uuid"]] = known
        self._known = fresh
        return dict(fresh)

    def _read_provider(self, rp: Mapping[str, Any]) -> ProviderState:
        base = f"/resource_providers/{rp['uuid']}"
        inv = self.client.call("GET", f"{base}/inventories")
        traits = self.client.call("GET", f"{base}/traits")
        for r in (inv, traits):
            if r.status_code == 404:
                raise _Conflict(rp["uuid"])  # deleted meanwhile
            if r.status_code != 200:
                raise _error(r, f"the read of provider {rp['uuid']}")
        inv_body, traits_body = inv.json(), traits.json()
        generation = inv_body["resource_provider_generation"]
        if traits_body["resource_provider_generation"] != generation:
            raise _Conflict(rp["uuid"])
        return ProviderState(
            uuid=rp["uuid"], name=rp["name"],
            parent_uuid=rp.get("parent_provider_uuid"),
            generation=generation, inventories=inv_body["inventories"],
            traits=frozenset(traits_body["traits"]))

    def _ensure_trait(self, name: str) -> None:
        self._ensure(f"/traits/{name}", name)

    def _ensure_class(self, name: str) -> None:
        self._ensure(f"/resource_classes/{name}", name)

    def _ensure(self, url: str, name: str) -> None:
        if url in self._exists:
            return
        response = self.client.call("PUT", url)
        if response.status_code not in (201, 204):
            raise _error(response, f"the creation of {name}")
        self._exists.add(url)

    def _apply(self, step: Step, report: PublishReport) -> None:
        spec = step.spec
        if step.action == "create":
            self._create(spec)
            report.created.append(spec.source_id)
        elif step.action in ("move", "traits", "inventories"):
            if step.action == "move":
                self._move(spec)
            elif step.action == "traits":
                self._put_traits(step.uuid, spec.traits)
            else:
                self._put_inventories(step.uuid, spec.inventories)
            if spec.source_id not in report.updated:
                report.updated.append(spec.source_id)
        elif step.action == "remove":
            self._remove(step.uuid, report)

    def _create(self, spec: ProviderSpec) -> None:
        response = self.client.call("POST", "/resource_providers", {
            "uuid": spec.uuid, "name": spec.name,
            "parent_provider_uuid": spec.parent_uuid})
        if response.status_code == 409:
            state = self._adopt(spec)
        elif response.status_code == 200:
            body = response.json()
            state = ProviderState(
                uuid=spec.uuid, name=spec.name, parent_uuid=spec.parent_uuid,
                generation=body["generation"], inventories={},
                traits=frozenset(), allocations={})
        else:
            raise _error(response, f"the creation of provider {spec.name}")
        self._known[spec.uuid] = state
        # Traits first: the ownership trait marks the provider as ours.
        self._put_traits(spec.uuid, spec.traits)
        if spec.inventories:
            self._put_inventories(spec.uuid, spec.inventories)

    def _adopt(self, spec: ProviderSpec) -> ProviderState:
        """Take over a provider an interrupted publish of ours created.

        It has our UUID, name and parent but no traits yet (the ownership
        trait is set right after creation). Anything else with our UUID or
        name belongs to someone else and is left alone.
        """
        response = self.client.call("GET", f"/resource_providers/"
                                           f"{spec.uuid}")
        if response.status_code == 200:
            rp = response.json()
            state = self._read_provider(rp)
            if OWNER_TRAIT in state.traits:
                # Another publisher of this host (an overlapping restart)
                # created it meanwhile: start over from a fresh listing.
                raise _Conflict(spec.uuid)
            if (rp["name"] == spec.name
                    and rp.get("parent_provider_uuid") == spec.parent_uuid
                    and not state.traits):
                LOG.info("Completing provider %s left half-created by an "
                         "earlier publish", spec.name)
                return state
        raise PlacementError(
            f"a provider with the UUID {spec.uuid} or the name {spec.name} "
            f"exists but is not ours (no {OWNER_TRAIT} trait); remove it or "
            f"give this host another hostname")

    def _move(self, spec: ProviderSpec) -> None:
        response = self.client.call(
            "PUT", f"/resource_providers/{spec.uuid}",
            {"name": spec.name, "parent_provider_uuid": spec.parent_uuid},
            microversion=REPARENT_MICROVERSION)
        if response.status_code != 200:
            raise _error(response, f"the update of provider {spec.name}")
        known = self._known[spec.uuid]
        known.name, known.parent_uuid = spec.name, spec.parent_uuid
        known.generation = response.json()["generation"]

    def _put_traits(self, rp_uuid: str, traits: frozenset[str]) -> None:
        known = self._known[rp_uuid]
        response = self.client.call(
            "PUT", f"/resource_providers/{rp_uuid}/traits",
            {"traits": sorted(traits),
             "resource_provider_generation": known.generation})
        if response.status_code == 409 or _unknown_name(response):
            raise _Conflict(rp_uuid, names=response.status_code == 400)
        if response.status_code != 200:
            raise _error(response, f"setting the traits of {known.name}")
        known.generation = response.json()["resource_provider_generation"]
        known.traits = frozenset(traits)

    def _put_inventories(self, rp_uuid: str,
                         inventories: dict[str, dict[str, Any]]) -> None:
        known = self._known[rp_uuid]
        response = self.client.call(
            "PUT", f"/resource_providers/{rp_uuid}/inventories",
            {"inventories": inventories,
             "resource_provider_generation": known.generation})
        if (response.status_code == 409
                and _error_code(response) == "placement.concurrent_update"
                or _unknown_name(response)):
            raise _Conflict(rp_uuid, names=response.status_code == 400)
        if response.status_code != 200:
            raise _error(response, f"setting the inventory of {known.name} "
                                   f"(a resource class still allocated "
                                   f"cannot be removed)")
        known.generation = response.json()["resource_provider_generation"]
        known.inventories = {rc: dict(v) for rc, v in inventories.items()}

    def _remove(self, rp_uuid: str, report: PublishReport) -> None:
        """Delete a provider we no longer want, unless it is allocated.

        An allocated one is retired instead (all reserved, degraded) and
        removed by a later publish once its consumers are gone. A parent
        whose children were kept is kept too.
        """
        known = self._known[rp_uuid]
        if any(s.parent_uuid == rp_uuid for s in self._known.values()):
            report.kept.append(known.name)
            return
        allocations = self._allocations(rp_uuid)
        if allocations:
            LOG.warning("Provider %s is no longer in the inventory but "
                        "%s still hold allocations on it; keeping it "
                        "reserved until they are gone",
                        known.name, ", ".join(sorted(allocations)))
            inventories, traits = retired(known)
            if known.traits != traits:
                self._ensure_trait(DEGRADED_TRAIT)
                self._put_traits(rp_uuid, traits)
            if _normal(known.inventories or {}) != _normal(inventories):
                self._put_inventories(rp_uuid, inventories)
            report.kept.append(known.name)
            return
        response = self.client.call("DELETE", f"/resource_providers/"
                                              f"{rp_uuid}")
        if response.status_code == 409:
            # Allocated or given a child since we looked: keep it.
            LOG.warning("Placement refused to delete %s: %s", known.name,
                        response.text[:200])
            report.kept.append(known.name)
            return
        if response.status_code not in (204, 404):
            raise _error(response, f"the removal of provider {known.name}")
        del self._known[rp_uuid]
        report.removed.append(known.name)

    # -- allocations

    def _allocations(self, rp_uuid: str) -> dict[str, dict[str, int]]:
        """``{consumer: {class: amount}}`` on one provider.

        Empty allocations read at the current generation are reused:
        placement bumps the generation whenever an allocation is made.
        """
        known = self._known.get(rp_uuid)
        if known is not None and known.allocations == {}:
            return {}
        response = self.client.call(
            "GET", f"/resource_providers/{rp_uuid}/allocations")
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            raise _error(response, f"the allocations of provider {rp_uuid}")
        body = response.json()
        allocations = {consumer: dict(a["resources"])
                       for consumer, a in body["allocations"].items()}
        if (known is not None and known.generation
                == body["resource_provider_generation"]):
            known.allocations = allocations
        return allocations

    # -- memory across processes

    def export_state(self) -> dict[str, Any]:
        """What this publisher remembers, as JSON-able data.

        ``accel-inventory publish`` saves it beside the cache so that the
        next run, too, costs one listing when nothing changed. It is only
        ever a shortcut: every entry is checked against the provider's
        current generation before it is trusted.
        """
        return {
            "root_name": self.root_name, "root_uuid": self.root_uuid,
            "exists": sorted(self._exists),
            "providers": [
                {"uuid": k.uuid, "name": k.name,
                 "parent_uuid": k.parent_uuid, "generation": k.generation,
                 "inventories": k.inventories,
                 "traits": sorted(k.traits) if k.traits is not None
                 else None,
                 "allocations": {} if k.allocations == {} else None}
                for k in self._known.values()]}

    def import_state(self, state: Mapping[str, Any]) -> bool:
        """Take over what an earlier publisher remembered.

        Anything malformed is ignored (returns False), which only costs
        requests. The root is looked up again if the host's name changed.
        """
        try:
            known = {p["uuid"]: ProviderState(
                uuid=p["uuid"], name=p["name"],
                parent_uuid=p["parent_uuid"],
                generation=int(p["generation"]),
                inventories=p["inventories"],
                traits=(frozenset(p["traits"])
                        if p["traits"] is not None else None),
                allocations=p["allocations"])
                for p in state["providers"]
                if p["inventories"] is not None and p["traits"] is not None}
            exists = {str(name) for name in state["exists"]}
            root_uuid, root_name = state["root_uuid"], state["root_name"]
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        self._known, self._exists = known, exists
        self.root_uuid, self.root_name = root_uuid, root_name
        return True

    def read_allocations(self, inventory: model.Inventory
                         ) -> dict[str, dict[str, dict[str, int]]]:
        """Allocations on each of our region providers found in placement.

        Call after ``publish``: it relies on the tree that read.
        """
        regions = {provider_uuid(inventory.hostname, r.id)
                   for c in inventory.cards for r in c.regions}
        return {rp_uuid: self._allocations(rp_uuid)
                for rp_uuid in sorted(regions) if rp_uuid in self._known}
