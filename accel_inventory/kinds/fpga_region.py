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

"""What the kernel's FPGA region class says of a PCI function: not a card
kind, the ``pci`` kind's reading of a DFL FPGA (Intel PAC N3000, N6000,
D5005; kernel ``Documentation/fpga/dfl.rst``).

A DFL FPGA's PCI function holds its base region, ``<PF>/fpga_region/
regionN`` (``/sys/class/fpga_region/regionN`` links there), whose
children are the FPGA Management Engine ``dfl-fme.M`` and the ports
``dfl-port.P``. Each port holds one accelerator function unit; its
``afu_id`` names the partial-reconfiguration bitstream loaded there
(``Documentation/ABI/testing/sysfs-platform-dfl-port``). The FME's
partial-reconfiguration regions, ``dfl-fme.M/dfl-fme-region.K/
fpga_region/regionR``, have a ``compat_id``: which bitstreams fit the
static region (``Documentation/ABI/testing/sysfs-class-fpga-region``; an
empty or missing one is not used). A VF that holds a port (bound to the
DFL driver in the host) shows its own base region the same way.
"""

from __future__ import annotations

import os
import re

from accel_inventory.kinds.base import Garbage, PciDevice, SysfsReader

# 128-bit ids as the DFL drivers print them (two 64-bit halves in hex).
_ID = re.compile(r"^[0-9a-f]{32}$")


def _id(reader: SysfsReader, path: str) -> str | None:
    """The 128-bit id in ``path``; None when the file is missing or empty
    (a region that uses none)."""
    if not os.path.isfile(path):
        return None
    value = reader.text(path).lower().replace("-", "")
    if not value:
        return None
    if not _ID.match(value):
        raise Garbage(f"{path}: {value!r} is not a 128-bit hex id")
    return value


def _children(reader: SysfsReader, path: str, prefix: str) -> list[str]:
    return sorted(os.path.join(path, n) for n in reader.listdir(path)
                  if n.startswith(prefix))


def read(reader: SysfsReader, dev: PciDevice) -> dict:
    """``{"fpga_region": name, "fpga_compat_ids": [...], "fpga_afu_ids":
    [...]}`` for a function that holds an FPGA base region (the lists
    only when not empty); ``{}`` for any other function."""
    base_dir = os.path.join(dev.real, "fpga_region")
    regions = _children(reader, base_dir, "region")
    if not regions:
        return {}
    found: dict = {"fpga_region": os.path.basename(regions[0])}
    compat, afus = [], []
    for region in regions:
        for fme in _children(reader, region, "dfl-fme."):
            for pr in _children(reader, fme, "dfl-fme-region."):
                for sub in _children(reader, os.path.join(pr, "fpga_region"),
                                     "region"):
                    compat.append(_id(reader, os.path.join(sub,
                                                           "compat_id")))
        for port in _children(reader, region, "dfl-port."):
            afus.append(_id(reader, os.path.join(port, "afu_id")))
    if any(compat):
        found["fpga_compat_ids"] = sorted({c for c in compat if c})
    if any(afus):
        found["fpga_afu_ids"] = sorted({a for a in afus if a})
    return found
