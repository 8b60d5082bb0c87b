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

"""The scanner: the only module that reads sysfs.

It reads a sysfs root as the kernel lays it out (symlinks from
``bus/*/devices`` into ``devices/``, binary config space and VPD) and
returns cards with regions and functions, each card named by its
strongest stable identity. Which devices form a card, and how, is the
card kind's (``accel_inventory.kinds``): the scanner lists the PCI
functions other than VFs (a VF is known through its PF: the kinds find a
PF's VFs in the scan context) and the USB devices, asks the kinds which
are theirs (the kind a device's profile names, if it does), groups them
into cards (by the kind's rule, or by the board's own PCIe switch), and
gives each kind's scan step this module's ``Reader`` for the files it
reads. A device whose files are garbage is skipped with a warning naming
its path; the scan goes on. Links are followed only while they stay
inside the sysfs root; an attribute is read through ``safe_io`` (never
through a link of its own, never a FIFO) and never past its bound: a
text attribute's page, the config space's 4096 bytes, the VPD's 32 KiB.
A name in a listing that is not text (bytes that are not UTF-8) is no
name of a device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from accel_inventory import identity, kinds, model, safe_io
from accel_inventory import profiles as profiles_mod
from accel_inventory.contract import BDF, USB_NAME
from accel_inventory.kinds.base import (BUS_PCI, Device, Garbage, PciDevice,
                                        ScanContext, UsbDevice)

LOG = logging.getLogger(__name__)

# (busnum, devnum, vendor, product) -> the iSerialNumber string, if any.
UsbSerialReader = Callable[[int, int, str, str], "str | None"]
# A device's real sysfs path -> its udev properties ({} if none).
UdevReader = Callable[[str], Mapping[str, str]]

__all__ = ["Garbage", "Reader", "ScanResult", "scan_cards"]

# What the kernel gives at most: PCIe extended config space, and the VPD
# address space (15 bits of address in the VPD capability).
CONFIG_BYTES = 4096
VPD_BYTES = 32768


@dataclass
class ScanResult:
    cards: list[model.Card] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Reader:
    """Every read of one scan (``kinds.base.SysfsReader``). A scan is a
    snapshot: each directory is listed once."""

    def __init__(self, root: str, *,
                 udev_properties: UdevReader | None = None,
                 usb_serial_reader: UsbSerialReader | None = None):
        self.root = os.path.realpath(root)
        self._udev_properties = udev_properties
        self._usb_serial_reader = usb_serial_reader
        self._listed: dict[str, list[str]] = {}

    def inside(self, path: str) -> str:
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise Garbage(f"{path} leads outside the sysfs root ({real})")
        return real

    def text(self, path: str) -> str:
        try:
            return safe_io.read_attribute(self.root, path).decode(
                "ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise Garbage(f"{path}: {exc}") from None

    def hex_id(self, path: str, digits: int) -> str:
        value = self.text(path).lower()
        try:
            number = int(value, 16)
        except ValueError:
            raise Garbage(f"{path}: {value!r} is not hex") from None
        # int() also takes a sign and any width; the kernel writes neither.
        if not 0 <= number < 16 ** digits:
            raise Garbage(f"{path}: {value!r} is not a {digits}-digit hex "
                          f"id")
        return f"{number:0{digits}x}"

    def binary(self, path: str, limit: int) -> bytes | None:
        try:
            return safe_io.read_attribute(self.root, path, limit)
        except OSError:
            return None

    def listdir(self, path: str) -> list[str]:
        """The names in ``path`` that are text; none when it is not a
        directory."""
        if path not in self._listed:
            try:
                self._listed[path] = [n for n in os.listdir(path)
                                      if safe_io.printable_name(n)]
            except OSError:
                self._listed[path] = []
        return self._listed[path]

    def pci_device(self, bdf: str) -> PciDevice:
        if not BDF.match(bdf):
            raise Garbage(f"bus/pci/devices/{bdf}: not a PCI address")
        real = self.inside(os.path.join(self.root, "bus", "pci", "devices",
                                        bdf))
        if not os.path.isdir(real):
            raise Garbage(f"bus/pci/devices/{bdf}: dangling link")
        numa_text = self.text(os.path.join(real, "numa_node")) \
            if os.path.exists(os.path.join(real, "numa_node")) else "-1"
        try:
            numa = int(numa_text)
        except ValueError:
            raise Garbage(f"{real}/numa_node: {numa_text!r}") from None
        return PciDevice(bdf, real, self.hex_id(os.path.join(real, "vendor"),
                                                4),
                         self.hex_id(os.path.join(real, "device"), 4),
                         "0x" + self.hex_id(os.path.join(real, "class"), 6),
                         numa if numa >= 0 else None)

    def is_vf(self, dev: PciDevice) -> bool:
        return os.path.lexists(os.path.join(dev.real, "physfn"))

    def vfs_of(self, dev: PciDevice) -> tuple[str, ...]:
        """The BDFs of ``dev``'s VFs, in ``virtfnN`` order (N is the VF's
        index, which its PF's SR-IOV capability ties to its BDF)."""
        links = [n for n in self.listdir(dev.real) if n.startswith("virtfn")
                 and n[len("virtfn"):].isdigit()]
        links.sort(key=lambda n: int(n[len("virtfn"):]))
        return tuple(os.path.basename(self.inside(os.path.join(dev.real, n)))
                     for n in links)

    def pci_identity(self, dev: PciDevice, slot: str | None
                     ) -> tuple[str, str, str | None]:
        """``identity.card_identity`` of a PCI device: its config space's
        serial, its VPD's, ``slot``, else its path."""
        config = self.binary(os.path.join(dev.real, "config"), CONFIG_BYTES)
        if config is None or len(config) < 64:
            raise Garbage(f"{dev.real}/config: missing or shorter than the "
                          f"64-byte header")
        vpd = self.binary(os.path.join(dev.real, "vpd"), VPD_BYTES)
        return identity.card_identity(
            vendor=dev.vendor, product=dev.device,
            dsn=identity.device_serial_number(config),
            vpd_sn=identity.vpd_serial(vpd) if vpd else None,
            slot=slot,
            path=os.path.relpath(os.path.dirname(dev.real), self.root)
            + "/" + dev.bdf.rsplit(":", 1)[1].split(".")[0])

    def usb_device(self, name: str) -> UsbDevice:
        real = self.inside(os.path.join(self.root, "bus", "usb", "devices",
                                        name))
        return UsbDevice(name, real,
                         self.hex_id(os.path.join(real, "idVendor"), 4),
                         self.hex_id(os.path.join(real, "idProduct"), 4))

    def usb_serial(self, device: UsbDevice, busnum: int, devnum: int
                   ) -> str | None:
        """A USB device's serial number: its ``serial`` file, else udev's
        record of it, else its iSerialNumber string (both for the live host
        only); None when it has none."""
        serial_path = os.path.join(device.real, "serial")
        serial = None
        if os.path.exists(serial_path):
            serial = self.text(serial_path)
        if not serial and self._udev_properties:
            serial = identity.udev_serial(self._udev_properties(device.real))
        if not serial and self._usb_serial_reader:
            serial = self._usb_serial_reader(busnum, devnum, device.vendor,
                                             device.product)
        return serial or None

    @staticmethod
    def usb_identity(device: UsbDevice, serial: str | None,
                     connector: str | None) -> tuple[str, str, str | None]:
        """``identity.card_identity`` of a USB device: its serial, else the
        physical ``connector`` it is plugged into (for a stick whose
        serial is no identity), else its port."""
        return identity.card_identity(
            vendor=device.vendor, product=device.product, usb_serial=serial,
            usb_port=connector, path=f"usb-{device.name}")

    def usb_connector(self, device: UsbDevice) -> tuple[str, ...]:
        """The names a device plugged into ``device``'s physical connector
        takes: its own, and its port's ``peer`` (the kernel links the
        USB 2 and USB 3 ports of one connector, drivers/usb/core/port.c),
        on which a stick that re-enumerates at another speed appears
        (a Myriad X: USB 2 in boot mode, USB 3 once its firmware runs).
        Lowest bus first."""
        bus, _, path = device.name.partition("-")
        hub, _, port = path.rpartition(".")
        hub = f"{bus}-{hub}" if hub else f"usb{bus}"
        interface = f"{hub}:1.0" if hub.startswith(bus + "-") else \
            f"{bus}-0:1.0"
        peer = os.path.join(self.root, "bus", "usb", "devices", hub,
                            interface, f"{hub}-port{port or path}", "peer")
        names = [device.name]
        if os.path.islink(peer):
            other = _device_at_port(os.path.basename(self.inside(peer)))
            if other is not None and other != device.name:
                names.append(other)
        return tuple(sorted(names, key=_usb_order))


