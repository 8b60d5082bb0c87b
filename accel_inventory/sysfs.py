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
strongest stable identity. A device whose files are garbage is skipped
with a warning naming its path; the scan goes on. Links are followed only
while they stay inside the sysfs root.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from accel_inventory import contract, identity, model
from accel_inventory.contract import BDF, USB_NAME
from accel_inventory import profiles as profiles_mod

LOG = logging.getLogger(__name__)

# Processing accelerators and co-processors are accelerators by class;
# anything else needs a profile (or is an mdev parent).
ACCEL_CLASS_PREFIXES = ("0x12", "0x0b40")
# Each free mdev instance is a function in the cache: a garbage
# available_instances (2**70) must not make billions of them. Parents offer
# tens (vGPU) to a few hundred.
MAX_MDEV_INSTANCES = 4096

# (busnum, devnum, vendor, product) -> the iSerialNumber string, if any.
UsbSerialReader = Callable[[int, int, str, str], "str | None"]
# A device's real sysfs path -> its udev properties ({} if none).
UdevReader = Callable[[str], Mapping[str, str]]


class Garbage(Exception):
    """A device's sysfs entries cannot be read as the kernel writes them."""


@dataclass
class ScanResult:
    cards: list[model.Card] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Pci:
    bdf: str
    real: str
    vendor: str
    device: str
    klass: str
    numa: int | None


