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

"""The scanner on FakeSysfs trees, and reconciliation across re-enumeration."""

import os
import threading

from accel_inventory import cache
from accel_inventory import conf as inventory_conf
from accel_inventory import (claims, identity, inventory, model, profiles,
                             sample, sysfs)
from accel_inventory import kinds, provider_tree

PROFILES = profiles.load_profiles()
FPGA = sample.SAMPLE_FPGA


def scan(root):
    return sysfs.scan_cards(str(root), profiles=PROFILES)


def by_kind(cards):
    found = {}
    for card in cards:
        found.setdefault(card.kind, []).append(card)
    return found


def test_sample_host(tmp_path):
    result = scan(sample.build_sample_host(str(tmp_path)))
    assert result.warnings == []
    kinds = by_kind(result.cards)
    [fpga] = kinds["pci"]
    assert fpga.id == "dsn-0011223344556677"
    assert [(r.resource_class, r.size) for r in fpga.regions] == [
        ("CUSTOM_ACCEL_FPGA", 4)] * 3
    [vca] = kinds["ippcie"]
    assert vca.identity_source == "vpd"
    assert [f.attrs["interface"] for f in vca.functions()] == [
        "eth4", "eth5", "eth6"]
    assert len(kinds["usb"]) == 2
    assert {c.regions[0].resource_class for c in kinds["usb"]} == {
        "CUSTOM_ACCEL_MOVIDIUS_NCS"}
    [gpu] = kinds["mdev"]
    assert [f.address for f in gpu.functions()] == [
        "4b20d080-1b54-4048-85b3-a6a62d165c01", None, None, None]


def fpga_card(fs, bus, dsn, numa=0):
    pf = f"0000:{bus:02x}:00.0"
    fs.add_pci(pf, *FPGA, numa_node=numa, dsn=dsn, totalvfs=2)
    fs.add_vfs(pf, [f"0000:{bus:02x}:01.0", f"0000:{bus:02x}:01.1"], "5001")


def test_card_inserted_at_a_lower_bus_shifts_every_bdf(tmp_path):
    before = sample.FakeSysfs(str(tmp_path / "before"))
    fpga_card(before, 0x3b, 0xA)
    first, _ = identity.reconcile(None, scan(before.root).cards, "h")
    first.cards[0].regions[0].functions[1].claimed_by = "vm-1"
    after = sample.FakeSysfs(str(tmp_path / "after"))
    fpga_card(after, 0x3b, 0xB)   # the new card takes the old bus
    fpga_card(after, 0x3c, 0xA)   # the old card moves up one
    inv, changes = identity.reconcile(first, scan(after.root).cards, "h")
    old = inv.card("dsn-000000000000000a")
    assert old.status == model.STATUS_MOVED
    assert old.address == "0000:3c:00.0"
    assert old.previous_addresses == ["0000:3b:00.0"]
    assert [f.id for f in old.functions()] == [
        f.id for f in first.cards[0].functions()]
    assert inv.card("dsn-000000000000000b").status == model.STATUS_ADDED
    assert {c.status for c in changes} == {"moved", "added"}


def test_two_cards_swap_slots(tmp_path):
    before = sample.FakeSysfs(str(tmp_path / "before"))
    fpga_card(before, 0x3b, 0xA)
    fpga_card(before, 0x5e, 0xB)
    first, _ = identity.reconcile(None, scan(before.root).cards, "h")
    after = sample.FakeSysfs(str(tmp_path / "after"))
    fpga_card(after, 0x3b, 0xB)
    fpga_card(after, 0x5e, 0xA)
    inv, _ = identity.reconcile(first, scan(after.root).cards, "h")
    a, b = inv.card("dsn-000000000000000a"), inv.card("dsn-000000000000000b")
    assert (a.address, a.previous_addresses) == ("0000:5e:00.0",
                                                 ["0000:3b:00.0"])
    assert (b.address, b.previous_addresses) == ("0000:3b:00.0",
                                                 ["0000:5e:00.0"])
    assert {c.status for c in inv.cards} == {model.STATUS_MOVED}
    # Each function id now names the VF in the card's new slot.
    assert [(f.id, f.address) for f in a.functions()] == [
        ("dsn-000000000000000a/r0/f0", "0000:5e:01.0"),
        ("dsn-000000000000000a/r0/f1", "0000:5e:01.1")]


