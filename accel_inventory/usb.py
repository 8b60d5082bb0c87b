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

"""USB string descriptors through pyusb, for sticks whose sysfs entry has
no ``serial`` file (older kernels, or a device that was still
enumerating)."""

from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


def read_serial(busnum: int, devnum: int, vendor: str, product: str, *,
                backend=None) -> str | None:
    """The iSerialNumber string of the ``vendor``:``product`` device at
    ``busnum``/``devnum``, or None when it has none or cannot be read (the
    card's identity then falls back to its port path, marked weak).

    The ids must match too: a Movidius stick re-enumerates while its
    firmware loads, and the device number sysfs showed may meanwhile name
    another device. ``backend`` is pyusb's: None picks libusb.
    """
    import usb.core
    import usb.util

    where = f"USB device {busnum}:{devnum} ({vendor}:{product})"
    try:
        device = usb.core.find(bus=busnum, address=devnum,
                               idVendor=int(vendor, 16),
                               idProduct=int(product, 16), backend=backend)
    except (usb.core.USBError, usb.core.NoBackendError) as exc:
        LOG.warning("Cannot list USB devices to read the serial number of "
                    "%s: %s", where, exc)
        return None
    if device is None or not device.iSerialNumber:
        return None
    try:
        serial = usb.util.get_string(device, device.iSerialNumber)
    except (usb.core.USBError, ValueError) as exc:
        # ValueError: pyusb found no language ids, which is how a device
        # that refuses string requests (or cannot be opened) shows.
        LOG.warning("Cannot read the serial number of %s: %s", where, exc)
        return None
    finally:
        usb.util.dispose_resources(device)
    return serial.strip() or None