class _Reader:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)

    def inside(self, path: str) -> str:
        real = os.path.realpath(path)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise Garbage(f"{path} leads outside the sysfs root ({real})")
        return real

    @staticmethod
    def text(path: str) -> str:
        try:
            with open(path, "rb") as f:
                return f.read(4096).decode("ascii").strip()
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

    @staticmethod
    def binary(path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None


def _read_pci(reader: _Reader, bdf: str) -> _Pci:
    if not BDF.match(bdf):
        raise Garbage(f"bus/pci/devices/{bdf}: not a PCI address")
    real = reader.inside(os.path.join(reader.root, "bus", "pci", "devices",
                                      bdf))
    if not os.path.isdir(real):
        raise Garbage(f"bus/pci/devices/{bdf}: dangling link")
    numa_text = reader.text(os.path.join(real, "numa_node")) \
        if os.path.exists(os.path.join(real, "numa_node")) else "-1"
    try:
        numa = int(numa_text)
    except ValueError:
        raise Garbage(f"{real}/numa_node: {numa_text!r}") from None
    return _Pci(bdf, real, reader.hex_id(os.path.join(real, "vendor"), 4),
                reader.hex_id(os.path.join(real, "device"), 4),
                "0x" + reader.hex_id(os.path.join(real, "class"), 6),
                numa if numa >= 0 else None)


def scan_cards(sysfs_root: str, *,
               profiles: Sequence[profiles_mod.Profile] = (),
               mdev_types: Mapping[str, str] | None = None,
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
    reader = _Reader(sysfs_root)
    result = ScanResult()
    profiles = list(profiles)
    slots = _slots(reader)
    pci_dir = os.path.join(reader.root, "bus", "pci", "devices")
    devices: dict[str, _Pci] = {}
    for bdf in sorted(_listdir(pci_dir)):
        try:
            devices[bdf] = _read_pci(reader, bdf)
        except Garbage as exc:
            result.warnings.append(f"skipped PCI device: {exc}")
    mdev_parents = set(_listdir(os.path.join(reader.root, "class",
                                             "mdev_bus")))
    ippcie: dict[str, list[_Pci]] = {}
    pfs: dict[tuple[str, ...], list[_Pci]] = {}
    for bdf, dev in devices.items():
        if os.path.lexists(os.path.join(dev.real, "physfn")):
            continue  # a VF: found through its PF
        profile = profiles_mod.match(profiles, dev.vendor, dev.device)
        kind = profile.kind if profile else None
        if bdf in mdev_parents:
            _add(result, lambda d=dev, p=profile: _mdev_card(
                reader, d, p, mdev_types or {}, slots))
        elif kind == "ippcie":
            ippcie.setdefault(os.path.dirname(dev.real), []).append(dev)
        elif profile or dev.klass.startswith(ACCEL_CLASS_PREFIXES):
            pfs.setdefault((bdf.rsplit(".", 1)[0],), []).append(dev)
    for group in pfs.values():
        _add(result, lambda g=group: _pci_card(reader, g, profiles, slots,
                                               devices))
    for parent, nodes in ippcie.items():
        _add(result, lambda p=parent, n=nodes: _ippcie_card(
            reader, p, n, profiles))
    for name in sorted(_listdir(os.path.join(reader.root, "bus", "usb",
                                             "devices"))):
        if USB_NAME.match(name):
            _add(result, lambda n=name: _usb_card(
                reader, n, profiles, udev_properties, usb_serial_reader))
    result.cards = [c for c in result.cards if c is not None]
    return result


def _add(result: ScanResult, build: Callable[[], model.Card | None]) -> None:
    try:
        card = build()
    except Garbage as exc:
        result.warnings.append(f"skipped card: {exc}")
        return
    if card is not None:
        result.cards.append(card)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _slots(reader: _Reader) -> dict[str, str]:
    """``DDDD:BB:SS`` -> physical slot name, where firmware registers
    slots."""
    slots = {}
    base = os.path.join(reader.root, "bus", "pci", "slots")
    for name in _listdir(base):
        try:
            slots[reader.text(os.path.join(base, name, "address"))] = name
        except Garbage:
            continue
    return slots


def _identity_of(reader: _Reader, dev: _Pci, slots: Mapping[str, str]):
    config = reader.binary(os.path.join(dev.real, "config"))
    if config is None or len(config) < 64:
        raise Garbage(f"{dev.real}/config: missing or shorter than the "
                      f"64-byte header")
    vpd = reader.binary(os.path.join(dev.real, "vpd"))
    return identity.card_identity(
        vendor=dev.vendor, product=dev.device,
        dsn=identity.device_serial_number(config),
        vpd_sn=identity.vpd_serial(vpd) if vpd else None,
        slot=slots.get(dev.bdf.rsplit(".", 1)[0]),
        path=os.path.relpath(os.path.dirname(dev.real), reader.root)
        + "/" + dev.bdf.rsplit(":", 1)[1].split(".")[0])


def _vfs(reader: _Reader, dev: _Pci) -> list[str]:
    links = [n for n in _listdir(dev.real) if n.startswith("virtfn")]
    links.sort(key=lambda n: int(n[len("virtfn"):] or 0))
    return [os.path.basename(reader.inside(os.path.join(dev.real, n)))
            for n in links]


def _sriov_capable(reader: _Reader, dev: _Pci) -> bool:
    """Whether ``dev`` is an SR-IOV PF (its functions are VFs), whether or
    not its VFs exist now."""
    try:
        return int(reader.text(os.path.join(dev.real, "sriov_totalvfs"))) > 0
    except (Garbage, ValueError):
        return False


def _chunks(functions: list, size: int | None) -> list[list]:
    if not size:
        return [functions]
    return [functions[i:i + size] for i in range(0, len(functions), size)]


def _own_product(function: _Pci | None, card_product: str) -> dict:
    """A VF's own device id, which is not its PF's (1172:5001 under
    1172:5000): the hook compares what sysfs has at an address with it."""
    if function is None or function.device == card_product:
        return {}
    return {"product_id": function.device}


def _pci_card(reader: _Reader, group: list[_Pci],
              profiles: list[profiles_mod.Profile],
              slots: Mapping[str, str],
              devices: Mapping[str, _Pci]) -> model.Card:
    first = group[0]
    card_id, source, serial = _identity_of(reader, first, slots)
    profile = profiles_mod.match(profiles, first.vendor, first.device)
    rc = (profile.resource_class if profile else
          contract.default_resource_class("pci", first.vendor,
                                          first.device))
    regions = []
    for pf in group:
        addresses = _vfs(reader, pf)
        if not addresses and not _sriov_capable(reader, pf):
            addresses = [pf.bdf]  # the PF itself is the one function
        # An SR-IOV PF whose VFs are not made (after a reboot, before
        # sriov_numvfs is written again) is a region without functions:
        # taking the PF as its function would hand a domain holding one
        # of its VFs the whole PF, and shift every later region's ids.
        for chunk in _chunks(addresses, profile and
                             profile.functions_per_region) or [[]]:
            index = len(regions)
            regions.append(model.Region(
                id=model.region_id(card_id, index), index=index,
                resource_class=rc, address=pf.bdf,
                functions=[model.Function(
                    id=model.function_id(card_id, index, i), address=a,
                    attrs=_own_product(devices.get(a), first.device))
                    for i, a in enumerate(chunk)]))
    return model.Card(id=card_id, kind="pci", vendor_id=first.vendor,
                      product_id=first.device, serial=serial,
                      identity_source=source, address=first.bdf,
                      numa_node=first.numa, regions=regions,
                      profile=profile.name if profile else None,
                      attrs={"class": first.klass})


def _mdev_card(reader: _Reader, dev: _Pci,
               profile: profiles_mod.Profile | None,
               mdev_types: Mapping[str, str],
               slots: Mapping[str, str]) -> model.Card:
    card_id, source, serial = _identity_of(reader, dev, slots)
    types_dir = os.path.join(dev.real, "mdev_supported_types")
    types = sorted(_listdir(types_dir))
    wanted = mdev_types.get(f"{dev.vendor}:{dev.device}")
    if wanted is None and types:
        wanted = types[0]
    if wanted not in types:
        raise Garbage(f"{types_dir}: no mdev type {wanted!r} (has "
                      f"{', '.join(types) or 'none'}); set [inventory] "
                      f"mdev_types")
    type_dir = os.path.join(types_dir, wanted)
    existing = sorted(_listdir(os.path.join(type_dir, "devices")))
    try:
        available = int(reader.text(os.path.join(type_dir,
                                                  "available_instances")))
    except ValueError:
        raise Garbage(f"{type_dir}/available_instances is not a "
                      f"number") from None
    if available > MAX_MDEV_INSTANCES:
        raise Garbage(f"{type_dir}/available_instances is {available}, "
                      f"more than any parent offers ({MAX_MDEV_INSTANCES})")
    addresses = existing + [None] * max(available, 0)
    rc = (profile.resource_class if profile else
          contract.default_resource_class("mdev", dev.vendor,
                                          dev.device))
    region = model.Region(
        id=model.region_id(card_id, 0), index=0, resource_class=rc,
        address=dev.bdf,
        attrs={"mdev_type": wanted, "available_instances": available},
        functions=[model.Function(id=model.function_id(card_id, 0, i),
                                  address=a, attrs={"mdev_type": wanted})
                   for i, a in enumerate(addresses)])
    return model.Card(id=card_id, kind="mdev", vendor_id=dev.vendor,
                      product_id=dev.device, serial=serial,
                      identity_source=source, address=dev.bdf,
                      numa_node=dev.numa, regions=[region],
                      profile=profile.name if profile else None,
                      attrs={"class": dev.klass})


def _interface_of(reader: _Reader, dev: _Pci) -> tuple[str | None,
                                                      str | None]:
    names = sorted(_listdir(os.path.join(dev.real, "net")))
    if not names:
        return None, None
    mac = reader.text(os.path.join(dev.real, "net", names[0], "address"))
    return names[0], mac


def _ippcie_card(reader: _Reader, parent: str, nodes: list[_Pci],
                 profiles: list[profiles_mod.Profile]) -> model.Card:
    """The nodes below one upstream port form one card; its identity is
    the upstream port's (VPD serial), not the card number, which follows
    enumeration order."""
    upstream_bdf = os.path.basename(parent)
    if BDF.match(upstream_bdf):
        upstream = _read_pci(reader, upstream_bdf)
    else:
        upstream = nodes[0]
    card_id, source, serial = _identity_of(reader, upstream, {})
    profile = profiles_mod.match(profiles, nodes[0].vendor, nodes[0].device)
    functions = []
    for i, node in enumerate(sorted(nodes, key=lambda n: n.bdf)):
        interface, mac = _interface_of(reader, node)
        functions.append(model.Function(
            id=model.function_id(card_id, 0, i), address=node.bdf,
            attrs={"node": i, "interface": interface, "mac": mac,
                   "product_id": node.device}))
    region = model.Region(id=model.region_id(card_id, 0), index=0,
                          resource_class=profile.resource_class,
                          address=upstream.bdf, functions=functions)
    return model.Card(id=card_id, kind="ippcie", vendor_id=upstream.vendor,
                      product_id=upstream.device, serial=serial,
                      identity_source=source, address=upstream.bdf,
                      numa_node=upstream.numa, regions=[region],
                      profile=profile.name)


def _usb_card(reader: _Reader, name: str,
              profiles: list[profiles_mod.Profile],
              udev_properties: UdevReader | None,
              serial_reader: UsbSerialReader | None) -> model.Card | None:
    real = reader.inside(os.path.join(reader.root, "bus", "usb", "devices",
                                      name))
    vendor = reader.hex_id(os.path.join(real, "idVendor"), 4)
    product = reader.hex_id(os.path.join(real, "idProduct"), 4)
    profile = profiles_mod.match(profiles, vendor, product)
    if profile is None or profile.kind != "usb":
        return None
    try:
        busnum = int(reader.text(os.path.join(real, "busnum")))
        devnum = int(reader.text(os.path.join(real, "devnum")))
    except ValueError:
        raise Garbage(f"{real}: busnum/devnum are not numbers") from None
    serial_path = os.path.join(real, "serial")
    serial = None
    if os.path.exists(serial_path):
        serial = reader.text(serial_path)
    if not serial and udev_properties:
        serial = identity.udev_serial(udev_properties(real))
    if not serial and serial_reader:
        serial = serial_reader(busnum, devnum, vendor, product)
    card_id, source, serial = identity.card_identity(
        vendor=vendor, product=product, usb_serial=serial,
        path=f"usb-{name}")
    function = model.Function(
        id=model.function_id(card_id, 0, 0), address=name,
        attrs={"busnum": busnum, "devnum": devnum, "product_id": product})
    return model.Card(
        id=card_id, kind="usb", vendor_id=vendor, product_id=product,
        serial=serial, identity_source=source, address=name,
        regions=[model.Region(id=model.region_id(card_id, 0), index=0,
                              resource_class=profile.resource_class,
                              address=name, functions=[function])],
        profile=profile.name)
