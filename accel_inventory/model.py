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

"""The topology: host > NUMA node > card > region > function, as plain data.

Nothing here does I/O. A card is named by its stable identity, never by an
address: addresses are attributes that a rescan may change. Functions are
named ``<card id>/r<region>/f<function>`` so that a claim survives any
re-enumeration of the bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CACHE_VERSION = 1

# Strongest first; ``path`` is weak: it follows the slot a card sits in, not
# the card itself.
IDENTITY_SOURCES = ("dsn", "vpd", "usb_serial", "slot", "path")
WEAK_IDENTITY_SOURCES = ("path",)

STATUS_OK = "ok"
STATUS_MOVED = "moved"
STATUS_ADDED = "added"
STATUS_LOST = "lost"
STATUS_AMBIGUOUS = "ambiguous"
STATUSES = (STATUS_OK, STATUS_MOVED, STATUS_ADDED, STATUS_LOST,
            STATUS_AMBIGUOUS)
# Cards in these states must not receive new work.
DEGRADED_STATUSES = (STATUS_LOST, STATUS_AMBIGUOUS)


def region_id(card_id: str, region_index: int) -> str:
    return f"{card_id}/r{region_index}"


def function_id(card_id: str, region_index: int, function_index: int) -> str:
    return f"{region_id(card_id, region_index)}/f{function_index}"


def card_id_of(function_or_region_id: str) -> str:
    return function_or_region_id.split("/r", 1)[0]


@dataclass
class Function:
    """One allocatable unit: a VF, an mdev instance, a stick, a VCA node.

    ``address`` is where the function is now: a PCI BDF for ``pci`` and
    ``ippcie``, ``<busnum>-<port path>`` for ``usb``, the mdev UUID (or
    None for a not yet created instance) for ``mdev``. ``attrs`` holds
    kind-specific facts (``interface`` and ``mac`` of a VCA node,
    ``busnum``/``devnum`` of a stick, ``mdev_type`` of an mdev).
    """

    id: str
    address: str | None
    claimed_by: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Region:
    """The unit a user may ask for whole: a PF, an mdev parent, a stick."""

    id: str
    index: int
    resource_class: str
    functions: list[Function] = field(default_factory=list)
    address: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.functions)


@dataclass
class Card:
    id: str
    kind: str
    vendor_id: str
    product_id: str
    serial: str | None
    identity_source: str
    address: str | None
    numa_node: int | None = None
    status: str = STATUS_ADDED
    previous_addresses: list[str] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    name: str | None = None
    profile: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def weak_identity(self) -> bool:
        return self.identity_source in WEAK_IDENTITY_SOURCES

    @property
    def degraded(self) -> bool:
        return self.status in DEGRADED_STATUSES

    def functions(self) -> list[Function]:
        return [f for r in self.regions for f in r.functions]


@dataclass
class Claim:
    """Which functions one consumer (a domain or instance UUID) holds.

    ``created_mdevs`` and ``set_vgpus`` are what the hook made for it and
    undoes when it stops. ``source`` says who made it: ``hook`` (seen at
    a domain start),
    ``placement`` (the allocation sync) or ``operator``. ``running`` is only
    true for the boot named by ``boot_id``; after a host crash a claim that
    was running is not. ``moved_from`` names the consumer whose functions
    this one took over when placement moved that consumer's allocation to
    it (nova's migration consumer holds a server's source allocation until
    the move is confirmed); a revert gives them back to it.
    """

    consumer: str
    functions: list[str]
    source: str
    running: bool = False
    boot_id: str | None = None
    domain_name: str | None = None
    created_mdevs: list[str] = field(default_factory=list)
    # VF BDF -> the vGPU type ID the hook wrote there (NVIDIA's
    # vendor-specific VFIO), to clear when the domain stops.
    set_vgpus: dict[str, int] = field(default_factory=dict)
    attach: dict[str, Any] = field(default_factory=dict)
    moved_from: str | None = None

    def is_running(self, current_boot_id: str | None) -> bool:
        return self.running and self.boot_id == current_boot_id


CLEANING_PENDING = "pending"
CLEANING_HELD = "held"
CLEANING_STATES = (CLEANING_PENDING, CLEANING_HELD)


@dataclass
class Cleaning:
    """A function a consumer released, not clean yet: nobody is given it,
    and placement reserves it.

    ``state`` is ``pending`` (the agent cleans it: a reset, a new mdev,
    the profile's command) or ``held`` (an operator must, or cleaning
    failed: ``reason`` says which; ``accel-inventory clear`` ends it).
    ``after`` is the consumer that released it, ``since`` when.
    """

    function: str
    after: str
    state: str
    since: float
    reason: str | None = None


@dataclass
class Inventory:
    """The cache document: the host's cards, the claims on them, and the
    functions released but not clean yet (by function id)."""

    hostname: str
    cards: list[Card] = field(default_factory=list)
    claims: dict[str, Claim] = field(default_factory=dict)
    scanned_at: float | None = None
    version: int = CACHE_VERSION
    cleaning: dict[str, Cleaning] = field(default_factory=dict)

    def card(self, card_id: str) -> Card | None:
        for card in self.cards:
            if card.id == card_id:
                return card
        return None

    def function_index(self) -> dict[str, tuple[Card, Region, Function]]:
        return {f.id: (c, r, f)
                for c in self.cards for r in c.regions for f in r.functions}

    def numa_nodes(self) -> dict[int | None, list[Card]]:
        nodes: dict[int | None, list[Card]] = {}
        for card in self.cards:
            nodes.setdefault(card.numa_node, []).append(card)
        return nodes


# What a JSON document holds at its leaves, all immutable.
_LEAVES = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    # dataclasses.asdict deep-copies every leaf through copy.deepcopy, which
    # made it most of the cost of a claim write at each domain start.
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is list:
        return [_plain(v) for v in value]
    if kind is dict:
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(kind, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in vars(value).items()}
    return value


def to_dict(inventory: Inventory) -> dict[str, Any]:
    """The cache document of ``inventory``: plain dicts and lists, sharing
    nothing mutable with it."""
    return _plain(inventory)


def _function_from(data: dict[str, Any]) -> Function:
    return Function(**data)


def _region_from(data: dict[str, Any]) -> Region:
    data = dict(data)
    data["functions"] = [_function_from(f) for f in data.get("functions", [])]
    return Region(**data)


def _card_from(data: dict[str, Any]) -> Card:
    data = dict(data)
    data["regions"] = [_region_from(r) for r in data.get("regions", [])]
    return Card(**data)


def from_dict(data: dict[str, Any]) -> Inventory:
    """Build an Inventory from a document that passed the JSON schema."""
    return Inventory(
        hostname=data["hostname"],
        cards=[_card_from(c) for c in data.get("cards", [])],
        claims={k: Claim(**v) for k, v in data.get("claims", {}).items()},
        scanned_at=data.get("scanned_at"),
        version=data.get("version", CACHE_VERSION),
        cleaning={k: Cleaning(**v)
                  for k, v in data.get("cleaning", {}).items()},
    )


def clone(inventory: Inventory) -> Inventory:
    """A copy of ``inventory`` sharing nothing mutable with it (several
    times faster than copy.deepcopy on a large host)."""
    return from_dict(to_dict(inventory))
