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

"""The hook through its entry point, on small sysfs trees and real caches."""

import io
import os
import subprocess

import pytest
from lxml import etree

from accel_inventory import cache, claims, model
from accel_inventory import settings
from libvirt_hooks import domain, guard, hook, xmlgen
from tests.common import hooks
from tests.common.hooks import DOMAIN_UUID, FPGA, OTHER_UUID
from tests.common.hooks import add_pci, call, card, domain_xml

SCHEMA = "/usr/share/libvirt/schemas/domain.rng"

host = hooks.host


@pytest.fixture(scope="module")
def relaxng():
    if not os.path.exists(SCHEMA):
        pytest.fail(f"{SCHEMA} missing: install libvirt-daemon-system "
                    f"(tools/install-deps.sh)")
    return etree.RelaxNG(etree.parse(SCHEMA))


def test_generated_elements_validate_against_libvirts_schema(relaxng):
    for element in (xmlgen.pci_hostdev("0000:3b:00.1"),
                    xmlgen.usb_hostdev("03e7", "2485", bus=3, device=7,
                                       startup_policy="optional"),
                    xmlgen.usb_hostdev("03e7", "f63b"),
                    xmlgen.mdev_hostdev(DOMAIN_UUID),
                    xmlgen.bridge_interface("accbr-1a2b3c4d")):
        doc = etree.fromstring(domain_xml(element))
        assert relaxng.validate(doc), relaxng.error_log


def test_domain_without_hostdev_takes_the_fast_path(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(tmp_path / "absent.conf"))
    assert call(domain_xml()) == (0, "", "")
    # Even garbage passes: a domain without accelerators is never blocked.
    assert call(b"\x00\xff not xml at all")[0] == 0


def test_fast_path_imports_only_the_standard_library():
    assert hooks.fast_path_imports(
        "prepare", b"<domain><name>vm</name></domain>") == (0, [])


def test_first_start_records_the_claim(host):
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.1")))
    assert (rc, out, err) == (0, "", "")
    inv = cache.load(host["cache"])
    claim = inv.claims[DOMAIN_UUID]
    assert claim.functions == ["dsn-00000000000000aa/r0/f1"]
    assert claim.running and claim.source == "hook"
    log = host["log"].read_text()
    assert "starts holding dsn-00000000000000aa/r0/f1" in log


def test_hostdev_the_inventory_does_not_know_is_left_to_libvirt(host):
    assert call(domain_xml(xmlgen.pci_hostdev("0000:00:1f.0"))) == (0, "", "")
    assert DOMAIN_UUID not in cache.load(host["cache"]).claims


def test_address_now_holding_another_device_is_refused(host):
    device = host["sysfs"] / "devices" / "pci0000:00" / "0000:3b:00.1"
    (device / "vendor").write_text("0x8086\n")
    (device / "device").write_text("0xa1c1\n")
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.1")))
    assert rc == 1 and out == ""
    assert err.count("\n") == 1
    assert "domain vm1" in err and "0000:3b:00.1" in err
    assert "8086:a1c1" in err and "accel-domain repair vm1" in err


def test_address_with_nothing_is_refused(host):
    rc, _, err = call(domain_xml(xmlgen.pci_hostdev("0000:af:00.0")))
    assert rc == 1 and "no PCI device is there now" in err


def test_function_of_another_running_domain_is_refused(host):
    assert call(domain_xml(xmlgen.pci_hostdev("0000:5e:00.0"),
                           uuid=OTHER_UUID, name="vm2"))[0] == 0
    rc, _, err = call(domain_xml(xmlgen.pci_hostdev("0000:5e:00.0")))
    assert rc == 1 and "held by running domain vm2" in err


def test_released_function_can_be_taken(host):
    other = domain_xml(xmlgen.pci_hostdev("0000:5e:00.0"), uuid=OTHER_UUID,
                       name="vm2")
    assert call(other)[0] == 0
    assert call(other, op="release", subop="end", name="vm2")[0] == 0
    assert not cache.load(host["cache"]).claims[OTHER_UUID].running
    assert call(domain_xml(xmlgen.pci_hostdev("0000:5e:00.0")))[0] == 0


