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

"""The ``vendor_vfio`` kind: a GPU whose vGPUs are made through NVIDIA's
vendor-specific VFIO interface (vGPU 17 and later on Ada, Hopper and
Blackwell GPUs, Ubuntu 24.04 hosts), where there is no mdev at all.

Each SR-IOV VF of the GPU has ``nvidia/creatable_vgpu_types`` (lines
``ID : NAME``: the types the VF can take now; empty once it holds one, or
its GPU is full) and ``nvidia/current_vgpu_type`` (0: none). A vGPU is
made by writing a type ID there (0 deletes it), and the VF, still bound
to the ``nvidia`` driver, is given to the guest as an unmanaged PCI
hostdev (NVIDIA's vGPU user guide, "Creating an NVIDIA vGPU on a Linux
with KVM hypervisor that uses a vendor-specific VFIO framework").

One card, one region (the physical GPU), one function per VF, numbered
by the VF's index, each with the region's vGPU type (``vgpu_type_id``,
``vgpu_type_name``). A VF that cannot take that type now (it holds
another, or the GPU's other vGPUs leave no room) stays a function, marked
``unavailable`` and reserved in placement, so that no id ever shifts.
The hook writes the type at the domain's start.

A PCI device whose VFs have the interface is of this kind unless its
profile names another kind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from accel_inventory import contract, model
from accel_inventory.kinds.base import (BUS_PCI, DEVICE_PCI, CardKind,
                                        Garbage, PciDevice, Profile,
                                        ScanContext, pci_card,
                                        profile_allows)
from accel_inventory.kinds.pci import own_ids

NAME = "vendor_vfio"
INTERFACE = "nvidia"
CREATABLE = "creatable_vgpu_types"
CURRENT = "current_vgpu_type"


def interface_of(real: str) -> str:
    return os.path.join(real, INTERFACE)


def _vgpu_vfs(context: ScanContext, dev: PciDevice) -> list[str]:
    reader = context.reader
    return [vf for vf in context.vfs.get(dev.bdf, ())
            if vf in context.pci and CREATABLE in reader.listdir(
                interface_of(context.pci[vf].real))]


def _takes(dev: PciDevice, profile: Profile | None,
           context: ScanContext) -> bool:
    return profile_allows(profile, NAME) and bool(_vgpu_vfs(context, dev))


def _creatable(context: ScanContext, real: str) -> dict[int, str]:
    path = os.path.join(interface_of(real), CREATABLE)
    if CREATABLE not in context.reader.listdir(interface_of(real)):
        return {}
    return contract.vgpu_types(context.reader.text(path))


def _current(context: ScanContext, real: str) -> int:
    path = os.path.join(interface_of(real), CURRENT)
    value = context.reader.text(path)
    if not value.isdigit():
        raise Garbage(f"{path}: {value!r} is not a vGPU type ID")
    return int(value)


def _chosen_type(key: str, configured: str | None, used: set[int],
                 names: Mapping[int, str], where: str) -> int:
    """The type to offer: the configured one (by ID or name), else the
    one the GPU's vGPUs use, else its only creatable type; Garbage that
    says which option to set when that is not one type."""
    hint = f"set [inventory] vgpu_types {key}=<type ID or name>"
    if configured is not None:
        if configured.isdigit():
            return int(configured)
        by_name = [i for i, n in names.items()
                   if configured in (n, n.removeprefix("NVIDIA "))]
        if len(by_name) != 1:
            raise Garbage(f"{where}: no vGPU type named {configured!r} is "
                          f"creatable now; {hint}")
        return by_name[0]
    if len(used) > 1:
        raise Garbage(f"{where}: vGPUs of several types ("
                      f"{', '.join(map(str, sorted(used)))}); {hint}")
    if used:
        return next(iter(used))
    if len(names) == 1:
        return next(iter(names))
    raise Garbage(f"{where}: vGPU types "
                  f"{', '.join(map(str, sorted(names))) or 'none'} "
                  f"creatable and none in use; {hint}")


def _unavailable(current: int, creatable: Mapping[int, str],
                 wanted: int) -> str | None:
    """Why a VF cannot give a vGPU of type ``wanted`` now; None when it
    holds one or can make one."""
    if current == wanted:
        return None
    if current:
        return f"holds vGPU type {current}"
    if wanted not in creatable:
        return f"vGPU type {wanted} not creatable now"
    return None


def _build(context: ScanContext, group: Sequence[PciDevice]) -> model.Card:
    reader, (dev,) = context.reader, group
    identity = reader.pci_identity(dev, context.slot_names.get(dev.bdf))
    card_id = identity[0]
    profile = context.profile_for(dev.vendor, dev.device)
    vfs = [context.pci[vf] for vf in context.vfs.get(dev.bdf, ())
           if vf in context.pci]
    now = {vf.bdf: (_current(context, vf.real), _creatable(context, vf.real))
           for vf in vfs}
    # A VF that holds a vGPU lists no type: the names come from all the
    # GPU's functions (type IDs are only unique within one GPU).
    names = dict(_creatable(context, dev.real))
    for _current_type, creatable in now.values():
        names.update(creatable)
    key = f"{dev.vendor}:{dev.device}"
    wanted = _chosen_type(key, context.vgpu_types.get(key),
                          {c for c, _ in now.values() if c}, names,
                          interface_of(dev.real))
    type_attrs = {"vgpu_type_id": wanted}
    if wanted in names:
        type_attrs["vgpu_type_name"] = names[wanted]
    functions = []
    for index, vf in enumerate(vfs):
        attrs = dict(type_attrs, **own_ids(vf, dev.vendor, dev.device))
        reason = _unavailable(*now[vf.bdf], wanted)
        if reason:
            attrs["unavailable"] = reason
        functions.append(model.Function(
            id=model.function_id(card_id, 0, index), address=vf.bdf,
            attrs=attrs))
    rc = (profile.resource_class if profile else
          contract.default_resource_class(NAME, dev.vendor, dev.device))
    region = model.Region(id=model.region_id(card_id, 0), index=0,
                          resource_class=rc, address=dev.bdf,
                          attrs=dict(type_attrs), functions=functions)
    return pci_card(NAME, dev, identity, profile, [region])


KIND = CardKind(name=NAME, bus=BUS_PCI, function_bus=BUS_PCI,
                device=DEVICE_PCI, takes=_takes, group=lambda dev: dev.bdf,
                build=_build)
