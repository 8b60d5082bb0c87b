"""What the host has now at the addresses a domain names.

The hook reads only the few sysfs files of the devices in the XML, never a
whole scan: it runs at every domain start. Addresses come from domain XML,
so they are checked against the BDF syntax before they touch a path.
"""

from __future__ import annotations

import os
import re

from libvirt_hooks.guard import PciIdentity

BDF = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def _read_hex(path: str) -> str:
    with open(path) as f:
        value = f.read().strip().lower()
    int(value, 16)
    return value.removeprefix("0x")


def pci_identity(sysfs_root: str, bdf: str) -> PciIdentity | None:
    """vendor, device and class at ``bdf`` now; None when nothing (or
    nothing readable) is there."""
    if not BDF.match(bdf):
        return None
    device = os.path.join(sysfs_root, "bus", "pci", "devices", bdf)
    try:
        return PciIdentity(vendor_id=_read_hex(os.path.join(device, "vendor")),
                           product_id=_read_hex(os.path.join(device,
                                                             "device")),
                           class_code=_read_hex(os.path.join(device,
                                                             "class")))
    except (OSError, ValueError):
        return None
