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

"""``migrate begin`` on the destination of a live migration, through the
hook's entry point: the XML names the mdev or PCI address nova chose on
this host, and is judged by identity against this host's inventory only;
nothing is rewritten, a device that is not this server's refuses the
migration in one line, and what nova and libvirt can do is never
blocked (the claim of an earlier stay here included)."""

import pytest

from accel_inventory import cache, claims, model
from accel_inventory.sample import FakeSysfs
from libvirt_hooks import bridge, xmlgen
from tests.common.hooks import DOMAIN_UUID, OTHER_UUID, call, domain_xml
from tests.unit.hooks.test_hook_devices import (MDEV_UUID, Host, gpu_host,
                                                vca_host)

VF = ("1172", "5001")
OTHER_MDEV = "9f1c1b7e-4a2d-4c3b-8e5f-0a1b2c3d4e5f"


@pytest.fixture
def host(tmp_path, monkeypatch):
    host = Host(tmp_path, monkeypatch)
    host.fs.add_pci("0000:3b:00.0", "1172", "5000", dsn=0xF9A0000000000001,
                    totalvfs=2)
    host.fs.add_vfs("0000:3b:00.0", ["0000:3b:00.1", "0000:3b:00.2"], VF[1])
    host.fs.add_pci("0000:00:1f.0", "8086", "a1c1", klass="0x060100")
    host.scan()
    return host


def migrate(xml, name="vm1"):
    return call(xml, op="migrate", subop="begin", name=name)


def other(xml):
    return xml.replace(DOMAIN_UUID.encode(), OTHER_UUID.encode()).replace(
        b"<name>vm1</name>", b"<name>vm2</name>")


def vf(host, index):
    return host.card_of("pci").functions()[index]


def test_what_nova_chose_here_is_let_through_unchanged(host):
    xml = domain_xml(xmlgen.pci_hostdev(vf(host, 1).address))
    assert migrate(xml) == (0, "", "")
    # migrate begin records nothing: the incoming domain's prepare does.
    assert host.claim() is None
    assert call(xml)[0] == 0
    assert host.claim().functions == [vf(host, 1).id]


def test_a_function_another_running_domain_holds_refuses_in_one_line(host):
    xml = domain_xml(xmlgen.pci_hostdev(vf(host, 0).address))
    assert call(other(xml), name="vm2")[0] == 0
    rc, out, err = migrate(xml)
    assert rc == 1 and out == ""
    assert err.count("\n") == 1
    assert err.startswith("nova-accel: domain vm1: incoming live migration: "
                          f"hostdev {vf(host, 0).address}: function "
                          f"{vf(host, 0).id} is held by running domain vm2")
    # Once that domain stopped, the same migration goes through.
    assert call(other(xml), op="release", subop="end", name="vm2")[0] == 0
    assert migrate(xml) == (0, "", "")


def test_another_device_than_the_inventory_says_refuses(host):
    address = vf(host, 1).address
    for name, value in (("vendor", "0x8086"), ("device", "0x1572")):
        with open(host.fs.path("bus", "pci", "devices", address, name),
                  "w") as f:
            f.write(value + "\n")
    rc, _, err = migrate(domain_xml(xmlgen.pci_hostdev(address)))
    assert rc == 1
    assert "holds 8086:1572 now, the inventory says 1172:5001" in err


def test_devices_the_inventory_does_not_know_are_left_to_libvirt(host):
    assert migrate(domain_xml(xmlgen.pci_hostdev("0000:00:1f.0"))) == (
        0, "", "")
    # An address with nothing at all, which libvirt could not give either.
    rc, _, err = migrate(domain_xml(xmlgen.pci_hostdev("0000:d8:00.0")))
    assert rc == 1 and "no PCI device is there now" in err


def test_the_claim_of_an_earlier_stay_neither_blocks_nor_rewrites(host,
                                                                   monkeypatch):
    """The server ran here before with the first VF and left; nova now
    brings it back on the second. With strict identity its start would be
    refused as "not the function this domain was given"; arriving by live
    migration, the earlier claim is history."""
    first = domain_xml(xmlgen.pci_hostdev(vf(host, 0).address))
    assert call(first)[0] == 0
    assert call(first, op="release", subop="end")[0] == 0
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__STRICT_IDENTITY", "true")
    incoming = domain_xml(xmlgen.pci_hostdev(vf(host, 1).address))
    assert call(incoming)[0] == 1  # a plain start is refused, as before
    assert migrate(incoming) == (0, "", "")
    assert host.claim() is None
    assert "claim of its earlier stay" in host.log.read_text()
    rc, _, err = call(incoming)
    assert rc == 0, err
    assert host.claim().functions == [vf(host, 1).id]


def test_a_running_claim_and_placement_claims_are_kept(host):
    node = model.Claim(consumer=DOMAIN_UUID, functions=[vf(host, 1).id],
                       source="placement")
    cache.update(host.cache, lambda inv: claims.record_claim(inv, node), 5)
    xml = domain_xml(xmlgen.pci_hostdev(vf(host, 0).address))
    assert migrate(xml) == (0, "", "")
    assert host.claim() == node


def test_an_mdev_nova_made_here_is_judged_by_its_parent(tmp_path,
                                                        monkeypatch):
    host = Host(tmp_path, monkeypatch)
    gpu_host(host, instances=((MDEV_UUID, "nvidia-222"),
                              (OTHER_MDEV, "nvidia-222")))
    mine = domain_xml(xmlgen.mdev_hostdev(MDEV_UUID))
    assert migrate(mine) == (0, "", "")
    # An mdev that does not exist is nova's and libvirt's to report.
    missing = domain_xml(xmlgen.mdev_hostdev(
        "11111111-2222-4333-8444-555555555555"))
    assert migrate(missing) == (0, "", "")
    # A running domain holds the GPU's other mdev: this one is still free.
    assert call(other(domain_xml(xmlgen.mdev_hostdev(OTHER_MDEV))),
                name="vm2")[0] == 0
    assert migrate(mine) == (0, "", "")
    # The mdev the XML names is the one that running domain holds.
    rc, _, err = migrate(domain_xml(xmlgen.mdev_hostdev(OTHER_MDEV)))
    assert rc == 1 and "is held by running domain vm2" in err
    # Moved to another slot since the scan: the mdev is on a parent the
    # inventory does not put it on.
    host.use(FakeSysfs(host.fs.root + "-moved"))
    host.fs.add_pci("0000:af:00.0", "10de", "1eb8", klass="0x030000")
    host.fs.add_mdev_parent("0000:af:00.0", {"nvidia-222": 3},
                            [(MDEV_UUID, "nvidia-222")])
    rc, _, err = migrate(mine)
    assert rc == 1 and "is on 0000:af:00.0 now" in err


def test_a_node_bridge_of_the_source_refuses(tmp_path, monkeypatch):
    """A node the source's worker plugged and nobody unplugged: its
    bridge is no node's of this host."""
    host = Host(tmp_path, monkeypatch)
    vca_host(host)
    rc, _, err = migrate(domain_xml(xmlgen.bridge_interface(
        bridge.bridge_name("accbr-", "vpd-8086-2953-ELSEWHERE/r0/f0"))))
    assert rc == 1
    assert "incoming live migration: interface on bridge" in err
    assert "no IP-over-PCIe node of the inventory has this bridge" in err
