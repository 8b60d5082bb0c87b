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

"""Read a domain XML safely and find the accelerator devices it names.

The XML comes from whoever may define domains; it is parsed with entity
resolution, DTD loading and network access off, and with a size bound, so
a hostile document can neither read host files nor exhaust memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lxml import etree

from accel_inventory import numa
from accel_inventory.contract import NUMA_AFFINITY_SPEC, UUID
from accel_inventory.kinds.base import (DEVICE_INTERFACE, DEVICE_MDEV,
                                        DEVICE_PCI, DEVICE_USB)
from libvirt_hooks import xmlgen


class DomainXMLError(Exception):
    """The domain XML cannot be read; the message says why."""


@dataclass(frozen=True)
class DeviceRef:
    """One accelerator-capable device of a domain, as the XML names it.

    ``kind`` is its device kind: ``pci``, ``usb``, ``mdev`` (hostdevs by
    type) or ``interface``; ``address`` a BDF, ``<bus>:<device>`` (None
    when the XML names only vendor and product), an mdev UUID or the host
    interface (bridge or device) an ``<interface>`` names; ``index`` its
    position among the domain's devices of that kind; ``element`` the XML
    element a rewrite changes.
    """

    kind: str
    address: str | None
    index: int
    vendor_id: str | None = None
    product_id: str | None = None
    element: etree._Element | None = field(default=None, compare=False,
                                           repr=False)


# Where each <interface> type names the host interface it uses.
INTERFACE_SOURCES = {"bridge": ("source", "bridge"),
                     "direct": ("source", "dev"),
                     "ethernet": ("target", "dev")}


@dataclass(frozen=True)
class Domain:
    name: str
    uuid: str
    devices: tuple[DeviceRef, ...]
    tree: etree._Element

    def refs(self, kind: str) -> list[DeviceRef]:
        """The devices of one device kind, in XML order."""
        return self.by_kind().get(kind, [])

    def by_kind(self) -> dict[str, list[DeviceRef]]:
        grouped: dict[str, list[DeviceRef]] = {}
        for ref in self.devices:
            grouped.setdefault(ref.kind, []).append(ref)
        return grouped


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True,
                           load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_comments=True)


def parse(data: bytes, max_bytes: int) -> Domain:
    if len(data) > max_bytes:
        raise DomainXMLError(f"domain XML of {len(data)} bytes exceeds the "
                             f"{max_bytes}-byte bound ([libvirt_hooks] "
                             f"max_xml_bytes)")
    try:
        root = etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise DomainXMLError(f"malformed domain XML: {exc}") from None
    if root.tag != "domain":
        raise DomainXMLError(f"root element is <{root.tag}>, not <domain>")
    if root.getroottree().docinfo.internalDTD is not None or any(
            isinstance(node, etree._Entity) for node in root.iter()):
        raise DomainXMLError("domain XML declares a DTD or entities, which "
                             "libvirt never writes; refusing it")
    name = (root.findtext("name") or "").strip()
    uuid = (root.findtext("uuid") or "").strip().lower()
    if not name or not uuid:
        raise DomainXMLError("domain XML lacks <name> or <uuid>")
    # The UUID names the domain's claim in the cache.
    if not UUID.match(uuid):
        raise DomainXMLError(f"domain UUID {uuid[:40]!r} is not a UUID")
    return Domain(name=name, uuid=uuid, devices=tuple(_devices(root)),
                  tree=root)


def _hex(value: str | None) -> str | None:
    if value is None:
        return None
    return value.lower().removeprefix("0x")


def pci_bdf(address: etree._Element) -> str:
    """libvirt's ``<address domain= bus= slot= function=/>`` as a BDF."""
    try:
        domain = int(address.get("domain", "0"), 0)
        bus = int(address.get("bus"), 0)
        slot = int(address.get("slot"), 0)
        function = int(address.get("function"), 0)
    except (TypeError, ValueError):
        raise DomainXMLError(f"PCI address {dict(address.attrib)} is not "
                             f"numeric") from None
    return f"{domain:04x}:{bus:02x}:{slot:02x}.{function:x}"


