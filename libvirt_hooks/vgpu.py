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

"""The hook's writes of NVIDIA's vendor-specific vGPU types.

On a GPU whose vGPUs are made through the vendor-specific VFIO interface
(kinds.vendor_vfio) a VF gives a vGPU once its ``nvidia/
current_vgpu_type`` holds the type's ID; writing 0 deletes it (NVIDIA's
vGPU user guide). The hook writes the type at ``prepare begin`` when the
VF holds none (guard plans it) and clears, at ``release end`` or when the
start fails after it, only a type it wrote itself: ``set_type`` and
``clear_type`` are each other's undo.
"""

from __future__ import annotations

import os

from libvirt_hooks.hostview import vgpu_now
from libvirt_hooks.mdev import MdevError, write


class VgpuError(MdevError):
    """A VF's vGPU type cannot be written; the message says why."""


def _current_file(sysfs_root: str, vf: str) -> str:
    return os.path.join(sysfs_root, "bus", "pci", "devices", vf, "nvidia",
                        "current_vgpu_type")


def set_type(sysfs_root: str, vf: str, type_id: int) -> None:
    """Make the vGPU of type ``type_id`` on VF ``vf``; VgpuError when the
    driver did not take it (it then reads 0)."""
    if vgpu_now(sysfs_root, vf) is None:
        raise VgpuError(f"{vf} has no vGPU interface "
                        f"({_current_file(sysfs_root, vf)} is missing)")
    write(sysfs_root, _current_file(sysfs_root, vf), str(type_id))
    now = vgpu_now(sysfs_root, vf)
    if now is None or now.current != type_id:
        raise VgpuError(f"{vf} did not take vGPU type {type_id} (it holds "
                        f"{now.current if now else 'nothing readable'}); "
                        f"see the host's kernel log")


def clear_type(sysfs_root: str, vf: str, type_id: int) -> bool:
    """Delete the vGPU of type ``type_id`` on VF ``vf``; False when the VF
    holds no vGPU of that type (gone, or another's now)."""
    now = vgpu_now(sysfs_root, vf)
    if now is None or now.current != type_id:
        return False
    write(sysfs_root, _current_file(sysfs_root, vf), "0")
    return True
