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

"""udev properties through pyudev: the one module that asks udev.

udev keeps, per device, the properties its rules and builtins computed at
the last event (``udevadm info``). Which of them may feed a card's
identity is decided by ``identity.udev_serial``; this module only reads.
Without a udev daemon there is no database and libudev serves the
kernel's own uevent variables, which carry no ``ID_*`` property.
"""

from __future__ import annotations

import functools
import logging

import pyudev

LOG = logging.getLogger(__name__)


@functools.cache
def _context() -> pyudev.Context:
    return pyudev.Context()


def device_properties(sys_path: str) -> dict[str, str]:
    """The udev properties of the device at ``sys_path`` (under /sys), or
    an empty dict, with a warning naming the path, when udev does not
    know it or libudev cannot be loaded."""
    try:
        device = pyudev.Devices.from_sys_path(_context(), sys_path)
        return dict(device.properties)
    except ImportError as exc:  # pyudev loads libudev at the first Context
        LOG.warning("Cannot read the udev properties of %s: libudev is "
                    "not available (%s)", sys_path, exc)
    except (pyudev.DeviceNotFoundError, UnicodeDecodeError) as exc:
        # pyudev decodes names and values strictly (filesystem encoding).
        LOG.warning("Cannot read the udev properties of %s: %s", sys_path,
                    exc)
    return {}
