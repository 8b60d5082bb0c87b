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

"""Stable identity of cards, and reconciling a scan with the cache.

Pure functions: bytes and cards in, identities and statuses out. A card's
id derives from the strongest identity it has and never from an address,
so a card keeps its id (and its functions theirs, and their claims) when a
reboot after adding or removing hardware renumbers the bus.
"""

from __future__ import annotations

import copy
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from accel_inventory import kinds, model
from accel_inventory.kinds.base import BUS_MDEV, BUS_PCI, BUS_USB

DSN_CAP_ID = 0x0003
EXT_CAP_START = 0x100
VPD_ID_STRING = 0x82
VPD_READ_ONLY = 0x90
VPD_END = 0x78


def device_serial_number(config: bytes) -> int | None:
    """The PCIe Device Serial Number from config space, if it has one.

    Walks the extended capabilities from 0x100 (bits 15:0 the id, 31:20
    the next offset), bounded so a looping chain cannot hang the scan.
    """
    offset = EXT_CAP_START
    for _ in range(64):
        if offset < EXT_CAP_START or offset + 12 > len(config):
            return None
        header = struct.unpack_from("<I", config, offset)[0]
        if header in (0, 0xFFFFFFFF):
            return None
        if header & 0xFFFF == DSN_CAP_ID:
            low, high = struct.unpack_from("<II", config, offset + 4)
            return (high << 32) | low
        offset = (header >> 20) & 0xFFC
        if offset == 0:
            return None
    return None


def vpd_serial(vpd: bytes) -> str | None:
    """The ``SN`` keyword of the VPD's read-only section, if any."""
    pos = 0
    while pos + 3 <= len(vpd):
        tag = vpd[pos]
        if tag == VPD_END:
            return None
        if not tag & 0x80:  # small resource: length in the low 3 bits
            pos += 1 + (tag & 0x07)
            continue
        length = struct.unpack_from("<H", vpd, pos + 1)[0]
        body = vpd[pos + 3:pos + 3 + length]
        if tag == VPD_READ_ONLY:
            i = 0
            while i + 3 <= len(body):
                key, size = body[i:i + 2], body[i + 2]
                if key == b"SN":
                    value = body[i + 3:i + 3 + size].decode(
                        "ascii", "replace").strip()
                    return value or None
                i += 3 + size
        pos += 3 + length
    return None


# The usb_id builtin sets both from the device's serial string (newer
# systemd adds the ID_USB_ name because other builtins may overwrite the
# plain one on child devices); first found wins.
UDEV_SERIAL_PROPERTIES = ("ID_USB_SERIAL_SHORT", "ID_SERIAL_SHORT")


def udev_serial(properties: Mapping[str, str]) -> str | None:
    """The serial number udev recorded for a device, if any.

    Only the serial itself counts. Never ``ID_PATH`` (and ``ID_PATH_TAG``):
    for PCI it holds the BDF, which a renumbered bus changes; never
    ``ID_SERIAL``: without a serial it is ``<vendor>_<model>``, the same
    for every identical stick.
    """
    for key in UDEV_SERIAL_PROPERTIES:
        value = properties.get(key, "").strip()
        if value:
            return value
    return None


_SAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def _clean(text: str) -> str:
    return _SAFE.sub("_", text.strip())


def card_identity(*, vendor: str, product: str, dsn: int | None = None,
                  vpd_sn: str | None = None, usb_serial: str | None = None,
                  slot: str | None = None, usb_port: str | None = None,
                  path: str | None = None) -> tuple[str, str, str | None]:
    """``(card id, identity source, serial)``, strongest identity first.

    USB ids leave out the product: a Movidius stick changes product id
    when its firmware loads, and stays the same stick. A stick without a
    serial that tells it apart is named, weakly, by the physical USB
    connector it is plugged into (``usb_port``).
    """
    if dsn is not None:
        return f"dsn-{dsn:016x}", "dsn", f"{dsn:016x}"
    if vpd_sn:
        return (f"vpd-{vendor}-{product}-{_clean(vpd_sn)}", "vpd", vpd_sn)
    if usb_serial:
        return f"usb-{vendor}-{_clean(usb_serial)}", "usb_serial", usb_serial
    if slot:
        return f"slot-{_clean(slot)}-{vendor}-{product}", "slot", None
    if usb_port:
        return f"usbport-{vendor}-{_clean(usb_port)}", "path", None
    return f"path-{_clean(path or '')}-{vendor}-{product}", "path", None


@dataclass(frozen=True)
class Change:
    card_id: str
    status: str
    old_address: str | None
    new_address: str | None
    message: str = ""


