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

"""The card kinds, one module each, and the one table every other module
dispatches through (by a kind's facts, never by its name).

A kind module (``pci``, ``mdev``, ``vendor_vfio``, ``ippcie``, ``usb``)
holds a ``base.CardKind``: where its cards and functions sit, the domain
device that gives a function, and its scan step (``fpga_region`` is no
kind: the ``pci`` kind's reading of FPGA regions). Adding a kind is a module
beside them and its ``register`` (its line in ``_BUILT_IN`` for one that
ships): the scanner, the cache's schema, the profiles, the reconcile, the
provider tree, the hook's guard and host reads and the attach worker find
it here. A kind whose functions are given as a device kind the hook does
not know yet also needs that device kind in ``libvirt_hooks.devices``.
"""

from __future__ import annotations

from accel_inventory import model
from accel_inventory.kinds import ippcie, mdev, pci, usb, vendor_vfio
from accel_inventory.kinds.base import (BUS_MDEV, CardKind, Device, Profile,
                                        ScanContext)

# The kind of a profile that names none, and of a PCI accelerator (by
# class) that no other kind takes.
DEFAULT = pci.NAME

_KINDS: dict[str, CardKind] = {}


def register(kind: CardKind) -> None:
    """Add ``kind``. The scanner asks the kinds whether a device is theirs
    in the order of registration (the default kind last) and lists cards
    kind by kind in that order."""
    if kind.name in _KINDS:
        raise ValueError(f"card kind {kind.name!r} is registered already")
    _KINDS[kind.name] = kind


def unregister(name: str) -> None:
    del _KINDS[name]


# vGPU parents first: a PCI device that offers mdevs, or vGPUs on its VFs,
# is a vGPU card whatever else it is (unless its profile names a kind).
for built_in in (mdev.KIND, vendor_vfio.KIND, pci.KIND, ippcie.KIND,
                 usb.KIND):
    register(built_in)


def names() -> tuple[str, ...]:
    return tuple(_KINDS)


def registered() -> tuple[CardKind, ...]:
    return tuple(_KINDS.values())


def get(name: str) -> CardKind:
    """The kind named ``name``; KeyError for one never registered (the
    cache's schema and the profiles admit only registered kinds)."""
    return _KINDS[name]


def of(card: model.Card) -> CardKind:
    """The kind of ``card``. A kind no module registers (a cache written
    by a newer version: only the schema on save checks kinds) sits on no
    bus and is given as no device, so every reader passes its cards by
    and the hook cannot give their functions."""
    return _KINDS.get(card.kind) or _unregistered(card.kind)


def _unregistered(name: str) -> CardKind:
    return CardKind(name=name, bus="", function_bus="", device="",
                    takes=lambda device, profile, context: False,
                    group=lambda device: "",
                    build=lambda context, devices: None)


def taking(device: Device, profile: Profile | None,
           context: ScanContext) -> CardKind | None:
    """The kind ``device`` belongs to: the kind its profile names, if that
    kind takes it; else, for a profile that names none (or no profile), the
    first kind on its bus that takes it, the default kind asked last; None
    when no kind does (not an accelerator, or not the kind its profile
    says)."""
    if profile is not None and profile.kind is not None:
        candidates = [k for k in (_KINDS.get(profile.kind),)
                      if k is not None and k.bus == device.bus]
    else:
        candidates = [k for k in _KINDS.values()
                      if k.bus == device.bus and k.name != DEFAULT]
        candidates += [k for k in (_KINDS.get(DEFAULT),)
                       if k is not None and k.bus == device.bus]
    return next((k for k in candidates if k.takes(device, profile, context)),
                None)


# Functions on these buses may have no address yet and still be given: the
# hook creates them (an mdev) at the domain's start.
BUSES_MADE_ON_DEMAND = (BUS_MDEV,)


def vanished(card: model.Card, function: model.Function) -> bool:
    """Whether ``function`` is kept only for its holder, its device gone
    (identity.keep_vanished_functions)."""
    return (function.address is None
            and of(card).function_bus not in BUSES_MADE_ON_DEMAND)


def withheld(card: model.Card, function: model.Function) -> bool:
    """Whether ``function`` can take no new holder now: vanished, or
    unavailable by the scan (a VF that cannot take its region's vGPU type
    now); placement reserves it and the allocation sync passes it by."""
    return vanished(card, function) or bool(
        function.attrs.get("unavailable"))
