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

"""What the host has now at the addresses a domain names.

The hook reads only the few sysfs files of the devices in the XML (and the
USB devices, a short list), never a whole scan: it runs at every domain
start. Addresses come from domain XML, so they are checked against their
syntax before they touch a path; names read from sysfs (interfaces, mdev
types) are checked by the same rules before they are used. Every read is
``safe_io``'s: inside the sysfs root, never through a link at the
attribute itself, bounded.
"""

from __future__ import annotations

import os
import re

from accel_inventory import contract, kinds, model, numa, safe_io
from accel_inventory.contract import BDF, USB_NAME, UUID
from accel_inventory.kinds.base import (DEVICE_INTERFACE, DEVICE_MDEV,
                                        DEVICE_PCI, DEVICE_USB)
from libvirt_hooks.domain import Domain
from libvirt_hooks.guard import (HostView, MdevNow, PciIdentity, UsbDevice,
                                 VgpuNow, vgpu_type)

IFNAME = re.compile(r"^[^/\s]{1,15}$")


def interface_name(name: str) -> bool:
    """Whether ``name`` can be a network interface's, whether it comes
    from the XML or from sysfs (where bytes that are not UTF-8 come back
    from a listing as surrogates, which no XML can hold)."""
    return (bool(IFNAME.match(name)) and name not in (".", "..")
            and safe_io.printable_name(name))


def _read(sysfs_root: str, path: str) -> str:
    return safe_io.read_attribute(sysfs_root, path).decode().strip()


def _read_hex(sysfs_root: str, path: str) -> str:
    value = _read(sysfs_root, path).lower()
    int(value, 16)
    return value.removeprefix("0x")


def _device_dir(sysfs_root: str, *parts: str) -> str | None:
    """The real directory a sysfs device link leads to, or None when it
    leads outside the sysfs root (a crafted link is nothing there)."""
    real = safe_io.sysfs_dir(sysfs_root, *parts)
    return real if real != os.path.realpath(sysfs_root) else None


def _pci_dir(sysfs_root: str, bdf: str) -> str | None:
    """The real directory of PCI function ``bdf``; None for an address
    that is not one, or that leads outside the sysfs root."""
    if not BDF.match(bdf):
        return None
    return _device_dir(sysfs_root, "bus", "pci", "devices", bdf)


def pci_identity(sysfs_root: str, bdf: str) -> PciIdentity | None:
    """vendor, device and class at ``bdf`` now; None when nothing (or
    nothing readable) is there."""
    device = _pci_dir(sysfs_root, bdf)
    if device is None:
        return None
    try:
        return PciIdentity(
            vendor_id=_read_hex(sysfs_root, os.path.join(device, "vendor")),
            product_id=_read_hex(sysfs_root, os.path.join(device, "device")),
            class_code=_read_hex(sysfs_root, os.path.join(device, "class")))
    except (OSError, ValueError):
        return None


def usb_devices(sysfs_root: str) -> tuple[UsbDevice, ...]:
    """Every USB device now (hubs' root ``usbN`` and interfaces
    ``N-P:C.I`` are not devices); unreadable ones are left out."""
    base = os.path.join(sysfs_root, "bus", "usb", "devices")
    try:
        names = sorted(n for n in os.listdir(base) if USB_NAME.match(n))
    except OSError:
        return ()
    found = []
    for name in names:
        device = _device_dir(sysfs_root, "bus", "usb", "devices", name)
        if device is None:
            continue
        serial = os.path.join(device, "serial")

        def read(attribute: str, device=device) -> str:
            return _read(sysfs_root, os.path.join(device, attribute))

        try:
            found.append(UsbDevice(
                name=name, busnum=int(read("busnum")),
                devnum=int(read("devnum")),
                vendor_id=_read_hex(sysfs_root,
                                    os.path.join(device, "idVendor")),
                product_id=_read_hex(sysfs_root,
                                     os.path.join(device, "idProduct")),
                serial=read("serial") if os.path.exists(serial) else None))
        except (OSError, ValueError):
            continue
    return tuple(found)


