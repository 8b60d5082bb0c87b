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

"""A pyusb backend that serves fake USB devices, for tests.

``FakeBackend`` implements ``usb.backend.IBackend`` the way the libusb1
backend behaves towards pyusb: it enumerates devices, returns device,
configuration, interface and endpoint descriptors as objects with the USB
field names, opens handles, and answers standard GET_DESCRIPTOR control
transfers (string descriptors included: language ids at index 0, UTF-16LE
strings after) by filling pyusb's buffer and returning the byte count. A
request it cannot answer stalls, which libusb reports as a pipe error. So
``usb.core.find(..., backend=FakeBackend(...))`` and ``usb.util.get_string``
run pyusb's real code; only the bus is fake.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from types import SimpleNamespace

import usb.backend
import usb.core
import usb.util

GET_DESCRIPTOR = 0x06
STANDARD_DEVICE_IN = 0x80
DESC_DEVICE, DESC_CONFIG, DESC_STRING = 0x01, 0x02, 0x03
LANGID_EN_US = 0x0409
# libusb's error codes, as the libusb1 backend passes them on.
LIBUSB_ERROR_ACCESS, LIBUSB_ERROR_PIPE = -3, -9


def pipe_error() -> usb.core.USBError:
    return usb.core.USBError("Pipe error", LIBUSB_ERROR_PIPE, errno.EPIPE)


@dataclass
class FakeUsbDevice:
    """One device on the fake bus.

    ``serial`` None means the device has no iSerialNumber string (index
    0). ``fail`` makes it misbehave like real hardware can: ``"open"``
    refuses to open (no permission on the device node), ``"strings"``
    stalls string descriptor requests after the language ids.
    """

    vendor: int
    product: int
    bus: int
    address: int
    port_numbers: tuple[int, ...]
    serial: str | None
    manufacturer: str = "Movidius Ltd."
    product_name: str = "Movidius MyriadX"
    speed: int = usb.util.SPEED_HIGH
    fail: str | None = None

    def strings(self) -> dict[int, str]:
        found = {1: self.manufacturer, 2: self.product_name}
        if self.serial is not None:
            found[3] = self.serial
        return found

    def device_descriptor(self) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=18, bDescriptorType=DESC_DEVICE,
            bcdUSB=0x0300 if self.speed >= usb.util.SPEED_SUPER else 0x0200,
            bDeviceClass=0, bDeviceSubClass=0, bDeviceProtocol=0,
            bMaxPacketSize0=64 if self.speed < usb.util.SPEED_SUPER else 9,
            idVendor=self.vendor, idProduct=self.product, bcdDevice=0x0001,
            iManufacturer=1, iProduct=2,
            iSerialNumber=3 if self.serial is not None else 0,
            bNumConfigurations=1, address=self.address, bus=self.bus,
            port_number=self.port_numbers[-1],
            port_numbers=self.port_numbers, speed=self.speed)

    def descriptor_bytes(self, kind: int, index: int, langid: int) -> bytes:
        """What the device sends for GET_DESCRIPTOR of a string; raises a
        pipe error (a stall) for a descriptor it does not have. (pyusb
        takes the device and configuration descriptors from the backend's
        getters, as libusb caches them, not from the wire.)"""
        if kind == DESC_STRING and index == 0:
            return bytes([4, DESC_STRING]) + LANGID_EN_US.to_bytes(2, "little")
        if kind == DESC_STRING and langid == LANGID_EN_US \
                and self.fail != "strings" and index in self.strings():
            text = self.strings()[index].encode("utf-16-le")
            return bytes([2 + len(text), DESC_STRING]) + text
        raise pipe_error()


# One vendor-specific interface with a bulk OUT and a bulk IN endpoint, as
# a Myriad stick has.
CONFIGURATION = SimpleNamespace(
    bLength=9, bDescriptorType=DESC_CONFIG, wTotalLength=9 + 9 + 2 * 7,
    bNumInterfaces=1, bConfigurationValue=1, iConfiguration=0,
    bmAttributes=0x80, bMaxPower=250, extra_descriptors=[])
INTERFACE = SimpleNamespace(
    bLength=9, bDescriptorType=0x04, bInterfaceNumber=0,
    bAlternateSetting=0, bNumEndpoints=2, bInterfaceClass=0xFF,
    bInterfaceSubClass=0x11, bInterfaceProtocol=0xFF, iInterface=0,
    extra_descriptors=[])
ENDPOINTS = [SimpleNamespace(
    bLength=7, bDescriptorType=0x05, bEndpointAddress=address,
    bmAttributes=0x02, wMaxPacketSize=512, bInterval=0, bRefresh=0,
    bSynchAddress=0, extra_descriptors=[]) for address in (0x01, 0x81)]


class FakeBackend(usb.backend.IBackend):
    """Serves ``devices``; records every control request and which handles
    are open, so tests can see what pyusb asked and that it let go."""

    def __init__(self, devices: list[FakeUsbDevice]):
        super().__init__()
        self.devices = list(devices)
        self.requests: list[tuple[int, int, int, int, int]] = []
        self.open_handles: list[FakeUsbDevice] = []

    def enumerate_devices(self):
        return iter(self.devices)

    def get_device_descriptor(self, dev: FakeUsbDevice):
        return dev.device_descriptor()

    def get_configuration_descriptor(self, dev, config):
        if config != 0:
            raise IndexError(f"configuration {config}")
        return CONFIGURATION

    def get_interface_descriptor(self, dev, intf, alt, config):
        if (intf, alt, config) != (0, 0, 0):
            raise IndexError(f"interface {intf}.{alt} of {config}")
        return INTERFACE

    def get_endpoint_descriptor(self, dev, ep, intf, alt, config):
        self.get_interface_descriptor(dev, intf, alt, config)
        return ENDPOINTS[ep]

    def open_device(self, dev: FakeUsbDevice):
        if dev.fail == "open":
            raise usb.core.USBError("Access denied (insufficient "
                                    "permissions)", LIBUSB_ERROR_ACCESS,
                                    errno.EACCES)
        self.open_handles.append(dev)
        return dev

    def close_device(self, dev_handle):
        self.open_handles.remove(dev_handle)

    def get_configuration(self, dev_handle):
        return CONFIGURATION.bConfigurationValue

    def ctrl_transfer(self, dev_handle, bmRequestType, bRequest, wValue,
                      wIndex, data, timeout):
        self.requests.append((bmRequestType, bRequest, wValue, wIndex,
                              len(data)))
        if (bmRequestType, bRequest) != (STANDARD_DEVICE_IN, GET_DESCRIPTOR):
            raise pipe_error()
        sent = dev_handle.descriptor_bytes(wValue >> 8, wValue & 0xFF,
                                           wIndex)[:len(data)]
        data[:len(sent)] = type(data)(data.typecode, sent)
        return len(sent)
