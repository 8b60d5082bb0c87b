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

"""IP-over-PCIe nodes under a real libvirtd.

There is no VCA card here: the hook reads a fake sysfs tree (the kernel's
layout) and the cache the real scanner writes from it. What is real is
libvirtd running the installed hook at each step, the XML it takes from
the hook at restore, and the bridge, veth and tap interfaces (standing in
for a node's host-side interface) the hook wires together.

USB hostdevs cannot be started here at all: libvirt 9.0 fails any domain
with a USB hostdev, ``startupPolicy='optional'`` included, with "cannot
open directory '/sys/bus/usb/devices'" when the host has no USB bus, so no
saved image with one can be made; the USB rewrite at restore is tested on
the hook's own output (tests/unit/hooks/test_hook_devices.py).
"""

import os
import subprocess

import pytest
from lxml import etree

from accel_inventory import cache, identity, inventory, profiles
from accel_inventory import sysfs as scanner
from libvirt_hooks import bridge, xmlgen
from tests.common.libvirtd import domain_xml

SCHEMA = "/usr/share/libvirt/schemas/domain.rng"
NODE_BDF = "0000:5f:00.0"


def scan(fake, state):
    path = str(state / "inventory.json")
    previous = cache.load(path)
    found = scanner.scan_cards(fake.root, profiles=profiles.load_profiles())
    inv, _ = identity.reconcile(previous, found.cards, "it")
    cache.save(path, inventory.keep_claims(previous, inv))
    return cache.load(path)


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


def master_of(ifname):
    link = f"/sys/class/net/{ifname}/master"
    return os.path.basename(os.path.realpath(link)) \
        if os.path.lexists(link) else None


@pytest.fixture
def taps():
    """Two tap devices; the fake sysfs says which one is a VCA node's
    host-side interface (libvirt opens an unmanaged tap by name)."""
    names = ["naccit-t0", "naccit-t1"]
    for name in names:
        ip("tuntap", "add", "dev", name, "mode", "tap")
    yield names
    for name in names:
        if os.path.exists(f"/sys/class/net/{name}"):
            ip("link", "delete", name)


def tap_interface(dev):
    interface = etree.Element("interface", type="ethernet")
    etree.SubElement(interface, "target", dev=dev, managed="no")
    etree.SubElement(interface, "model", type="virtio")
    return interface


def test_restore_takes_the_nodes_current_interface(libvirtd, fake_host,
                                                   define, taps, tmp_path):
    """libvirt takes the XML the hook prints at ``restore begin``."""
    state = libvirtd["state"]
    fake_host.add_vca_card(0, "0000:5e:00.0", [NODE_BDF],
                           serial="VCA2-IT-0002", interfaces=[taps[0]])
    scan(fake_host, state)
    dom = define(domain_xml("nova-accel-it-restore", tap_interface(taps[0])))
    dom.create()
    saved = str(tmp_path / "node.save")
    dom.save(saved)
    # While the domain is saved the node's interface is renamed, and its
    # old name now belongs to an interface that is not the node's (libvirt
    # checks that an unmanaged tap exists before it runs the hook).
    fake_host.rename_netdev(NODE_BDF, taps[0], taps[1])
    libvirtd["conn"].restore(saved)
    assert dom.isActive()
    live = etree.fromstring(dom.XMLDesc().encode())
    assert live.find("devices/interface/target").get("dev") == taps[1]
    relaxng = etree.RelaxNG(etree.parse(SCHEMA))
    assert relaxng.validate(live), relaxng.error_log
    assert f"interfaces {{0: '{taps[1]}'}}" in (
        state / "hook.log").read_text()


@pytest.fixture
def node_link():
    """A veth end standing in for a VCA node's host-side interface."""
    names = {"host": "naccit-n0", "renamed": "naccit-n0r"}
    ip("link", "add", names["host"], "type", "veth", "peer", "name",
       "naccit-p0")
    yield names
    for name in (names["host"], names["renamed"]):
        if os.path.exists(f"/sys/class/net/{name}"):
            ip("link", "delete", name)


def test_renamed_node_interface_still_lands_in_the_nodes_bridge(
        libvirtd, fake_host, define, node_link):
    state = libvirtd["state"]
    fake_host.add_vca_card(0, "0000:5e:00.0", [NODE_BDF],
                           serial="VCA2-IT-0001",
                           interfaces=[node_link["host"]])
    [node] = [c for c in scan(fake_host, state).cards
              if c.kind == "ippcie"][0].functions()
    name = bridge.bridge_name("accbr-", node.id)
    dom = define(domain_xml("nova-accel-it-node",
                            xmlgen.bridge_interface(name)))
    try:
        dom.create()
        assert master_of(node_link["host"]) == name
        dom.destroy()
        # A reboot loses the bridge, and the node's interface comes back
        # under another name.
        ip("link", "delete", name)
        ip("link", "set", "dev", node_link["host"], "down")
        ip("link", "set", "dev", node_link["host"], "name",
           node_link["renamed"])
        fake_host.rename_netdev(NODE_BDF, node_link["host"],
                                node_link["renamed"])
        dom.create()
        assert master_of(node_link["renamed"]) == name
        ports = os.listdir(f"/sys/class/net/{name}/brif")
        assert node_link["renamed"] in ports and len(ports) == 2  # + tap
    finally:
        if dom.isActive():
            dom.destroy()
        if os.path.exists(f"/sys/class/net/{name}"):
            ip("link", "delete", name)
