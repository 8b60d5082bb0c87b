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

"""Decide whether a domain may start with the devices its XML names.

Pure: the inventory, what the host has now at each address the XML names,
the current boot id and the policy come in; a verdict with reasons, the
functions the domain holds, where its devices are now and what to prepare
(mdevs to create, node bridges to fill) comes out. The hook turns a
refusal into a non-zero exit with one line for the operator.

Every device is judged by the same rules, whatever its kind: it is refused
when its address holds nothing, another vendor, product or class than the
inventory says, a function another running domain has, a function that a
consumer released and that is not clean yet, or (with
``strict_identity``, or of another type) a function that is not the one
this domain was given. At a first start a device the inventory does not
know is not an accelerator and is left to libvirt; an address that a card
of any kind holds or held (an mdev parent taken whole, a card or one of
its functions before it moved or went) is not unknown: what is there must
be what the card showed.

Past the devices of the XML, the verdict plans what the domain's
functions need made before it runs: the mdevs of its placement claim
that do not exist yet (on the VF of their GPU that can take one now),
and the vGPU type of each VF given through NVIDIA's vendor-specific
VFIO interface (written when the VF holds none; the start is refused
when the type is no longer creatable there).
"""

from __future__ import annotations

import uuid as uuid_mod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from accel_inventory import claim_sync, claims, kinds, model
from accel_inventory.kinds.base import (BUS_MDEV, BUS_PCI, BUS_USB,
                                        DEVICE_INTERFACE, DEVICE_MDEV,
                                        DEVICE_PCI, DEVICE_USB)
from libvirt_hooks import bridge
from libvirt_hooks.domain import DeviceRef, Domain, UsbMove

Entry = tuple[model.Card, model.Region, model.Function]


@dataclass(frozen=True)
class PciIdentity:
    """What sysfs says is at a PCI address now."""

    vendor_id: str
    product_id: str
    class_code: str


@dataclass(frozen=True)
class UsbDevice:
    """A USB device as sysfs shows it now; ``name`` is ``<bus>-<port>``."""

    name: str
    busnum: int
    devnum: int
    vendor_id: str
    product_id: str
    serial: str | None

    def describe(self) -> str:
        return (f"bus {self.busnum} device {self.devnum} (port {self.name}, "
                f"{self.vendor_id}:{self.product_id})")


@dataclass(frozen=True)
class MdevNow:
    """An mdev that exists: its parent's address and its type."""

    parent: str
    mdev_type: str


@dataclass(frozen=True)
class VgpuNow:
    """A VF's vendor-specific vGPU state: the type it holds (0: none) and
    the types it can take now."""

    current: int
    creatable: Mapping[int, str]