def test_movidius_reenumerates_after_firmware_load(tmp_path):
    before = sample.FakeSysfs(str(tmp_path / "before"))
    before.add_usb("3-1", "03e7", "2485", serial="SN1", devnum=4)
    first, _ = identity.reconcile(None, scan(before.root).cards, "h")
    after = sample.FakeSysfs(str(tmp_path / "after"))
    after.add_usb("4-2", "03e7", "f63b", serial="SN1", devnum=9)
    inv, _ = identity.reconcile(first, scan(after.root).cards, "h")
    [stick] = inv.cards
    assert stick.id == first.cards[0].id == "usb-03e7-SN1"
    assert stick.status == model.STATUS_MOVED
    assert stick.product_id == "f63b"
    assert stick.regions[0].resource_class == \
        first.cards[0].regions[0].resource_class
    assert stick.functions()[0].attrs["devnum"] == 9


def test_vca_interfaces_renamed(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path))
    fs.add_vca_card(0, "0000:5e:00.0", ["0000:5f:00.0", "0000:5f:00.1"],
                    serial="VCA-1", interfaces=["eth4", "eth5"])
    first, _ = identity.reconcile(None, scan(fs.root).cards, "h")
    fs.rename_netdev("0000:5f:00.1", "eth5", "enp95s0f1")
    inv, _ = identity.reconcile(first, scan(fs.root).cards, "h")
    [card] = inv.cards
    assert card.id == first.cards[0].id
    assert card.functions()[1].attrs["interface"] == "enp95s0f1"


def test_removed_card_is_lost_and_kept(tmp_path):
    before = sample.FakeSysfs(str(tmp_path / "before"))
    fpga_card(before, 0x3b, 0xA)
    first, _ = identity.reconcile(None, scan(before.root).cards, "h")
    first = claims.record_claim(first, model.Claim(
        "vm-1", ["dsn-000000000000000a/r0/f0"], "hook"))
    empty = sample.FakeSysfs(str(tmp_path / "after"))
    inv, changes = identity.reconcile(first, scan(empty.root).cards, "h")
    inv = inventory.keep_claims(first, inv)
    [lost] = inv.cards
    assert lost.status == model.STATUS_LOST and lost.degraded
    assert lost.address == "0000:3b:00.0"
    assert lost.functions()[0].claimed_by == "vm-1"
    assert inv.claims["vm-1"].functions == ["dsn-000000000000000a/r0/f0"]
    assert changes[0].status == "lost"


def test_cards_that_cannot_be_told_apart_are_ambiguous(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path))
    fpga_card(fs, 0x3b, 0xA)
    fpga_card(fs, 0x5e, 0xA)  # a firmware bug: the same DSN twice
    inv, changes = identity.reconcile(None, scan(fs.root).cards, "h")
    assert [c.status for c in inv.cards] == ["ambiguous", "ambiguous"]
    assert len({c.id for c in inv.cards}) == 2
    assert all(c.status == "ambiguous" for c in changes)


def test_a_cached_card_is_never_matched_to_ambiguous_twins(tmp_path):
    before = sample.FakeSysfs(str(tmp_path / "before"))
    fpga_card(before, 0x3b, 0xA)
    first, _ = identity.reconcile(None, scan(before.root).cards, "h")
    held = "dsn-000000000000000a/r0/f0"
    first = claims.record_claim(first, model.Claim("vm-1", [held], "hook"))
    after = sample.FakeSysfs(str(tmp_path / "after"))
    fpga_card(after, 0x3b, 0xA)   # the same card, same slot...
    fpga_card(after, 0x5e, 0xA)   # ...and a twin with the same DSN
    inv, _ = identity.reconcile(first, scan(after.root).cards, "h")
    inv = inventory.keep_claims(first, inv)
    statuses = {c.id: c.status for c in inv.cards}
    assert statuses == {"dsn-000000000000000a~1": "ambiguous",
                        "dsn-000000000000000a~2": "ambiguous",
                        "dsn-000000000000000a": "lost"}
    # The claim stays on the cached card; neither twin inherits it.
    assert inv.function_index()[held][2].claimed_by == "vm-1"
    assert [f.id for c in inv.cards if c.status == "ambiguous"
            for f in c.functions() if f.claimed_by] == []
    assert claims.inconsistencies(inv) == []


