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

"""The ``pci`` kind: a PCI accelerator (an FPGA, a GPU without mdevs, an
SR-IOV device), one card per slot (or per board behind its own PCIe
switch), one region per PF (or per ``functions_per_region`` of its VFs),
each function a VF, or the PF itself when it has none. Each PF takes its
own profile, so the PFs of one card may give regions of different
resource classes (an FPGA's DFL functions beside its virtio-net one). A
PF that holds a DFL FPGA's base region has that region's partial
reconfiguration ids in its region's attributes (``fpga_region``).
Functions are given as PCI hostdevs.

The default kind: a PCI device no other kind takes is this kind's when a
profile names it (or names no kind) or its class is a processing
accelerator's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from accel_inventory import contract, model
from accel_inventory.kinds import fpga_region
from accel_inventory.kinds.base import (BUS_PCI, DEVICE_PCI, CardKind,
                                        Garbage, PciDevice, Profile,
                                        ScanContext, SysfsReader, pci_card,
                                        profile_allows)

NAME = "pci"
# Processing accelerators and co-processors are accelerators by class;
# anything else needs a profile.
ACCEL_CLASS_PREFIXES = ("0x12", "0x0b40")


def slot_of(dev: PciDevice) -> str:
    """``DDDD:BB:SS``: the slot, which the functions of one card share."""
    return dev.bdf.rsplit(".", 1)[0]


def _takes(dev: PciDevice, profile: Profile | None,
           context: ScanContext) -> bool:
    if profile is not None:
        return profile_allows(profile, NAME)
    return dev.klass.startswith(ACCEL_CLASS_PREFIXES)


def _sriov_capable(reader: SysfsReader, dev: PciDevice) -> bool:
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


def own_ids(dev: PciDevice | None, vendor: str, product: str) -> dict:
    """What sysfs shows at a function's or region's address where it is
    not the card's vendor:product (a VF's 1172:5001 under 1172:5000, a
    virtio-net PF of 1af4 on an 8086 card): the hook compares what is at
    an address with it."""
    if dev is None:
        return {}
    ids = {}
    if dev.vendor != vendor:
        ids["vendor_id"] = dev.vendor
    if dev.device != product:
        ids["product_id"] = dev.device
    return ids


def _with_vf_ports(reader: SysfsReader, attrs: dict,
                   vfs: Sequence[PciDevice]) -> dict:
    """``attrs`` of a region with the AFUs its VFs hold (a port given to a
    VF that the host's DFL driver binds); only a DFL FPGA's PF (one with
    a base region) has such VFs."""
    if "fpga_region" not in attrs:
        return dict(attrs)
    afus = set(attrs.get("fpga_afu_ids", []))
    for vf in vfs:
        afus.update(fpga_region.read(reader, vf).get("fpga_afu_ids", []))
    return dict(attrs, fpga_afu_ids=sorted(afus)) if afus else dict(attrs)


def _identity(context: ScanContext, group: Sequence[PciDevice]
              ) -> tuple[str, str, str | None]:
    """The card's identity: its first PF's; on a board of several
    endpoints (several slots behind the board's switch), the first
    endpoint's that has a serial, since the management function may have
    none where another endpoint does."""
    reader = context.reader
    first = reader.pci_identity(group[0], context.slot_names.get(
        group[0].bdf))
    if len({slot_of(pf) for pf in group}) == 1:
        return first
    for pf in group:
        found = (first if pf is group[0] else reader.pci_identity(
            pf, context.slot_names.get(pf.bdf)))
        if found[1] in ("dsn", "vpd"):
            return found
    return first


def _build(context: ScanContext, group: Sequence[PciDevice]) -> model.Card:
    reader, first = context.reader, group[0]
    identity = _identity(context, group)
    card_id = identity[0]
    card_profile = context.profile_for(first.vendor, first.device)
    regions = []
    for pf in group:
        profile = context.profile_for(pf.vendor, pf.device)
        rc = (profile.resource_class if profile else
              contract.default_resource_class(NAME, pf.vendor, pf.device))
        addresses = list(context.vfs.get(pf.bdf, ()))
        if not addresses and not _sriov_capable(reader, pf):
            addresses = [pf.bdf]  # the PF itself is the one function
        attrs = own_ids(pf, first.vendor, first.device)
        attrs.update(fpga_region.read(reader, pf))
        if profile is not None and profile is not card_profile:
            attrs["profile"] = profile.name
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
                attrs=_with_vf_ports(reader, attrs, [
                    context.pci[a] for a in chunk
                    if a != pf.bdf and a in context.pci]),
                functions=[model.Function(
                    id=model.function_id(card_id, index, i), address=a,
                    attrs=own_ids(context.pci.get(a), first.vendor,
                                  first.device))
                    for i, a in enumerate(chunk)]))
    return pci_card(NAME, first, identity, card_profile, regions)


# An FPGA region holds its loaded AFU and a GPU passed through whole holds
# its memory: neither survives a live migration, a cold one keeps the
# server whole.
KIND = CardKind(name=NAME, bus=BUS_PCI, function_bus=BUS_PCI,
                device=DEVICE_PCI, takes=_takes, group=slot_of,
                build=_build, spans_boards=True,
                move=contract.MOVE_COLD)
