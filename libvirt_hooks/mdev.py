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

"""The hook's only writes to sysfs: create and remove mdev instances.

libvirt never creates the mdev a domain names; after a host reboot (or a
card moved to another slot) it is missing. The hook creates it, with the
domain's UUID, on the parent where the domain's card is now, and at
``release end`` removes only the ones it created.
"""

from __future__ import annotations

import os


class MdevError(Exception):
    """An mdev cannot be created or removed; the message says why."""


def write(path: str, value: str) -> None:
    """Write ``value`` to sysfs attribute ``path`` as ``echo >`` does
    (truncating: a value shorter than the last leaves nothing of it),
    opened without O_CREAT: an attribute exists or the write is wrong."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as exc:
        raise MdevError(f"cannot open {path}: {exc.strerror}") from None
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise MdevError(f"writing {value!r} to {path} failed: "
                        f"{exc.strerror}") from None
    finally:
        os.close(fd)


def _check_names(**names: str) -> None:
    # Each name becomes one path component under the sysfs root.
    for what, value in names.items():
        if not value or "/" in value or value in (".", ".."):
            raise MdevError(f"{what} {value!r} cannot name a sysfs entry")


def create(sysfs_root: str, parent: str, mdev_type: str, uuid: str) -> str:
    """Create mdev ``uuid`` of ``mdev_type`` on ``parent`` (a BDF); return
    the ``create`` file written."""
    _check_names(parent=parent, mdev_type=mdev_type, uuid=uuid)
    create_file = os.path.join(sysfs_root, "class", "mdev_bus", parent,
                               "mdev_supported_types", mdev_type, "create")
    if not os.path.exists(create_file):
        raise MdevError(f"{parent} offers no mdev type {mdev_type} "
                        f"({create_file} is missing); is the card's driver "
                        f"loaded?")
    write(create_file, uuid)
    return create_file


def remove(sysfs_root: str, uuid: str) -> bool:
    """Remove mdev ``uuid``; False when it is already gone."""
    _check_names(uuid=uuid)
    remove_file = os.path.join(sysfs_root, "bus", "mdev", "devices", uuid,
                               "remove")
    if not os.path.exists(remove_file):
        return False
    write(remove_file, "1")
    return True
