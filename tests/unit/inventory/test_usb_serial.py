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

"""accel_usb.read_serial through pyusb's real code on a fake bus, and the
scanner's fallback to it when sysfs has no ``serial`` file."""

import functools
import logging

import usb.util

from accel_inventory import identity, model, profiles, sample, sysfs
from accel_inventory import usb as accel_usb
from tests.common.pyusb_backend import (DESC_STRING, GET_DESCRIPTOR,
                                        LANGID_EN_US, FakeBackend,
                                        FakeUsbDevice)

PROFILES = profiles.load_profiles()


def ncs2(bus=3, address=4, port_numbers=(1,), serial="14211C7F", **kw):
    """A Myriad X stick before its firmware is loaded."""
    return FakeUsbDevice(0x03E7, 0x2485, bus, address, port_numbers, serial,
                         **kw)


def booted(bus=4, address=9, port_numbers=(2,), serial="14211C7F"):
    """The same stick once the host loaded its firmware: a new product id
    and device number, here on the USB3 bus."""
    return FakeUsbDevice(0x03E7, 0xF63B, bus, address, port_numbers, serial,
                         product_name="VSC Loopback Device",
                         speed=usb.util.SPEED_SUPER)


def read(backend, bus=3, address=4, product="2485"):
    return accel_usb.read_serial(bus, address, "03e7", product,
                                 backend=backend)


def string_requests(backend):
    return [(wValue & 0xFF, wIndex) for (_, request, wValue, wIndex, _)
            in backend.requests
            if request == GET_DESCRIPTOR and wValue >> 8 == DESC_STRING]


def test_reads_the_serial_string_and_lets_go_of_the_device():
    backend = FakeBackend([ncs2(address=2, serial="OTHER"), ncs2()])
    assert read(backend, 3, 4) == "14211C7F"
    # The language ids first (index 0), then iSerialNumber in the first.
    assert string_requests(backend) == [(0, 0), (3, LANGID_EN_US)]
    assert backend.open_handles == []


def test_the_ids_must_match_the_device_at_that_address():
    # The stick re-enumerated: 3:4 is gone and it is now f63b at 4:9.
    backend = FakeBackend([booted()])
    assert read(backend, 3, 4) is None
    assert read(backend, 4, 9) is None
    assert read(backend, 4, 9, "f63b") == "14211C7F"


def test_a_device_without_a_serial_string_is_not_asked():
    backend = FakeBackend([ncs2(serial=None)])
    assert read(backend, 3, 4) is None
    assert backend.requests == []


def test_a_stalled_string_request_gives_none_and_a_warning(caplog):
    backend = FakeBackend([ncs2(address=5, fail="strings")])
    with caplog.at_level(logging.WARNING, logger="accel_inventory.usb"):
        assert read(backend, 3, 5) is None
    assert "USB device 3:5 (03e7:2485)" in caplog.text
    assert "Pipe error" in caplog.text
    assert backend.open_handles == []


def test_a_device_that_cannot_be_opened_gives_none_and_a_warning(caplog):
    backend = FakeBackend([ncs2(fail="open")])
    with caplog.at_level(logging.WARNING, logger="accel_inventory.usb"):
        assert read(backend, 3, 4) is None
    assert "USB device 3:4 (03e7:2485)" in caplog.text
    # pyusb reports a device it cannot open as one without language ids.
    assert "no langid" in caplog.text


def scan(root, backend):
    return sysfs.scan_cards(
        root, profiles=PROFILES,
        usb_serial_reader=functools.partial(accel_usb.read_serial,
                                            backend=backend)).cards


def test_the_scanner_asks_pyusb_only_when_sysfs_has_no_serial(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path))
    fs.add_usb("3-1", "03e7", "2485", serial=None, devnum=4)
    fs.add_usb("3-2", "03e7", "2485", serial="IN-SYSFS", devnum=5)
    backend = FakeBackend([ncs2(), ncs2(address=5, port_numbers=(2,),
                                        serial="ON-THE-WIRE")])
    cards = scan(fs.root, backend)
    assert [(c.id, c.identity_source) for c in cards] == [
        ("usb-03e7-14211C7F", "usb_serial"),
        ("usb-03e7-IN-SYSFS", "usb_serial")]
    assert string_requests(backend) == [(0, 0), (3, LANGID_EN_US)]


def test_a_stick_without_any_serial_has_a_weak_identity(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path))
    fs.add_usb("3-1", "03e7", "2485", serial=None, devnum=4)
    [card] = scan(fs.root, FakeBackend([ncs2(serial=None)]))
    assert card.id == "path-usb-3-1-03e7-2485" and card.weak_identity


def test_movidius_reenumeration_read_through_pyusb(tmp_path):
    before = sample.FakeSysfs(str(tmp_path / "before"))
    before.add_usb("3-1", "03e7", "2485", serial=None, devnum=4)
    first, _ = identity.reconcile(
        None, scan(before.root, FakeBackend([ncs2()])), "h")
    after = sample.FakeSysfs(str(tmp_path / "after"))
    after.add_usb("4-2", "03e7", "f63b", serial=None, devnum=9)
    inv, changes = identity.reconcile(
        first, scan(after.root, FakeBackend([booted()])), "h")
    [stick] = inv.cards
    assert stick.id == first.cards[0].id == "usb-03e7-14211C7F"
    assert (stick.status, stick.address, stick.previous_addresses) == (
        model.STATUS_MOVED, "4-2", ["3-1"])
    assert stick.functions()[0].attrs["devnum"] == 9
    assert [f.id for f in stick.functions()] == [
        f.id for f in first.cards[0].functions()]
    assert [c.status for c in changes] == ["moved"]
