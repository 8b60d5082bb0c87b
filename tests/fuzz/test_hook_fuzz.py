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

"""Whatever domain XML libvirt hands the hook, it answers with an exit code
it defines (0 allow, 1 refuse with one line, 2 usage), never a traceback,
and the cache it leaves behind is valid.

Three sources of documents: arbitrary bytes that reach the full path,
domains built from the elements the hook reads with hostile values in
every attribute, and real domains cut or corrupted byte-wise.
"""

import io
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from accel_inventory import cache, claims, model
from libvirt_hooks import hook, xmlgen
from tests.common.hooks import FPGA, add_pci, card, domain_xml

from tests.common.hypothesis_profiles import examples

FULL_PATH_OPS = sorted(hook.FULL_PATH_OPS)
BDFS = ["0000:3b:00.0", "0000:3b:00.1", "0000:5e:00.0"]
HOOK_EXITS = {0, hook.EXIT_REFUSED, hook.EXIT_USAGE}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A small cached host the hook is configured for, shared by every
    example (hypothesis runs them all inside one test); ``pristine`` is
    its cache as first saved."""
    tmp = tmp_path_factory.mktemp("fuzzhost")
    sysfs = tmp / "sys"
    for bdf in BDFS:
        add_pci(sysfs, bdf, *FPGA)
    path = str(tmp / "inventory.json")
    cache.save(path, model.Inventory(hostname="compute1", cards=[
        card("dsn-00000000000000aa", BDFS[:2]),
        card("dsn-00000000000000bb", BDFS[2:])]))
    config = tmp / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {sysfs}\ncache_path = "
                      f"{path}\n[libvirt_hooks]\nlog_file = "
                      f"{tmp / 'hook.log'}\nmax_xml_bytes = 65536\n")
    pristine = {p: pathlib.Path(p).read_bytes()
                for p in (path, cache.good_copy_path(path))}
    before = os.environ.get("NOVA_ACCEL_CONFIG")
    os.environ["NOVA_ACCEL_CONFIG"] = str(config)
    yield {"cache": path, "config": str(config), "pristine": pristine}
    if before is None:
        del os.environ["NOVA_ACCEL_CONFIG"]
    else:
        os.environ["NOVA_ACCEL_CONFIG"] = before


def check_answer(rc, out, err, op):
    assert rc in HOOK_EXITS, (rc, err)
    if rc != 0:
        # One refusal, on one line (libxml2's message for a NUL byte
        # holds a newline of its own).
        assert err.startswith("nova-accel: domain ") and \
            err.endswith("\n") and err.count("\n") == 1, err
    elif (op, "begin") not in (("migrate", "begin"), ("restore", "begin")):
        assert out == ""


def check_cache(path):
    inv = cache.load(path, validate=True)
    assert claims.inconsistencies(inv) == []


def run_hook(host, xml, op_subop, name="vm1"):
    """The hook on the cache as it was first saved, so that a failing
    example is the one that broke it (and hypothesis can shrink it)."""
    for path, data in host["pristine"].items():
        pathlib.Path(path).write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    rc = hook.main([name, *op_subop, "-"], stdin=io.BytesIO(xml),
                   stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


# -- hostile values in the places the hook reads ----------------------------

def hostile_text():
    return st.one_of(
        st.text(max_size=20),
        st.sampled_from(["", " ", "0x", "-1", "0x-1", "1e3", "0x3b", "59",
                         "0xffffffffffffffffffff", "../../etc", "..",
                         "0000:3b:00.1", "/", "nan", "\u0663", "0b1",
                         "4b20d080-1b54-4048-85b3-a6a62d165c01",
                         "00000000-0000-0000-0000-000000000000/../x"]),
        st.integers(-2**70, 2**70).map(str),
        st.integers(0, 0xff).map(hex))


def xml_safe(text):
    # lxml refuses control characters in attributes before any XML is
    # written; libvirt could not have sent them either.
    return "".join(c for c in text if c in "\t\n\r" or (
        " " <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd"))


@st.composite
def hostile_domains(draw):
    devices = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["pci", "mdev", "usb", "scsi", "",
                                     "PCI", "interface"]))
        if kind == "interface":
            element = etree.Element("interface", type="bridge")
            etree.SubElement(element, "source",
                             bridge=xml_safe(draw(hostile_text())))
        else:
            element = etree.Element("hostdev", mode="subsystem",
                                    type=kind, managed="yes")
            source = etree.SubElement(element, "source")
            if draw(st.booleans()):
                address = etree.SubElement(source, "address")
                for attr in draw(st.sets(st.sampled_from(
                        ["domain", "bus", "slot", "function", "uuid",
                         "device"]))):
                    address.set(attr, xml_safe(draw(hostile_text())))
            if kind == "usb":
                for tag in draw(st.sets(st.sampled_from(["vendor",
                                                         "product"]))):
                    etree.SubElement(source, tag,
                                     id=xml_safe(draw(hostile_text())))
        devices.append(element)
    devices += [xmlgen.pci_hostdev(bdf) for bdf in draw(
        st.lists(st.sampled_from(BDFS + ["0000:af:00.0"]), max_size=3))]
    xml = domain_xml(*draw(st.permutations(devices)),
                     uuid=xml_safe(draw(st.one_of(
                         st.uuids().map(str), hostile_text()))),
                     name=xml_safe(draw(hostile_text())) or "x")
    return xml


@examples(150)
@given(hostile_domains(), st.sampled_from(FULL_PATH_OPS))
def test_hostile_values_get_a_defined_answer(host, xml, op_subop):
    rc, out, err = run_hook(host, xml, op_subop)
    check_answer(rc, out, err, op_subop[0])
    check_cache(host["cache"])


# -- anything at all, as long as it reaches the full path --------------------

# Element syntax that sends a domain down the full path.
FULL_PATH_MARKERS = (b"<hostdev ", b"<hostdev>", b"<hostdev type='mdev'>")


@examples(150)
@given(st.binary(max_size=400), st.sampled_from(FULL_PATH_MARKERS),
       st.integers(0, 400), st.sampled_from(FULL_PATH_OPS))
def test_arbitrary_bytes_get_a_defined_answer(host, noise, marker, at,
                                              op_subop):
    xml = noise[:at] + marker + noise[at:]
    rc, out, err = run_hook(host, xml, op_subop)
    check_answer(rc, out, err, op_subop[0])
    check_cache(host["cache"])


@st.composite
def corrupted_domains(draw):
    """A domain the hook accepts, then cut, with bytes flipped, or with a
    piece of XML syntax dropped in somewhere."""
    data = bytearray(domain_xml(xmlgen.pci_hostdev(BDFS[0]),
                                xmlgen.mdev_hostdev(
                                    "4b20d080-1b54-4048-85b3-a6a62d165c01"),
                                xmlgen.bridge_interface("accbr-1a2b3c4d")))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        how = draw(st.sampled_from(["cut", "flip", "insert"]))
        if how == "cut":
            del data[at:at + draw(st.integers(1, 40))]
        elif how == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        else:
            data[at:at] = draw(st.sampled_from([
                b"<", b">", b"&", b"&x;", b"\x00", b"<!--", b"]]>",
                b"<![CDATA[", b'<!DOCTYPE d [<!ENTITY x "y">]>',
                b"<?pi x?>", b"\xc3\x28", b"'", b'"', b"xmlns:a='b'",
                b"<hostdev type='pci'><source><address bus='0x3b'/>"
                b"</source></hostdev>"]))
    return bytes(data)


@examples(150)
@given(corrupted_domains(), st.sampled_from(FULL_PATH_OPS))
def test_corrupted_domains_get_a_defined_answer(host, xml, op_subop):
    rc, out, err = run_hook(host, xml, op_subop)
    check_answer(rc, out, err, op_subop[0])
    check_cache(host["cache"])


# -- and through the installed entry point, as libvirt runs it ---------------

@examples(12)
@given(st.one_of(hostile_domains(), corrupted_domains()))
def test_the_entry_point_never_prints_a_traceback(host, xml):
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "accel-libvirt-hook"),
         "vm1", "prepare", "begin", "-"], input=xml, capture_output=True,
        env=dict(os.environ, NOVA_ACCEL_CONFIG=host["config"]), timeout=60)
    err = proc.stderr.decode()
    assert "Traceback" not in err
    check_answer(proc.returncode, proc.stdout.decode(), err, "prepare")
