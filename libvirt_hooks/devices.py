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

"""Which domain device stands for a function Nova does not manage.

Pure: a function of the inventory and what the host has for it now come
in; the element to hot-plug (built by ``xmlgen``) or the reason it cannot
be built comes out. ``device_key`` names a device by what it reaches on the
host, so that one already in a domain is recognised and not added twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from accel_inventory import kinds, model
from libvirt_hooks import bridge, guard, xmlgen
from libvirt_hooks.domain import DomainXMLError, pci_bdf
from libvirt_hooks.guard import MdevNow, PciIdentity, UsbDevice


class DeviceError(Exception):
    """A function cannot be given to a domain now; the message says why."""


@dataclass(frozen=True)
class HostNow:
    """What the host has now for one function; only the field of the
    function's kind is looked at."""

    pci: PciIdentity | None = None
    usb: UsbDevice | None = None
    mdev: MdevNow | None = None


def _rescan_hint(card: model.Card) -> str:
    return (f"rescan with 'accel-inventory scan' and check card {card.id} "
            f"with 'accel-inventory show'")


def _require_same(where: str, card: model.Card, *, held: tuple,
                  given: tuple) -> None:
    if held != given:
        raise DeviceError(f"{where} holds {':'.join(map(str, held))} now, "
                          f"card {card.id} is {':'.join(map(str, given))}; "
                          f"{_rescan_hint(card)}")


def element_for(card: model.Card, function: model.Function, now: HostNow,
                bridge_prefix: str) -> etree._Element:
    """The device that gives ``function`` of ``card`` to a domain, at the
    address the host has for it now. Raises DeviceError when the host has
    nothing usable there."""
    if card.degraded:
        raise DeviceError(f"card {card.id} is {card.status}; "
                          f"{_rescan_hint(card)}")
    if kinds.vanished(card, function):
        was = function.attrs.get("previous_addresses") or ["?"]
        raise DeviceError(f"the device of {function.id} (last at {was[-1]}) "
                          f"is gone from the host; if it is a VF, make its "
                          f"PF's VFs again (sriov_numvfs), then "
                          f"{_rescan_hint(card)}")
    if card.kind == "ippcie":
        return xmlgen.bridge_interface(bridge.bridge_name(bridge_prefix,
                                                          function.id))
    if function.address is None:
        raise DeviceError(f"{function.id} has no address on the host "
                          f"(an mdev not created yet); "
                          f"{_rescan_hint(card)}")
    if card.kind == "pci":
        if now.pci is None:
            raise DeviceError(f"no PCI device at {function.address} now; "
                              f"{_rescan_hint(card)}")
        _require_same(f"PCI address {function.address}", card,
                      held=(now.pci.vendor_id, now.pci.product_id),
                      given=guard.expected_ids(card, function))
        return xmlgen.pci_hostdev(function.address)
    if card.kind == "usb":
        if now.usb is None:
            raise DeviceError(f"no USB device at port {function.address} "
                              f"now; {_rescan_hint(card)}")
        # A stick is known by its serial: its product id changes when its
        # firmware loads.
        _require_same(f"USB port {function.address}", card,
                      held=(now.usb.vendor_id, now.usb.serial),
                      given=(card.vendor_id, card.serial))
        return xmlgen.usb_hostdev(now.usb.vendor_id, now.usb.product_id,
                                  bus=now.usb.busnum, device=now.usb.devnum)
    if card.kind == "mdev":
        if now.mdev is None:
            raise DeviceError(f"mdev {function.address} does not exist on "
                              f"the host now; {_rescan_hint(card)}")
        return xmlgen.mdev_hostdev(function.address)
    raise DeviceError(f"card {card.id} is of unknown kind {card.kind!r}")


def device_key(element: etree._Element) -> tuple[str, ...] | None:
    """What a domain device reaches on the host: ``("bridge", name)``,
    ``("pci", bdf)``, ``("usb", vendor, product, bus, device)`` or
    ``("mdev", uuid)``; None for any other device."""
    source = element.find("source")
    if source is None:
        return None
    if element.tag == "interface" and element.get("type") == "bridge":
        return ("bridge", source.get("bridge"))
    if element.tag != "hostdev":
        return None
    kind = element.get("type")
    address = source.find("address")
    try:
        if kind == "pci" and address is not None:
            return ("pci", pci_bdf(address))
    except DomainXMLError:
        return None
    if kind == "mdev" and address is not None:
        return ("mdev", address.get("uuid"))
    if kind == "usb":
        vendor, product = source.find("vendor"), source.find("product")
        try:
            ids = tuple(f"{int(node.get('id'), 0):04x}" if node is not None
                        else "" for node in (vendor, product))
            where = tuple(str(int(address.get(k), 0)) if address is not None
                          else "" for k in ("bus", "device"))
        except (TypeError, ValueError):
            return None
        return ("usb", *ids, *where)
    return None


def devices_by_key(tree: etree._Element) -> dict[tuple[str, ...],
                                                 etree._Element]:
    """Every device of a domain XML that ``device_key`` names, by key."""
    found = {}
    for element in tree.iterfind("devices/*"):
        key = device_key(element)
        if key is not None:
            found[key] = element
    return found


def describe(key: tuple[str, ...]) -> str:
    """A device key as the operator reads it."""
    if key[0] == "usb":
        return f"usb {key[1]}:{key[2]} bus {key[3]} device {key[4]}"
    return " ".join(key)