def mdev_now(sysfs_root: str, uuid: str) -> MdevNow | None:
    """The parent and type of mdev ``uuid``; None when it does not
    exist."""
    if not UUID.match(uuid):
        return None
    instance = _device_dir(sysfs_root, "bus", "mdev", "devices", uuid)
    if instance is None or not os.path.isdir(instance):
        return None
    return MdevNow(
        parent=_sysfs_name(os.path.basename(os.path.dirname(instance))),
        mdev_type=_sysfs_name(os.path.basename(os.path.realpath(
            os.path.join(instance, "mdev_type")))))


def _sysfs_name(name: str) -> str:
    """A name read from sysfs as text that messages and XML can hold."""
    return name if safe_io.printable_name(name) else ascii(name)


def mdev_room(sysfs_root: str, parent: str, mdev_type: str) -> int | None:
    """How many more mdevs of ``mdev_type`` ``parent`` can take now; None
    when it is no such parent (or its count is garbage)."""
    if not BDF.match(parent) or "/" in mdev_type or mdev_type in (".", ".."):
        return None
    device = _device_dir(sysfs_root, "class", "mdev_bus", parent)
    if device is None:
        return None
    try:
        return int(_read(sysfs_root, os.path.join(
            device, "mdev_supported_types", mdev_type,
            "available_instances")))
    except (OSError, ValueError):
        return None


def vgpu_now(sysfs_root: str, bdf: str) -> VgpuNow | None:
    """The vendor-specific vGPU state of VF ``bdf`` (``nvidia/
    current_vgpu_type`` and ``creatable_vgpu_types``); None when it has
    no such interface or it is unreadable."""
    device = _pci_dir(sysfs_root, bdf)
    if device is None:
        return None
    try:
        current = int(_read(sysfs_root, os.path.join(
            device, "nvidia", "current_vgpu_type")))
        creatable = contract.vgpu_types(_read(sysfs_root, os.path.join(
            device, "nvidia", "creatable_vgpu_types")))
    except (OSError, ValueError):
        return None
    return VgpuNow(current=current, creatable=creatable)


def interface_device(sysfs_root: str, ifname: str) -> str | None:
    """The BDF of the PCI function behind interface ``ifname``; None when
    there is no such interface or it has no PCI function (a bridge, a
    tap)."""
    if not interface_name(ifname):
        return None
    device = os.path.join(sysfs_root, "class", "net", ifname, "device")
    if not os.path.lexists(device):
        return None
    bdf = os.path.basename(os.path.realpath(device))
    return bdf if BDF.match(bdf) else None


def node_interface(sysfs_root: str, bdf: str) -> str | None:
    """The host-side interface of the IP-over-PCIe node at ``bdf`` now; a
    name that no interface of the XML could have (not UTF-8, a control
    character) is none."""
    if not BDF.match(bdf):
        return None
    try:
        names = sorted(os.listdir(os.path.join(
            sysfs_root, "bus", "pci", "devices", bdf, "net")))
    except OSError:
        return None
    names = [name for name in names if interface_name(name)]
    return names[0] if names else None


NODE_DIR = re.compile(r"^node(\d+)$")


def numa_node(sysfs_root: str, bdf: str) -> int | None:
    """The NUMA node the PCI device at ``bdf`` reports now; None when it
    reports none (-1), or nothing readable is there."""
    if not BDF.match(bdf):
        return None
    device = _device_dir(sysfs_root, "bus", "pci", "devices", bdf)
    try:
        node = (int(_read(sysfs_root, os.path.join(device, "numa_node")))
                if device else -1)
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def function_node(sysfs_root: str, card: model.Card, region: model.Region,
                  function: model.Function) -> int | None:
    """The NUMA node of a function now: what the PCI device behind it
    reports (the function's own, else its region's or card's: an mdev's
    parent), else the card's node as the last scan read it (a USB
    stick's)."""
    for address in (function.address, region.address, card.address):
        if address and BDF.match(address):
            if os.path.lexists(os.path.join(sysfs_root, "bus", "pci",
                                            "devices", address)):
                return numa_node(sysfs_root, address)
            break
    return card.numa_node