def _device_at_port(port: str) -> str | None:
    """The USB device name behind port device ``port`` (``usb2-port3`` ->
    ``2-3``, ``2-3.4-port3`` -> ``2-3.4.3``); None for another name."""
    hub, sep, number = port.rpartition("-port")
    if not sep or not number.isdigit():
        return None
    if hub.startswith("usb") and hub[3:].isdigit():
        return f"{hub[3:]}-{number}"
    return f"{hub}.{number}" if USB_NAME.match(hub) else None


def _usb_order(name: str) -> tuple[int, str]:
    return int(name.partition("-")[0]), name


def scan_cards(sysfs_root: str, *,
               profiles: Sequence[profiles_mod.Profile] = (),
               mdev_types: Mapping[str, str] | None = None,
               vgpu_types: Mapping[str, str] | None = None,
               udev_properties: UdevReader | None = None,
               usb_serial_reader: UsbSerialReader | None = None
               ) -> ScanResult:
    """Every accelerator under ``sysfs_root`` as fresh cards (no status,
    no claims): ``identity.reconcile`` compares them with the cache.

    Identities come from sysfs first (config space, VPD, ``serial``
    files). A USB device without a ``serial`` file asks
    ``udev_properties`` (``identity.udev_serial``), then
    ``usb_serial_reader`` (its iSerialNumber string); both are for the
    live host only. PCI devices never ask udev: nothing it records for
    them is a stable identity that sysfs lacks.
    """
    reader = Reader(sysfs_root, udev_properties=udev_properties,
                    usb_serial_reader=usb_serial_reader)
    result = ScanResult()
    profiles = list(profiles)
    pci: dict[str, PciDevice] = {}
    for bdf in sorted(reader.listdir(os.path.join(reader.root, "bus", "pci",
                                                  "devices"))):
        try:
            pci[bdf] = reader.pci_device(bdf)
        except Garbage as exc:
            result.warnings.append(f"skipped PCI device: {exc}")
    # A VF is found through its PF.
    found: list[Device] = []
    vfs: dict[str, tuple[str, ...]] = {}
    for dev in pci.values():
        if reader.is_vf(dev):
            continue
        try:
            vfs[dev.bdf] = reader.vfs_of(dev)
        except Garbage as exc:
            result.warnings.append(f"skipped PCI device: {exc}")
            continue
        found.append(dev)
    slots = _slots(reader)
    context = ScanContext(
        reader=reader, pci=pci, vfs=vfs, slots=slots,
        slot_names=_slot_names(reader, pci, slots),
        mdev_types=mdev_types or {}, vgpu_types=vgpu_types or {},
        profile_for=lambda vendor, product: profiles_mod.match(
            profiles, vendor, product))
    for name in sorted(reader.listdir(os.path.join(reader.root, "bus", "usb",
                                                   "devices"))):
        if USB_NAME.match(name):
            try:
                found.append(reader.usb_device(name))
            except Garbage as exc:
                result.warnings.append(f"skipped card: {exc}")
    groups: dict[str, dict[str, list[Device]]] = {}
    for device in found:
        profile = context.profile_for(device.vendor, device.product)
        kind = kinds.taking(device, profile, context)
        if kind is None:
            if profile is not None and profile.kind is not None:
                result.warnings.append(
                    f"{device.real}: profile {profile.name} names kind "
                    f"{profile.kind}, which this device is not; not "
                    f"scanned")
            continue
        board = (_board(reader, device, profile, slots)
                 if kind.spans_boards else None)
        groups.setdefault(kind.name, {}).setdefault(
            board or kind.group(device), []).append(device)
    for kind in kinds.registered():
        for group in groups.get(kind.name, {}).values():
            try:
                card = kind.build(context, group)
            except Garbage as exc:
                result.warnings.append(f"skipped card: {exc}")
                continue
            if card is not None:
                result.cards.append(card)
    return result


