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
from accel_inventory.kinds.base import (DEVICE_INTERFACE, DEVICE_MDEV,
                                        DEVICE_PCI, DEVICE_USB)
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


def _addressed(card: model.Card, function: model.Function) -> str:
    if function.address is None:
        raise DeviceError(f"{function.id} has no address on the host "
                          f"(an mdev not created yet); "
                          f"{_rescan_hint(card)}")
    return function.address


def _pci_element(card: model.Card, function: model.Function, now: HostNow,
                 bridge_prefix: str) -> etree._Element:
    address = _addressed(card, function)
    if now.pci is None:
        raise DeviceError(f"no PCI device at {address} now; "
                          f"{_rescan_hint(card)}")
    _require_same(f"PCI address {address}", card,
                  held=(now.pci.vendor_id, now.pci.product_id),
                  given=guard.expected_ids(card, function))
    # A VF that gives a vendor-specific vGPU stays bound to the nvidia
    # driver: libvirt must not rebind it (NVIDIA: unmanaged mode only).
    return xmlgen.pci_hostdev(address,
                              managed=guard.vgpu_type(function) is None)


def _usb_element(card: model.Card, function: model.Function, now: HostNow,
                 bridge_prefix: str) -> etree._Element:
    address = _addressed(card, function)
    if now.usb is None:
        raise DeviceError(f"no USB device at port {address} now; "
                          f"{_rescan_hint(card)}")
    # A stick is known by its serial (its product id changes when its
    # firmware loads); one whose serial is every unit's, by the connector
    # it was found on (resolve.host_now).
    if card.serial is not None:
        held, given = ((now.usb.vendor_id, now.usb.serial),
                       (card.vendor_id, card.serial))
    else:
        held, given = (now.usb.vendor_id,), (card.vendor_id,)
    _require_same(f"USB port {now.usb.name}", card, held=held, given=given)
    return xmlgen.usb_hostdev(now.usb.vendor_id, now.usb.product_id,
                              bus=now.usb.busnum, device=now.usb.devnum)


def _mdev_element(card: model.Card, function: model.Function, now: HostNow,
                  bridge_prefix: str) -> etree._Element:
    address = _addressed(card, function)
    if now.mdev is None:
        raise DeviceError(f"mdev {address} does not exist on the host now; "
                          f"{_rescan_hint(card)}")
    return xmlgen.mdev_hostdev(address)


def _bridge_element(card: model.Card, function: model.Function,
                    now: HostNow, bridge_prefix: str) -> etree._Element:
    """A node is reached through its stable bridge, which the attach
    worker fills with the node's interface of now."""
    return xmlgen.bridge_interface(bridge.bridge_name(bridge_prefix,
                                                      function.id))


# The element that gives a function, by the device kind its card kind
# gives functions as (kinds.base.CardKind.device).
ELEMENTS = {DEVICE_PCI: _pci_element, DEVICE_USB: _usb_element,
             DEVICE_MDEV: _mdev_element, DEVICE_INTERFACE: _bridge_element}


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
    build = ELEMENTS.get(kinds.of(card).device)
    if build is None:
        raise DeviceError(f"card {card.id} is of unknown kind {card.kind!r}")
    return build(card, function, now, bridge_prefix)


def _pci_key(source: etree._Element, address: etree._Element | None
             ) -> tuple[str, ...] | None:
    if address is None:
        return None
    try:
        return (DEVICE_PCI, pci_bdf(address))
    except DomainXMLError:
        return None


def _mdev_key(source: etree._Element, address: etree._Element | None
              ) -> tuple[str, ...] | None:
    return None if address is None else (DEVICE_MDEV, address.get("uuid"))


def _usb_key(source: etree._Element, address: etree._Element | None
             ) -> tuple[str, ...] | None:
    vendor, product = source.find("vendor"), source.find("product")
    try:
        ids = tuple(f"{int(node.get('id'), 0):04x}" if node is not None
                    else "" for node in (vendor, product))
        where = tuple(str(int(address.get(k), 0)) if address is not None
                      else "" for k in ("bus", "device"))
    except (TypeError, ValueError):
        return None
    return (DEVICE_USB, *ids, *where)


# The key of a hostdev, by its type.
HOSTDEV_KEYS = {DEVICE_PCI: _pci_key, DEVICE_MDEV: _mdev_key,
                 DEVICE_USB: _usb_key}


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
    key = HOSTDEV_KEYS.get(element.get("type"))
    return key(source, source.find("address")) if key else None


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
    if key[0] == DEVICE_USB:
        return f"usb {key[1]}:{key[2]} bus {key[3]} device {key[4]}"
    return " ".join(key)
