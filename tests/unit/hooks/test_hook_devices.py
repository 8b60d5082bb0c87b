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

"""USB sticks, mdevs and IP-over-PCIe nodes through the hook's entry point.

The host is a FakeSysfs tree (the kernel's layout) and the cache comes
from the real scanner, as the agent would write it; only the ``ip`` edge
of the node bridge is replaced by a recorder (the network is not ours to
change in a unit test; the libvirtd integration test does it for real).
"""

import os
import shutil
import subprocess
import sys

import pytest
from lxml import etree

from accel_inventory import cache, claims, model
from accel_inventory import sample
from accel_inventory.sample import FakeSysfs
from libvirt_hooks import bridge, common, hook, mdev, xmlgen
from tests.common.hooks import DOMAIN_UUID, OTHER_UUID, call, domain_xml
from tests.common.hooks import ScannedHost as Host
from tests.common.hooks import fast_path_imports

NCS2 = ("03e7", "2485")
BOOTED = ("03e7", "f63b")  # the same stick once its firmware is loaded
GPU = ("10de", "1eb8")
MDEV_UUID = "4b20d080-1b54-4048-85b3-a6a62d165c01"
SCHEMA = "/usr/share/libvirt/schemas/domain.rng"


@pytest.fixture(scope="module")
def relaxng():
    return etree.RelaxNG(etree.parse(SCHEMA))


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


# -- USB sticks ------------------------------------------------------------

def stick_host(host):
    host.fs.add_usb("3-1", *NCS2, serial="03e72485A1", devnum=4)
    host.fs.add_usb("3-2", *NCS2, serial="03e72485B2", devnum=5)
    host.scan()


def usb(bus, device, ids=NCS2):
    return xmlgen.usb_hostdev(*ids, bus=bus, device=device,
                              startup_policy="optional")


def start_and_stop(xml):
    rc, _, err = call(xml)
    assert rc == 0, err
    assert call(xml, op="release", subop="end")[0] == 0


def test_sr_iov_vf_of_the_sample_host_starts_and_is_claimed(tmp_path,
                                                           monkeypatch):
    # A VF's device id (5001) is not its PF's (5000); the scanner records
    # it, so a VF hostdev is not taken for a device of another product.
    host = Host(tmp_path, monkeypatch)
    sample.build_sample_host(host.fs.root)
    host.scan()
    code, _, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:01.1")),
                        "prepare", "begin")
    assert (code, err) == (0, "")
    fpga = host.card_of("pci", vendor_id="1172")
    assert host.claim().functions == [fpga.regions[0].functions[1].id]


def test_usb_first_start_records_the_stick(host):
    stick_host(host)
    assert call(domain_xml(usb(3, 4))) == (0, "", "")
    stick = host.card_of("usb", serial="03e72485A1")
    assert host.claim().functions == [stick.regions[0].functions[0].id]
    assert "starts holding usb-03e7-03e72485A1" in host.log.read_text()


def test_usb_address_with_nothing_is_refused_naming_where_the_stick_is(host):
    stick_host(host)
    xml = domain_xml(usb(3, 4))
    start_and_stop(xml)
    # The firmware loaded: the stick came back on the USB3 bus as f63b.
    host.fs.unplug_usb("3-1")
    host.fs.add_usb("4-2", *BOOTED, serial="03e72485A1", devnum=9)
    rc, out, err = call(xml)
    assert rc == 1 and out == "" and err.count("\n") == 1
    assert err.startswith("nova-accel: domain vm1: USB hostdev bus 3 "
                          "device 4: no USB device is there now")
    assert "now at bus 4 device 9 (port 4-2, 03e7:f63b)" in err
    assert "accel-domain repair vm1" in err


