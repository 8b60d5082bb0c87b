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

"""The hook's callers in the tests: a small sysfs tree of FPGA cards,
their cache, a domain's XML and the hook's entry point called in-process.
Shared by the hook's unit tests (tests/unit/hooks) and its fuzz tests
(tests/fuzz)."""

import io
import os
import subprocess
import sys

import pytest
from lxml import etree

from accel_inventory import cache, identity, inventory, model, profiles
from accel_inventory import sysfs
from accel_inventory.sample import FakeSysfs
from libvirt_hooks import bridge, common, hook

DOMAIN_UUID = "0f3a4a52-6c1e-4b8c-9a3e-2d7c2f6b1a01"
OTHER_UUID = "7b9d1f0e-2a33-4c55-8e77-90a1b2c3d4e5"
FPGA = ("1172", "5000")




def fast_path_imports(op: str, xml: bytes) -> tuple[int, list]:
    """The hook called in a fresh interpreter at ``op begin`` with
    ``xml``: its exit code and the modules it loaded that the fast path
    must not (lxml, oslo.config, jsonschema, libvirt, subprocess, and the
    inventory package beyond ``common.FAST_PATH_INVENTORY``)."""
    code = ("import io, sys\n"
            "from libvirt_hooks import hook\n"
            f"rc = hook.main(['vm', {op!r}, 'begin', '-'],"
            f" stdin=io.BytesIO({xml!r}))\n"
            "heavy = [m for m in ('lxml', 'oslo_config', 'jsonschema',"
            " 'libvirt', 'subprocess') if m in sys.modules]\n"
            "heavy += sorted(m for m in sys.modules"
            f" if m.startswith('accel_inventory') and m not in"
            f" {common.FAST_PATH_INVENTORY!r})\n"
            "print(repr((rc, heavy)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout
    return eval(out)  # noqa: S307 - our own repr of plain lists


def add_pci(root, bdf, vendor, device, klass="0x120000"):
    real = root / "devices" / "pci0000:00" / bdf
    real.mkdir(parents=True)
    (real / "vendor").write_text(f"0x{vendor}\n")
    (real / "device").write_text(f"0x{device}\n")
    (real / "class").write_text(f"{klass}\n")
    links = root / "bus" / "pci" / "devices"
    links.mkdir(parents=True, exist_ok=True)
    (links / bdf).symlink_to(os.path.relpath(real, links))


def card(card_id, bdfs, vendor_product=FPGA):
    functions = [model.Function(id=model.function_id(card_id, 0, i),
                                address=bdf) for i, bdf in enumerate(bdfs)]
    return model.Card(
        id=card_id, kind="pci", vendor_id=vendor_product[0],
        product_id=vendor_product[1], serial=card_id[4:],
        identity_source="dsn", address=bdfs[0], status="ok",
        regions=[model.Region(id=model.region_id(card_id, 0), index=0,
                              resource_class="CUSTOM_ACCEL_FPGA",
                              functions=functions)])


def domain_xml(*devices, uuid=DOMAIN_UUID, name="vm1", domain_type="qemu"):
    dom = etree.Element("domain", type=domain_type)
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "uuid").text = uuid
    etree.SubElement(dom, "memory").text = "65536"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type").text = "hvm"
    devs = etree.SubElement(dom, "devices")
    for device in devices:
        devs.append(device)
    return etree.tostring(dom)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """Two FPGA cards on a fake host, cached, with the hook configured."""
    sysfs = tmp_path / "sys"
    for bdf in ("0000:3b:00.0", "0000:3b:00.1", "0000:5e:00.0"):
        add_pci(sysfs, bdf, *FPGA)
    add_pci(sysfs, "0000:00:1f.0", "8086", "a1c1", "0x060100")
    path = str(tmp_path / "inventory.json")
    inv = model.Inventory(hostname="compute1", cards=[
        card("dsn-00000000000000aa", ["0000:3b:00.0", "0000:3b:00.1"]),
        card("dsn-00000000000000bb", ["0000:5e:00.0"])])
    cache.save(path, inv)
    config = tmp_path / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {sysfs}\n"
                      f"cache_path = {path}\n"
                      f"[libvirt_hooks]\nlog_file = {tmp_path / 'hook.log'}\n")
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(config))
    return {"sysfs": sysfs, "cache": path, "log": tmp_path / "hook.log"}


def nova_domain(uuid, extra_specs):
    """A domain as Nova's libvirt driver writes it: the flavor's extra
    specs in its metadata."""
    specs = "".join(f'<nova:extraSpec name="{k}">{v}</nova:extraSpec>'
                    for k, v in extra_specs.items())
    return (f'<domain type="kvm"><name>instance-1</name><uuid>{uuid}</uuid>'
            f'<metadata><nova:instance xmlns:nova="http://openstack.org/'
            f'xmlns/libvirt/nova/1.1"><nova:flavor name="m1"><nova:extraSpecs>'
            f'{specs}</nova:extraSpecs></nova:flavor></nova:instance>'
            f'</metadata><devices/></domain>').encode()


def call(xml, op="prepare", subop="begin", name="vm1"):
    out, err = io.StringIO(), io.StringIO()
    rc = hook.main([name, op, subop, "-"], stdin=io.BytesIO(xml),
                   stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


class ScannedHost:
    """A FakeSysfs host whose cache the real scanner writes, as the agent
    would, with the hook configured for it; the node bridge's ``ip``
    edge is a recorder (the network is not a unit test's to change)."""

    def __init__(self, tmp_path, monkeypatch):
        self.cache = str(tmp_path / "inventory.json")
        self.log = tmp_path / "hook.log"
        self.config = tmp_path / "nova-accel.conf"
        self.use(FakeSysfs(str(tmp_path / "sys")))
        monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(self.config))
        self.bridged = []
        monkeypatch.setattr(bridge, "ensure_node_bridge", self._bridge)

    def use(self, fs):
        """The host is now ``fs`` (the same cache)."""
        self.fs = fs
        self.config.write_text(f"[inventory]\nsysfs_root = {fs.root}\n"
                               f"cache_path = {self.cache}\n"
                               f"[libvirt_hooks]\nlog_file = {self.log}\n")

    def _bridge(self, name, interface):
        self.bridged.append((name, interface))
        return [f"added {interface} to {name}"]

    def scan(self, **options):
        """What the agent does: scan, reconcile with the cache, keep
        claims (``options`` as scan_cards takes them)."""
        previous = cache.load(self.cache)
        found = sysfs.scan_cards(self.fs.root,
                                 profiles=profiles.load_profiles(),
                                 **options)
        assert not found.warnings
        inv, _ = identity.reconcile(previous, found.cards, "compute1")
        cache.save(self.cache, inventory.keep_claims(previous, inv))

    def inv(self):
        return cache.load(self.cache)

    def card_of(self, kind, **attrs):
        [card] = [c for c in self.inv().cards if c.kind == kind
                  and all(getattr(c, k) == v for k, v in attrs.items())]
        return card

    def claim(self, uuid=DOMAIN_UUID):
        return self.inv().claims.get(uuid)
