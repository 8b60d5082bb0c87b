"""USB string descriptors through pyusb, for sticks whose sysfs entry has
no ``serial`` file (older kernels, or a device that was still
enumerating)."""

from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


def read_serial(busnum: int, devnum: int, backend=None) -> str | None:
    """The iSerialNumber string of the device at ``busnum``/``devnum``, or
    None when it has none or cannot be opened (the card's identity then
    falls back to its port path, marked weak)."""
    import usb.core
    import usb.util

    try:
        device = usb.core.find(bus=busnum, address=devnum, backend=backend)
        if device is None or not device.iSerialNumber:
            return None
        return usb.util.get_string(device, device.iSerialNumber)
    except (usb.core.USBError, usb.core.NoBackendError, ValueError) as exc:
        LOG.warning("Cannot read the serial number of USB device %s:%s: %s",
                    busnum, devnum, exc)
        return None