def test_usb_address_holding_another_kind_of_device_is_refused(host):
    stick_host(host)
    xml = domain_xml(usb(3, 4))
    start_and_stop(xml)
    host.fs.unplug_usb("3-1")
    host.fs.add_usb("3-1", "046d", "c31c", serial=None, devnum=4,
                    product_name="USB Keyboard")
    rc, _, err = call(xml)
    assert rc == 1
    assert "holds bus 3 device 4 (port 3-1, 046d:c31c), a device the " \
           "inventory does not know" in err
    assert "is not plugged in now" in err


def test_usb_stick_of_another_running_domain_is_refused(host):
    stick_host(host)
    assert call(domain_xml(usb(3, 5), uuid=OTHER_UUID, name="vm2"))[0] == 0
    rc, _, err = call(domain_xml(usb(3, 5)))
    assert rc == 1 and "held by running domain vm2" in err


def test_usb_vendor_product_only_must_match_one_stick(host):
    stick_host(host)
    rc, _, err = call(domain_xml(xmlgen.usb_hostdev(*NCS2)))
    assert rc == 1 and "matches 2 USB devices (3-1, 3-2)" in err
    host.fs.unplug_usb("3-2")
    assert call(domain_xml(xmlgen.usb_hostdev(*NCS2)))[0] == 0


def test_usb_non_accelerator_is_left_to_libvirt(host):
    stick_host(host)
    keyboard = xmlgen.usb_hostdev("046d", "c31c", bus=1, device=2)
    assert call(domain_xml(keyboard)) == (0, "", "")
    for port in ("1-1", "1-2"):  # two of them: libvirt's to complain about
        host.fs.add_usb(port, "046d", "c31c", serial=None, devnum=7,
                        product_name="USB Keyboard")
    assert call(domain_xml(xmlgen.usb_hostdev("046d", "c31c"))) == (0, "",
                                                                      "")
    assert host.claim() is None
    log = host.log.read_text()
    assert "USB hostdev bus 1 device 2: nothing there and not an " \
           "accelerator the inventory knows; left to libvirt" in log
    assert "USB hostdev 046d:c31c matches 2 USB devices (1-1, 1-2), none " \
           "an accelerator; left to libvirt" in log


def _swap_sticks(host):
    """Stick A re-enumerates onto bus 4; stick B takes A's old bus and
    device number."""
    host.fs.unplug_usb("3-1")
    host.fs.unplug_usb("3-2")
    host.fs.add_usb("4-2", *BOOTED, serial="03e72485A1", devnum=9)
    host.fs.add_usb("3-1", *NCS2, serial="03e72485B2", devnum=4)


def test_usb_reenumerated_free_stick_of_the_same_type_is_allowed(host):
    stick_host(host)
    xml = domain_xml(usb(3, 4))
    start_and_stop(xml)
    _swap_sticks(host)
    assert call(xml)[0] == 0
    assert "re-enumerated host; takes free usb-03e7-03e72485B2/r0/f0" in \
        host.log.read_text()
    assert host.claim().functions == ["usb-03e7-03e72485B2/r0/f0"]


def test_usb_strict_identity_refuses_the_other_stick(host, monkeypatch):
    stick_host(host)
    xml = domain_xml(usb(3, 4))
    start_and_stop(xml)
    _swap_sticks(host)
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__STRICT_IDENTITY", "true")
    rc, _, err = call(xml)
    assert rc == 1
    assert "holds usb-03e7-03e72485B2/r0/f0 of card usb-03e7-03e72485B2, " \
           "not the function this domain was given" in err
    assert "its card usb-03e7-03e72485A1 is now at bus 4 device 9" in err


