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

"""The installed hook under a real libvirtd."""

import os

import libvirt
import pytest

from accel_inventory import cache, model
from libvirt_hooks import xmlgen
from tests.common.libvirtd import domain_xml

FPGA = ("1172", "5000")
STALE_BDF = "0000:3b:00.1"


def write_host(state, vendor_product):
    """The test sysfs: ``STALE_BDF`` now holds ``vendor_product``; the
    cache still says an FPGA function is there."""
    real = state / "sys" / "devices" / "pci0000:00" / STALE_BDF
    real.mkdir(parents=True, exist_ok=True)
    for name, value in (("vendor", vendor_product[0]),
                        ("device", vendor_product[1]),
                        ("class", "120000")):
        (real / name).write_text(f"0x{value}\n")
    links = state / "sys" / "bus" / "pci" / "devices"
    links.mkdir(parents=True, exist_ok=True)
    if not (links / STALE_BDF).is_symlink():
        (links / STALE_BDF).symlink_to(os.path.relpath(real, links))
    card_id = "dsn-00000000000000aa"
    cache.save(str(state / "inventory.json"), model.Inventory(
        hostname="it", cards=[model.Card(
            id=card_id, kind="pci", vendor_id=FPGA[0], product_id=FPGA[1],
            serial="aa", identity_source="dsn", address=STALE_BDF,
            status="ok", regions=[model.Region(
                id=model.region_id(card_id, 0), index=0,
                resource_class="CUSTOM_ACCEL_FPGA",
                functions=[model.Function(
                    id=model.function_id(card_id, 0, 0),
                    address=STALE_BDF)])])]))


def test_domain_without_accelerators_starts(define):
    dom = define(domain_xml("nova-accel-it-plain"))
    dom.create()
    assert dom.isActive()


def test_stale_pci_hostdev_is_refused_with_our_message(libvirtd, define):
    write_host(libvirtd["state"], ("8086", "1521"))
    dom = define(domain_xml("nova-accel-it-stale",
                            xmlgen.pci_hostdev(STALE_BDF)))
    with pytest.raises(libvirt.libvirtError) as error:
        dom.create()
    message = str(error.value)
    assert "nova-accel: domain nova-accel-it-stale" in message
    assert "8086:1521" in message and "accel-domain repair" in message
    assert not dom.isActive()