def _reenumerate(host):
    """Card aa moves from bus 3b to bus 86; bus 3b now holds card bb."""
    inv = cache.load(host["cache"])
    aa, bb = inv.cards
    for function, bdf in zip(aa.regions[0].functions,
                             ("0000:86:00.0", "0000:86:00.1"), strict=True):
        function.address = bdf
    aa.previous_addresses, aa.address, aa.status = (
        ["0000:3b:00.0"], "0000:86:00.0", "moved")
    bb.regions[0].functions[0].address = "0000:3b:00.1"
    cache.save(host["cache"], inv)
    for bdf in ("0000:86:00.0", "0000:86:00.1"):
        add_pci(host["sysfs"], bdf, *FPGA)


def test_reenumerated_card_of_the_same_type_is_allowed_and_logged(host):
    xml = domain_xml(xmlgen.pci_hostdev("0000:3b:00.1"))
    assert call(xml)[0] == 0
    assert call(xml, op="release", subop="end")[0] == 0
    _reenumerate(host)
    assert call(xml)[0] == 0
    assert "re-enumerated host" in host["log"].read_text()
    assert cache.load(host["cache"]).claims[DOMAIN_UUID].functions == [
        "dsn-00000000000000bb/r0/f0"]


def test_strict_identity_refuses_the_other_card(host, monkeypatch):
    xml = domain_xml(xmlgen.pci_hostdev("0000:3b:00.1"))
    assert call(xml)[0] == 0
    assert call(xml, op="release", subop="end")[0] == 0
    _reenumerate(host)
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__STRICT_IDENTITY", "true")
    rc, _, err = call(xml)
    assert rc == 1
    assert "its card dsn-00000000000000aa is now at 0000:86:00.1" in err


def test_restore_prints_the_domain_with_current_addresses(host, relaxng):
    xml = domain_xml(xmlgen.pci_hostdev("0000:3b:00.1"),
                     xmlgen.pci_hostdev("0000:5e:00.0"))
    assert call(xml)[0] == 0
    assert call(xml, op="release", subop="end")[0] == 0
    _reenumerate(host)
    rc, out, err = call(xml, op="restore", subop="begin")
    assert rc == 0, err
    restored = etree.fromstring(out.encode())
    assert relaxng.validate(restored), relaxng.error_log
    bus = [a.get("bus") for a in restored.iterfind(
        "devices/hostdev/source/address")]
    assert bus == ["0x86", "0x3b"]
    fresh = domain_xml(xmlgen.pci_hostdev("0000:86:00.1"),
                       xmlgen.pci_hostdev("0000:3b:00.1"))
    assert call(fresh, op="migrate", subop="begin") == (0, "", "")


@pytest.mark.parametrize("xml", [
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM '
    b'"file:///etc/passwd">]><domain><name>&x;</name><uuid>u</uuid>'
    b"<devices><hostdev/></devices></domain>",
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
    b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
    b"<domain><name>&c;</name><uuid>u</uuid><hostdev/></domain>",
    b"<domain><hostdev " + b"\xff\xfe" * 10,
    b"<domain><name>x</name><uuid>u</uuid><devices>"
    + b"<hostdev/>" * 300000 + b"</devices></domain>",
])
def test_hostile_xml_is_refused_cleanly(host, xml):
    rc, out, err = call(xml)
    assert rc == 1 and out == ""
    assert err.startswith("nova-accel: domain vm1: ") and err.count("\n") == 1
    assert "root:" not in err


def test_install_is_idempotent(tmp_path):
    dest = tmp_path / "hooks" / "qemu.d" / "nova-accel"
    err = io.StringIO()
    assert hook.main(["--install", str(dest)], stderr=err) == 0
    assert "SIGHUP" in err.getvalue()
    assert os.access(dest, os.X_OK)
    err = io.StringIO()
    assert hook.main(["--install", str(dest)], stderr=err) == 0
    assert "already current" in err.getvalue()
    rc = subprocess.run([str(dest), "vm", "start", "begin", "-"],
                        input=b"<domain/>").returncode
    assert rc == 0


