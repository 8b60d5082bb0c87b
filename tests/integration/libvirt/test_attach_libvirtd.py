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

"""The attach worker under a real libvirtd: started by the installed hook at
``started begin``, it hot-plugs what the allocation sync assigned.

An IP-over-PCIe node is stood in for by a veth pair: the fake sysfs says
the node's host-side interface is one end, which exists on the real host.
There is no VFIO and no USB bus here, so a stick's hot-plug must fail,
with its reason recorded and the running domain untouched.
"""

import io
import os
import subprocess
import time
import uuid

import libvirt
import pytest
from lxml import etree

from accel_inventory import agent, cache, claims, identity, model
from accel_inventory import claim_sync
from accel_inventory import profiles, sample, sysfs
from libvirt_hooks import bridge, cli

NODE_BDF = "0000:5f:00.0"
NODE = "vpd-8086-2953-VCA2-SN-IT01/r0/f0"
STICK = "usb-03e7-03e72485IT/r0/f0"
WAIT = 30.0


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"


def domain_xml(name, dom_uuid, extra_specs=None):
    """A 64 MiB ``pc`` guest with ACPI (PCI hot-plug needs it) and no
    device of ours: Nova puts none there either. With ``extra_specs``,
    Nova's metadata carrying the flavor's extra specs."""
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "uuid").text = dom_uuid
    if extra_specs:
        nova = etree.SubElement(etree.SubElement(dom, "metadata"),
                                f"{{{NOVA_NS}}}instance", nsmap={
                                    "nova": NOVA_NS})
        flavor = etree.SubElement(nova, f"{{{NOVA_NS}}}flavor", name="m1")
        specs = etree.SubElement(flavor, f"{{{NOVA_NS}}}extraSpecs")
        for key, value in extra_specs.items():
            etree.SubElement(specs, f"{{{NOVA_NS}}}extraSpec",
                             name=key).text = value
    etree.SubElement(dom, "memory", unit="MiB").text = "64"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    features = etree.SubElement(dom, "features")
    etree.SubElement(features, "acpi")
    devs = etree.SubElement(dom, "devices")
    etree.SubElement(devs, "graphics", type="vnc", port="-1",
                     listen="127.0.0.1")
    return etree.tostring(dom, encoding="unicode")


@pytest.fixture
def host(libvirtd, fake_host):
    """The hook's sysfs and cache (the libvirtd fixture's paths) hold a
    VCA card whose node 0 is the veth end ``acctnode0`` and one stick;
    the veth pair exists on the real host."""
    state = libvirtd["state"]
    fs = fake_host
    root = fs.root
    fs.add_vca_card(0, "0000:5e:00.0", [NODE_BDF], serial="VCA2-SN-IT01",
                    interfaces=["acctnode0"])
    fs.add_usb("3-1", *sample.SAMPLE_NCS2, serial="03e72485IT", devnum=4)
    scanned = sysfs.scan_cards(root, profiles=profiles.load_profiles(None))
    inv, _ = identity.reconcile(None, scanned.cards, "compute-it")
    cache_path = str(state / "inventory.json")
    cache.save(cache_path, inv)
    ip("link", "add", "acctnode0", "type", "veth", "peer", "name",
       "acctpeer0")
    yield {"fs": fs, "cache": cache_path, "log": state / "hook.log",
           "config": libvirtd["config"]}
    for link in ("acctnode0", "acctnode1",
                 bridge.bridge_name("accbr-", NODE)):
        subprocess.run(["ip", "link", "delete", link], capture_output=True)


@pytest.fixture
def domain(define):
    def define_assigned(name, functions, cache_path, extra_specs=None):
        """A domain, and (``functions``) what the sync assigned it."""
        dom_uuid = str(uuid.uuid4())
        if functions:
            assign(cache_path, dom_uuid, functions)
        return define(domain_xml(name, dom_uuid, extra_specs))

    return define_assigned


def assign(cache_path, consumer, functions):
    """What the allocation sync records for an instance: its claim and
    its marker."""
    inv = claims.record_claim(cache.load(cache_path), model.Claim(
        consumer=consumer, functions=functions,
        source=claim_sync.CLAIM_SOURCE))
    cache.save(cache_path, inv)
    agent.write_assigned_markers(cache_path, inv)