def test_usb_restore_prints_the_sticks_current_address(host, relaxng):
    stick_host(host)
    xml = domain_xml(usb(3, 4), usb(3, 5))
    start_and_stop(xml)
    _swap_sticks(host)
    host.fs.unplug_usb("3-1")
    host.fs.add_usb("3-7", *NCS2, serial="03e72485B2", devnum=11)
    rc, out, err = call(xml, op="restore", subop="begin")
    assert rc == 0, err
    restored = etree.fromstring(out.encode())
    assert relaxng.validate(restored), relaxng.error_log
    sources = [(s.find("vendor").get("id"), s.find("product").get("id"),
                s.find("address").get("bus"), s.find("address").get("device"),
                s.get("startupPolicy"))
               for s in restored.iterfind("devices/hostdev/source")]
    assert sources == [("0x03e7", "0xf63b", "4", "9", "optional"),
                       ("0x03e7", "0x2485", "3", "11", "optional")]
    # Once rewritten, the domain is where its sticks are: nothing to print.
    assert call(out.encode(), op="migrate", subop="begin") == (0, "", "")
    assert call(out.encode())[0] == 0


def test_usb_restore_of_a_vendor_product_hostdev_follows_the_firmware(
        host, relaxng):
    """A hostdev named by vendor and product only keeps having no address;
    its product id follows the stick's re-enumeration."""
    host.fs.add_usb("3-1", *NCS2, serial="03e72485A1", devnum=4)
    host.scan()
    xml = domain_xml(xmlgen.usb_hostdev(*NCS2))
    start_and_stop(xml)
    host.fs.unplug_usb("3-1")
    host.fs.add_usb("4-2", *BOOTED, serial="03e72485A1", devnum=9)
    rc, out, err = call(xml, op="restore", subop="begin")
    assert rc == 0, err
    restored = etree.fromstring(out.encode())
    assert relaxng.validate(restored), relaxng.error_log
    source = restored.find("devices/hostdev/source")
    assert (source.find("product").get("id"), source.find("address")) == (
        "0xf63b", None)


# -- mdevs -----------------------------------------------------------------

def gpu_host(host, bdf="0000:86:00.0", instances=((MDEV_UUID,
                                                    "nvidia-222"),)):
    host.fs.add_pci(bdf, *GPU, klass="0x030000", dsn=0x1EB8000000000001)
    host.fs.add_mdev_parent(bdf, {"nvidia-222": 3}, list(instances))
    host.scan()


def create_file(host, bdf="0000:86:00.0"):
    return host.fs.path("bus", "pci", "devices", bdf,
                        "mdev_supported_types", "nvidia-222", "create")


def test_start_keeps_what_the_allocation_sync_gave_the_domain(host):
    """A stick placement allocated (hot-plugged after the start, so not in
    the XML) stays in the claim beside the mdev the XML names."""
    stick_host(host)
    gpu_host(host)
    stick = host.card_of("usb", serial="03e72485A1").functions()[0].id
    synced = model.Claim(consumer=DOMAIN_UUID, functions=[stick],
                         source="placement", attach={stick: "attached"})
    cache.update(host.cache, lambda inv: claims.record_claim(inv, synced), 5)
    assert call(domain_xml(xmlgen.mdev_hostdev(MDEV_UUID))) == (0, "", "")
    claim = host.claim()
    mdev_function = host.card_of("mdev").functions()[0].id
    assert claim.functions == [mdev_function, stick]
    assert (claim.source, claim.attach, claim.running) == (
        "placement", {stick: "attached"}, True)


def test_existing_mdev_is_claimed_and_never_removed_by_the_hook(host):
    gpu_host(host)
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV_UUID))
    assert call(xml) == (0, "", "")
    gpu = host.card_of("mdev")
    assert host.claim().functions == [gpu.regions[0].functions[0].id]
    assert host.claim().created_mdevs == []
    assert call(xml, op="release", subop="end")[0] == 0
    remove = host.fs.path("bus", "mdev", "devices", MDEV_UUID, "remove")
    assert open(remove).read() == ""


