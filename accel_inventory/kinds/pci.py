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
SR-IOV device), one card per slot, one region per PF (or per
``functions_per_region`` of its VFs), each function a VF, or the PF
itself when it has none. Functions are given as PCI hostdevs.

The default kind: a PCI device no other kind takes is this kind's when a
profile names it or its class is a processing accelerator's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from accel_inventory import contract, model
from accel_inventory.kinds.base import (BUS_PCI, DEVICE_PCI, CardKind,
                                        Garbage, PciDevice, Profile,
                                        ScanContext, SysfsReader)

NAME = "pci"
# Processing accelerators and co-processors are accelerators by class;
# anything else needs a profile.
ACCEL_CLASS_PREFIXES = ("0x12", "0x0b40")


def slot_of(dev: PciDevice) -> str:
    """``DDDD:BB:SS``: the slot, which the functions of one card share."""
    return dev.bdf.rsplit(".", 1)[0]


def _takes(dev: PciDevice, profile: Profile | None,
           context: ScanContext) -> bool:
    return profile is not None or dev.klass.startswith(ACCEL_CLASS_PREFIXES)


def _vfs(reader: SysfsReader, dev: PciDevice) -> list[str]:
    links = [n for n in reader.listdir(dev.real) if n.startswith("virtfn")]
    links.sort(key=lambda n: int(n[len("virtfn"):] or 0))
    return [os.path.basename(reader.inside(os.path.join(dev.real, n)))
            for n in links]


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


def _own_product(function: PciDevice | None, card_product: str) -> dict:
    """A VF's own device id, which is not its PF's (1172:5001 under
    1172:5000): the hook compares what sysfs has at an address with it."""
    if function is None or function.device == card_product:
        return {}
    return {"product_id": function.device}


def _build(context: ScanContext, group: Sequence[PciDevice]) -> model.Card:
    reader, first = context.reader, group[0]
    card_id, source, serial = reader.pci_identity(
        first, context.slots.get(slot_of(first)))
    profile = context.profile_for(first.vendor, first.device)
    rc = (profile.resource_class if profile else
          contract.default_resource_class(NAME, first.vendor, first.device))
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
                    attrs=_own_product(context.pci.get(a), first.device))
                    for i, a in enumerate(chunk)]))
    return model.Card(id=card_id, kind=NAME, vendor_id=first.vendor,
                      product_id=first.device, serial=serial,
                      identity_source=source, address=first.bdf,
                      numa_node=first.numa, regions=regions,
                      profile=profile.name if profile else None,
                      attrs={"class": first.klass})


# An FPGA region holds its loaded AFU and a GPU passed through whole holds
# its memory: neither survives a live migration, a cold one keeps the
# server whole.
KIND = CardKind(name=NAME, bus=BUS_PCI, function_bus=BUS_PCI,
                device=DEVICE_PCI, takes=_takes, group=slot_of,
                build=_build,
                move=contract.MOVE_COLD)
