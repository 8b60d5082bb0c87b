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

"""Where each function placement assigned a consumer is now, and the
device that gives it to the domain: read by the hook at a start (it
refuses one whose functions cannot be given), by the attach worker and by
``accel-domain``.
"""

from __future__ import annotations

from accel_inventory import cache, claim_sync, kinds
from accel_inventory.kinds.base import DEVICE_MDEV, DEVICE_PCI, DEVICE_USB
from libvirt_hooks import devices, hostview

def _usb_now(root: str, card, function):
    """The stick at the function's port; a stick known by its connector,
    at either port of it (it re-enumerates at the other speed when its
    firmware loads)."""
    ports = ([function.address] if card.serial is not None
             else function.attrs.get("ports") or [function.address])
    return next((usb for usb in hostview.usb_devices(root)
                 if usb.name in ports), None)


# What the host has now for a function, by the device kind its card kind
# gives it as; a device kind not here reads nothing (a node's bridge: the
# attach worker reads its interface, node_interface).
NOW_READERS = {
    DEVICE_PCI: lambda root, card, function: devices.HostNow(
        pci=hostview.pci_identity(root, function.address)),
    DEVICE_USB: lambda root, card, function: devices.HostNow(
        usb=_usb_now(root, card, function)),
    DEVICE_MDEV: lambda root, card, function: devices.HostNow(
        mdev=hostview.mdev_now(root, function.address)),
}


def host_now(sysfs_root: str, card, function):
    """What sysfs has now for ``function`` of ``card`` (``devices.HostNow``),
    read through the hook's own readers: only that device's files."""
    read = NOW_READERS.get(kinds.of(card).device)
    if function.address is None or read is None:
        return devices.HostNow()
    return read(sysfs_root, card, function)


def placement_claim(conf, consumer: str):
    """The inventory and ``consumer``'s placement claim in it; raises
    LookupError when it has none (its devices are then in its XML, or it
    holds nothing)."""
    inv = cache.load(conf.inventory.cache_path)
    claim = inv.claims.get(consumer) if inv is not None else None
    if claim is None or claim.source != claim_sync.CLAIM_SOURCE:
        raise LookupError(f"{consumer} holds no functions assigned by "
                          f"placement in {conf.inventory.cache_path}; "
                          f"nothing to attach or detach")
    return inv, claim


def resolve(conf, inv, fid: str):
    """The device that gives function ``fid`` to a domain now, and its
    ``devices.device_key``. Raises devices.DeviceError saying why not."""
    index = inv.function_index()
    if fid not in index:
        raise devices.DeviceError(f"{fid} is no longer in the inventory; "
                                  f"rescan with 'accel-inventory scan'")
    waiting = inv.cleaning.get(fid)
    if waiting is not None:
        raise devices.DeviceError(f"{fid} was released by {waiting.after} "
                                  f"and is not clean yet ({waiting.state}); "
                                  f"see 'accel-inventory status'")
    card, _region, function = index[fid]
    element = devices.element_for(
        card, function, host_now(conf.inventory.sysfs_root, card, function),
        conf.libvirt_hooks.bridge_prefix)
    return element, devices.device_key(element)


def claim_refusals(conf, inv, consumer: str) -> list[str]:
    """Why functions that ``consumer``'s placement claim holds cannot be
    given to it now. The hook refuses its start for these: nothing is
    given in their place, and nova records the reason."""
    claim = inv.claims.get(consumer)
    if claim is None or claim.source != claim_sync.CLAIM_SOURCE:
        return []
    refusals = []
    index = inv.function_index()
    for fid in claim.functions:
        if fid in index and _made_at_start(conf, *index[fid]):
            continue
        try:
            resolve(conf, inv, fid)
        except devices.DeviceError as exc:
            refusals.append(f"{fid}: {exc}")
    return refusals


def _made_at_start(conf, card, _region, function) -> bool:
    """A function the hook makes at the domain's start (an mdev that does
    not exist now): the guard judges it (guard._plan_claimed_mdevs)."""
    return (kinds.of(card).function_bus in kinds.BUSES_MADE_ON_DEMAND
            and (function.address is None or host_now(
                conf.inventory.sysfs_root, card, function).mdev is None))


def node_interface(conf, inv, fid: str) -> tuple[str | None, str | None]:
    """Where IP-over-PCIe node ``fid`` is (its BDF) and its host-side
    interface now."""
    address = inv.function_index()[fid][2].address
    interface = (hostview.node_interface(conf.inventory.sysfs_root, address)
                 if address else None)
    return address, interface
