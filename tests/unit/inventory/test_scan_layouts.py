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

"""The scanner on layouts others recorded on real hardware
(tests/common/layouts.py names the source of each field), and their
re-enumerations: ids, providers and claims stay."""

import os
import shutil

import pytest

from accel_inventory import claims, contract, identity, kinds, model
from accel_inventory import profiles, provider_tree, sample, sysfs
from tests.common import layouts

BUILT_IN = profiles.load_profiles()


def scan(fs, extra=(), **options):
    return sysfs.scan_cards(fs.root, profiles=[*BUILT_IN, *extra], **options)


def profile(name, match, rc, **fields):
    return profiles.parse({"name": name, "match": match,
                           "resource_class": rc, **fields}, f"{name}.json")


def fresh(tmp_path, name):
    shutil.rmtree(tmp_path / name, ignore_errors=True)
    return sample.FakeSysfs(str(tmp_path / name))


def rescan(previous, fs, extra=(), **options):
    result = scan(fs, extra, **options)
    assert result.warnings == []
    return identity.reconcile(previous, result.cards, "compute1")


def hold(inv, consumer, *fids):
    return claims.record_claim(inv, model.Claim(
        consumer=consumer, functions=list(fids), source="placement"))


def providers(inv):
    return {s.source_id: s.uuid
            for s in provider_tree.desired_tree(inv, "root")}


# -- vGPU mdevs on the VFs of an NVIDIA A40 --------------------------------

def test_mdev_vgpus_on_vfs_are_one_card_of_the_gpu(tmp_path):
    fs = fresh(tmp_path, "a")
    vfs = layouts.a40_mdev_on_vfs(fs)
    result = scan(fs)
    assert result.warnings == []
    [gpu] = result.cards
    assert (gpu.kind, gpu.address) == ("mdev", layouts.A40_PF)
    [region] = gpu.regions
    assert region.address == layouts.A40_PF
    assert region.attrs["mdev_type"] == "nvidia-558"  # the one in use
    assert region.attrs["parents"] == vfs
    # The instance on virtfn0, then one slot per free VF, up to the 24
    # A40-2Q vGPUs the GPU takes (max_instance), each on its VF.
    assert region.size == 24
    first, second = region.functions[:2]
    assert (first.address, first.attrs["parent"]) == (
        layouts.A40_INSTANCE, vfs[0])
    assert (second.address, second.attrs["parent"]) == (None, vfs[1])
    assert {f.attrs["parent"] for f in region.functions} == set(vfs[:24])