def test_missing_mdev_is_created_where_the_card_is_now_and_removed(host):
    gpu_host(host)
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV_UUID))
    start_and_stop(xml)
    # Reboot: the mdev is gone and the GPU is in another slot.
    host.fs.remove_mdev(MDEV_UUID)
    gpu = host.card_of("mdev")
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    gpu_host(host, bdf="0000:af:00.0", instances=())
    assert host.card_of("mdev").id == gpu.id
    assert call(xml) == (0, "", "")
    assert open(create_file(host, "0000:af:00.0")).read() == MDEV_UUID
    assert host.claim().created_mdevs == [MDEV_UUID]
    log = host.log.read_text()
    assert f"created mdev {MDEV_UUID} of type nvidia-222 on 0000:af:00.0" \
        in log
    # What the kernel does with the write; then the domain stops.
    host.fs.create_mdev("0000:af:00.0", MDEV_UUID, "nvidia-222")
    assert call(xml, op="release", subop="end")[0] == 0
    remove = host.fs.path("bus", "mdev", "devices", MDEV_UUID, "remove")
    assert open(remove).read() == "1"
    assert host.claim().created_mdevs == [] and not host.claim().running


def rebooted_gpu_host(host, monkeypatch):
    """The GPU's domain started and stopped once, then a reboot removed its
    mdev: the next start creates it (what the kernel does with the write
    is played here). Returns the domain's XML."""
    gpu_host(host)
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV_UUID))
    start_and_stop(xml)
    host.fs.remove_mdev(MDEV_UUID)
    write = mdev.create

    def create(sysfs_root, parent, mdev_type, uuid):
        path = write(sysfs_root, parent, mdev_type, uuid)
        host.fs.create_mdev(parent, uuid, mdev_type)
        return path

    monkeypatch.setattr(mdev, "create", create)
    return xml


FAILURES = {"the hook's timeout": common.HookTimeout(),
            "a full disk": OSError(28, "No space left on device"),
            "a bug": KeyError("bug")}


@pytest.mark.parametrize("landed", [False, True],
                         ids=["before the claim lands", "after it landed"])
@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_prepare_undoes_its_mdev_and_its_claim(host, monkeypatch,
                                                        failure, landed):
    """Whatever raises once the mdev is made (the timer's alarm between
    the cache's rename and the return too), the start is refused in one
    line, the mdev goes and the claim is as it was."""
    xml = rebooted_gpu_host(host, monkeypatch)
    before = host.claim()
    write, failed = cache.update, []

    def update(path, fn, *args, **kwargs):
        if not failed:
            failed.append(True)
            if landed:
                write(path, fn, *args, **kwargs)
            raise failure
        return write(path, fn, *args, **kwargs)

    monkeypatch.setattr(cache, "update", update)
    rc, out, err = call(xml)
    assert (rc, out) == (1, "") and err.count("\n") == 1, err
    remove = host.fs.path("bus", "mdev", "devices", MDEV_UUID, "remove")
    assert open(remove).read() == "1"
    assert host.claim() == before
    assert "undone: mdev " + MDEV_UUID in host.log.read_text()


def test_missing_mdev_without_a_claim_is_left_to_libvirt(host):
    gpu_host(host, instances=())
    assert call(domain_xml(xmlgen.mdev_hostdev(MDEV_UUID))) == (0, "", "")
    assert open(create_file(host)).read() == ""
    assert "no claim says on which card to create it" in \
        host.log.read_text()


def test_mdev_uuid_that_is_not_a_uuid_is_refused(host):
    gpu_host(host)
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV_UUID)).replace(
        MDEV_UUID.encode(), b"../../../../etc")
    rc, _, err = call(xml)
    assert rc == 1 and "is not a UUID" in err


# -- IP-over-PCIe nodes ----------------------------------------------------

NODES = ["0000:5f:00.0", "0000:5f:00.1", "0000:5f:00.2"]


def vca_host(host, interfaces=("eth4", "eth5", "eth6")):
    host.fs.add_vca_card(0, "0000:5e:00.0", NODES, serial="VCA2-SN-0042",
                         interfaces=list(interfaces))
    host.scan()
    return host.card_of("ippcie").functions()


def direct(dev):
    interface = etree.Element("interface", type="direct")
    etree.SubElement(interface, "source", dev=dev, mode="bridge")
    return interface


