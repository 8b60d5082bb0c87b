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

"""A new card kind is one module and its registration.

The first half of this file is that module, for a kind the project does
not ship: a CXL type-2 device (class 0x0502, so no PCI accelerator by
class) that its profile names, one card of one function per device,
given to a domain as a PCI hostdev. Registered, it goes through the
profiles, the scanner, the reconcile, the cache's schema, the provider
tree, the hook (guard and host reads, on its real entry point) and the
device the attach worker would hot-plug, with no other module changed.
"""

import io
import os
from collections.abc import Sequence

import pytest
from lxml import etree

from accel_inventory import cache, contract, identity, kinds, model
from accel_inventory import profiles, provider_tree, sample, sysfs
from accel_inventory.kinds.base import (BUS_PCI, DEVICE_INTERFACE,
                                        DEVICE_PCI, CardKind, named_by_profile,
                                        PciDevice, ScanContext)
from libvirt_hooks import devices, domain, guard, hook, resolve, xmlgen

# -- the kind module --------------------------------------------------------

NAME = "cxl"



def _build(context: ScanContext, group: Sequence[PciDevice]) -> model.Card:
    (dev,) = group
    card_id, source, serial = context.reader.pci_identity(
        dev, context.slots.get(dev.bdf.rsplit(".", 1)[0]))
    profile = context.profile_for(dev.vendor, dev.device)
    function = model.Function(id=model.function_id(card_id, 0, 0),
                              address=dev.bdf)
    return model.Card(
        id=card_id, kind=NAME, vendor_id=dev.vendor, product_id=dev.device,
        serial=serial, identity_source=source, address=dev.bdf,
        numa_node=dev.numa, profile=profile.name,
        regions=[model.Region(id=model.region_id(card_id, 0), index=0,
                              resource_class=profile.resource_class,
                              address=dev.bdf, functions=[function])])


KIND = CardKind(name=NAME, bus=BUS_PCI, function_bus=BUS_PCI,
                device=DEVICE_PCI, takes=named_by_profile(NAME),
                group=lambda dev: dev.bdf, build=_build)

# -- the tests --------------------------------------------------------------

CXL = ("8086", "0d93")
PROFILE = {"name": "cxl-type2", "match": [":".join(CXL)], "kind": NAME,
           "resource_class": "CUSTOM_ACCEL_CXL"}
BDF = "0000:4a:00.0"
DOMAIN_UUID = "0f3a4a52-6c1e-4b8c-9a3e-2d7c2f6b1a01"
OTHER_UUID = "7b9d1f0e-2a33-4c55-8e77-90a1b2c3d4e5"


@pytest.fixture
def registered():
    kinds.register(KIND)
    yield
    kinds.unregister(NAME)


def domain_xml(uuid=DOMAIN_UUID, name="vm1"):
    dom = etree.Element("domain", type="kvm")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "uuid").text = uuid
    etree.SubElement(dom, "devices").append(xmlgen.pci_hostdev(BDF))
    return etree.tostring(dom)


def call(xml, name="vm1"):
    out, err = io.StringIO(), io.StringIO()
    rc = hook.main([name, "prepare", "begin", "-"], stdin=io.BytesIO(xml),
                   stdout=out, stderr=err)
    return rc, err.getvalue()


def test_a_kind_no_module_registers_is_refused_where_kinds_are_named():
    with pytest.raises(profiles.ProfileError, match="kind 'cxl' is not one"):
        profiles.parse(PROFILE, "cxl.json")
    card = model.Card(id="c", kind=NAME, vendor_id="8086", product_id="0d93",
                      serial=None, identity_source="path", address=BDF)
    document = model.to_dict(model.Inventory(hostname="h", cards=[card]))
    assert any(e.startswith("cards/0/kind:")
               for e in cache.schema_errors(document))


def test_a_card_of_a_kind_no_module_registers_is_passed_by():
    """A cache written by a newer version: the hook neither judges nor
    gives its cards' functions."""
    function = model.Function(id="c/r0/f0", address=BDF)
    card = model.Card(id="c", kind=NAME, vendor_id="8086", product_id="0d93",
                      serial=None, identity_source="path", address=BDF,
                      status="ok", regions=[model.Region(
                          id="c/r0", index=0, resource_class="CUSTOM_ACCEL_X",
                          functions=[function])])
    inv = model.Inventory(hostname="h", cards=[card])
    dom = domain.parse(domain_xml(), 1 << 20)
    host = guard.HostView(pci={BDF: guard.PciIdentity(*CXL, "050210")})
    verdict = guard.check(dom, inv, host, "boot")
    assert verdict.allowed and verdict.functions == []
    with pytest.raises(devices.DeviceError,
                       match="card c is of unknown kind 'cxl'"):
        devices.element_for(card, function, devices.HostNow(), "accbr-")


def test_a_registered_kind_goes_from_sysfs_to_the_hook(registered, tmp_path,
                                                        monkeypatch):
    profile = profiles.parse(PROFILE, "cxl.json")
    fake = sample.FakeSysfs(str(tmp_path / "sys"))
    fake.add_pci(BDF, *CXL, klass="0x050210", dsn=0xC0FFEE)
    fake.add_pci("0000:3b:00.0", "1172", "5000")  # an FPGA: still pci

    scanned = sysfs.scan_cards(fake.root, profiles=[profile])
    assert scanned.warnings == []
    assert [(c.kind, c.address) for c in scanned.cards] == [
        ("pci", "0000:3b:00.0"), (NAME, BDF)]
    inv, _ = identity.reconcile(None, scanned.cards, "compute1")
    cxl = inv.card("dsn-0000000000c0ffee")
    [function] = cxl.functions()

    specs = provider_tree.desired_tree(inv, "compute1")
    assert any(contract.kind_trait(NAME) in spec.traits
               and "CUSTOM_ACCEL_CXL" in spec.inventories for spec in specs)

    path = str(tmp_path / "inventory.json")
    cache.save(path, inv)  # the schema admits the registered kind
    config = tmp_path / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {fake.root}\n"
                      f"cache_path = {path}\n[libvirt_hooks]\n"
                      f"log_file = {tmp_path / 'hook.log'}\n")
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(config))
    assert call(domain_xml()) == (0, "")
    assert cache.load(path).claims[DOMAIN_UUID].functions == [function.id]
    rc, err = call(domain_xml(OTHER_UUID, "vm2"), name="vm2")
    assert rc == 1 and f"function {function.id} is held by running " \
        f"domain vm1" in err

    now = resolve.host_now(fake.root, cxl, function)
    element = devices.element_for(cxl, function, now, "accbr-")
    assert devices.device_key(element) == ("pci", BDF)
    # Another device at its address now: the guard and the worker refuse.
    os.remove(os.path.join(fake.root, "bus", "pci", "devices", BDF))
    fake.add_pci(BDF, "10de", "2330")
    with pytest.raises(devices.DeviceError, match="10de:2330"):
        devices.element_for(cxl, function,
                            resolve.host_now(fake.root, cxl, function),
                            "accbr-")


def test_every_kind_is_given_as_a_device_kind_the_hook_builds():
    """What a newcomer's kind may name as its ``device`` without touching
    the hook: the device kinds the hook's tables have rows for."""
    hostdevs = set(domain.HOSTDEV_SOURCES)
    for kind in kinds.registered():
        assert kind.device in devices.ELEMENTS, kind.name
        assert kind.device in hostdevs | {DEVICE_INTERFACE}, kind.name
        assert kind.device in resolve.NOW_READERS or kind.device == \
            DEVICE_INTERFACE, kind.name