def test_garbage_skips_the_device_with_a_warning(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path))
    fpga_card(fs, 0x3b, 0xA)
    bad_hex = fs.add_pci("0000:60:00.0", *FPGA, dsn=0xC)
    with open(os.path.join(bad_hex, "vendor"), "w") as f:
        f.write("0xzz\n")
    short = fs.add_pci("0000:61:00.0", *FPGA, dsn=0xD)
    with open(os.path.join(short, "config"), "wb") as f:
        f.write(b"\x72\x11")
    links = os.path.join(fs.root, "bus", "pci", "devices")
    os.symlink("../../../devices/pci0000:00/0000:62:00.0",
               os.path.join(links, "0000:62:00.0"))
    os.symlink("/etc", os.path.join(links, "0000:63:00.0"))
    result = scan(fs.root)
    assert [c.id for c in result.cards] == ["dsn-000000000000000a"]
    text = "\n".join(result.warnings)
    assert "0000:60:00.0/vendor" in text and "not hex" in text
    assert "0000:61:00.0/config" in text
    assert "0000:62:00.0" in text
    assert "outside the sysfs root" in text


def test_a_huge_available_instances_skips_the_parent(tmp_path):
    # Found by the scan fuzz test: 2**70 free instances made the scanner
    # build a list of that many functions (MemoryError).
    fs = sample.FakeSysfs(str(tmp_path))
    fs.add_pci("0000:86:00.0", "10de", "1eb8", klass="0x030000", dsn=0xE)
    fs.add_mdev_parent("0000:86:00.0", {"nvidia-222": 2 ** 70}, [])
    result = scan(fs.root)
    assert result.cards == []
    assert "available_instances is 1180591620717411303424" in \
        result.warnings[0]


def test_dsn_and_vpd_parsers_on_edge_cases():
    assert identity.device_serial_number(b"\0" * 64) is None
    assert identity.device_serial_number(
        sample.config_space("1172", "5000", 0x1234)) == 0x1234
    looping = bytearray(4096)
    looping[0x100:0x104] = (0x0001 | (0x100 << 20)).to_bytes(4, "little")
    assert identity.device_serial_number(bytes(looping)) is None
    blob = sample.vpd_blob("card", "SN-9")
    assert identity.vpd_serial(blob) == "SN-9"
    assert identity.vpd_serial(blob[:10]) is None
    assert identity.vpd_serial(b"") is None


GPU_BDF = "0000:86:00.0"
# The new instance's UUID sorts before the one the cache already knows.
EARLY_UUID = "0a000000-0000-4000-8000-000000000001"
LATE_UUID = "f0000000-0000-4000-8000-000000000002"


def gpu_with_one_instance(root):
    fs = sample.FakeSysfs(str(root))
    fs.add_pci(GPU_BDF, *sample.SAMPLE_GPU, klass="0x030000", dsn=0x6)
    fs.add_mdev_parent(GPU_BDF, {"nvidia-222": 3},
                       [(LATE_UUID, "nvidia-222")])
    return fs


def mdev_functions(inv):
    [gpu] = inv.cards
    return {f.id: (f.address, f.claimed_by) for f in gpu.functions()}


def test_mdev_function_ids_survive_a_new_instance_sorting_first(tmp_path):
    fs = gpu_with_one_instance(tmp_path)
    first, _ = identity.reconcile(None, scan(fs.root).cards, "h")
    [held] = [f.id for f in first.cards[0].functions()
              if f.address == LATE_UUID]
    first = claims.record_claim(first, model.Claim("vm-1", [held], "hook"))
    fs.create_mdev(GPU_BDF, EARLY_UUID, "nvidia-222")
    rescanned = scan(fs.root).cards
    assert [f.address for f in rescanned[0].functions()][:2] == [
        EARLY_UUID, LATE_UUID]  # the scanner alone would shift LATE_UUID
    inv, _ = identity.reconcile(first, rescanned, "h")
    inv = inventory.keep_claims(first, inv)
    gpu = "dsn-0000000000000006/r0/f"
    assert held == gpu + "0"
    assert mdev_functions(inv) == {
        gpu + "0": (LATE_UUID, "vm-1"), gpu + "1": (EARLY_UUID, None),
        gpu + "2": (None, None), gpu + "3": (None, None)}
    assert claims.inconsistencies(inv) == []