def test_node_bridge_gets_the_nodes_current_interface(host):
    node = vca_host(host)[1]
    name = bridge.bridge_name("accbr-", node.id)
    xml = domain_xml(xmlgen.bridge_interface(name))
    assert call(xml) == (0, "", "")
    assert host.bridged == [(name, "eth5")]
    assert host.claim().functions == [node.id]
    assert call(xml, op="release", subop="end")[0] == 0
    host.fs.rename_netdev(NODES[1], "eth5", "eth9")
    assert call(xml) == (0, "", "")
    assert host.bridged[-1] == (name, "eth9")
    assert f"added eth9 to {name} (node {node.id})" in host.log.read_text()


def test_node_bridge_without_interface_or_node_is_refused(host):
    node = vca_host(host)[0]
    name = bridge.bridge_name("accbr-", node.id)
    # The node's driver is unloaded: its interface is gone.
    shutil.rmtree(host.fs.path("bus", "pci", "devices", NODES[0], "net"))
    os.unlink(host.fs.path("class", "net", "eth4"))
    rc, _, err = call(domain_xml(xmlgen.bridge_interface(name)))
    assert rc == 1 and "has no host-side interface now" in err
    assert host.bridged == [] and host.claim() is None
    rc, _, err = call(domain_xml(xmlgen.bridge_interface("accbr-000000000")))
    assert rc == 1 and "no IP-over-PCIe node of the inventory has this " \
                       "bridge" in err


def test_node_bridge_of_a_running_domains_node_is_refused(host):
    node = vca_host(host)[2]
    xml = domain_xml(xmlgen.bridge_interface(
        bridge.bridge_name("accbr-", node.id)))
    assert call(xml.replace(DOMAIN_UUID.encode(), OTHER_UUID.encode())
                .replace(b"vm1", b"vm2"), name="vm2")[0] == 0
    rc, _, err = call(xml)
    assert rc == 1 and "held by running domain vm2" in err
    assert len(host.bridged) == 1


def test_bridge_failure_refuses_the_start(host, monkeypatch):
    node = vca_host(host)[0]

    def broken(name, interface):
        raise bridge.BridgeError("'ip link add' failed: Operation not "
                                 "permitted")

    monkeypatch.setattr(bridge, "ensure_node_bridge", broken)
    rc, _, err = call(domain_xml(xmlgen.bridge_interface(
        bridge.bridge_name("accbr-", node.id))))
    assert rc == 1 and "Operation not permitted" in err
    assert host.claim() is None


def test_raw_node_interface_is_guarded_and_rewritten(host, relaxng):
    nodes = vca_host(host)
    xml = domain_xml(direct("eth5"))
    start_and_stop(xml)
    assert host.claim().functions == [nodes[1].id]
    # Another card went in first: every node interface was renamed and
    # node 1's old name is now node 0's.
    for bdf, old, new in ((NODES[0], "eth4", "eth5x"),
                          (NODES[1], "eth5", "eth7"),
                          (NODES[2], "eth6", "eth8")):
        host.fs.rename_netdev(bdf, old, new)
    host.fs.rename_netdev(NODES[0], "eth5x", "eth5")
    rc, _, err = call(xml)
    assert rc == 1
    assert f"holds {nodes[0].id} of card" in err
    assert f"its node {nodes[1].id} has interface eth7 now" in err
    rc, out, err = call(xml, op="restore", subop="begin")
    assert rc == 0, err
    restored = etree.fromstring(out.encode())
    assert relaxng.validate(restored), relaxng.error_log
    assert restored.find("devices/interface/source").get("dev") == "eth7"
    assert call(out.encode())[0] == 0


def test_ordinary_network_beside_a_synced_node_is_left_alone(host):
    """The node placement gave the domain is hot-plugged, not in the XML:
    the domain's ordinary network must never be taken for it."""
    gpu_host(host)
    node = vca_host(host)[0]
    synced = model.Claim(consumer=DOMAIN_UUID, functions=[node.id],
                         source="placement")
    cache.update(host.cache, lambda inv: claims.record_claim(inv, synced), 5)
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV_UUID),
                     xmlgen.bridge_interface("br0"))
    start_and_stop(xml)
    assert call(xml) == (0, "", "")
    assert host.claim().functions == [
        host.card_of("mdev").functions()[0].id, node.id]


