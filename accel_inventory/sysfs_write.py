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

"""Every write nova-accel makes to sysfs: create and remove an mdev
instance (the hook at a domain's start and release, the agent when it
makes a released one new), and reset a PCI function (the agent, when a
function is released).

libvirt never creates the mdev a domain names; after a host reboot (or a
card moved to another slot) it is missing, and the hook creates it, with
the domain's UUID, on the parent where the domain's card is now. Each
write goes through ``safe_io``: to an attribute inside the sysfs root,
never through a link, never creating a file.
"""

from __future__ import annotations

import os

from accel_inventory import safe_io


class MdevError(Exception):
    """An mdev cannot be created or removed, or a function reset; the
    message says why."""


def write(sysfs_root: str, path: str, value: str) -> None:
    """Write ``value`` to the attribute ``path`` inside ``sysfs_root`` as
    ``echo >`` does; MdevError (the message says why) when it cannot."""
    directory = safe_io.inside(sysfs_root, os.path.dirname(path))
    if directory is None:
        raise MdevError(f"cannot open {path}: it leads outside the sysfs "
                        f"root {sysfs_root}")
    try:
        safe_io.write_attribute(directory, os.path.basename(path), value)
    except safe_io.Refused as exc:
        raise MdevError(f"cannot open {path}: {exc.strerror}") from None
    except OSError as exc:
        raise MdevError(f"writing {value!r} to {path} failed: "
                        f"{exc.strerror}") from None


def _check_names(**names: str) -> None:
    # Each name becomes one path component under the sysfs root.
    for what, value in names.items():
        if not value or "/" in value or value in (".", ".."):
            raise MdevError(f"{what} {value!r} cannot name a sysfs entry")


def create_mdev(sysfs_root: str, parent: str, mdev_type: str,
                uuid: str) -> str:
    """Create mdev ``uuid`` of ``mdev_type`` on ``parent`` (a BDF); return
    the ``create`` file written."""
    _check_names(parent=parent, mdev_type=mdev_type, uuid=uuid)
    create_file = os.path.join(sysfs_root, "class", "mdev_bus", parent,
                               "mdev_supported_types", mdev_type, "create")
    if not os.path.exists(create_file):
        raise MdevError(f"{parent} offers no mdev type {mdev_type} "
                        f"({create_file} is missing); is the card's driver "
                        f"loaded?")
    write(sysfs_root, create_file, uuid)
    return create_file


def remove_mdev(sysfs_root: str, uuid: str) -> bool:
    """Remove mdev ``uuid``; False when it is already gone."""
    _check_names(uuid=uuid)
    remove_file = os.path.join(sysfs_root, "bus", "mdev", "devices", uuid,
                               "remove")
    if not os.path.exists(remove_file):
        return False
    write(sysfs_root, remove_file, "1")
    return True


def reset_file(sysfs_root: str, bdf: str) -> str:
    """The attribute that resets the PCI function ``bdf`` (the kernel
    makes it only for a function it can reset: FLR, a PM or a bus
    reset)."""
    _check_names(bdf=bdf)
    return os.path.join(sysfs_root, "bus", "pci", "devices", bdf, "reset")


def reset_function(sysfs_root: str, bdf: str) -> bool:
    """Reset the PCI function ``bdf``; False when the kernel offers no
    reset for it."""
    path = reset_file(sysfs_root, bdf)
    if not os.path.lexists(path):
        return False
    write(sysfs_root, path, "1")
    return True