def test_a_new_mdev_instance_leaves_a_claimed_placeholder_to_its_holder(
        tmp_path):
    fs = gpu_with_one_instance(tmp_path)
    first, _ = identity.reconcile(None, scan(fs.root).cards, "h")
    gpu = "dsn-0000000000000006/r0/f"
    first = claims.record_claim(first, model.Claim("vm-2", [gpu + "1"],
                                                   "placement"))
    fs.create_mdev(GPU_BDF, EARLY_UUID, "nvidia-222")
    inv, _ = identity.reconcile(first, scan(fs.root).cards, "h")
    inv = inventory.keep_claims(first, inv)
    assert mdev_functions(inv) == {
        gpu + "0": (LATE_UUID, None), gpu + "1": (None, "vm-2"),
        gpu + "2": (EARLY_UUID, None), gpu + "3": (None, None)}


def gpu_card(addresses):
    card_id = "dsn-0000000000000006"
    return model.Card(
        id=card_id, kind="mdev", vendor_id="10de", product_id="1eb8",
        serial=None, identity_source="dsn", address=GPU_BDF,
        regions=[model.Region(
            id=model.region_id(card_id, 0), index=0,
            resource_class="CUSTOM_ACCEL_GPU",
            functions=[model.Function(model.function_id(card_id, 0, i),
                                      a)
                       for i, a in enumerate(addresses)])])


def test_mdev_ids_stay_put_when_an_instance_is_removed_and_the_type_shrinks():
    old = gpu_card(["u1", "u2", "u3", None])
    # u1 removed, and the configured type now allows 3 instances in all.
    fresh = gpu_card(["u2", "u3", None])
    identity.keep_mdev_function_ids(old, fresh)
    assert [(f.id[-2:], f.address) for f in fresh.functions()] == [
        ("f0", None), ("f1", "u2"), ("f2", "u3")]


def test_mdev_ids_ignore_cached_functions_with_unreadable_ids():
    old = gpu_card(["u1", "u2", None])
    old.regions[0].functions[0].id = "hand-edited"
    old.regions[0].functions[2].id = old.regions[0].functions[1].id  # f1
    fresh = gpu_card(["u0", "u1", "u2"])
    identity.keep_mdev_function_ids(old, fresh)
    # Only u2 at f1 could be read; u0 and u1 are numbered as new.
    assert [(f.id[-2:], f.address) for f in fresh.functions()] == [
        ("f0", "u0"), ("f1", "u2"), ("f2", "u1")]


def three_pf_card(fs, without_vfs=()):
    """One card of three SR-IOV PFs (a region each) with two VFs each,
    except the PFs in ``without_vfs``, whose VFs are not made (as after a
    reboot, before sriov_numvfs is written again)."""
    for pf in range(3):
        bdf = f"0000:3b:00.{pf}"
        fs.add_pci(bdf, *FPGA, numa_node=0, dsn=0xA, totalvfs=2)
        if pf not in without_vfs:
            fs.add_vfs(bdf, [f"0000:3b:{1 + pf:02x}.{vf}" for vf in (0, 1)],
                       "5001")


def test_a_pf_without_its_vfs_is_a_region_without_functions(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path))
    three_pf_card(fs, without_vfs=(1,))
    [card] = scan(fs.root).cards
    assert [(r.index, r.address, r.size) for r in card.regions] == [
        (0, "0000:3b:00.0", 2), (1, "0000:3b:00.1", 0),
        (2, "0000:3b:00.2", 2)]
    # No PF stands in for its VFs, and the next region's ids stay.
    assert "0000:3b:00.1" not in {f.address for f in card.functions()}
    assert [(f.id, f.address) for f in card.regions[2].functions] == [
        ("dsn-000000000000000a/r2/f0", "0000:3b:03.0"),
        ("dsn-000000000000000a/r2/f1", "0000:3b:03.1")]


def test_a_pf_without_sr_iov_is_its_own_function(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path))
    fs.add_pci("0000:3b:00.0", *FPGA, dsn=0xA)
    [card] = scan(fs.root).cards
    assert [(f.id, f.address) for f in card.functions()] == [
        ("dsn-000000000000000a/r0/f0", "0000:3b:00.0")]