@dataclass(frozen=True)
class HostView:
    """What the host has now, for the devices of one domain.

    ``net`` maps an interface name the XML uses to the BDF of the PCI
    function behind it (None: no such interface, or not a PCI function's);
    ``node_interfaces`` maps each IP-over-PCIe node's BDF to its host-side
    interface now.
    """

    pci: Mapping[str, PciIdentity | None] = field(default_factory=dict)
    usb: tuple[UsbDevice, ...] = ()
    mdevs: Mapping[str, MdevNow | None] = field(default_factory=dict)
    net: Mapping[str, str | None] = field(default_factory=dict)
    node_interfaces: Mapping[str, str | None] = field(default_factory=dict)
    # mdev parent BDF -> instances of its card's type it can still take
    # (None: not an mdev parent now).
    mdev_room: Mapping[str, int | None] = field(default_factory=dict)
    # VF BDF -> its vendor-specific vGPU state (None: no such interface).
    vgpus: Mapping[str, VgpuNow | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    strict_identity: bool = False
    bridge_prefix: str = "accbr-"
    # "vendor:product" -> the type it belongs to (a profile), so that a
    # Movidius stick that re-enumerated as 03e7:f63b is the same type.
    usb_types: Mapping[str, str] = field(default_factory=dict)
    # "vendor:product" -> mdev type, for cards whose cache entry has none.
    mdev_types: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MdevToCreate:
    uuid: str
    parent: str
    mdev_type: str
    # The function of a placement claim the mdev is made for; its address
    # becomes the mdev's UUID (an mdev in the XML has its own already).
    function_id: str | None = None


@dataclass(frozen=True)
class VgpuToSet:
    """Write vGPU type ``type_id`` to VF ``vf`` (for ``function_id``)."""

    vf: str
    type_id: int
    name: str | None
    function_id: str


@dataclass(frozen=True)
class NodeBridge:
    """The bridge of node ``function_id`` must hold ``interface``."""

    bridge: str
    interface: str
    function_id: str


@dataclass
class Verdict:
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    # index of a device among its kind in the XML -> where it is now
    pci_moved: dict[int, str] = field(default_factory=dict)
    usb_moved: dict[int, UsbMove] = field(default_factory=dict)
    interfaces_moved: dict[int, str] = field(default_factory=dict)
    create_mdevs: list[MdevToCreate] = field(default_factory=list)
    set_vgpus: list[VgpuToSet] = field(default_factory=list)
    bridges: list[NodeBridge] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return not self.refusals


@dataclass
class _Seen:
    """One device of the domain, resolved against the host and the
    inventory, ready to be judged."""

    label: str
    now: str | None  # what is at the address now; None: nothing
    absent: str  # how to say that nothing is there
    here: Entry | None  # the inventory's function at the address now
    wanted: Entry | None  # the function this domain was given
    where_now: str = ""  # where the given function is now, for messages
    mismatch: str | None = None  # why ``here`` is not what is there
    expected: bool = True  # nothing there is refused (not left to libvirt)


def _fix(domain: Domain) -> str:
    return (f"see 'accel-inventory show', then 'accel-domain repair "
            f"{domain.name}'")


def expected_ids(card: model.Card,
                 function: model.Function | model.Region) -> tuple[str, str]:
    """The vendor:product sysfs shows at a function's or region's address
    (a VCA node's differs from its card's upstream port, a virtio-net PF
    from its FPGA card's)."""
    return (function.attrs.get("vendor_id", card.vendor_id),
            function.attrs.get("product_id", card.product_id))


def _type_of(entry: Entry, policy: Policy) -> str:
    card, _region, function = entry
    key = ":".join(expected_ids(card, function))
    if kinds.of(card).function_bus == BUS_USB:
        return policy.usb_types.get(key, key)
    return key


def _on_bus(entries, bus: str) -> list[Entry]:
    return [e for e in entries if kinds.of(e[0]).function_bus == bus]


class _Judge:
    def __init__(self, domain: Domain, inv: model.Inventory,
                 boot_id: str | None, policy: Policy,
                 withheld: frozenset[str] = frozenset()):
        self.domain = domain
        self.inv = inv
        self.boot_id = boot_id
        self.policy = policy
        self.withheld = withheld
        self.verdict = Verdict()

    def refuse(self, label: str, reason: str) -> None:
        self.verdict.refusals.append(f"{label}: {reason}")

    def holder(self, function: model.Function) -> model.Claim | None:
        holder = claims.holder_of(self.inv, function.id, self.boot_id)
        if holder is not None and holder.consumer != self.domain.uuid:
            return holder
        return None

    def judge(self, seen: _Seen) -> Entry | None:
        """The function the device takes, or None (refused, or not an
        accelerator); records it in the verdict."""
        fix = _fix(self.domain)
        if seen.now is None:
            if seen.expected:
                self.refuse(seen.label, f"{seen.absent}{seen.where_now}; "
                                        f"{fix}")
            else:
                self.verdict.notes.append(
                    f"{seen.label}: nothing there and not an accelerator "
                    f"the inventory knows; left to libvirt")
            return None
        if seen.here is None:
            if seen.wanted is None:
                self.verdict.notes.append(
                    f"{seen.label} is not an accelerator the inventory "
                    f"knows; left to libvirt")
            else:
                self.refuse(seen.label, f"holds {seen.now}, a device the "
                                        f"inventory does not know"
                                        f"{seen.where_now}; {fix}")
            return None
        card, _region, function = seen.here
        waiting = self.inv.cleaning.get(function.id)
        if waiting is not None:
            self.refuse(seen.label, f"function {function.id} was released "
                                    f"by {waiting.after} and is not clean "
                                    f"yet ({_waiting(waiting)}); see "
                                    f"'accel-inventory status'")
            return None
        if seen.mismatch:
            self.refuse(seen.label, f"{seen.mismatch}{seen.where_now}; "
                                    f"rescan with 'accel-inventory scan', "
                                    f"then {fix}")
            return None
        holder = self.holder(function)
        if holder is not None:
            self.refuse(seen.label, f"function {function.id} is held by "
                                    f"running domain "
                                    f"{holder.domain_name or holder.consumer}"
                                    f"{seen.where_now}; {fix}")
            return None
        wanted = seen.wanted
        if wanted is not None and wanted[2].id != function.id:
            same_type = (_type_of(wanted, self.policy)
                         == _type_of(seen.here, self.policy))
            if self.policy.strict_identity or not same_type:
                self.refuse(seen.label, f"holds {function.id} of card "
                                        f"{card.id}, not the function this "
                                        f"domain was given{seen.where_now}; "
                                        f"{fix}")
                return None
            self.verdict.notes.append(
                f"{seen.label}: re-enumerated host; takes free "
                f"{function.id} of the same type instead of {wanted[2].id}")
        self.verdict.functions.append(function.id)
        return seen.here


def _waiting(entry: model.Cleaning) -> str:
    """Why a released function is not given, in words."""
    if entry.state == model.CLEANING_HELD:
        return (f"held: {entry.reason}; clean it, then 'accel-inventory "
                f"clear {entry.function}'")
    return "the agent cleans it at its next round"


def _pci_seen(now: PciIdentity | None, here: Entry | None,
              where: str = "") -> dict[str, str | None]:
    """``_Seen``'s ``now`` and ``mismatch`` for a PCI address: what it holds
    now (``where`` added to say where) and how that differs from ``here``."""
    if now is None:
        return {"now": None, "mismatch": None}
    return {"now": f"{now.vendor_id}:{now.product_id}{where}",
            "mismatch": _mismatch(here, now.vendor_id, now.product_id)}


def _mismatch(entry: Entry | None, vendor: str, product: str) -> str | None:
    if entry is None:
        return None
    card, _region, function = entry
    expected = expected_ids(card, function)
    if expected == (vendor, product):
        return None
    return (f"holds {vendor}:{product} now, the inventory says "
            f"{':'.join(expected)} ({card.id})")


def _given(domain: Domain, inv: model.Inventory,
           index: Mapping[str, Entry], bridged: set[str], raw: int
           ) -> dict[str, list[Entry] | None]:
    """The functions the domain's claim gives each kind of its devices, in
    XML order; None for a kind where the claim and the XML disagree.

    The hook records a claim in the order of the devices (PCI hostdevs,
    USB hostdevs, mdevs, interfaces; libvirt keeps the order within each
    kind). A node reached through its bridge is named by the bridge, so
    it is left out here; the ``raw`` interfaces that name a node's
    interface directly come after the PCI hostdevs.
    """
    claim = inv.claims.get(domain.uuid)
    held = [index[fid] for fid in (claim.functions if claim else [])
            if fid in index and fid not in bridged]
    refs = domain.by_kind()
    count = {device: len(refs.get(device, []))
             for device in (DEVICE_PCI, DEVICE_USB, DEVICE_MDEV)}
    pci = _on_bus(held, BUS_PCI)
    given: dict[str, list[Entry] | None] = {
        DEVICE_PCI: (pci[:count[DEVICE_PCI]]
                     if 0 <= len(pci) - count[DEVICE_PCI] <= raw else None),
        DEVICE_INTERFACE: (pci[count[DEVICE_PCI]:]
                           if len(pci) - count[DEVICE_PCI] == raw
                           else None)}
    # A function on the USB (mdev) bus is given as a USB (mdev) hostdev.
    for device, bus in ((DEVICE_USB, BUS_USB), (DEVICE_MDEV, BUS_MDEV)):
        mine = _on_bus(held, bus)
        given[device] = mine if len(mine) == count[device] else None
    return given


def check(domain: Domain, inv: model.Inventory, host: HostView,
          boot_id: str | None, policy: Policy = Policy()) -> Verdict:
    """The verdict on every accelerator device of ``domain``.

    A domain that started before holds a claim that lists its functions
    in the order of its devices, so each device is compared with the
    function it was given, wherever that function is now.
    """
    judge = _Judge(domain, inv, boot_id, policy)
    index = inv.function_index()
    nodes_by_bridge = {
        bridge.bridge_name(policy.bridge_prefix, f.id): (c, r, f)
        for c in _node_cards(inv) for r in c.regions for f in r.functions}
    bridged = {nodes_by_bridge[ref.address][2].id
               for ref in domain.refs(DEVICE_INTERFACE)
               if ref.address in nodes_by_bridge}
    raw = _node_interface_refs(domain, inv, host, policy)
    given = _given(domain, inv, index, bridged, len(raw))
    _check_pci(judge, host, given[DEVICE_PCI])
    _check_usb(judge, host, given[DEVICE_USB])
    _check_mdev(judge, host, given[DEVICE_MDEV])
    for ref in domain.refs(DEVICE_INTERFACE):
        if ref.address.startswith(policy.bridge_prefix):
            _check_bridge(judge, host, ref.address,
                          nodes_by_bridge.get(ref.address))
    _check_node_interfaces(judge, host, raw, given[DEVICE_INTERFACE])
    _plan_claimed_mdevs(judge, host)
    _plan_vgpus(judge, host)
    return judge.verdict


def plan_for_claim(domain: Domain, inv: model.Inventory, host: HostView,
                   policy: Policy = Policy(),
                   withheld: Collection[str] = ()) -> Verdict:
    """What the functions of ``domain``'s placement claim need made before
    the attach worker gives them (the sync assigned them after the
    start): their mdevs and vGPU types, or why they cannot be. Functions
    ``withheld`` (NUMA affinity refuses them) need nothing made."""
    judge = _Judge(domain, inv, None, policy, frozenset(withheld))
    _plan_claimed_mdevs(judge, host)
    _plan_vgpus(judge, host)
    return judge.verdict


def _node_cards(inv: model.Inventory) -> list[model.Card]:
    """Cards of nodes: their functions are given as interfaces."""
    return [c for c in inv.cards
            if kinds.of(c).device == DEVICE_INTERFACE]


def _cards_on(inv: model.Inventory, function_bus: str) -> list[model.Card]:
    return [c for c in inv.cards
            if kinds.of(c).function_bus == function_bus]


def _present_at(cards: list[model.Card]) -> dict[str, Entry]:
    """The functions of ``cards`` by their address now. A lost card keeps
    its last address, which another card may hold now: that is history,
    and never shadows the card that is there."""
    return {f.address: (c, r, f) for c in cards
            if c.status != model.STATUS_LOST
            for r in c.regions for f in r.functions if f.address}


def _nodes_at(inv: model.Inventory) -> dict[str, Entry]:
    return _present_at(_node_cards(inv))


def _node_interface_refs(domain: Domain, inv: model.Inventory,
                         host: HostView, policy: Policy) -> list[DeviceRef]:
    """The interfaces that name a node's host-side interface directly: one
    a node has now, or had at the last scan (renamed since). Ordinary
    networks (bridges, taps, a NIC's macvtap) are none of them."""
    nodes = _nodes_at(inv)
    recorded = {e[2].attrs.get("interface") for e in nodes.values()}
    return [ref for ref in domain.refs(DEVICE_INTERFACE)
            if not ref.address.startswith(policy.bridge_prefix)
            and (host.net.get(ref.address) in nodes
                 or ref.address in recorded)]


def _paired(given: list[Entry] | None, position: int) -> Entry | None:
    return given[position] if given is not None else None


def _check_pci(judge: _Judge, host: HostView,
               given: list[Entry] | None) -> None:
    at = _present_at(_cards_on(judge.inv, BUS_PCI))
    held = _held_at(judge.inv)
    for position, ref in enumerate(judge.domain.refs(DEVICE_PCI)):
        wanted = _paired(given, position)
        where_now = ""
        if wanted is not None and wanted[2].address != ref.address:
            judge.verdict.pci_moved[ref.index] = wanted[2].address
            where_now = (f"; its card {wanted[0].id} is now at "
                         f"{wanted[2].address}")
        now = host.pci.get(ref.address)
        here = at.get(ref.address)
        if here is None and wanted is None and ref.address in held:
            _check_held(judge, ref.address, now, held[ref.address])
            continue
        judge.judge(_Seen(
            label=f"hostdev {ref.address}",
            absent="no PCI device is there now", here=here, wanted=wanted,
            where_now=where_now, **_pci_seen(now, here)))


@dataclass(frozen=True)
class _Held:
    """A card that held a PCI address, by the cache: what it showed there
    and whether that is where it is now."""

    card: model.Card
    ids: tuple[str, str]
    current: bool


def _held_at(inv: model.Inventory) -> dict[str, _Held]:
    """Every PCI address a card of any kind holds or held, by the cache:
    its own address (an mdev parent's too), the earlier ones, and its
    functions' addresses now and before. A card that is there now comes
    first; of the rest, the first card that held it."""
    held: dict[str, _Held] = {}
    past: list[tuple[str, _Held]] = []
    for card in inv.cards:
        kind = kinds.of(card)
        if kind.bus != BUS_PCI:
            continue
        present = card.status != model.STATUS_LOST
        ids = (card.vendor_id, card.product_id)
        mine = [(card.address, ids, present)]
        mine += [(a, ids, False) for a in card.previous_addresses]
        mine += [(r.address, expected_ids(card, r), present)
                 for r in card.regions]
        if kind.function_bus == BUS_PCI:
            for function in card.functions():
                fids = expected_ids(card, function)
                mine.append((function.address, fids, present))
                mine += [(a, fids, False) for a in
                         function.attrs.get("previous_addresses", [])]
        for address, what, current in mine:
            if address:
                entry = (address, _Held(card, what, current))
                if current:
                    held.setdefault(*entry)
                else:
                    past.append(entry)
    for address, entry in past:
        held.setdefault(address, entry)
    return held


def _check_held(judge: _Judge, address: str, now: PciIdentity | None,
                held: _Held) -> None:
    """A hostdev at an address that only a card the guard does not judge
    by function holds (an mdev parent taken whole), or that a card held
    before it moved or went: what is there must be what that card
    showed, and the card's functions must be free."""
    card, label = held.card, f"hostdev {address}"
    ids, its = ":".join(held.ids), f"{card.vendor_id}:{card.product_id}"
    if card.status == model.STATUS_LOST:
        where = f"; its card {card.id} ({its}) is lost"
    elif not held.current:
        where = f"; its card {card.id} ({its}) is now at {card.address}"
    else:
        where = ""
    fix = _fix(judge.domain)
    if now is None:
        judge.refuse(label, f"no PCI device is there now{where}; {fix}")
        return
    if (now.vendor_id, now.product_id) != held.ids:
        there = f"holds {now.vendor_id}:{now.product_id} now"
        judge.refuse(label, f"{there}{where}; {fix}" if where else
                     f"{there}, the inventory says {ids} ({card.id}); "
                     f"rescan with 'accel-inventory scan', then {fix}")
        return
    for function in card.functions() if held.current else ():
        holder = judge.holder(function)
        if holder is not None:
            judge.refuse(label, f"function {function.id} of card {card.id} "
                                f"there is held by running domain "
                                f"{holder.domain_name or holder.consumer}; "
                                f"{fix}")
            return
        waiting = judge.inv.cleaning.get(function.id)
        if waiting is not None:
            judge.refuse(label, f"function {function.id} of card {card.id} "
                                f"there was released by {waiting.after} and "
                                f"is not clean yet ({_waiting(waiting)}); "
                                f"see 'accel-inventory status'")
            return
    what = (f"takes card {card.id} ({card.kind}) whole" if held.current
            else f"holds {ids} as card {card.id} did{where}")
    judge.verdict.notes.append(f"{label} {what}; left to libvirt")


def usb_is(card: model.Card, function: model.Function,
           device: UsbDevice) -> bool:
    """Whether ``device`` is the stick of ``card``: by serial for a stick
    that has one (it keeps it across re-enumeration), else by the ports
    of the connector it is plugged into (a stick whose serial every unit
    reports: kinds.usb), which it keeps when it re-enumerates at the
    connector's other speed."""
    if card.serial is not None:
        return device.serial == card.serial
    return device.name in (function.attrs.get("ports") or [function.address])


def _usb_entry(inv: model.Inventory, device: UsbDevice) -> Entry | None:
    """The inventory's stick that ``device`` is (a lost stick known by
    its port is not the one there now)."""
    for card in _cards_on(inv, BUS_USB):
        region = card.regions[0]
        if card.serial is None and card.status == model.STATUS_LOST:
            continue
        if usb_is(card, region.functions[0], device):
            return card, region, region.functions[0]
    return None


def _usb_now(host: HostView, entry: Entry) -> UsbDevice | None:
    """Where the stick of ``entry`` is plugged in now."""
    card, _region, function = entry
    return next((d for d in host.usb if usb_is(card, function, d)), None)


def _check_usb(judge: _Judge, host: HostView,
               given: list[Entry] | None) -> None:
    policy = judge.policy
    for position, ref in enumerate(judge.domain.refs(DEVICE_USB)):
        wanted = _paired(given, position)
        if ref.address is not None:
            bus, device = (int(n) for n in ref.address.split(":"))
            matches = [d for d in host.usb
                       if (d.busnum, d.devnum) == (bus, device)]
            label = f"USB hostdev bus {bus} device {device}"
        else:
            matches = [d for d in host.usb
                       if d.vendor_id == ref.vendor_id
                       and ref.product_id in (None, d.product_id)]
            label = f"USB hostdev {ref.vendor_id}:{ref.product_id}"
        where_now = ""
        if wanted is not None:
            current = _usb_now(host, wanted)
            if current is None:
                where_now = (f"; its card {wanted[0].id} is not plugged in "
                             f"now")
            elif current not in matches:
                judge.verdict.usb_moved[ref.index] = UsbMove(
                    current.busnum, current.devnum, current.vendor_id,
                    current.product_id)
                where_now = (f"; its card {wanted[0].id} is now at "
                             f"{current.describe()}")
        xml_type = f"{ref.vendor_id}:{ref.product_id}"
        expected = wanted is not None or xml_type in policy.usb_types
        if len(matches) > 1:
            several = (f"matches {len(matches)} USB devices "
                       f"({', '.join(d.name for d in matches)})")
            if expected:
                judge.refuse(label, f"{several}; libvirt needs the bus and "
                                    f"device to tell them apart{where_now}; "
                                    f"{_fix(judge.domain)}")
            else:
                judge.verdict.notes.append(f"{label} {several}, none an "
                                           f"accelerator; left to libvirt")
            continue
        now = matches[0] if matches else None
        here = _usb_entry(judge.inv, now) if now else None
        mismatch = None
        if here is not None and here[0].serial is None:
            # Found by port only: the stick there now must be of the
            # inventory's type.
            mismatch = _mismatch(here, now.vendor_id, now.product_id)
            if mismatch and _type_of(here, policy) == policy.usb_types.get(
                    f"{now.vendor_id}:{now.product_id}"):
                mismatch = None
        judge.judge(_Seen(
            label=label, now=now.describe() if now else None,
            absent="no USB device is there now", here=here, wanted=wanted,
            where_now=where_now, mismatch=mismatch, expected=expected))


def _mdev_type(entry: Entry, policy: Policy) -> str | None:
    card, region, function = entry
    return (function.attrs.get("mdev_type") or region.attrs.get("mdev_type")
            or policy.mdev_types.get(f"{card.vendor_id}:{card.product_id}"))


def _parents(card: model.Card, region: model.Region) -> list[str]:
    """Where ``region``'s mdevs live: its GPU's VFs (kinds.mdev), else the
    GPU itself."""
    return region.attrs.get("parents") or [region.address or card.address]


def _parent(entry: Entry) -> str:
    """The parent an mdev of ``entry`` lives on, or (on a GPU whose VFs
    are the parents) the GPU it belongs to."""
    card, region, _function = entry
    return region.address or card.address


def _is_on(entry: Entry, parent: str) -> bool:
    return parent in _parents(entry[0], entry[1])


def _check_mdev(judge: _Judge, host: HostView,
                given: list[Entry] | None) -> None:
    cards = _cards_on(judge.inv, BUS_MDEV)
    by_uuid = _present_at(cards)
    cards_at = {p: c for c in cards if c.status != model.STATUS_LOST
                for r in c.regions for p in _parents(c, r)}
    for position, ref in enumerate(judge.domain.refs(DEVICE_MDEV)):
        wanted = _paired(given, position)
        label = f"mdev {ref.address}"
        live = host.mdevs.get(ref.address)
        if live is None:
            _plan_mdev(judge, host, label, ref.address, wanted)
            continue
        here = by_uuid.get(ref.address)
        card_there = cards_at.get(live.parent)
        if here is None and card_there is not None:
            here = (wanted if wanted is not None
                    and wanted[0].id == card_there.id
                    else _free_function(judge, card_there))
        where_now = ""
        if wanted is not None and not _is_on(wanted, live.parent):
            where_now = (f"; its card {wanted[0].id} is now at "
                         f"{_parent(wanted)} (remove this mdev with 'echo 1 "
                         f"> /sys/bus/mdev/devices/{ref.address}/remove' "
                         f"and the hook creates it there)")
        judge.judge(_Seen(
            label=label, now=f"an mdev on {live.parent}", absent="",
            here=here, wanted=wanted, where_now=where_now,
            mismatch=(f"is on {live.parent} now, the inventory puts it on "
                      f"{_parent(here)} ({here[0].id})"
                      if here is not None and not _is_on(here, live.parent)
                      else None)))


def _free_function(judge: _Judge, card: model.Card) -> Entry | None:
    for region in card.regions:
        for function in region.functions:
            if (function.address is None and judge.holder(function) is None
                    and function.id not in judge.inv.cleaning):
                return card, region, function
    return None


def _room_on(judge: _Judge, host: HostView, entry: Entry) -> str | None:
    """The VF of ``entry``'s GPU to make its mdev on now: the one it was
    on if it can take one, else the first that can and that no other
    mdev of this start takes; None when none can."""
    card, region, function = entry
    planned = {m.parent for m in judge.verdict.create_mdevs}
    order = [function.attrs.get("parent")] + _parents(card, region)
    return next((p for p in order if p and p not in planned
                 and (host.mdev_room.get(p) or 0) > 0), None)


def _plan_mdev(judge: _Judge, host: HostView, label: str, uuid: str,
               wanted: Entry | None, for_claim: bool = False) -> None:
    """A missing mdev is created on the parent where the card the domain
    was given is now (on a GPU whose VFs are the parents, a VF that can
    take one now); without a claim nothing says which card that is."""
    if wanted is None:
        judge.verdict.notes.append(
            f"{label} does not exist and no claim says on which card to "
            f"create it; left to libvirt")
        return
    card, region, function = wanted
    fix = _fix(judge.domain)
    mdev_type = _mdev_type(wanted, judge.policy)
    on_vfs = "parents" in region.attrs
    parent = _room_on(judge, host, wanted) if on_vfs else _parent(wanted)
    if card.degraded:
        judge.refuse(label, f"does not exist and its card {card.id} is "
                            f"{card.status}; {fix}")
    elif mdev_type is None:
        judge.refuse(label, f"does not exist and no mdev type is known for "
                            f"card {card.id}; set [inventory] mdev_types "
                            f"{card.vendor_id}:{card.product_id}=<type>")
    elif parent is None:
        judge.refuse(label, f"does not exist and no VF of card {card.id} "
                            f"({card.address}) can take an mdev of type "
                            f"{mdev_type} now; rescan with 'accel-inventory "
                            f"scan', then {fix}")
    else:
        # No other domain can hold it: the domain's own claim names it.
        judge.verdict.create_mdevs.append(MdevToCreate(
            uuid, parent, mdev_type,
            function.id if for_claim else None))
        if not for_claim:
            judge.verdict.functions.append(function.id)


# Namespace of the UUIDs of the mdevs the hook makes for placement
# claims: the same function of the same consumer always gets the same
# mdev, so a restart makes again the one it had.
CLAIMED_MDEV_NAMESPACE = uuid_mod.UUID("3a6f2c1e-8d4b-5f70-9e21-6b0c4d8a7f15")


def claimed_mdev_uuid(consumer: str, function_id: str) -> str:
    return str(uuid_mod.uuid5(CLAIMED_MDEV_NAMESPACE,
                              f"{consumer}/{function_id}"))


def _placement_functions(judge: _Judge) -> list[Entry]:
    claim = judge.inv.claims.get(judge.domain.uuid)
    if claim is None or claim.source != claim_sync.CLAIM_SOURCE:
        return []
    index = judge.inv.function_index()
    return [index[fid] for fid in claim.functions
            if fid in index and fid not in judge.withheld]


def _plan_claimed_mdevs(judge: _Judge, host: HostView) -> None:
    """The mdevs of the domain's placement claim (given by the attach
    worker after the start) that do not exist now are made now, under
    their UUID (a new one per function and consumer)."""
    for entry in _on_bus(_placement_functions(judge), BUS_MDEV):
        function = entry[2]
        if function.address and host.mdevs.get(function.address):
            continue
        uuid = function.address or claimed_mdev_uuid(judge.domain.uuid,
                                                     function.id)
        _plan_mdev(judge, host, f"mdev {uuid} of {function.id}", uuid,
                   entry, for_claim=True)


def vgpu_type(function: model.Function) -> int | None:
    """The vendor-specific vGPU type a function is given with (its VF
    must hold it), if it is such a function (kinds.vendor_vfio)."""
    return function.attrs.get("vgpu_type_id")


def _plan_vgpus(judge: _Judge, host: HostView) -> None:
    """Each VF given with a vGPU type holds it before the domain starts:
    written now when the VF holds none and can take it; refused when it
    holds another or the type is no longer creatable there (the GPU's
    other vGPUs take its room), in one line."""
    index = judge.inv.function_index()
    entries = [index[fid] for fid in judge.verdict.functions if fid in index]
    entries += [e for e in _placement_functions(judge) if e not in entries]
    for _card, _region, function in entries:
        wanted = vgpu_type(function)
        if wanted is None or function.address is None:
            continue
        name = function.attrs.get("vgpu_type_name")
        what = f"vGPU type {wanted}" + (f" ({name})" if name else "")
        label = f"VF {function.address} ({function.id})"
        now = host.vgpus.get(function.address)
        if now is None:
            judge.refuse(label, f"has no vGPU interface now (nvidia/"
                                f"current_vgpu_type); load NVIDIA's vGPU "
                                f"manager, then {_fix(judge.domain)}")
        elif now.current == wanted:
            continue
        elif now.current:
            judge.refuse(label, f"holds vGPU type {now.current} now, not "
                                f"{what}; {_fix(judge.domain)}")
        elif wanted not in now.creatable:
            judge.refuse(label, f"{what} is no longer creatable there (the "
                                f"GPU's other vGPUs take its room); "
                                f"rescan with 'accel-inventory scan' and "
                                f"start the server where placement has "
                                f"room")
        else:
            judge.verdict.set_vgpus.append(
                VgpuToSet(function.address, wanted, name, function.id))


def _check_node_interfaces(judge: _Judge, host: HostView,
                           refs: list[DeviceRef],
                           given: list[Entry] | None) -> None:
    nodes = _nodes_at(judge.inv)
    for position, ref in enumerate(refs):
        name = ref.address
        wanted = _paired(given, position) or next(
            (e for e in nodes.values()
             if e[2].attrs.get("interface") == name), None)
        bdf = host.net.get(name)
        here = nodes.get(bdf) if bdf else None
        where_now = ""
        if wanted is not None:
            current = host.node_interfaces.get(wanted[2].address)
            if current is not None and current != name:
                judge.verdict.interfaces_moved[ref.index] = current
            where_now = (f"; its node {wanted[2].id} has interface "
                         f"{current or 'none'} now" if current != name
                         else "")
        now = host.pci.get(bdf) if bdf else None
        judge.judge(_Seen(
            label=f"interface {name}",
            absent="no node's interface has this name now", here=here,
            wanted=wanted, where_now=where_now,
            **_pci_seen(now, here, f" at {bdf}")))


def _check_bridge(judge: _Judge, host: HostView, name: str,
                  node: Entry | None) -> None:
    """An interface on a node's bridge: the node must be where the
    inventory says, and the bridge must hold its interface of now."""
    label = f"interface on bridge {name}"
    if node is None:
        judge.refuse(label, f"no IP-over-PCIe node of the inventory has "
                            f"this bridge; {_fix(judge.domain)}")
        return
    bdf = node[2].address
    now = host.pci.get(bdf) if bdf else None
    taken = judge.judge(_Seen(
        label=f"{label} (node {node[2].id})",
        absent=f"node {node[2].id} is not at {bdf} now", here=node,
        wanted=node, **_pci_seen(now, node)))
    if taken is None:
        return
    interface = host.node_interfaces.get(bdf)
    if interface is None:
        judge.refuse(label, f"node {node[2].id} at {bdf} has no host-side "
                            f"interface now; load the card's driver "
                            f"(vca_pci), then start the domain again")
        judge.verdict.functions.remove(node[2].id)
        return
    judge.verdict.bridges.append(NodeBridge(name, interface, node[2].id))
