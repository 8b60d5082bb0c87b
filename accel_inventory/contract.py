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


def region_size_trait(size: int) -> str:
    return f"{ACCEL_PREFIX}REGION_SIZE_{size}"


def kind_trait(kind: str) -> str:
    return f"{ACCEL_PREFIX}KIND_{trait_part(kind)}"


def vendor_trait(vendor: str) -> str:
    return f"{ACCEL_PREFIX}VENDOR_{trait_part(vendor)}"


def product_trait(vendor: str, product: str) -> str:
    return f"{ACCEL_PREFIX}PRODUCT_{trait_part(vendor)}_{trait_part(product)}"


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
