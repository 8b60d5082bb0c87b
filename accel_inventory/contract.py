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

"""The names the packages agree on, written once.

What the publisher writes into placement and the filter reads back
(resource class and trait names, the formats of traits that carry a
value), and the shapes of what both the scanner and the hook read from
sysfs (addresses, NVIDIA's list of creatable vGPU types). Standard
library only: the scheduler's filter imports it inside nova-scheduler.
"""

import re

ACCEL_PREFIX = "CUSTOM_ACCEL_"
# Every provider this project publishes carries it; others are never
# touched.
OWNER_TRAIT = "CUSTOM_NOVA_ACCEL_MANAGED"
DEGRADED_TRAIT = ACCEL_PREFIX + "DEGRADED"
CARD_TRAIT = ACCEL_PREFIX + "CARD"
REGION_TRAIT = ACCEL_PREFIX + "REGION"
_NUMA_TRAIT = ACCEL_PREFIX + "NUMA_"

RESOURCE_CLASS = re.compile(rf"^{ACCEL_PREFIX}[A-Z0-9_]+$")
# A PCI function as sysfs names it, and a USB device (bus-port path).
BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
USB_NAME = re.compile(r"^\d+-[\d.]+$")
# A consumer (nova instance, libvirt domain) and an mdev, as the kernel,
# libvirt and placement write a UUID: the only names a marker or an mdev
# path may take.
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                  r"[0-9a-f]{12}$")
# A line of NVIDIA's nvidia/creatable_vgpu_types: "557 : NVIDIA A40-1Q"
# (NVIDIA/kubevirt-gpu-device-plugin's README); its header
# ("ID    : vGPU Name") and blank lines match nothing.
_VGPU_TYPE_LINE = re.compile(r"^\s*(\d+)\s*:\s*(\S.*?)\s*$")


def trait_part(value: str) -> str:
    """``value`` as it may appear in a trait or class name."""
    return re.sub(r"[^A-Z0-9]", "_", value.upper())


def numa_trait(node: int) -> str:
    return f"{_NUMA_TRAIT}{node}"


def numa_node_of(trait: str) -> int | None:
    """The NUMA node ``numa_trait`` wrote into ``trait``; None for any
    other trait."""
    if not trait.startswith(_NUMA_TRAIT):
        return None
    number = trait[len(_NUMA_TRAIT):]
    return int(number) if number.isdigit() else None


def numa_node_among(traits) -> int | None:
    """The NUMA node one of a provider's ``traits`` names; None if
    none does."""
    for trait in traits:
        node = numa_node_of(trait)
        if node is not None:
            return node
    return None


# The flavor extra spec that asks our accelerators to be near the guest's
# CPUs and memory, modelled on nova's hw:pci_numa_affinity_policy (which
# applies to devices nova's PCI tracker manages only). Nova's libvirt
# driver writes every extra spec into the domain's metadata, so the hook
# reads it there (<nova:extraSpec name="...">required</nova:extraSpec>).
NUMA_AFFINITY_SPEC = "nova_accel:numa_affinity_policy"
# On one of the host NUMA cells the guest is on.
NUMA_REQUIRED = "required"
# On the cells of the guest when one is free; anywhere else otherwise.
NUMA_PREFERRED = "preferred"
# On a cell of the same socket as one of the guest's cells.
NUMA_SOCKET = "socket"
NUMA_POLICIES = (NUMA_REQUIRED, NUMA_PREFERRED, NUMA_SOCKET)


def region_size_trait(size: int) -> str:
    return f"{ACCEL_PREFIX}REGION_SIZE_{size}"


def kind_trait(kind: str) -> str:
    return f"{ACCEL_PREFIX}KIND_{trait_part(kind)}"


def vendor_trait(vendor: str) -> str:
    return f"{ACCEL_PREFIX}VENDOR_{trait_part(vendor)}"


def product_trait(vendor: str, product: str) -> str:
    return f"{ACCEL_PREFIX}PRODUCT_{trait_part(vendor)}_{trait_part(product)}"


# How nova can move a server holding a function of a card (issue 29 builds
# the migrations on it): ``live`` (nova live-migrates it, or the function
# is stateless and is detached before and given again after: an
# IP-over-PCIe node, a USB stick, a nova-managed mdev vGPU), ``cold``
# (stateful: an FPGA region with a loaded AFU, a whole GPU passed
# through; only a cold migration keeps the server whole) or ``none``
# (never moved). Published as one trait on each card and region
# provider; a provider without one (published before the trait existed)
# is read as ``none``.
MOVE_LIVE = "live"
MOVE_COLD = "cold"
MOVE_NONE = "none"
# Best first: a server moves as its least movable function allows.
MOVE_CAPABILITIES = (MOVE_LIVE, MOVE_COLD, MOVE_NONE)
_MOVE_TRAIT = ACCEL_PREFIX + "MOVE_"


def move_trait(capability: str) -> str:
    """The trait that says ``capability`` (one of MOVE_CAPABILITIES)."""
    if capability not in MOVE_CAPABILITIES:
        raise ValueError(f"unknown move capability {capability!r}; expected "
                         f"one of {', '.join(MOVE_CAPABILITIES)}")
    return f"{_MOVE_TRAIT}{capability.upper()}"


def move_of(traits) -> str:
    """The move capability ``traits`` (a provider's) say; ``none`` when
    they say none or several."""
    said = [c for c in MOVE_CAPABILITIES if move_trait(c) in traits]
    return said[0] if len(said) == 1 else MOVE_NONE


def least_movable(capabilities) -> str:
    """How a server holding functions of these capabilities can move: as
    its least movable one allows (``live`` when it holds none)."""
    return max(capabilities, key=MOVE_CAPABILITIES.index, default=MOVE_LIVE)


def fpga_compat_trait(compat_id: str) -> str:
    """An FPGA region whose static region takes partial-reconfiguration
    bitstreams of ``compat_id`` (the kernel's fpga_region compat_id)."""
    return f"{ACCEL_PREFIX}FPGA_COMPAT_{trait_part(compat_id)}"


def fpga_afu_trait(afu_id: str) -> str:
    """An FPGA region whose port holds the accelerator ``afu_id`` (a DFL
    port's afu_id)."""
    return f"{ACCEL_PREFIX}FPGA_AFU_{trait_part(afu_id)}"


def vgpu_types(text: str) -> dict[int, str]:
    """NVIDIA's ``creatable_vgpu_types`` as ``{type ID: name}``: the vGPU
    types a VF can take now (empty once it, or its GPU, is full)."""
    found = {}
    for line in text.splitlines():
        match = _VGPU_TYPE_LINE.match(line)
        if match:
            found[int(match.group(1))] = match.group(2)
    return found


def default_resource_class(kind: str, vendor: str, product: str) -> str:
    """The class of a card no profile names."""
    return f"{ACCEL_PREFIX}{kind}_{vendor}_{product}".upper()