def reconcile(previous: model.Inventory | None, scanned: list[model.Card],
              hostname: str) -> tuple[model.Inventory, list[Change]]:
    """The new inventory: scanned cards with statuses, lost cards kept.

    - ``ok``: same identity at the same address (an added or moved card
      keeps its status until the operator acks it);
    - ``moved``: same identity, new address (the old one is remembered);
    - ``added``: an identity the cache did not have;
    - ``lost``: a cached card the scan did not find; kept with its claims;
    - ``ambiguous``: cards the scan cannot tell apart (same identity);
      never matched to the cache.

    A stick is matched to its cached self under another id too
    (``moved_sticks``): one named by its connector that re-enumerated at
    the connector's other speed, or the one stick of a profile that left
    while one arrived at another port.
    """
    before = {c.id: c for c in previous.cards} if previous else {}
    counts: dict[str, int] = {}
    for card in scanned:
        counts[card.id] = counts.get(card.id, 0) + 1
    cards: list[model.Card] = []
    changes: list[Change] = []
    seen_ambiguous: dict[str, int] = {}
    held = ({fid for claim in previous.claims.values()
             for fid in claim.functions} if previous else set())
    moves = moved_sticks(before, scanned, counts)
    for position, fresh in enumerate(scanned):
        card = copy.deepcopy(fresh)
        if position in moves:
            _rename(card, moves[position])
        if counts.get(fresh.id, 0) > 1:
            n = seen_ambiguous.get(card.id, 0) + 1
            seen_ambiguous[card.id] = n
            _rename(card, f"{card.id}~{n}")
            card.status = model.STATUS_AMBIGUOUS
            changes.append(Change(card.id, card.status, None, card.address,
                                  f"{counts[fresh.id]} cards share identity "
                                  f"{fresh.id}; give them serials or slots "
                                  f"before they are used"))
            cards.append(card)
            continue
        old = before.get(card.id)
        carry_over = _CARRY_OVER.get(kinds.of(card).function_bus)
        if old is not None and carry_over is not None:
            carry_over(old, card, held)
        if old is None:
            card.status = model.STATUS_ADDED
            changes.append(Change(card.id, card.status, None, card.address,
                                  f"{card.vendor_id}:{card.product_id} "
                                  f"({card.identity_source})"))
        elif old.address != card.address:
            card.status = model.STATUS_MOVED
            card.previous_addresses = _remember(old, old.address)
            changes.append(Change(card.id, card.status, old.address,
                                  card.address))
        else:
            card.previous_addresses = list(old.previous_addresses)
            card.status = (old.status if old.status in
                           (model.STATUS_ADDED, model.STATUS_MOVED)
                           else model.STATUS_OK)
            if card.status != model.STATUS_OK:
                changes.append(Change(card.id, card.status, None,
                                      card.address, "awaiting "
                                      "'accel-inventory ack'"))
        cards.append(card)
    found = {c.id for c in cards}
    for old in before.values():
        if old.id in found or old.status == model.STATUS_AMBIGUOUS:
            continue
        lost = copy.deepcopy(old)
        lost.status = model.STATUS_LOST
        cards.append(lost)
        changes.append(Change(lost.id, lost.status, lost.address, None))
    inventory = model.Inventory(
        hostname=hostname, cards=cards,
        claims=copy.deepcopy(previous.claims) if previous else {})
    return inventory, changes


def _connector(card: model.Card) -> list[str]:
    """The port names of the connector a stick named by it is plugged
    into (kinds.usb); none for a stick named by its serial."""
    functions = card.functions()
    return functions[0].attrs.get("ports", []) if functions else []


def _may_be(old: model.Card, fresh: model.Card) -> bool:
    """Whether nothing tells ``fresh`` from ``old``: the same profile, and
    not two serials that differ."""
    return (old.profile is not None and old.profile == fresh.profile
            and (old.serial is None or fresh.serial is None
                 or old.serial == fresh.serial))


def moved_sticks(before: Mapping[str, model.Card],
                 scanned: list[model.Card],
                 counts: Mapping[str, int]) -> dict[int, str]:
    """Scanned sticks (by position in ``scanned``) that are cached sticks
    whose id the scan did not find: a stick at a port of the connector a
    cached stick was named by (it re-enumerated at the other speed when
    its firmware loaded, possibly with a serial of its own now); else, per
    profile, the one stick that arrived where exactly one left. Identical
    sticks that moved several at once cannot be told apart: they stay
    lost and added."""
    found = {c.id for c in scanned}
    gone = [o for o in before.values() if kinds.of(o).bus == BUS_USB
            and o.id not in found and o.status != model.STATUS_AMBIGUOUS]
    new = [(i, c) for i, c in enumerate(scanned)
           if kinds.of(c).bus == BUS_USB and c.id not in before
           and counts[c.id] == 1]
    moves: dict[int, str] = {}
    for position, fresh in new:
        at = [o for o in gone if fresh.address in _connector(o)
              and _may_be(o, fresh)]
        if len(at) == 1:
            moves[position] = at[0].id
    left = [o for o in gone if o.id not in moves.values()]
    arrived = [(i, c) for i, c in new if i not in moves]
    for position, fresh in arrived:
        olds = [o for o in left if _may_be(o, fresh)]
        rivals = [c for _i, c in arrived if _may_be(olds[0], c)] \
            if len(olds) == 1 else []
        if len(olds) == 1 and rivals == [fresh]:
            moves[position] = olds[0].id
    return moves


