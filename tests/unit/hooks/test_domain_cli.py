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

"""``accel-domain`` on libvirt's in-process test driver."""

import io
import os

import libvirt
import pytest
from lxml import etree

from accel_inventory import cache, claims, model
from libvirt_hooks import bridge, cli, xmlgen
from tests.common import attach_host
from tests.common.attach_host import NODE0, STICK, TEST_URI
from tests.common.attach_host import assign, domain_bytes

# The fixtures of the attach tests: the sample host cached, and the test
# driver's host.
host = attach_host.host
conn = attach_host.conn

MOVED_CARD = "dsn-00000000000000aa"
MOVED_FUNCTION = f"{MOVED_CARD}/r0/f0"
OLD_BDF, NEW_BDF = "0000:3b:00.4", "0000:af:00.0"
VM_UUID = "abababab-0000-4000-8000-000000000007"


def run(host, *argv):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--connect", TEST_URI, "--config-file", host["config"],
                   *argv], out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def moved(host, conn):
    """A card the domain was given at OLD_BDF is now at NEW_BDF; the
    domain's definition still names OLD_BDF (nothing is there now)."""
    host["fs"].add_pci(NEW_BDF, "1172", "5000", dsn=0xaa)
    inv = cache.load(host["cache"])
    inv.cards.append(model.Card(
        id=MOVED_CARD, kind="pci", vendor_id="1172", product_id="5000",
        serial="00000000000000aa", identity_source="dsn", address=NEW_BDF,
        status="ok", regions=[model.Region(
            id=model.region_id(MOVED_CARD, 0), index=0,
            resource_class="CUSTOM_ACCEL_FPGA", address=NEW_BDF,
            functions=[model.Function(id=MOVED_FUNCTION,
                                      address=NEW_BDF)])]))
    inv = claims.record_claim(inv, model.Claim(
        consumer=VM_UUID, functions=[MOVED_FUNCTION], source="hook",
        domain_name="vm9"))
    cache.save(host["cache"], inv)
    return conn.defineXML(domain_bytes(
        VM_UUID, xmlgen.pci_hostdev(OLD_BDF), name="vm9").decode())


def hostdev_bdfs(xml):
    return [etree.fromstring(xml).find(
        "devices/hostdev/source/address").get("bus")]


def test_usage_errors_exit_2(host):
    assert run(host)[0] == 2
    assert run(host, "frobnicate")[0] == 2
    assert run(host, "attach")[0] == 2


def test_unknown_domain_is_one_line_and_exit_1(host, conn):
    rc, out, err = run(host, "status", "nosuchvm")
    assert rc == 1 and out == ""
    assert err == (f"accel-domain: error: no domain named nosuchvm on "
                   f"{TEST_URI}; see 'virsh list --all'\n")


def test_unreachable_libvirt_is_one_line_and_exit_1(host):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--connect", "test:///nonexistent/host.xml",
                   "--config-file", host["config"], "status"], out=out,
                  err=err)
    assert rc == 1 and out.getvalue() == ""
    assert err.getvalue().startswith("accel-domain: error: ")
    assert err.getvalue().count("\n") == 1


def test_without_connect_the_configured_libvirt_uri_is_used(host,
                                                           monkeypatch):
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__LIBVIRT_URI",
                       "test:///nonexistent/configured.xml")
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--config-file", host["config"], "status"], out=out,
                  err=err)
    assert rc == 1 and "configured.xml" in err.getvalue()


def test_status_of_a_claim_whose_domain_is_elsewhere(host, conn):
    assign(host, VM_UUID, [STICK])
    rc, out, _err = run(host, "status")
    assert rc == 0
    assert out.splitlines() == [
        f"- ({VM_UUID}): not defined here; placement claim, not running",
        f"  {STICK}: usb 03e7:2485 bus 3 device 4; not in the domain"]


def test_missing_cache_is_reported(host, conn, tmp_path):
    config = tmp_path / "other.conf"
    config.write_text(f"[inventory]\ncache_path = {tmp_path / 'none.json'}"
                      f"\n")
    host = dict(host, config=str(config))
    rc, _out, err = run(host, "status")
    assert rc == 1 and "run 'accel-inventory scan' first" in err


def test_status_shows_each_function_where_it_is_now(host, conn):
    name = bridge.bridge_name("accbr-", NODE0)
    interface = etree.Element("interface", type="bridge")
    etree.SubElement(interface, "source", bridge=name)
    conn.createXML(domain_bytes(VM_UUID, interface, name="vm9").decode())
    assign(host, VM_UUID, [NODE0, STICK])
    rc, out, _err = run(host, "status")
    assert rc == 0
    assert out.splitlines() == [
        f"vm9 ({VM_UUID}): running; placement claim, not running",
        f"  {NODE0}: bridge {name} (node 0000:5f:00.0, interface eth4); "
        f"in the domain",
        f"  {STICK}: usb 03e7:2485 bus 3 device 4; not in the domain"]
    assert run(host, "status", "vm9")[1] == out
    assert run(host, "status", "test") == (
        0, "test holds no accelerator\n", "")