def attach_state(cache_path, dom, since):
    """The worker's record for ``dom`` once it has written one after
    ``since``; fails after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        claim = cache.load(cache_path).claims[dom.UUIDString()]
        if claim.attach.get("at", 0) > since:
            return claim
        time.sleep(0.1)
    pytest.fail(f"the attach worker recorded nothing for {dom.name()} "
                f"within {WAIT} s")


def bridges_of(xml):
    return [source.get("bridge") for source in etree.fromstring(xml).iterfind(
        "devices/interface[@type='bridge']/source")]


def test_node_is_attached_on_its_bridge_at_every_start(host, domain):
    name = bridge.bridge_name("accbr-", NODE)
    dom = domain("nova-accel-it-node", [NODE], host["cache"])
    since = time.time()
    dom.create()
    claim = attach_state(host["cache"], dom, since)
    assert claim.attach["devices"][NODE]["state"] == "attached", claim.attach
    assert claim.running
    assert bridges_of(dom.XMLDesc(0)) == [name]
    assert os.path.basename(os.path.realpath(
        "/sys/class/net/acctnode0/master")) == name
    inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert bridges_of(inactive) == []

    # By hand: a guest with no OS never answers ACPI hot-unplug, so the
    # detach is only requested, and the record says so.
    out, err = io.StringIO(), io.StringIO()
    # The session hook's configuration (the libvirtd fixture's file).
    assert cli.main(["--connect", "qemu:///system", "--config-file",
                     host["config"], "detach", dom.name()], out=out,
                    err=err) == 0, err.getvalue()
    assert out.getvalue().startswith(f"{NODE}: requested (bridge {name}): "
                                     f"the guest has not released it yet")
    assert bridges_of(dom.XMLDesc(0)) == [name]
    assert cache.load(host["cache"]).claims[dom.UUIDString()].running

    # The node's host-side interface is renamed (cards re-enumerated);
    # the domain restarts and is attached on the same bridge, which now
    # holds the new name.
    dom.destroy()
    assert not cache.load(host["cache"]).claims[dom.UUIDString()].running
    ip("link", "set", "acctnode0", "name", "acctnode1")
    host["fs"].rename_netdev(NODE_BDF, "acctnode0", "acctnode1")
    since = time.time()
    dom.create()
    claim = attach_state(host["cache"], dom, since)
    assert claim.attach["devices"][NODE]["state"] == "attached", claim.attach
    assert bridges_of(dom.XMLDesc(0)) == [name]
    assert os.path.basename(os.path.realpath(
        "/sys/class/net/acctnode1/master")) == name
    assert bridges_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == []


def test_server_started_before_the_sync_is_attached_after_it(host,
                                                             domain):
    # Nova starts a new server seconds after placement allocates it; the
    # agent's sync may record the assignment only later.
    name = bridge.bridge_name("accbr-", NODE)
    dom = domain("nova-accel-it-early", [], host["cache"],
                 extra_specs={"resources1:CUSTOM_ACCEL_VCA_NODE": "1"})
    dom.create()
    assert bridges_of(dom.XMLDesc(0)) == []
    since = time.time()
    assign(host["cache"], dom.UUIDString(), [NODE])
    claim = attach_state(host["cache"], dom, since)
    assert claim.attach["devices"][NODE]["state"] == "attached", claim.attach
    assert bridges_of(dom.XMLDesc(0)) == [name]


def test_stick_that_cannot_be_plugged_is_recorded(host, domain):
    dom = domain("nova-accel-it-stick", [STICK], host["cache"])
    since = time.time()
    dom.create()
    before = dom.XMLDesc(0)
    claim = attach_state(host["cache"], dom, since)
    outcome = claim.attach["devices"][STICK]
    assert outcome["state"] == "failed"
    assert outcome["device"] == "usb 03e7:2485 bus 3 device 4"
    assert outcome["reason"]
    assert not claim.running
    assert dom.isActive() and dom.XMLDesc(0) == before
    assert etree.fromstring(before).find("devices/hostdev") is None
    log = host["log"].read_text()
    assert f"{STICK}: failed" in log
    assert "'accel-domain attach nova-accel-it-stick'" in log
