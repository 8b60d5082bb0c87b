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

"""What a card kind is: the facts and the scan step every other module
asks a kind for, instead of testing its name.

A card kind (``pci``, ``mdev``, ``usb``, ``ippcie``) says how its cards
are found and modelled; the domain device that gives one of its
functions to a domain (a hostdev of type ``pci``, ``usb`` or ``mdev``, or
an ``interface``) is its ``device``, a *device kind*: several card kinds
may share one (an SR-IOV NIC's VFs and an FPGA's are both PCI hostdevs).

Nothing here reads sysfs: a kind's scan step asks the scanner's reader
(``accel_inventory.sysfs``) for the files it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from accel_inventory import contract, model

# The sysfs bus a card or a function sits on, which is the shape of its
# address: a PCI BDF, a USB ``<bus>-<port path>``, an mdev UUID.
BUS_PCI = "pci"
BUS_USB = "usb"
BUS_MDEV = "mdev"

# The domain devices a function is given as (domain XML): hostdevs by
# their type, and <interface>.
DEVICE_PCI = "pci"
DEVICE_USB = "usb"
DEVICE_MDEV = "mdev"
DEVICE_INTERFACE = "interface"


class Garbage(Exception):
    """A device's sysfs entries cannot be read as the kernel writes them."""


@dataclass(frozen=True)
class PciDevice:
    """A PCI function as sysfs shows it; ``real`` is its directory."""

    bus: ClassVar[str] = BUS_PCI
    bdf: str
    real: str
    vendor: str
    device: str
    klass: str
    numa: int | None

    @property
    def product(self) -> str:
        return self.device


@dataclass(frozen=True)
class UsbDevice:
    """A USB device as sysfs shows it; ``name`` is ``<bus>-<port>``."""

    bus: ClassVar[str] = BUS_USB
    name: str
    real: str
    vendor: str
    product: str


class Profile(Protocol):
    """What a kind reads of the operator profile matching a device
    (``accel_inventory.profiles.Profile``)."""

    name: str
    kind: str | None
    resource_class: str
    functions_per_region: int | None
    group: str
    placeholder_serials: tuple[str, ...]


class SysfsReader(Protocol):
    """What a kind's scan step may ask of sysfs (``sysfs.Reader``); every
    read is bounded to the sysfs root and raises Garbage on bad data."""

    root: str

    def text(self, path: str) -> str: ...

    def hex_id(self, path: str, digits: int) -> str: ...

    def inside(self, path: str) -> str: ...

    def listdir(self, path: str) -> list[str]: ...

    def pci_device(self, bdf: str) -> PciDevice: ...

    def pci_identity(self, dev: PciDevice, slot: str | None
                     ) -> tuple[str, str, str | None]: ...

    def usb_serial(self, device: UsbDevice, busnum: int, devnum: int
                   ) -> str | None: ...

    def usb_connector(self, device: UsbDevice) -> tuple[str, ...]: ...

    def usb_identity(self, device: UsbDevice, serial: str | None,
                     connector: str | None
                     ) -> tuple[str, str, str | None]: ...


@dataclass
class ScanContext:
    """One scan: the reader, the profiles, and what the scanner read once
    for every kind: each PCI device by BDF, each PF's VFs (in ``virtfnN``
    order, the VF's index; a VF reaches the kinds only through its PF),
    the firmware's slot names and the physical slot each PCI device sits
    in (its own, or that of the board whose switch it is behind)."""

    reader: SysfsReader
    profile_for: Callable[[str, str], Profile | None]
    pci: Mapping[str, PciDevice] = field(default_factory=dict)
    vfs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    slots: Mapping[str, str] = field(default_factory=dict)
    slot_names: Mapping[str, str] = field(default_factory=dict)
    # "vendor:product" -> the mdev type to offer ([inventory] mdev_types).
    mdev_types: Mapping[str, str] = field(default_factory=dict)
    # "vendor:product" -> the vGPU type (ID or name) to offer on GPUs with
    # NVIDIA's vendor-specific VFIO interface ([inventory] vgpu_types).
    vgpu_types: Mapping[str, str] = field(default_factory=dict)


# A device the scanner found: a PciDevice or a UsbDevice.
Device = PciDevice | UsbDevice


@dataclass(frozen=True)
class CardKind:
    """One card kind, as the registry (``accel_inventory.kinds``) holds it.

    ``bus`` is where the card itself sits (the shape of ``card.address``
    and the regions' addresses), ``function_bus`` where its functions sit
    (the shape of ``function.address``), ``device`` the domain device that
    gives a function to a domain.

    The scan: of the devices on ``bus`` (PCI functions other than VFs, USB
    devices; ``device.bus`` says which), a kind takes those that
    ``takes(device, profile, context)`` says are its (never one whose
    profile names another kind); ``group(device)`` names the card a device
    belongs to, and ``build(context, devices)`` makes that card (None: not
    an accelerator after all), raising Garbage when sysfs holds garbage.
    With ``spans_boards`` the kind's devices below one board's own PCIe
    switch (its profile says ``"group": "switch"``, or a physical slot
    holds the switch) are one card, whatever ``group`` says.

    ``move`` is how nova can move a server holding one of its functions
    (``contract.MOVE_CAPABILITIES``: live, cold or none), published as a
    trait on the kind's card and region providers; a kind that does not
    say is never moved.
    """

    name: str
    bus: str
    function_bus: str
    device: str
    takes: Callable[[Device, Profile | None, ScanContext], bool]
    group: Callable[[Device], str]
    build: Callable[[ScanContext, Sequence[Device]], model.Card | None]
    spans_boards: bool = False
    move: str = contract.MOVE_NONE

    def __post_init__(self):
        contract.move_trait(self.move)  # refuses an unknown capability


def pci_card(name: str, dev: PciDevice,
             identity: tuple[str, str, str | None],
             profile: Profile | None, regions: list[model.Region]
             ) -> model.Card:
    """The card of kind ``name`` that PCI device ``dev`` is by itself (a
    GPU), named by ``identity`` (``SysfsReader.pci_identity``)."""
    card_id, source, serial = identity
    return model.Card(id=card_id, kind=name, vendor_id=dev.vendor,
                      product_id=dev.device, serial=serial,
                      identity_source=source, address=dev.bdf,
                      numa_node=dev.numa, regions=regions,
                      profile=profile.name if profile else None,
                      attrs={"class": dev.klass})


def profile_allows(profile: Profile | None, name: str) -> bool:
    """Whether a device with ``profile`` may be of kind ``name``: a profile
    that names a kind is honoured; one that names none leaves it to
    sysfs."""
    return profile is None or profile.kind in (None, name)


def named_by_profile(
        name: str) -> Callable[[Device, Profile | None, ScanContext], bool]:
    """A kind's ``takes`` when nothing in sysfs tells its devices apart
    (a VCA card's node functions, a USB stick): a device is the kind's
    when its profile names the kind."""
    def takes(device: Device, profile: Profile | None,
              context: ScanContext) -> bool:
        return profile is not None and profile.kind == name
    return takes
