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

"""udev properties: the pure rule on plain dicts, pyudev on this machine's
live /sys, and the scanner's use of them for USB serials."""

import logging
import os

from tests.common.pyusb_backend import FakeBackend, FakeUsbDevice

from accel_inventory import conf as conf_mod
from accel_inventory import identity, inventory, profiles, sample, sysfs
from accel_inventory import udev
from accel_inventory import usb as accel_usb

PROFILES = profiles.load_profiles()

# What systemd's usb_id builtin records for a stick (udevadm info -q
# property), and for a PCI function (path_id builtin and hwdb).
STICK = {"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "BUSNUM": "003",
         "DEVNUM": "004", "ID_VENDOR_ID": "03e7", "ID_MODEL_ID": "2485",
         "ID_SERIAL": "Movidius_Ltd._Movidius_MyriadX_14211C7F",
         "ID_SERIAL_SHORT": "14211C7F", "ID_PATH": "pci-0000:00:14.0-usb-0:1"}
PCI = {"SUBSYSTEM": "pci", "PCI_SLOT_NAME": "0000:3b:00.0",
       "PCI_ID": "1172:5000", "ID_PATH": "pci-0000:3b:00.0",
       "ID_PATH_TAG": "pci-0000_3b_00_0",
       "ID_VENDOR_FROM_DATABASE": "Altera Corporation"}


def test_udev_serial_takes_the_serial_and_nothing_else():
    assert identity.udev_serial(STICK) == "14211C7F"
    assert identity.udev_serial(
        {**STICK, "ID_USB_SERIAL_SHORT": "FROM-USB-ID"}) == "FROM-USB-ID"
    assert identity.udev_serial({"ID_SERIAL_SHORT": "  \n"}) is None
    assert identity.udev_serial({}) is None


def test_udev_serial_never_takes_a_path_or_a_shared_long_serial():
    # ID_PATH holds the BDF; a renumbered bus would rename the card.
    assert identity.udev_serial(PCI) is None
    # Without a serial string, ID_SERIAL is <vendor>_<model>: every
    # identical stick has it.
    no_serial = {k: v for k, v in STICK.items() if k != "ID_SERIAL_SHORT"}
    no_serial["ID_SERIAL"] = "Movidius_Ltd._Movidius_MyriadX"
    assert identity.udev_serial(no_serial) is None


def live_pci_device():
    base = "/sys/bus/pci/devices"
    bdf = sorted(os.listdir(base))[0]
    return bdf, os.path.realpath(os.path.join(base, bdf))


def test_pyudev_reads_a_live_pci_device():
    bdf, path = live_pci_device()
    props = udev.device_properties(path)
    assert props["SUBSYSTEM"] == "pci"
    assert props["PCI_SLOT_NAME"] == bdf
    assert props["DEVPATH"] == path[len("/sys"):]
    # Whatever else udev adds, it serves the kernel's uevent variables.
    with open(os.path.join(path, "uevent")) as f:
        uevent = dict(line.strip().split("=", 1) for line in f if "=" in line)
    assert uevent and uevent.items() <= props.items()
    assert identity.udev_serial(props) is None


def udev_database_ids(bdf):
    """The ID_* properties udev's database holds for a PCI device: the
    ``E:`` lines of /run/udev/data/+pci:<bdf>, none without the file."""
    try:
        with open(f"/run/udev/data/+pci:{bdf}") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    entries = (line[2:].split("=", 1) for line in lines
               if line.startswith("E:"))
    return {k: v for k, v in entries if k.startswith("ID_")}


def test_id_properties_come_only_from_the_udev_database():
    # This machine runs no systemd-udevd (see FIELD_NOTES): there is no
    # database, so no ID_* property, and no identity from udev; and no
    # error either.
    bdf, path = live_pci_device()
    props = udev.device_properties(path)
    assert {k: v for k, v in props.items() if k.startswith("ID_")} == \
        udev_database_ids(bdf)
    assert identity.udev_serial(props) is None


def test_a_device_udev_does_not_know_gives_no_properties_and_a_warning(
        tmp_path, caplog):
    fake = sample.FakeSysfs(str(tmp_path)).add_usb(
        "3-1", "03e7", "2485", serial=None, devnum=4)
    gone = "/sys/devices/pci0000:00/0000:00:14.0/usb3/3-1"
    with caplog.at_level(logging.WARNING, logger="accel_inventory.udev"):
        assert udev.device_properties(gone) == {}
        assert udev.device_properties(fake) == {}  # not under /sys
    assert gone in caplog.text and fake in caplog.text


def scan_stick(tmp_path, udev_props, *, sysfs_serial=None):
    fs = sample.FakeSysfs(str(tmp_path))
    real = fs.add_usb("3-1", "03e7", "2485", serial=sysfs_serial, devnum=4)
    asked = []

    def properties(path):
        asked.append(path)
        return udev_props

    backend = FakeBackend([FakeUsbDevice(0x03E7, 0x2485, 3, 4, (1,),
                                         "ON-THE-WIRE")])
    [card] = sysfs.scan_cards(
        fs.root, profiles=PROFILES, udev_properties=properties,
        usb_serial_reader=lambda *a: accel_usb.read_serial(
            *a, backend=backend)).cards
    return card, asked, real, backend


def test_the_scanner_takes_a_udev_serial_before_asking_the_device(tmp_path):
    card, asked, real, backend = scan_stick(tmp_path, STICK)
    assert (card.id, card.serial) == ("usb-03e7-14211C7F", "14211C7F")
    assert asked == [real]
    assert backend.requests == []  # the device itself was left alone


def test_without_a_udev_serial_the_scanner_asks_the_device(tmp_path):
    no_db = {"SUBSYSTEM": "usb", "DEVTYPE": "usb_device", "BUSNUM": "003"}
    card, asked, real, backend = scan_stick(tmp_path, no_db)
    assert card.id == "usb-03e7-ON-THE-WIRE" and asked == [real]
    assert backend.requests != []


def test_a_sysfs_serial_needs_neither_udev_nor_the_device(tmp_path):
    card, asked, _, backend = scan_stick(tmp_path, STICK,
                                         sysfs_serial="IN-SYSFS")
    assert card.id == "usb-03e7-IN-SYSFS"
    assert asked == [] and backend.requests == []


def scan_options(spy, sysfs_root, use_udev):
    c = conf_mod.load([], default_config_files=[])
    c.set_override("sysfs_root", sysfs_root, group="inventory")
    c.set_override("use_udev", use_udev, group="inventory")
    inventory._scan(c)
    return spy.call_args.kwargs


def test_only_the_live_host_scan_reads_udev(mocker, tmp_path):
    spy = mocker.spy(sysfs, "scan_cards")
    live = scan_options(spy, "/sys", True)
    assert live["udev_properties"] is udev.device_properties
    assert live["usb_serial_reader"] is accel_usb.read_serial
    assert scan_options(spy, "/sys", False)["udev_properties"] is None
    fake = sample.build_sample_host(str(tmp_path))
    assert scan_options(spy, fake, True)["udev_properties"] is None
