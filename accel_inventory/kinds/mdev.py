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

"""The ``mdev`` kind: a PCI device that offers mediated devices (a vGPU
parent). One card, one region, one function per mdev instance of the
type it offers, existing or not yet created (the hook creates it at the
domain's start). Functions are given as mdev hostdevs.

Any PCI device that is an mdev parent is of this kind, whatever its
profile says (the profile may name its resource class).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from accel_inventory import contract, model
from accel_inventory.kinds.base import (BUS_MDEV, BUS_PCI, DEVICE_MDEV,
                                        CardKind, Garbage, PciDevice,
                                        Profile, ScanContext)

NAME = "mdev"
# Each free mdev instance is a function in the cache: a garbage
# available_instances (2**70) must not make billions of them. Parents offer
# tens (vGPU) to a few hundred.
MAX_MDEV_INSTANCES = 4096


def _takes(dev: PciDevice, profile: Profile | None,
           context: ScanContext) -> bool:
    return dev.bdf in context.reader.listdir(
        os.path.join(context.reader.root, "class", "mdev_bus"))


def _parent(dev: PciDevice) -> str:
    return dev.bdf


def _build(context: ScanContext, group: Sequence[PciDevice]) -> model.Card:
    reader, (dev,) = context.reader, group
    card_id, source, serial = reader.pci_identity(
        dev, context.slots.get(dev.bdf.rsplit(".", 1)[0]))
    profile = context.profile_for(dev.vendor, dev.device)
    types_dir = os.path.join(dev.real, "mdev_supported_types")
    types = sorted(reader.listdir(types_dir))
    wanted = context.mdev_types.get(f"{dev.vendor}:{dev.device}")
    if wanted is None and types:
        wanted = types[0]
    if wanted not in types:
        raise Garbage(f"{types_dir}: no mdev type {wanted!r} (has "
                      f"{', '.join(types) or 'none'}); set [inventory] "
                      f"mdev_types")
    type_dir = os.path.join(types_dir, wanted)
    existing = sorted(reader.listdir(os.path.join(type_dir, "devices")))
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
          contract.default_resource_class(NAME, dev.vendor, dev.device))
    region = model.Region(
        id=model.region_id(card_id, 0), index=0, resource_class=rc,
        address=dev.bdf,
        attrs={"mdev_type": wanted, "available_instances": available},
        functions=[model.Function(id=model.function_id(card_id, 0, i),
                                  address=a, attrs={"mdev_type": wanted})
                   for i, a in enumerate(addresses)])
    return model.Card(id=card_id, kind=NAME, vendor_id=dev.vendor,
                      product_id=dev.device, serial=serial,
                      identity_source=source, address=dev.bdf,
                      numa_node=dev.numa, regions=[region],
                      profile=profile.name if profile else None,
                      attrs={"class": dev.klass})


# A vGPU nova manages: nova live-migrates it (since 2024.1, where libvirt,
# QEMU and the vendor driver permit), and cold-migrates it otherwise.
KIND = CardKind(name=NAME, bus=BUS_PCI, function_bus=BUS_MDEV,
                device=DEVICE_MDEV, takes=_takes, group=_parent,
                build=_build,
                move=contract.MOVE_LIVE)
