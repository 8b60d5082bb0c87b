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

"""Whatever a sysfs attribute holds, the scanner never crashes.

Each example takes the sample host, replaces the contents of one of its
files (a text attribute, binary config space, VPD) with garbage, and
scans. The scan must return; every card the change does not touch comes
out as before; a card the change makes unreadable is skipped with a
warning naming the file's device; and what the scan found makes a valid
cache document. The DSN and VPD parsers get arbitrary bytes directly.
"""

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel_inventory import cache, identity, inventory, profiles, sample
from accel_inventory import sysfs

from tests.common.hypothesis_profiles import examples

PROFILES = profiles.load_profiles()
# Written by the kernel as numbers; anything else in them is garbage.
HEX_ATTRIBUTES = {"vendor", "device", "class", "idVendor", "idProduct"}
DECIMAL_ATTRIBUTES = {"numa_node", "busnum", "devnum", "available_instances"}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The sample host, its files and the clean scan of it. Examples
    change one file and put it back, so they share the tree."""
    root = str(tmp_path_factory.mktemp("template") / "sys")
    sample.build_sample_host(root)
    files = sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _dirs, names in os.walk(root) for f in names
        if not os.path.islink(os.path.join(d, f)))
    clean = sysfs.scan_cards(root, profiles=PROFILES)
    assert clean.warnings == []
    return root, files, clean.cards


def owner_address(relpath, cards):
    """The address of the card whose device directory holds ``relpath``:
    the deepest path component that is a card, region or function
    address."""
    addresses = {}
    for card in cards:
        for where in ([card.address] + [r.address for r in card.regions]
                      + [f.address for f in card.functions()]):
            addresses.setdefault(where, card.address)
    found = [addresses[part] for part in relpath.split(os.sep)
             if part in addresses]
    return found[-1] if found else None


def parses(name, raw):
    """Whether ``raw`` reads as the kernel's number in attribute
    ``name``: then the card may change or be judged another device, and
    need not warn."""
    try:
        text = raw.decode("ascii").strip()
        if name in HEX_ATTRIBUTES:
            int(text, 16)
        elif name in DECIMAL_ATTRIBUTES:
            int(text)
        else:
            return True
    except ValueError:
        return False
    return True


garbage = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=4096, max_size=5000),
    st.text(max_size=24).map(str.encode),
    st.sampled_from([b"", b"\n", b"0x", b"-1\n", b"0x-1", b"0x10000\n",
                     b"ffffffffffffffffffff", b"1_0", b"\xff\xfe",
                     b"0x1172\x00", b"99999999999999999999", b" 1 ",
                     b"0x12 extra", b"\xd9\xa3"]),
    st.integers(-2**70, 2**70).map(lambda n: f"{n}\n".encode()),
    st.integers(-2**70, 2**70).map(lambda n: f"{n:#x}\n".encode()))


def write(path, content):
    with open(path, "wb") as f:
        f.write(content)


@examples(120)
@given(st.data(), garbage)
def test_one_garbage_file_skips_at_most_its_card(template, data, content):
    root, files, clean = template
    relpath = data.draw(st.sampled_from(files), label="file")
    path = os.path.join(root, relpath)
    with open(path, "rb") as f:
        original = f.read()
    write(path, content)
    try:
        result = sysfs.scan_cards(root, profiles=PROFILES)
    finally:
        write(path, original)
    owner = owner_address(relpath, clean)
    after = {c.address: c for c in result.cards}
    for card in clean:
        if card.address != owner:
            assert after.get(card.address) == card, card.id
    if owner not in after and not parses(os.path.basename(relpath),
                                         content):
        where = os.path.realpath(os.path.dirname(path))
        assert any(where in w for w in result.warnings), (
            relpath, result.warnings)
    # What was found can be cached: nothing the schema refuses.
    inv, _ = identity.reconcile(None, result.cards, "compute1")
    cache.encode(inventory.keep_claims(None, inv))


@examples(300)
@given(st.binary(max_size=4096))
def test_device_serial_number_of_any_config_space(config):
    serial = identity.device_serial_number(config)
    assert serial is None or 0 <= serial < 2**64


@examples(300)
@given(st.binary(max_size=600))
def test_vpd_serial_of_any_bytes(vpd):
    serial = identity.vpd_serial(vpd)
    assert serial is None or (isinstance(serial, str) and serial
                              and serial == serial.strip())


@st.composite
def vpd_documents(draw):
    """Well-framed VPD (resource tags with lengths) with random fields, so
    that the keyword walk is reached, not just the framing."""
    fields = b"".join(
        key + bytes([len(value)]) + value for key, value in draw(st.lists(
            st.tuples(st.sampled_from([b"SN", b"PN", b"RV", b"V0"]),
                      st.binary(max_size=20)), max_size=4)))
    lie = draw(st.integers(-3, 3))
    body = bytes([0x90]) + max(0, len(fields) + lie).to_bytes(2, "little")
    ident = draw(st.binary(max_size=10))
    return (bytes([0x82]) + len(ident).to_bytes(2, "little") + ident
            + body + fields + draw(st.sampled_from([b"\x78", b"", b"\x0f"])))


@examples(300)
@given(vpd_documents())
def test_vpd_serial_of_framed_fields(vpd):
    serial = identity.vpd_serial(vpd)
    assert serial is None or isinstance(serial, str)