def _bridges_above(reader: Reader, dev: PciDevice) -> list[str]:
    """The real directories of the PCI bridges above ``dev``, nearest
    first (the root complex ``pciDDDD:BB`` is none)."""
    found = []
    parent = os.path.dirname(dev.real)
    while parent.startswith(reader.root + os.sep) and BDF.match(
            os.path.basename(parent)):
        found.append(parent)
        parent = os.path.dirname(parent)
    return found


def _in_slot(slots: Mapping[str, str], real: str) -> str | None:
    return slots.get(os.path.basename(real).rsplit(".", 1)[0])


def _slot_names(reader: Reader, pci: Mapping[str, PciDevice],
                slots: Mapping[str, str]) -> dict[str, str]:
    """BDF -> the physical slot the device sits in: its own, else that of
    the nearest bridge above it that sits in one (the upstream port of a
    board's own switch)."""
    found = {}
    for dev in pci.values():
        for real in (dev.real, *_bridges_above(reader, dev)):
            name = _in_slot(slots, real)
            if name is not None:
                found[dev.bdf] = name
                break
    return found


def _board(reader: Reader, device: Device,
           profile: profiles_mod.Profile | None,
           slots: Mapping[str, str]) -> str | None:
    """The board ``device`` is one endpoint of, named by the real path of
    the board's own switch upstream port: where a physical slot holds a
    bridge above the device (the topology says the slot's card is a
    switch with endpoints), or where the device's profile says its board
    has a switch (``"group": "switch"``: the bridge above its downstream
    port). None for a device that is a card by itself."""
    if device.bus != BUS_PCI or _in_slot(slots, device.real) is not None:
        return None
    bridges = _bridges_above(reader, device)
    for real in bridges:
        if _in_slot(slots, real) is not None:
            return real
    if profile is not None and profile.group == profiles_mod.GROUP_SWITCH \
            and len(bridges) >= 2:
        return bridges[1]
    return None


def _slots(reader: Reader) -> dict[str, str]:
    """``DDDD:BB:SS`` -> physical slot name, where firmware registers
    slots."""
    slots = {}
    base = os.path.join(reader.root, "bus", "pci", "slots")
    for name in reader.listdir(base):
        try:
            slots[reader.text(os.path.join(base, name, "address"))] = name
        except Garbage:
            continue
    return slots