def test_a_profile_naming_the_mdev_kind_gives_no_card_of_bare_vfs(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.a40_mdev_on_vfs(fs)
    named = profile("a40", ["10de:2235"], "CUSTOM_ACCEL_VGPU_A40",
                    kind="mdev")
    [gpu] = scan(fs, [named]).cards
    assert gpu.kind == "mdev"
    assert gpu.regions[0].resource_class == "CUSTOM_ACCEL_VGPU_A40"


def test_the_type_the_gpus_vgpus_use_is_offered(tmp_path):
    """Sorted first is nvidia-557; the vGPUs are nvidia-560."""
    fs = fresh(tmp_path, "a")
    layouts.a40_mdev_on_vfs(fs, instances={
        3: ("2b0f1c1e-0000-4000-8000-000000000003", 560)})
    [gpu] = scan(fs).cards
    assert gpu.regions[0].attrs["mdev_type"] == "nvidia-560"
    assert gpu.regions[0].size == 12  # 48 GB / 4 GB
    assert gpu.regions[0].functions[0].address == \
        "2b0f1c1e-0000-4000-8000-000000000003"


def test_several_types_and_none_in_use_is_said(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.a40_mdev_on_vfs(fs, instances={})
    result = scan(fs)
    assert result.cards == []
    [warning] = result.warnings
    assert "none in use; set [inventory] mdev_types 10de:2235=<type>" in \
        warning
    [gpu] = scan(fs, mdev_types={"10de:2235": "nvidia-559"}).cards
    assert gpu.regions[0].attrs["mdev_type"] == "nvidia-559"
    assert gpu.regions[0].size == 16


def test_mdev_vgpus_on_vfs_survive_re_enumeration(tmp_path):
    other = "7c2d9e40-0000-4000-8000-000000000007"
    fs = fresh(tmp_path, "a")
    layouts.a40_mdev_on_vfs(fs, instances={
        0: (layouts.A40_INSTANCE, 558), 5: (other, 558)})
    first, _ = rescan(None, fs)
    [gpu] = first.cards
    by_uuid = {f.address: f.id for f in gpu.functions() if f.address}
    free = [f.id for f in gpu.functions() if not f.address][0]
    first = hold(first, "vm-1", by_uuid[other], free)
    before = providers(first)
    # After a reboot the VFs come back in another order and the mdevs are
    # made again on other VFs; then the GPU moves to another slot.
    fs = fresh(tmp_path, "b")
    layouts.a40_mdev_on_vfs(fs, instances={
        2: (other, 558), 9: (layouts.A40_INSTANCE, 558)})
    inv, _ = rescan(first, fs)
    fs = fresh(tmp_path, "c")
    vfs = layouts.a40_mdev_on_vfs(fs, pf="0000:c1:00.0",
                                  root_port="0000:c0:01.1", instances={
                                      1: (other, 558),
                                      3: (layouts.A40_INSTANCE, 558)})
    inv, changes = rescan(claims.with_claimed_by(inv), fs)
    [gpu] = inv.cards
    assert gpu.address == "0000:c1:00.0"
    assert gpu.status == model.STATUS_MOVED
    now = {f.address: f for f in gpu.functions() if f.address}
    assert now[other].id == by_uuid[other]
    assert now[other].attrs["parent"] == vfs[1]
    assert now[layouts.A40_INSTANCE].id == by_uuid[layouts.A40_INSTANCE]
    assert free in {f.id for f in gpu.functions() if not f.address}
    assert inv.claims["vm-1"].functions == [by_uuid[other], free]
    assert providers(inv) == before


# -- NVIDIA's vendor-specific VFIO vGPUs on an A10 -------------------------

def test_vendor_vfio_vgpus_are_the_vfs_of_one_type(tmp_path):
    fs = fresh(tmp_path, "a")
    vfs = layouts.a10_vendor_vfio(fs, current={0: 593, 1: 593})
    result = scan(fs)
    assert result.warnings == []
    [gpu] = result.cards
    assert (gpu.kind, gpu.address) == ("vendor_vfio", layouts.A10_PF)
    [region] = gpu.regions
    assert region.attrs == {"vgpu_type_id": 593,
                            "vgpu_type_name": "NVIDIA A10-4Q"}
    assert [f.address for f in region.functions] == vfs
    assert [f.id for f in region.functions] == [
        model.function_id(gpu.id, 0, n) for n in range(32)]
    assert all(f.attrs["vgpu_type_id"] == 593 for f in region.functions)
    assert not any(f.attrs.get("unavailable") for f in region.functions)
    assert kinds.of(gpu).device == "pci"
    assert contract.kind_trait("vendor_vfio") in \
        provider_tree.region_traits(gpu, region)


def test_vendor_vfio_vfs_that_cannot_take_the_type_are_reserved(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.a10_vendor_vfio(fs, current={0: 593, 1: 597})
    # Two types in use: which one to offer is the operator's.
    result = scan(fs)
    assert result.cards == [] and "vgpu_types 10de:2236=" in \
        result.warnings[0]
    [gpu] = scan(fs, vgpu_types={"10de:2236": "A10-4Q"}).cards
    [region] = gpu.regions
    assert region.attrs["vgpu_type_id"] == 593
    assert region.functions[1].attrs["unavailable"] == \
        "holds vGPU type 597"
    [inventory] = provider_tree.region_inventories(gpu, region).values()
    assert (inventory["total"], inventory["reserved"]) == (32, 1)
    # The GPU is full: its free VFs list nothing; only the made ones give.
    fs = fresh(tmp_path, "b")
    layouts.a10_vendor_vfio(fs, current={0: 593, 1: 593}, full=True)
    [gpu] = scan(fs).cards
    [inventory] = provider_tree.region_inventories(
        gpu, gpu.regions[0]).values()
    assert (inventory["total"], inventory["reserved"]) == (32, 30)


def test_vendor_vfio_type_is_configured_by_id_or_name(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.a10_vendor_vfio(fs)
    assert "none in use" in scan(fs).warnings[0]
    for value in ("591", "NVIDIA A10-2Q", "A10-2Q"):
        [gpu] = scan(fs, vgpu_types={"10de:2236": value}).cards
        assert gpu.regions[0].attrs == {"vgpu_type_id": 591,
                                        "vgpu_type_name": "NVIDIA A10-2Q"}
    assert "no vGPU type named 'A10-99Q'" in scan(
        fs, vgpu_types={"10de:2236": "A10-99Q"}).warnings[0]


def test_vendor_vfio_vfs_keep_their_ids_across_re_enumeration(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.a10_vendor_vfio(fs, current={4: 593})
    first, _ = rescan(None, fs)
    fid = first.cards[0].regions[0].functions[4].id
    first = hold(first, "vm-1", fid)
    before = providers(first)
    # The GPU in another slot: VF n is still virtfn n.
    fs = fresh(tmp_path, "b")
    vfs = layouts.a10_vendor_vfio(fs, pf="0000:81:00.0",
                                  root_port="0000:80:03.1", current={4: 593})
    inv, _ = rescan(first, fs)
    [gpu] = inv.cards
    function = inv.function_index()[fid][2]
    assert function.address == vfs[4]
    assert inv.claims["vm-1"].functions == [fid]
    assert providers(inv) == before


# -- a profile's kind, per-function profiles -------------------------------

def test_pci_takes_no_device_whose_profile_names_another_kind(tmp_path):
    fs = fresh(tmp_path, "a")
    fs.add_pci("0000:3b:00.0", "1172", "5000", dsn=1)  # class 0x1200
    as_node = profile("acme", ["1172:5000"], "CUSTOM_ACCEL_ACME",
                      kind="ippcie")
    dev = sysfs.Reader(fs.root).pci_device("0000:3b:00.0")
    context = sysfs.ScanContext(reader=sysfs.Reader(fs.root),
                                profile_for=lambda v, p: as_node)
    assert not kinds.get("pci").takes(dev, as_node, context)
    assert kinds.get("pci").takes(dev, None, context)
    as_usb = profile("acme", ["1172:5000"], "CUSTOM_ACCEL_ACME", kind="usb")
    result = scan(fs, [as_usb])
    assert result.cards == []
    assert "profile acme names kind usb, which this device is not" in \
        result.warnings[0]


def test_each_pf_of_one_card_takes_its_own_profile(tmp_path):
    fs = fresh(tmp_path, "a")
    pfs = layouts.n6000(fs)
    fpga = profile("n6000", ["8086:bcce"], "CUSTOM_ACCEL_N6000")
    virtio = profile("n6000-virtio", ["1af4:1000"],
                     "CUSTOM_ACCEL_N6000_VIRTIO_NET")
    result = scan(fs, [fpga, virtio])
    assert result.warnings == []
    [card] = result.cards
    assert [(r.address, r.resource_class, r.size) for r in card.regions] == [
        (pfs[0], "CUSTOM_ACCEL_N6000", 3), (pfs[1], "CUSTOM_ACCEL_N6000", 0),
        (pfs[2], "CUSTOM_ACCEL_N6000", 1),
        (pfs[3], "CUSTOM_ACCEL_N6000_VIRTIO_NET", 1),
        (pfs[4], "CUSTOM_ACCEL_N6000", 1)]
    virtio_region = card.regions[3]
    assert virtio_region.attrs["profile"] == "n6000-virtio"
    assert virtio_region.functions[0].attrs == {"vendor_id": "1af4",
                                                "product_id": "1000"}
    assert card.regions[0].functions[0].attrs == {"product_id": "bccf"}
    # Without a profile each PF still gets a class of its own.
    [card] = scan(fs).cards
    assert card.regions[3].resource_class == "CUSTOM_ACCEL_PCI_1AF4_1000"
    assert card.regions[0].resource_class == "CUSTOM_ACCEL_PCI_8086_BCCE"


# -- FPGA regions ----------------------------------------------------------

def test_fpga_regions_give_compat_and_afu_traits(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.n3000_dfl(fs)
    [card] = scan(fs).cards
    [region] = card.regions
    assert region.attrs == {"fpga_region": "region0",
                            "fpga_compat_ids": [layouts.N3000_COMPAT],
                            "fpga_afu_ids": [layouts.N3000_AFU]}
    traits = provider_tree.region_traits(card, region)
    assert "CUSTOM_ACCEL_FPGA_AFU_9AEFFE5F84570612C000C9660D824272" in traits
    assert "CUSTOM_ACCEL_FPGA_COMPAT_A5D72A3CC8B04939912CF715E5DC10CA" in \
        traits
    fs = fresh(tmp_path, "b")
    layouts.n6000(fs)
    [card] = scan(fs).cards
    assert card.regions[0].attrs == {"fpga_region": "region0",
                                     "fpga_compat_ids": [
                                         layouts.N6000_COMPAT]}
    assert card.regions[1].attrs == {"fpga_region": "region1"}


def test_an_afu_id_that_is_not_an_id_is_garbage(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.n3000_dfl(fs)
    port = os.path.realpath(os.path.join(
        fs.root, "class", "fpga_region", "region0", "dfl-port.0", "afu_id"))
    with open(port, "w") as f:
        f.write("not-an-id\n")
    result = scan(fs)
    assert result.cards == []
    assert "afu_id: 'notanid' is not a 128-bit hex id" in result.warnings[0]


# -- a board behind its own switch (PAC N3000) -----------------------------

N3000_PROFILES = [
    profile("n3000-fpga", ["8086:0b30"], "CUSTOM_ACCEL_N3000_FPGA",
            group="switch"),
    profile("n3000-fec", ["8086:0d8f"], "CUSTOM_ACCEL_N3000_FEC",
            group="switch")]


def test_a_board_behind_its_own_switch_is_one_card(tmp_path):
    fs = fresh(tmp_path, "a")
    board = layouts.n3000_board(fs)
    # Without a profile or a slot: two unrelated cards, as before.
    assert len(scan(fs).cards) == 2
    result = scan(fs, N3000_PROFILES)
    assert result.warnings == []
    [card] = result.cards
    assert card.id == f"dsn-{layouts.N3000_DSN:016x}"
    assert [(r.address, r.resource_class, r.size) for r in card.regions] == [
        (board["fpga"], "CUSTOM_ACCEL_N3000_FPGA", 0),
        (board["fec"], "CUSTOM_ACCEL_N3000_FEC", 2)]
    assert card.regions[1].attrs["product_id"] == "0d8f"
    assert [f.attrs for f in card.regions[1].functions] == [
        {"product_id": "0d90"}] * 2
    # The firmware's slot holding the switch says the same, no profile
    # needed; the card is then named by the FPGA's serial too.
    fs = fresh(tmp_path, "b")
    layouts.n3000_board(fs, slot="5")
    [card] = scan(fs).cards
    assert card.id == f"dsn-{layouts.N3000_DSN:016x}"
    assert [r.address for r in card.regions] == [board["fpga"],
                                                 board["fec"]]


def test_a_board_keeps_its_id_in_another_slot(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.n3000_board(fs)
    first, _ = rescan(None, fs, N3000_PROFILES)
    fid = first.cards[0].regions[1].functions[1].id
    first = hold(first, "vm-1", fid)
    before = providers(first)
    fs = fresh(tmp_path, "b")
    board = layouts.n3000_board(fs, bus=0x5a)
    inv, _ = rescan(first, fs, N3000_PROFILES)
    assert inv.function_index()[fid][2].address == board["fec_vfs"][1]
    assert providers(inv) == before


# -- Myriad X sticks with a placeholder serial -----------------------------

def sticks(inv):
    return sorted((c.id, c.status, c.address) for c in inv.cards)


def test_the_built_in_movidius_profile_names_the_placeholder():
    [movidius] = [p for p in BUILT_IN if p.name == "intel-movidius"]
    assert movidius.placeholder_serials == (layouts.PLACEHOLDER,)


def test_two_sticks_in_boot_mode_are_two_cards(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.myriad_boot(fs)
    layouts.myriad_boot(fs, "1-4.4.1", devnum=10)
    inv, changes = rescan(None, fs)
    assert sticks(inv) == [
        ("usbport-03e7-1-4.4.1", model.STATUS_ADDED, "1-4.4.1"),
        ("usbport-03e7-1-4.4.3", model.STATUS_ADDED, "1-4.4.3")]
    assert all(c.serial is None and c.attrs["placeholder_serial"] ==
               layouts.PLACEHOLDER for c in inv.cards)


@pytest.mark.parametrize("booted_serial", [None, layouts.MXID])
@pytest.mark.parametrize("peers", [True, False])
def test_a_stick_that_loads_its_firmware_stays_the_same(tmp_path, peers,
                                                        booted_serial):
    fs = fresh(tmp_path, "a")
    layouts.myriad_boot(fs)
    if peers:
        layouts.myriad_connector(fs)
    first, _ = rescan(None, fs)
    [stick] = first.cards
    first = hold(first, "vm-1", stick.functions()[0].id)
    before = providers(first)
    fs.unplug_usb(layouts.BOOT_PORT)
    layouts.myriad_booted(fs, serial=booted_serial)
    inv, _ = rescan(first, fs)
    assert sticks(inv) == [(stick.id, model.STATUS_MOVED,
                            layouts.BOOTED_PORT)]
    assert inv.cards[0].product_id == "f63b"
    assert providers(inv) == before
    assert inv.claims["vm-1"].functions == [stick.functions()[0].id]
    # And back to boot mode when the guest lets it go.
    fs.unplug_usb(layouts.BOOTED_PORT)
    layouts.myriad_boot(fs, devnum=12)
    again, _ = rescan(inv, fs)
    assert [c.id for c in again.cards] == [stick.id]


def test_a_stick_moved_to_another_port_keeps_its_id(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.myriad_boot(fs)
    first, _ = rescan(None, fs)
    fs = fresh(tmp_path, "b")
    layouts.myriad_boot(fs, "3-1", devnum=2)
    inv, _ = rescan(first, fs)
    assert sticks(inv) == [(first.cards[0].id, model.STATUS_MOVED, "3-1")]


def test_a_second_identical_stick_is_added_beside_the_first(tmp_path):
    fs = fresh(tmp_path, "a")
    layouts.myriad_boot(fs)
    first, _ = rescan(None, fs)
    first.cards[0].status = model.STATUS_OK
    layouts.myriad_boot(fs, "1-4.4.1", devnum=10)
    inv, _ = rescan(first, fs)
    assert sticks(inv) == [
        ("usbport-03e7-1-4.4.1", model.STATUS_ADDED, "1-4.4.1"),
        (first.cards[0].id, model.STATUS_OK, "1-4.4.3")]


def test_two_identical_sticks_moved_at_once_are_not_guessed(tmp_path):
    """Nothing tells them apart: the ones gone are lost (their holders
    refused, never given the other stick) and the new ones added."""
    fs = fresh(tmp_path, "a")
    layouts.myriad_boot(fs)
    layouts.myriad_boot(fs, "1-4.4.1", devnum=10)
    first, _ = rescan(None, fs)
    fs = fresh(tmp_path, "b")
    layouts.myriad_boot(fs, "3-1", devnum=2)
    layouts.myriad_boot(fs, "3-2", devnum=3)
    inv, _ = rescan(first, fs)
    assert sorted(c.status for c in inv.cards) == [
        model.STATUS_ADDED, model.STATUS_ADDED, model.STATUS_LOST,
        model.STATUS_LOST]


# -- Intel QAT: an SR-IOV co-processor -------------------------------------

def test_qat_vfs_keep_their_ids_when_made_in_another_order(tmp_path):
    fs = fresh(tmp_path, "a")
    vfs = layouts.qat(fs)
    first, _ = rescan(None, fs)
    [card] = first.cards
    assert (card.kind, card.regions[0].size) == ("pci", layouts.QAT_VFS)
    assert card.regions[0].functions[0].attrs == {"product_id": "37c9"}
    fid = card.regions[0].functions[9].id
    first = hold(first, "vm-1", fid)
    fs = fresh(tmp_path, "b")
    layouts.qat(fs, order=list(reversed(range(layouts.QAT_VFS))))
    inv, _ = rescan(first, fs)
    assert inv.function_index()[fid][2].address == vfs[9]
    assert providers(inv) == providers(first)


def test_show_prints_what_each_layout_records(tmp_path):
    from accel_inventory import cli

    fs = fresh(tmp_path, "a")
    layouts.a10_vendor_vfio(fs, current={0: 593, 1: 597})
    layouts.n3000_dfl(fs)
    inv, _ = rescan(None, fs, vgpu_types={"10de:2236": "593"})
    text = "\n".join(cli.render_tree(inv, "boot"))
    assert "vgpu_type_id 593 vgpu_type_name NVIDIA A10-4Q free" in text
    assert "unavailable (holds vGPU type 597)" in text
    assert f"fpga_afu_ids {layouts.N3000_AFU}" in text