def test_a_lost_cards_last_address_never_shadows_the_card_there_now(host):
    # The card at 0000:5e:00.0 went; another took its slot. The lost card
    # keeps its last address, listed after the one that is there now.
    inv = cache.load(host["cache"])
    there = inv.cards[1]
    lost = card("dsn-00000000000000cc", ["0000:5e:00.0"])
    lost.status = model.STATUS_LOST
    inv.cards.append(lost)
    cache.save(host["cache"], inv)
    assert call(domain_xml(xmlgen.pci_hostdev("0000:5e:00.0")))[0] == 0
    assert cache.load(host["cache"]).claims[DOMAIN_UUID].functions == [
        there.regions[0].functions[0].id]


def test_an_mdev_of_unknown_type_names_the_option_as_it_parses():
    uuid = "4b20d080-1b54-4048-85b3-a6a62d165c01"
    fid = model.function_id("dsn-gpu", 0, 0)
    gpu = model.Card(
        id="dsn-gpu", kind="mdev", vendor_id="10de", product_id="1eb8",
        serial=None, identity_source="dsn", address="0000:86:00.0",
        status="ok", regions=[model.Region(
            id=model.region_id("dsn-gpu", 0), index=0,
            resource_class="CUSTOM_ACCEL_MDEV", address="0000:86:00.0",
            functions=[model.Function(id=fid, address=uuid)])])
    inv = claims.record_claim(
        model.Inventory(hostname="compute1", cards=[gpu]),
        model.Claim(consumer=DOMAIN_UUID, functions=[fid], source="hook"))
    dom = domain.parse(domain_xml(xmlgen.mdev_hostdev(uuid)), 1 << 20)
    verdict = guard.check(dom, inv, guard.HostView(mdevs={uuid: None}), None)
    [refusal] = verdict.refusals
    hint = refusal.rsplit("mdev_types ", 1)[1].replace("<type>", "grid-1")
    assert settings.convert("inventory", "mdev_types", hint) == {
        "10de:1eb8": "grid-1"}


def _without_log_file(host, monkeypatch, log_file=None):
    config = os.environ["NOVA_ACCEL_CONFIG"]
    text = open(config).read().replace(f"log_file = {host['log']}\n",
                                       f"log_file = {log_file}\n"
                                       if log_file else "")
    with open(config, "w") as f:
        f.write(text)


@pytest.mark.parametrize("log_file", [None, "missing-dir/hook.log"])
def test_a_missing_log_target_never_puts_a_traceback_in_the_error(
        host, monkeypatch, tmp_path, capfd, log_file):
    # No syslog socket (containers, minimal hosts), and no log file or one
    # that cannot be opened: a refusal is still the one line.
    from libvirt_hooks import decide

    monkeypatch.setattr(decide, "SYSLOG_ADDRESS", str(tmp_path / "no-log"))
    _without_log_file(host, monkeypatch,
                      log_file and str(tmp_path / log_file))
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:af:00.0")))
    captured = capfd.readouterr()
    assert (rc, out, err.count("\n")) == (1, "", 1)
    assert "no PCI device is there now" in err
    assert (captured.out, captured.err) == ("", "")


def test_the_hook_logs_to_syslog_when_it_listens(host, monkeypatch,
                                                 tmp_path):
    import socket

    from libvirt_hooks import decide

    address = str(tmp_path / "log")
    monkeypatch.setattr(decide, "SYSLOG_ADDRESS", address)
    _without_log_file(host, monkeypatch,
                      str(tmp_path / "missing-dir" / "hook.log"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as daemon:
        daemon.bind(address)
        daemon.settimeout(5)
        assert call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.1")))[0] == 0
        lines = [daemon.recv(4096).decode() for _ in range(2)]
    assert "cannot open [libvirt_hooks] log_file" in lines[0]
    assert "starts holding dsn-00000000000000aa/r0/f1" in lines[1]
