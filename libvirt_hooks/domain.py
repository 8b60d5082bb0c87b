"""Read a domain XML safely and find the accelerator devices it names.

The XML comes from whoever may define domains; it is parsed with entity
resolution, DTD loading and network access off, and with a size bound, so
a hostile document can neither read host files nor exhaust memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from libvirt_hooks import xmlgen


class DomainXMLError(Exception):
    """The domain XML cannot be read; the message says why."""


@dataclass(frozen=True)
class DeviceRef:
    """One accelerator-capable device of a domain, as the XML names it.

    ``kind`` is ``pci``, ``usb``, ``mdev`` or ``interface``; ``address`` a
    BDF, ``<bus>:<device>``, an mdev UUID or the interface's source; ``index``
    its position among the domain's devices of that kind.
    """

    kind: str
    address: str | None
    index: int
    vendor_id: str | None = None
    product_id: str | None = None


@dataclass(frozen=True)
class Domain:
    name: str
    uuid: str
    devices: tuple[DeviceRef, ...]
    tree: etree._Element


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
    name = root.findtext("name") or ""
    uuid = root.findtext("uuid") or ""
    if not name or not uuid:
        raise DomainXMLError("domain XML lacks <name> or <uuid>")
    return Domain(name=name.strip(), uuid=uuid.strip(),
                  devices=tuple(_devices(root)), tree=root)


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


def _devices(root: etree._Element):
    counts: dict[str, int] = {}

    def ref(kind, address, **kwargs):
        index = counts.get(kind, 0)
        counts[kind] = index + 1
        return DeviceRef(kind, address, index, **kwargs)

    for hostdev in root.iterfind("devices/hostdev"):
        kind = hostdev.get("type")
        address = hostdev.find("source/address")
        if kind == "pci" and address is not None:
            yield ref("pci", pci_bdf(address))
        elif kind == "mdev" and address is not None:
            yield ref("mdev", address.get("uuid"))
        elif kind == "usb":
            vendor = hostdev.find("source/vendor")
            product = hostdev.find("source/product")
            where = (f"{address.get('bus')}:{address.get('device')}"
                     if address is not None else None)
            yield ref("usb", where,
                      vendor_id=_hex(vendor.get("id") if vendor is not None
                                     else None),
                      product_id=_hex(product.get("id") if product is not None
                                      else None))
    for interface in root.iterfind("devices/interface"):
        source = interface.find("source")
        if source is None:
            continue
        target = source.get("bridge") or source.get("dev")
        if target:
            yield ref("interface", target)


def rewrite_pci(domain: Domain, new_bdfs: dict[int, str]) -> bytes | None:
    """The domain XML with the ``index``-th PCI hostdev moved to a new BDF;
    None when nothing changes. Devices keep their number and order."""
    changed = False
    hostdevs = [h for h in domain.tree.iterfind("devices/hostdev")
                if h.get("type") == "pci"
                and h.find("source/address") is not None]
    for index, bdf in new_bdfs.items():
        address = hostdevs[index].find("source/address")
        if pci_bdf(address) == bdf:
            continue
        address.attrib.update(xmlgen.pci_address_attrs(bdf))
        changed = True
    if not changed:
        return None
    return etree.tostring(domain.tree, encoding="utf-8")