def _keep_pci_functions(old: model.Card, card: model.Card,
                        held: set[str]) -> None:
    """Functions at PCI addresses follow a renumbered bus: each remembers
    where it was, and one a claim holds stays when its device is gone."""
    _remember_function_addresses(old, card)
    keep_vanished_functions(old, card, held)


def keep_mdev_function_ids(old: model.Card, card: model.Card) -> None:
    """Number ``card``'s mdev functions so that every instance ``old``
    knew keeps its function id; ``card`` is changed in place.

    The scanner numbers instances in UUID order, so a new instance whose
    UUID sorts first would shift every id, and a claim naming a function
    id would then point at another instance. Here a known UUID keeps its
    index; new instances, then the not yet created functions, take the
    lowest free indices, new instances taking unclaimed ones first (a
    claimed, not yet created function stays for its holder).
    """
    for region in card.regions:
        before = next((r for r in old.regions if r.index == region.index),
                      None)
        if before is None:
            continue
        numbered_before = _indices(card.id, before)
        index_of = {f.address: i for i, f in numbered_before if f.address}
        claimed = {i for i, f in numbered_before if f.claimed_by}
        fresh = region.functions
        kept = [f for f in fresh if f.address in index_of]
        taken = {index_of[f.address] for f in kept}
        others = ([f for f in fresh if f.address and f.address not in
                   index_of] + [f for f in fresh if not f.address])
        free = [i for i in range(len(fresh) + len(taken))
                if i not in taken][:len(others)]
        free.sort(key=lambda i: i in claimed)
        numbered = ([(index_of[f.address], f) for f in kept]
                    + list(zip(free, others, strict=True)))
        for index, function in numbered:
            function.id = model.function_id(card.id, region.index, index)
        region.functions = [f for _, f in sorted(numbered,
                                                 key=lambda p: p[0])]


# What a card keeps from its cached self, by where its functions sit (a
# stick's one function has nothing to keep).
_CARRY_OVER = {
    BUS_PCI: _keep_pci_functions,
    BUS_MDEV: lambda old, card, held: keep_mdev_function_ids(old, card),
}


def _indices(card_id: str, region: model.Region
             ) -> list[tuple[int, model.Function]]:
    """The cached functions of ``region`` with their indices. A function
    whose id is not ``<region id>/f<n>``, or repeats an index, is left
    out: a hand-edited cache must not stop a rescan (its instance is then
    numbered as new)."""
    prefix = model.region_id(card_id, region.index) + "/f"
    found: dict[int, model.Function] = {}
    for function in region.functions:
        number = function.id[len(prefix):]
        if function.id.startswith(prefix) and number.isdigit() \
                and int(number) not in found:
            found[int(number)] = function
    return sorted(found.items(), key=lambda pair: pair[0])


def _remember_function_addresses(old: model.Card, card: model.Card) -> None:
    """Each function of ``card`` keeps, in ``attrs["previous_addresses"]``,
    the PCI addresses it had before, as the card keeps its own: the hook
    must know that an address a VF had is not some other device's to
    hand out (the card's own list holds only its first function's)."""
    before = {f.id: f for f in old.functions()}
    for function in card.functions():
        was = before.get(function.id)
        if was is None:
            continue
        addresses = [a for a in was.attrs.get("previous_addresses", [])
                     if a != function.address]
        if was.address and was.address not in (function.address,
                                                *addresses):
            addresses.append(was.address)
        if addresses:
            function.attrs["previous_addresses"] = addresses


def keep_vanished_functions(old: model.Card, card: model.Card,
                            held: set[str]) -> None:
    """Keep in ``card`` (in place) every function of ``old`` that a claim
    holds and the scan no longer found (a VF not made again after a
    reboot), with no address: its holder then fails visibly instead of
    losing the id, the region keeps its size in placement (an allocated
    inventory cannot shrink away) and the id is never given to another
    device. A later scan that finds the device again gives it back its
    address; once no claim holds it, it goes."""
    regions = {r.index: r for r in card.regions}
    found = {f.id for f in card.functions()}
    for before in old.regions:
        region = regions.get(before.index)
        if region is None:
            continue
        for function in before.functions:
            if function.id in found or function.id not in held:
                continue
            addresses = _remember_list(
                function.attrs.get("previous_addresses", []),
                function.address)
            region.functions.append(model.Function(
                id=function.id, address=None,
                claimed_by=function.claimed_by,
                attrs={"previous_addresses": addresses}))
        region.functions.sort(key=lambda f: _function_number(f.id))


def _function_number(function_id: str) -> int:
    number = function_id.rsplit("/f", 1)[-1]
    return int(number) if number.isdigit() else -1


def _remember(old: model.Card, address: str | None) -> list[str]:
    return _remember_list(old.previous_addresses, address)


def _remember_list(known: list[str], address: str | None) -> list[str]:
    addresses = list(known)
    if address and address not in addresses:
        addresses.append(address)
    return addresses


def _rename(card: model.Card, new_id: str) -> None:
    old_id = card.id
    card.id = new_id
    for region in card.regions:
        region.id = new_id + region.id[len(old_id):]
        for function in region.functions:
            function.id = new_id + function.id[len(old_id):]