def usb_address(text: str) -> int:
    """A USB bus or device number as libvirt writes it (``3``, ``003``
    or ``0x3``)."""
    text = text.strip().lower()
    return int(text, 16) if text.startswith("0x") else int(text, 10)


def _pci_hostdev(hostdev: etree._Element, address: etree._Element | None
                 ) -> tuple[str, dict] | None:
    return None if address is None else (pci_bdf(address), {})


def _mdev_hostdev(hostdev: etree._Element, address: etree._Element | None
                  ) -> tuple[str, dict] | None:
    if address is None:
        return None
    uuid = (address.get("uuid") or "").lower()
    if not UUID.match(uuid):
        # It becomes a sysfs path: never let it be anything else.
        raise DomainXMLError(f"mdev address {uuid!r} is not a UUID")
    return uuid, {}


def _usb_hostdev(hostdev: etree._Element, address: etree._Element | None
                 ) -> tuple[str | None, dict]:
    vendor = hostdev.find("source/vendor")
    product = hostdev.find("source/product")
    where = None
    if address is not None:
        try:
            where = (f"{usb_address(address.get('bus', ''))}:"
                     f"{usb_address(address.get('device', ''))}")
        except ValueError:
            raise DomainXMLError(f"USB address {dict(address.attrib)} is not "
                                 f"numeric") from None
    return where, {
        "vendor_id": _hex(vendor.get("id") if vendor is not None else None),
        "product_id": _hex(product.get("id") if product is not None
                           else None)}


# How each hostdev type (a device kind) names what it reaches on the host:
# its address and the DeviceRef's other fields; None when it names
# nothing this project reads.
HOSTDEV_SOURCES = {DEVICE_PCI: _pci_hostdev, DEVICE_MDEV: _mdev_hostdev,
                   DEVICE_USB: _usb_hostdev}


def _devices(root: etree._Element):
    counts: dict[str, int] = {}

    def ref(kind, address, element, **kwargs):
        index = counts.get(kind, 0)
        counts[kind] = index + 1
        return DeviceRef(kind, address, index, element=element, **kwargs)

    for hostdev in root.iterfind("devices/hostdev"):
        kind = hostdev.get("type")
        source = HOSTDEV_SOURCES.get(kind)
        found = (source(hostdev, hostdev.find("source/address"))
                 if source else None)
        if found is not None:
            yield ref(kind, found[0], hostdev, **found[1])
    for interface in root.iterfind("devices/interface"):
        child, attr = INTERFACE_SOURCES.get(interface.get("type"),
                                            (None, None))
        source = interface.find(child) if child else None
        if source is not None and source.get(attr):
            yield ref(DEVICE_INTERFACE, source.get(attr), interface)


def nova_flavor(root: etree._Element) -> str | None:
    """The nova flavor a domain runs with, as nova's libvirt driver writes
    it into the domain's metadata (``<nova:instance><nova:flavor
    name=... id=...>``, in nova's namespace of any version): its id, else
    its name; None for a domain nova did not make."""
    for instance in root.iterfind("metadata/*"):
        if not isinstance(instance.tag, str) or \
                etree.QName(instance).localname != "instance":
            continue
        for flavor in instance:
            if isinstance(flavor.tag, str) and \
                    etree.QName(flavor).localname == "flavor":
                return flavor.get("id") or flavor.get("name")
    return None


@dataclass(frozen=True)
class GuestNuma:
    """Where the domain's XML puts its guest on the host: the host NUMA
    nodes its memory is bound to (``<numatune>``: ``memory`` and each
    ``memnode``), the host CPUs its vCPUs are pinned to (``<cputune>``'s
    ``vcpupin``), and the NUMA affinity policy nova wrote into the
    metadata with the flavor's extra specs (as written; None when the
    flavor names none). Nova writes both for every instance with a NUMA
    topology, and neither for the others."""

    memory_nodes: frozenset[int]
    vcpu_cpus: frozenset[int]
    policy: str | None

    @property
    def placed(self) -> bool:
        return bool(self.memory_nodes or self.vcpu_cpus)