def test_a_held_vf_that_vanished_keeps_its_id_without_a_device(tmp_path):
    before = sample.FakeSysfs(str(tmp_path / "before"))
    three_pf_card(before)
    first, _ = identity.reconcile(None, scan(before.root).cards, "h")
    held = "dsn-000000000000000a/r1/f1"
    first = claims.record_claim(first, model.Claim("vm-1", [held], "hook"))
    after = sample.FakeSysfs(str(tmp_path / "after"))
    three_pf_card(after, without_vfs=(1,))
    inv, _ = identity.reconcile(first, scan(after.root).cards, "h")
    inv = inventory.keep_claims(first, inv)
    [card] = inv.cards
    [kept] = card.regions[1].functions  # the unheld f0 is gone
    assert (kept.id, kept.address, kept.claimed_by) == (held, None, "vm-1")
    assert kept.attrs["previous_addresses"] == ["0000:3b:02.1"]
    assert kinds.vanished(card, kept)
    # Its region stays in placement, reserved: nothing new lands on it.
    [inventory_] = provider_tree.region_inventories(card,
                                                card.regions[1]).values()
    assert (inventory_["total"], inventory_["reserved"]) == (1, 1)
    assert claims.inconsistencies(inv) == []

    # The VFs made again: the held one is back at its address.
    again = sample.FakeSysfs(str(tmp_path / "again"))
    three_pf_card(again)
    inv, _ = identity.reconcile(inv, scan(again.root).cards, "h")
    assert [(f.id, f.address) for f in inv.cards[0].regions[1].functions] \
        == [("dsn-000000000000000a/r1/f0", "0000:3b:02.0"),
            (held, "0000:3b:02.1")]
    assert not any(kinds.vanished(inv.cards[0], f)
               for f in inv.cards[0].functions())


# -- every read inside the root, bounded, and not under the cache lock ------

def test_an_attribute_link_out_of_the_root_is_not_read(tmp_path):
    """Bytes from outside the sysfs root once became a card's id, and so
    a provider's name in placement."""
    fs = sample.FakeSysfs(str(tmp_path / "sys"))
    real = fs.add_pci("0000:3b:00.0", *FPGA, dsn=0x1122)
    outside = tmp_path / "outside-config"
    outside.write_bytes(sample.config_space(*FPGA, dsn=0xBAD))
    os.unlink(os.path.join(real, "config"))
    os.symlink(outside, os.path.join(real, "config"))
    result = scan(fs.root)
    assert not any("bad" in c.id for c in result.cards)
    assert any("config" in w for w in result.warnings), result.warnings


def test_vpd_is_read_no_further_than_the_kernel_gives(tmp_path):
    # VPD has 15 bits of address: a serial past 32 KiB is nothing a card
    # said, and a file that never ends is never read to its end.
    fs = sample.FakeSysfs(str(tmp_path / "sys"))
    real = fs.add_pci("0000:3b:00.0", *FPGA, slot="7")
    with open(os.path.join(real, "vpd"), "wb") as f:
        f.write(b"\x00" * sysfs.VPD_BYTES + sample.vpd_blob("x", "LATE"))
    [card] = scan(fs.root).cards
    assert card.identity_source == "slot"


def test_a_fifo_for_an_attribute_never_hangs_the_scan(tmp_path):
    fs = sample.FakeSysfs(str(tmp_path / "sys"))
    real = fs.add_pci("0000:3b:00.0", *FPGA, slot="7")
    os.mkfifo(os.path.join(real, "vpd"))
    done = []
    worker = threading.Thread(target=lambda: done.append(scan(fs.root)),
                              daemon=True)
    worker.start()
    worker.join(20)
    assert done, "the scan waits on the FIFO"
    [card] = done[0].cards
    assert card.identity_source == "slot"


def test_a_slow_scan_never_holds_the_cache_lock(tmp_path, monkeypatch):
    """One blocking VPD read once made an unrelated domain's start be
    refused: the hook waits for the same lock."""
    root = sample.build_sample_host(str(tmp_path / "sys"))
    conf = inventory_conf.load([], default_config_files=[])
    conf.set_override("sysfs_root", root, group="inventory")
    path = str(tmp_path / "inventory.json")
    conf.set_override("cache_path", path, group="inventory")
    conf.set_override("hostname", "compute1", group="inventory")
    inventory.refresh(conf)
    reading, go_on = threading.Event(), threading.Event()
    scan_for_real = inventory._scan

    def slow(conf_):
        reading.set()
        go_on.wait(20)
        return scan_for_real(conf_)

    monkeypatch.setattr(inventory, "_scan", slow)
    worker = threading.Thread(target=inventory.refresh, args=(conf,))
    worker.start()
    try:
        assert reading.wait(20)
        with cache.locked(path, timeout=1):
            pass  # a claim write gets the lock while sysfs is read
    finally:
        go_on.set()
        worker.join(20)