def test_ordinary_interfaces_stay_on_the_fast_path(host):
    vca_host(host)
    assert fast_path_imports(
        "prepare", domain_xml(xmlgen.bridge_interface("br0"))) == (0, [])


@pytest.mark.parametrize("interface,full", [
    (xmlgen.bridge_interface("br0"), False),
    (xmlgen.bridge_interface("accbr-1a2b3c4d5"), True),
    (direct("eth5"), True),  # a node's interface: device-backed
    (direct("eth9"), True),  # renamed since the scan, still device-backed
    (direct("eth6"), True),  # its old name: only the cache knows it
    (direct("vethX"), False),  # neither
])
def test_fast_path_decision_on_interfaces(host, interface, full):
    vca_host(host)
    host.fs.rename_netdev(NODES[2], "eth6", "eth9")
    assert hook.needs_full_path("prepare", "begin", domain_xml(interface),
                                hook.config_file()) is full


def test_concurrent_hooks_for_different_domains_keep_every_claim(host):
    """Six domains start at once, each with its own stick: the cache
    lock serialises the claim writes, so none is lost."""
    for n in range(6):
        host.fs.add_usb(f"3-{n + 1}", *NCS2, serial=f"03e72485C{n}",
                        devnum=n + 10)
    host.scan()
    uuids = [f"0f3a4a52-6c1e-4b8c-9a3e-2d7c2f6b1a1{n}" for n in range(6)]
    hooks = [subprocess.Popen(
        [sys.executable, "-m", "libvirt_hooks.hook", f"vm{n}", "prepare",
         "begin", "-"], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in range(6)]
    for n, process in enumerate(hooks):
        process.stdin.write(domain_xml(usb(3, n + 10), uuid=uuids[n],
                                       name=f"vm{n}"))
        process.stdin.close()
    assert [(p.wait(), p.stderr.read()) for p in hooks] == [(0, b"")] * 6
    inv = host.inv()
    assert {uuid: inv.claims[uuid].functions for uuid in uuids} == {
        uuids[n]: [f"usb-03e7-03e72485C{n}/r0/f0"] for n in range(6)}


# -- a PCI hostdev where a card of any kind was ---------------------------

NIC = ("8086", "1572")


def whole_gpu():
    return domain_xml(xmlgen.pci_hostdev("0000:86:00.0"))


def test_hostdev_of_an_mdev_parent_that_is_now_a_nic_is_refused(host):
    # The GPU is known as an mdev parent; since the last scan the bus was
    # re-enumerated and a NIC sits at its address.
    gpu_host(host, instances=())
    gpu = host.card_of("mdev")
    host.fs.add_pci("0000:86:00.0", *NIC, klass="0x020000")
    rc, out, err = call(whole_gpu())
    assert (rc, out, err.count("\n")) == (1, "", 1)
    assert "hostdev 0000:86:00.0: holds 8086:1572 now" in err
    assert f"10de:1eb8 ({gpu.id})" in err
    assert host.claim() is None


def test_hostdev_where_an_mdev_parent_was_names_where_it_is_now(host):
    gpu_host(host, instances=())
    gpu = host.card_of("mdev")
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    gpu_host(host, bdf="0000:af:00.0", instances=())
    host.fs.add_pci("0000:86:00.0", *NIC, klass="0x020000")
    rc, _, err = call(whole_gpu())
    assert rc == 1 and err.count("\n") == 1
    assert "holds 8086:1572 now" in err
    assert f"card {gpu.id} (10de:1eb8) is now at 0000:af:00.0" in err


def test_hostdev_where_a_lost_card_was_says_it_is_lost(host):
    gpu_host(host, instances=())
    gpu = host.card_of("mdev")
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    host.fs.add_pci("0000:86:00.0", *NIC, klass="0x020000")
    host.scan()
    assert host.card_of("mdev").status == model.STATUS_LOST
    rc, _, err = call(whole_gpu())
    assert rc == 1 and err.count("\n") == 1
    assert f"card {gpu.id} (10de:1eb8) is lost" in err


def test_hostdev_of_an_mdev_parent_still_there_is_left_to_libvirt(host):
    gpu_host(host, instances=())
    assert call(whole_gpu()) == (0, "", "")
    gpu = host.card_of("mdev")
    assert f"takes card {gpu.id} (mdev) whole" in host.log.read_text()
    assert host.claim() is None


def test_hostdev_of_an_mdev_parent_whose_mdev_runs_is_refused(host):
    gpu_host(host)
    other = domain_xml(xmlgen.mdev_hostdev(MDEV_UUID), uuid=OTHER_UUID,
                       name="vm2")
    assert call(other)[0] == 0
    rc, _, err = call(whole_gpu())
    assert rc == 1 and "held by running domain vm2" in err


def test_hostdev_at_a_moved_pci_cards_old_vf_address_is_refused(host):
    # An FPGA with a VF moves from bus 3b to bus 5e; a NIC takes bus 3b.
    host.fs.add_pci("0000:3b:00.0", "1172", "5000", dsn=0x1172000000000001,
                    totalvfs=1)
    host.fs.add_vfs("0000:3b:00.0", ["0000:3b:00.1"], "5001")
    host.scan()
    fpga = host.card_of("pci")
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    host.fs.add_pci("0000:5e:00.0", "1172", "5000", dsn=0x1172000000000001,
                    totalvfs=1)
    host.fs.add_vfs("0000:5e:00.0", ["0000:5e:00.1"], "5001")
    for bdf in ("0000:3b:00.0", "0000:3b:00.1"):
        host.fs.add_pci(bdf, *NIC, klass="0x020000")
    host.scan()
    assert host.card_of("pci").status == model.STATUS_MOVED
    for bdf in ("0000:3b:00.0", "0000:3b:00.1"):
        rc, _, err = call(domain_xml(xmlgen.pci_hostdev(bdf)))
        assert rc == 1 and err.count("\n") == 1, err
        assert f"card {fpga.id} (1172:5000) is now at 0000:5e:00.0" in err


def test_a_lost_gpus_last_address_never_shadows_the_gpu_there_now(host):
    # An mdev made on the GPU there now after the last scan is that GPU's,
    # not the lost one's that was at the same address.
    gpu_host(host, instances=())
    lost = host.card_of("mdev")
    lost.id, lost.status = "dsn-gone", model.STATUS_LOST
    for function in lost.functions():
        function.id = "dsn-gone" + function.id[len(host.card_of(
            "mdev").id):]
    inv = host.inv()
    inv.cards.append(lost)
    cache.save(host.cache, inv)
    host.fs.create_mdev("0000:86:00.0", MDEV_UUID, "nvidia-222")
    assert call(domain_xml(xmlgen.mdev_hostdev(MDEV_UUID))) == (0, "", "")
    [fid] = host.claim().functions
    assert fid.startswith(host.card_of("mdev", status="added").id + "/")


def test_a_node_interface_name_that_is_not_utf8_is_handled_as_from_xml(host):
    # The driver (or root) renamed the node's interface to bytes that are
    # not UTF-8: a restore that would move the domain onto it ended in a
    # traceback; it is no interface name, as one in the XML would not be.
    vca_host(host)
    host.fs.rename_netdev(NODES[0], "eth4", "eth\udcff")
    for op in ("restore", "migrate"):
        rc, out, err = call(domain_xml(direct("eth4")), op=op)
        assert rc in (0, 1) and err.count("\n") <= 1, err
        assert "\udcff" not in out and "\\xff" not in out
