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

"""The ``usb`` kind: a USB stick (Movidius), one card of one region of
one function, named by its serial (its product id changes when its
firmware loads). Given as a USB hostdev.

A serial that every unit reports (a Myriad X in boot mode says
``03e72485``; its profile lists it in ``placeholder_serials``) is no
identity: such a stick is named by the physical connector it is plugged
into, whose names (the USB 2 port and its USB 3 peer) its function lists
in ``ports``, so that the stick re-enumerating on the other one when its
firmware loads is still the same card.

A USB device is of this kind when its profile says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from accel_inventory import contract, model
from accel_inventory.kinds.base import (BUS_USB, DEVICE_USB, CardKind,
                                        named_by_profile,
                                        Garbage, ScanContext,
                                        UsbDevice)

NAME = "usb"


def _port(device: UsbDevice) -> str:
    return device.name


def _build(context: ScanContext, group: Sequence[UsbDevice]) -> model.Card:
    reader, (device,) = context.reader, group
    try:
        busnum = int(reader.text(os.path.join(device.real, "busnum")))
        devnum = int(reader.text(os.path.join(device.real, "devnum")))
    except ValueError:
        raise Garbage(f"{device.real}: busnum/devnum are not "
                      f"numbers") from None
    profile = context.profile_for(device.vendor, device.product)
    serial = reader.usb_serial(device, busnum, devnum)
    attrs = {"busnum": busnum, "devnum": devnum,
             "product_id": device.product}
    card_attrs = {}
    if serial in profile.placeholder_serials:
        card_attrs["placeholder_serial"] = serial
        ports = reader.usb_connector(device)
        attrs["ports"] = list(ports)
        card_id, source, serial = reader.usb_identity(device, None,
                                                      ports[0])
    else:
        card_id, source, serial = reader.usb_identity(device, serial, None)
    function = model.Function(
        id=model.function_id(card_id, 0, 0), address=device.name,
        attrs=attrs)
    return model.Card(
        id=card_id, kind=NAME, vendor_id=device.vendor,
        product_id=device.product, serial=serial, identity_source=source,
        address=device.name,
        regions=[model.Region(id=model.region_id(card_id, 0), index=0,
                              resource_class=profile.resource_class,
                              address=device.name, functions=[function])],
        profile=profile.name, attrs=card_attrs)


# A stick holds no state a server needs kept (its firmware is loaded again
# at attach): detached before a live migration, attached after.
KIND = CardKind(name=NAME, bus=BUS_USB, function_bus=BUS_USB,
                device=DEVICE_USB, takes=named_by_profile(NAME),
                group=_port, build=_build,
                move=contract.MOVE_LIVE)