def _nodes(sysfs_root: str) -> dict[int, frozenset[int]]:
    """Each NUMA node's CPUs (``devices/system/node/nodeN/cpulist``)."""
    base = os.path.join(sysfs_root, "devices", "system", "node")
    try:
        names = os.listdir(base)
    except OSError:
        return {}
    found = {}
    for name in names:
        match = NODE_DIR.match(name)
        if not match:
            continue
        try:
            found[int(match.group(1))] = numa.parse_id_list(
                _read(sysfs_root, os.path.join(base, name, "cpulist")))
        except (OSError, ValueError):
            continue
    return found


def cpu_nodes(sysfs_root: str) -> dict[int, int]:
    """The NUMA node of each host CPU."""
    return {cpu: node for node, cpus in _nodes(sysfs_root).items()
            for cpu in cpus}


def node_sockets(sysfs_root: str) -> dict[int, int | None]:
    """The socket of each NUMA node: its first CPU's
    ``topology/physical_package_id`` (None when unknown)."""
    sockets: dict[int, int | None] = {}
    for node, cpus in _nodes(sysfs_root).items():
        sockets[node] = None
        if cpus:
            try:
                sockets[node] = int(_read(sysfs_root, os.path.join(
                    sysfs_root, "devices", "system", "cpu",
                    f"cpu{min(cpus)}", "topology", "physical_package_id")))
            except (OSError, ValueError):
                pass
    return sockets


def read(sysfs_root: str, domain: Domain, inv: model.Inventory) -> HostView:
    """What the guard needs to judge ``domain``, read from sysfs: at the
    address of each device of the XML, by its device kind; for an
    interface, every function given as one (a node: the interface may be
    its bridge, or name its host-side interface)."""
    refs = domain.by_kind()
    interfaces = refs.get(DEVICE_INTERFACE, [])
    nodes = [f.address for card in inv.cards
             if kinds.of(card).device == DEVICE_INTERFACE
             for f in card.functions() if f.address] if interfaces else []
    pci_addresses = ({ref.address for ref in refs.get(DEVICE_PCI, [])}
                     | set(nodes))
    claimed = _claimed(domain, inv)
    mdevs = {ref.address: mdev_now(sysfs_root, ref.address)
             for ref in refs.get(DEVICE_MDEV, [])}
    claimed_mdevs = [f for c, _r, f in claimed
                     if kinds.of(c).device == DEVICE_MDEV]
    mdevs.update({f.address: mdev_now(sysfs_root, f.address)
                  for f in claimed_mdevs if f.address})
    to_make = None in mdevs.values() or any(not f.address
                                            for f in claimed_mdevs)
    at = {f.address: f for c in inv.cards for f in c.functions()
          if f.address in pci_addresses}
    vfs = ({a for a, f in at.items() if vgpu_type(f) is not None}
           | {f.address for _c, _r, f in claimed
              if vgpu_type(f) is not None and f.address})
    return HostView(
        pci={bdf: pci_identity(sysfs_root, bdf) for bdf in pci_addresses},
        usb=usb_devices(sysfs_root) if DEVICE_USB in refs else (),
        mdevs=mdevs,
        net={ref.address: interface_device(sysfs_root, ref.address)
             for ref in interfaces},
        node_interfaces={bdf: node_interface(sysfs_root, bdf)
                         for bdf in nodes},
        mdev_room=_mdev_rooms(sysfs_root, claimed) if to_make else {},
        vgpus={bdf: vgpu_now(sysfs_root, bdf) for bdf in vfs})


def _claimed(domain: Domain, inv: model.Inventory
             ) -> list[tuple[model.Card, model.Region, model.Function]]:
    """The functions the domain's claim names, of any source."""
    claim = inv.claims.get(domain.uuid)
    index = inv.function_index()
    return [index[fid] for fid in (claim.functions if claim else [])
            if fid in index]


def _mdev_rooms(sysfs_root: str, claimed) -> dict[str, int | None]:
    """The room of each VF parent of the GPUs whose mdevs the domain
    holds, for the mdevs to make on them (guard._room_on)."""
    return {parent: mdev_room(sysfs_root, parent, region.attrs["mdev_type"])
            for _c, region, _f in claimed if "parents" in region.attrs
            for parent in region.attrs["parents"]}