# Nova's metadata namespace carries a version (.../nova/1.1): any.
_NOVA_EXTRA_SPECS = "metadata/{*}instance/{*}flavor/{*}extraSpecs/{*}extraSpec"


def guest_numa(domain: Domain) -> GuestNuma:
    """The domain's ``GuestNuma``; DomainXMLError when a node or CPU list
    is not one."""
    tree = domain.tree
    nodesets = [e.get("nodeset") for e in tree.iterfind("numatune/memory")]
    nodesets += [e.get("nodeset") for e in tree.iterfind("numatune/memnode")]
    cpusets = [e.get("cpuset") for e in tree.iterfind("cputune/vcpupin")]
    policy = None
    for spec in tree.iterfind(_NOVA_EXTRA_SPECS):
        if spec.get("name") == NUMA_AFFINITY_SPEC:
            policy = (spec.text or "").strip()
    return GuestNuma(_ids(nodesets, "nodeset"), _ids(cpusets, "cpuset"),
                     policy)


def _ids(lists: list[str | None], what: str) -> frozenset[int]:
    found: set[int] = set()
    for text in lists:
        if text is None:
            continue  # placement='auto': numad decides, not the XML
        try:
            found |= numa.parse_id_list(text)
        except ValueError:
            raise DomainXMLError(f"{what} {text[:40]!r} is not a list of "
                                 f"numbers") from None
    return frozenset(found)


@dataclass(frozen=True)
class UsbMove:
    """Where a USB hostdev's stick is now, and as which vendor:product (a
    Movidius stick changes product id when its firmware loads)."""

    bus: int
    device: int
    vendor_id: str
    product_id: str


def _set(element: etree._Element, attr: str, value: str) -> bool:
    if element.get(attr) == value:
        return False
    element.set(attr, value)
    return True


def _move_usb(hostdev: etree._Element, move: UsbMove) -> bool:
    changed = False
    address = hostdev.find("source/address")
    if address is not None and (usb_address(address.get("bus")),
                                usb_address(address.get("device"))) != (
                                    move.bus, move.device):
        changed |= _set(address, "bus", str(move.bus))
        changed |= _set(address, "device", str(move.device))
    for tag, value in (("vendor", move.vendor_id),
                       ("product", move.product_id)):
        element = hostdev.find(f"source/{tag}")
        if element is not None and _hex(element.get("id")) != value:
            changed |= _set(element, "id", f"0x{value}")
    return changed


def _move_pci(hostdev: etree._Element, bdf: str) -> bool:
    address = hostdev.find("source/address")
    if pci_bdf(address) == bdf:
        return False
    address.attrib.update(xmlgen.pci_address_attrs(bdf))
    return True


def _move_interface(interface: etree._Element, name: str) -> bool:
    child, attr = INTERFACE_SOURCES[interface.get("type")]
    return _set(interface.find(child), attr, name)


# How a device of each kind is moved to where its function is now.
MOVERS = {DEVICE_PCI: _move_pci, DEVICE_USB: _move_usb,
           DEVICE_INTERFACE: _move_interface}


def rewrite(domain: Domain, pci: Mapping[int, str],
            usb: Mapping[int, UsbMove],
            interfaces: Mapping[int, str]) -> bytes | None:
    """The domain XML with devices at their current host addresses: the
    ``index``-th PCI hostdev at a new BDF, USB hostdev at a new bus and
    device, interface on a new host interface. None when nothing changes.
    Devices keep their number and order."""
    moves = {DEVICE_PCI: pci, DEVICE_USB: usb, DEVICE_INTERFACE: interfaces}
    changed = False
    for ref in domain.devices:
        move = moves.get(ref.kind, {}).get(ref.index)
        if move is not None:
            changed |= MOVERS[ref.kind](ref.element, move)
    if not changed:
        return None
    return etree.tostring(domain.tree, encoding="utf-8")