def test_status_shows_the_last_attach_and_its_reason(host, conn):
    uuid = conn.lookupByName("test").UUIDString()
    assign(host, uuid, [STICK])
    assert run(host, "attach", "test")[0] == 1
    out = run(host, "status", "test")[1]
    assert f"  {STICK}: usb 03e7:2485 bus 3 device 4; not in the domain; " \
           f"last failed: this function is not supported" in out


def test_attach_records_the_refusal_and_exits_1(host, conn):
    dom = conn.lookupByName("test")
    before = dom.XMLDesc(0)
    assign(host, dom.UUIDString(), [STICK])
    rc, out, _err = run(host, "attach", "test")
    assert rc == 1
    assert out.startswith(f"{STICK}: failed (usb 03e7:2485 bus 3 device 4): "
                          f"this function is not supported")
    assert dom.XMLDesc(0) == before
    state = cache.load(host["cache"]).claims[dom.UUIDString()].attach
    assert state["devices"][STICK]["state"] == "failed"


def test_attach_needs_a_running_domain_and_a_placement_claim(host, conn,
                                                            moved):
    rc, _out, err = run(host, "attach", "vm9")
    assert rc == 1 and "vm9 is not running" in err
    moved.create()
    rc, _out, err = run(host, "attach", "vm9")
    assert rc == 1 and "holds no functions assigned by placement" in err


def test_detach_absent_devices_is_a_no_op(host, conn):
    dom = conn.lookupByName("test")
    assign(host, dom.UUIDString(), [STICK])
    rc, out, _err = run(host, "detach", "test")
    assert (rc, out) == (0, f"{STICK}: absent (usb 03e7:2485 bus 3 device "
                            f"4)\n")


def test_detach_refused_by_libvirt_keeps_the_claim_running(host, conn):
    name = bridge.bridge_name("accbr-", NODE0)
    interface = etree.Element("interface", type="bridge")
    etree.SubElement(interface, "source", bridge=name)
    conn.createXML(domain_bytes(VM_UUID, interface, name="vm9").decode())
    assign(host, VM_UUID, [NODE0])
    rc, out, _err = run(host, "detach", "vm9")
    assert rc == 1 and "not supported" in out
    claim = cache.load(host["cache"]).claims[VM_UUID]
    assert claim.running and claim.functions == [NODE0]


def test_repair_shows_the_diff_then_applies_it(host, conn, moved):
    rc, out, _err = run(host, "repair", "vm9")
    assert rc == 0
    changed = [line for line in out.splitlines()
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [
        '-        <address domain="0x0000" bus="0x3b" slot="0x00" '
        'function="0x4"/>',
        '+        <address domain="0x0000" bus="0xaf" slot="0x00" '
        'function="0x0"/>']
    assert out.endswith("run 'accel-domain repair vm9 --yes' to redefine "
                        "it\n")
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
    assert hostdev_bdfs(moved.XMLDesc(inactive)) == ["0x3b"]
    rc, out, _err = run(host, "repair", "vm9", "--yes")
    assert rc == 0 and out.endswith("domain vm9: redefined\n")
    assert hostdev_bdfs(conn.lookupByName("vm9").XMLDesc(inactive)) == [
        "0xaf"]
    assert run(host, "repair", "vm9") == (
        0, "domain vm9: its definition is current\n", "")


def test_repair_refuses_what_resolving_cannot_fix(host, conn, moved):
    # The card is gone from its new address too.
    os.unlink(host["fs"].path("bus", "pci", "devices", NEW_BDF))
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE
    before = moved.XMLDesc(inactive)
    rc, out, err = run(host, "repair", "vm9", "--yes")
    assert rc == 1 and out == ""
    assert "would still be refused" in err and "\n" not in err[:-1]
    assert moved.XMLDesc(inactive) == before


def test_start_repairs_then_starts(host, conn, moved):
    rc, out, _err = run(host, "start", "vm9")
    assert rc == 0 and out.endswith("domain vm9: redefined\n"
                                    "domain vm9: started\n")
    dom = conn.lookupByName("vm9")
    assert dom.isActive()
    assert hostdev_bdfs(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)) == [
        "0xaf"]
    rc, _out, err = run(host, "start", "vm9")
    assert rc == 1 and "already running" in err
