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

"""The ``mdev`` kind: a GPU that offers mediated devices (vGPUs). One
card, one region (the physical GPU), one function per mdev instance of
the one type it offers, existing or not yet created (the hook creates it
at the domain's start). Functions are given as mdev hostdevs.

The mdev parent is the GPU's own PCI function (a GPU without SR-IOV,
Intel GVT-g, NVIDIA before Ampere) or, from NVIDIA's Ampere on, its
SR-IOV VFs: each VF is a parent of at most one vGPU, the PF never is
(NVIDIA's vGPU user guide, "Creating an NVIDIA vGPU that supports SR-IOV
on a Linux with KVM hypervisor"). On such a GPU each function records the
VF its instance lives on (``parent``), the region its VFs (``parents``),
and the hook creates a missing instance on a VF that can take it when
the domain starts.

A PCI device that is an mdev parent, or whose VFs are, is of this kind
unless its profile names another kind (the profile may name its resource
class).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from accel_inventory import contract, model
from accel_inventory.kinds.base import (BUS_MDEV, BUS_PCI, DEVICE_MDEV,
                                        CardKind, Garbage, PciDevice,
                                        Profile, ScanContext, pci_card,
                                        profile_allows)

NAME = "mdev"
# Each free mdev instance is a function in the cache: a garbage
# available_instances (2**70) must not make billions of them. Parents offer
# tens (vGPU) to a few hundred.
MAX_MDEV_INSTANCES = 4096
# NVIDIA's type description ends in the most instances the GPU takes
# ("num_heads=4, frl_config=60, framebuffer=2048M, max_resolution=...,
# max_instance=4"): on a GPU whose VFs are the parents, each free VF says
# 1 until the GPU is full, so their sum alone would overstate it.
MAX_INSTANCE = re.compile(r"\bmax_instance=(\d+)")


def parents(context: ScanContext, dev: PciDevice) -> list[str]:
    """The mdev parents of ``dev``: itself, or its VFs that are ones."""
    reader = context.reader
    bus = set(reader.listdir(os.path.join(reader.root, "class", "mdev_bus")))
    if dev.bdf in bus:
        return [dev.bdf]
    return [vf for vf in context.vfs.get(dev.bdf, ()) if vf in bus]


def _takes(dev: PciDevice, profile: Profile | None,
           context: ScanContext) -> bool:
    return profile_allows(profile, NAME) and bool(parents(context, dev))


def _parent(dev: PciDevice) -> str:
    return dev.bdf


def _types_dir(context: ScanContext, parent: str) -> str:
    return os.path.join(context.pci[parent].real, "mdev_supported_types")


def _instances(context: ScanContext, parent: str
               ) -> list[tuple[str, str]]:
    """``(uuid, type)`` of every instance on ``parent``."""
    reader, types_dir = context.reader, _types_dir(context, parent)
    return [(uuid, t) for t in reader.listdir(types_dir)
            for uuid in reader.listdir(os.path.join(types_dir, t, "devices"))]


def _chosen_type(context: ScanContext, dev: PciDevice, types: list[str],
                 used: set[str]) -> str:
    """The type to offer: the configured one, else the one the GPU's
    instances use, else its only type; Garbage that says which option to
    set when that is not one type."""
    where = _types_dir(context, parents(context, dev)[0])
    key = f"{dev.vendor}:{dev.device}"
    wanted = context.mdev_types.get(key)
    hint = f"set [inventory] mdev_types {key}=<type>"
    if wanted is None and len(used) > 1:
        raise Garbage(f"{where}: instances of several mdev types "
                      f"({', '.join(sorted(used))}); {hint}")
    if wanted is None and used:
        (wanted,) = used
    if wanted is None and len(types) == 1:
        (wanted,) = types
    if wanted is None:
        raise Garbage(f"{where}: mdev types {', '.join(types) or 'none'} "
                      f"and none in use; {hint}")
    if wanted not in types:
        raise Garbage(f"{where}: no mdev type {wanted!r} (has "
                      f"{', '.join(types) or 'none'}); {hint}")
    return wanted


def _available(context: ScanContext, parent: str, mdev_type: str) -> int:
    type_dir = os.path.join(_types_dir(context, parent), mdev_type)
    try:
        available = int(context.reader.text(
            os.path.join(type_dir, "available_instances")))
    except ValueError:
        raise Garbage(f"{type_dir}/available_instances is not a "
                      f"number") from None
    if available > MAX_MDEV_INSTANCES:
        raise Garbage(f"{type_dir}/available_instances is {available}, "
                      f"more than any parent offers ({MAX_MDEV_INSTANCES})")
    return max(available, 0)


def _max_instance(context: ScanContext, parent: str,
                  mdev_type: str) -> int | None:
    path = os.path.join(_types_dir(context, parent), mdev_type,
                        "description")
    if not os.path.isfile(path):
        return None
    found = MAX_INSTANCE.search(context.reader.text(path))
    return int(found.group(1)) if found else None


def _build(context: ScanContext, group: Sequence[PciDevice]) -> model.Card:
    reader, (dev,) = context.reader, group
    identity = reader.pci_identity(dev, context.slot_names.get(dev.bdf))
    card_id = identity[0]
    profile = context.profile_for(dev.vendor, dev.device)
    found = {p: _instances(context, p) for p in parents(context, dev)}
    on_vfs = list(found) != [dev.bdf]
    types = sorted({t for p in found
                    for t in reader.listdir(_types_dir(context, p))})
    wanted = _chosen_type(context, dev, types,
                          {t for inst in found.values() for _u, t in inst})
    # A VF holding an instance of another type is no slot of this one.
    existing = sorted((u, p) for p, inst in found.items()
                      for u, t in inst if t == wanted)
    free = [p for p in found for _ in range(_available(context, p, wanted))]
    cap = _max_instance(context, next(iter(found)), wanted)
    if cap is not None:
        free = free[:max(cap - len(existing), 0)]

    def attrs(parent: str) -> dict:
        return ({"mdev_type": wanted, "parent": parent} if on_vfs
                else {"mdev_type": wanted})

    slots = ([(u, attrs(p)) for u, p in existing]
             + [(None, attrs(p)) for p in free])
    rc = (profile.resource_class if profile else
          contract.default_resource_class(NAME, dev.vendor, dev.device))
    region_attrs = {"mdev_type": wanted, "available_instances": len(free)}
    if on_vfs:
        region_attrs["parents"] = list(found)
    region = model.Region(
        id=model.region_id(card_id, 0), index=0, resource_class=rc,
        address=dev.bdf, attrs=region_attrs,
        functions=[model.Function(id=model.function_id(card_id, 0, i),
                                  address=a, attrs=a_attrs)
                   for i, (a, a_attrs) in enumerate(slots)])
    return pci_card(NAME, dev, identity, profile, [region])


# A vGPU nova manages: nova live-migrates it (since 2024.1, where libvirt,
# QEMU and the vendor driver permit), and cold-migrates it otherwise.
KIND = CardKind(name=NAME, bus=BUS_PCI, function_bus=BUS_MDEV,
                device=DEVICE_MDEV, takes=_takes, group=_parent,
                build=_build,
                move=contract.MOVE_LIVE)
