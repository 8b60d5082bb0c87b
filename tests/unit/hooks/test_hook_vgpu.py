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

"""vGPUs of SR-IOV GPUs, Myriad X sticks named by their connector and
multi-PF cards through the hook's entry point, on layouts recorded on
real hardware (tests/common/layouts.py) scanned by the real scanner."""

import os

import pytest

from accel_inventory import agent, cache, claim_sync, claims, model
from accel_inventory import kinds
from accel_inventory.sample import FakeSysfs
from libvirt_hooks import common, decide, devices, domain, guard, mdev
from libvirt_hooks import resolve, vgpu
from libvirt_hooks import xmlgen
from tests.common import layouts
from tests.common.hooks import DOMAIN_UUID, OTHER_UUID, ScannedHost, call
from tests.common.hooks import domain_xml, nova_domain

A10_4Q = 593


@pytest.fixture
def host(tmp_path, monkeypatch):
    return ScannedHost(tmp_path, monkeypatch)


def current(host, vf):
    with open(os.path.join(host.fs.root, "bus", "pci", "devices", vf,
                           "nvidia", "current_vgpu_type")) as f:
        return f.read().strip()


def function_at(host, address):
    return next(f for c in host.inv().cards for f in c.functions()
                if f.address == address)


def unmanaged(bdf):
    return xmlgen.pci_hostdev(bdf, managed=False)


def assign(host, consumer, functions):
    """What the agent's sync records for an instance holding
    ``functions`` (and the marker the hook's fast path looks for)."""
    inv = claims.record_claim(host.inv(), model.Claim(
        consumer=consumer, functions=functions,
        source=claim_sync.CLAIM_SOURCE))
    cache.save(host.cache, inv)
    agent.write_assigned_markers(host.cache, inv)


def nova(uuid=DOMAIN_UUID, rc="CUSTOM_ACCEL_VENDOR_VFIO_10DE_2236"):
    return nova_domain(uuid, {f"resources1:{rc}": "1"})


# -- NVIDIA's vendor-specific VFIO vGPUs -----------------------------------

def a10_host(host, **kwargs):
    vfs = layouts.a10_vendor_vfio(host.fs, current={0: A10_4Q}, **kwargs)
    host.scan()
    return vfs


def test_prepare_writes_the_vgpu_type_and_release_clears_it(host):
    vfs = a10_host(host)
    xml = domain_xml(unmanaged(vfs[3]))
    assert call(xml) == (0, "", "")
    assert current(host, vfs[3]) == str(A10_4Q)
    claim = host.claim()
    assert claim.functions == [function_at(host, vfs[3]).id]
    assert claim.set_vgpus == {vfs[3]: A10_4Q}
    assert f"VF {vfs[3]} holds vGPU type 593 (NVIDIA A10-4Q)" in \
        host.log.read_text()
    assert call(xml, op="release", subop="end")[0] == 0
    assert current(host, vfs[3]) == "0"
    assert host.claim().set_vgpus == {} and not host.claim().running


def test_a_vgpu_the_vf_holds_already_is_not_the_hooks_to_clear(host):
    vfs = a10_host(host)
    xml = domain_xml(unmanaged(vfs[0]))  # the operator made it
    assert call(xml) == (0, "", "")
    assert host.claim().set_vgpus == {}
    assert call(xml, op="release", subop="end")[0] == 0
    assert current(host, vfs[0]) == str(A10_4Q)


def test_a_type_no_longer_creatable_refuses_the_start_in_one_line(host):
    vfs = a10_host(host)
    host.fs.set_vgpu(vfs[3], {}, 0)  # the GPU filled up since the scan
    rc, _, err = call(domain_xml(unmanaged(vfs[3])))
    assert rc == 1 and err.count("\n") == 1
    assert (f"VF {vfs[3]} ({function_at(host, vfs[3]).id}): vGPU type 593 "
            f"(NVIDIA A10-4Q) is no longer creatable there") in err
    assert current(host, vfs[3]) == "0"
    assert host.claim() is None


def test_a_vf_that_holds_another_type_is_refused(host):
    vfs = a10_host(host)
    host.fs.set_vgpu(vfs[3], {}, 597)
    rc, _, err = call(domain_xml(unmanaged(vfs[3])))
    assert rc == 1
    assert "holds vGPU type 597 now, not vGPU type 593 (NVIDIA A10-4Q)" in err
    assert current(host, vfs[3]) == "597"


def test_a_failed_start_clears_what_it_set(host, monkeypatch):
    vfs = a10_host(host)
    written = []

    def refuses_the_second(sysfs_root, path, value):
        written.append(value)
        if len(written) == 2:
            raise mdev.MdevError(f"writing {value!r} to {path} failed: "
                                 f"Invalid argument")
        mdev.write(sysfs_root, path, value)

    monkeypatch.setattr(vgpu, "write", refuses_the_second)
    rc, _, err = call(domain_xml(unmanaged(vfs[3]), unmanaged(vfs[4])))
    assert rc == 1 and "Invalid argument" in err
    assert written == ["593", "593", "0"]  # the first undone
    assert (current(host, vfs[3]), current(host, vfs[4])) == ("0", "0")
    assert host.claim() is None


FAILURES = {"the hook's timeout": common.HookTimeout(),
            "a full disk": OSError(28, "No space left on device"),
            "a bug": KeyError("bug")}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_a_start_that_fails_after_the_vgpu_type_was_written_clears_it(
        host, monkeypatch, failure):
    """Whatever raises once the VF holds the type (here the claim's write),
    the start is refused in one line and the VF holds none again."""
    vfs = a10_host(host)

    def fails(*args, **kwargs):
        raise failure

    monkeypatch.setattr(cache, "update", fails)
    rc, _, err = call(domain_xml(unmanaged(vfs[3])))
    assert rc == 1 and err.count("\n") == 1
    assert current(host, vfs[3]) == "0"
    assert host.claim() is None


def test_a_placement_claim_gets_its_vgpus_made_and_given_unmanaged(host):
    vfs = a10_host(host)
    fid = function_at(host, vfs[6]).id
    assign(host, DOMAIN_UUID, [fid])
    assert call(nova()) == (0, "", "")
    assert current(host, vfs[6]) == str(A10_4Q)
    claim = host.claim()
    assert (claim.source, claim.set_vgpus) == ("placement", {vfs[6]: 593})
    # What the attach worker hot-plugs: the VF, unmanaged (it stays bound
    # to the nvidia driver).
    conf = host_conf(host)
    element, key = resolve.resolve(conf, host.inv(), fid)
    assert key == ("pci", vfs[6])
    assert element.get("managed") == "no"
    assert call(nova(), op="release", subop="end")[0] == 0
    assert current(host, vfs[6]) == "0"


def host_conf(host):
    return decide.load_conf(str(host.config))


def test_the_sync_gives_no_vf_that_cannot_take_the_type(host):
    vfs = layouts.a10_vendor_vfio(host.fs, current={0: A10_4Q, 1: 597})
    host.scan(vgpu_types={"10de:2236": "593"})
    inv = host.inv()
    [region] = inv.cards[0].regions
    result = claim_sync.assign(inv, {region.id: {"vm-a": 3}})
    given = [inv.function_index()[f][2].address
             for f in result.inventory.claims["vm-a"].functions]
    assert given == [vfs[0], vfs[2], vfs[3]]  # vfs[1] holds another type


# -- mdev vGPUs on the VFs of an A40 ---------------------------------------

def a40_host(host, **kwargs):
    vfs = layouts.a40_mdev_on_vfs(host.fs, **kwargs)
    host.scan()
    return vfs


MDEV = layouts.A40_INSTANCE
OTHER_MDEV = "7c2d9e40-0000-4000-8000-000000000007"


def create_file(host, parent, mdev_type="nvidia-558"):
    return os.path.join(host.fs.root, "class", "mdev_bus", parent,
                        "mdev_supported_types", mdev_type, "create")


def test_a_missing_mdev_is_made_on_the_vf_it_lived_on(host):
    vfs = a40_host(host, instances={2: (MDEV, 558)})
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV))
    assert call(xml) == (0, "", "")
    assert call(xml, op="release", subop="end")[0] == 0
    # Reboot: the VFs come back, the mdev does not.
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    layouts.a40_mdev_on_vfs(host.fs, instances={})
    assert call(xml) == (0, "", "")
    assert open(create_file(host, vfs[2])).read() == MDEV
    assert host.claim().created_mdevs == [MDEV]


def test_a_missing_mdev_is_made_on_a_vf_that_can_take_it_now(host):
    """Its VF holds another domain's mdev since the reboot (nova made
    them again in another order): the hook takes the first free VF."""
    vfs = a40_host(host, instances={2: (MDEV, 558), 5: (OTHER_MDEV, 558)})
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV))
    assert call(xml) == (0, "", "")
    assert call(xml, op="release", subop="end")[0] == 0
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    layouts.a40_mdev_on_vfs(host.fs, instances={0: (OTHER_MDEV, 558),
                                                2: (OTHER_MDEV[:-1] + "9",
                                                    558)})
    assert call(xml) == (0, "", "")
    assert open(create_file(host, vfs[1])).read() == MDEV
    assert open(create_file(host, vfs[2])).read() == ""


def test_an_mdev_on_another_vf_of_its_gpu_is_its_own(host):
    a40_host(host, instances={2: (MDEV, 558)})
    fid = function_at(host, MDEV).id
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV))
    assert call(xml) == (0, "", "")
    assert call(xml, op="release", subop="end")[0] == 0
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    layouts.a40_mdev_on_vfs(host.fs, instances={7: (MDEV, 558)})
    assert call(xml) == (0, "", "")
    assert host.claim().functions == [fid] and host.claim().running


def test_an_mdev_on_a_vf_of_another_gpu_is_refused(host):
    a40_host(host, instances={2: (MDEV, 558)})
    layouts.a40_mdev_on_vfs(host.fs, pf="0000:c1:00.0",
                            root_port="0000:c0:01.1", dsn=0xB,
                            instances={1: (OTHER_MDEV, 558)})
    host.scan()
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV))
    assert call(xml) == (0, "", "")
    assert call(xml, op="release", subop="end")[0] == 0
    # The mdev now lives on a VF of the other A40.
    host.fs.remove_mdev(MDEV)
    host.fs.create_mdev(layouts.vf_bdfs("0000:c1:00.0", 1)[0], MDEV,
                        "nvidia-558")
    rc, _, err = call(xml)
    assert rc == 1 and "is on 0000:c1:00.4 now, the inventory puts it on " \
        "0000:41:00.0" in err


def test_no_vf_with_room_refuses_the_start(host):
    a40_host(host, instances={2: (MDEV, 558)}, vfs=3)
    xml = domain_xml(xmlgen.mdev_hostdev(MDEV))
    assert call(xml) == (0, "", "")
    assert call(xml, op="release", subop="end")[0] == 0
    host.use(FakeSysfs(host.fs.root + "-rebooted"))
    layouts.a40_mdev_on_vfs(host.fs, vfs=3, instances={
        n: (f"7c2d9e40-0000-4000-8000-00000000000{n}", 558)
        for n in range(3)})
    rc, _, err = call(xml)
    assert rc == 1 and "no VF of card" in err and \
        "can take an mdev of type nvidia-558 now" in err


def test_the_worker_makes_no_mdev_for_a_function_it_withholds(host):
    # NUMA affinity refuses a far function: the worker plugs nothing
    # there, so it must not take the GPU's room for it either.
    vfs = a40_host(host, instances={0: (MDEV, 558)})
    near, far = [f for f in host.inv().cards[0].functions()
                 if not f.address][:2]
    assign(host, DOMAIN_UUID, [near.id, far.id])
    live = domain.parse(nova(rc="CUSTOM_ACCEL_MDEV_10DE_2235"), 1 << 20)
    assert decide.make_for_claim(host_conf(host), live, host.inv(),
                                 withheld={far.id}) == []
    made = guard.claimed_mdev_uuid(DOMAIN_UUID, near.id)
    assert host.inv().claims[DOMAIN_UUID].created_mdevs == [made]
    files = [create_file(host, vf) for vf in vfs]
    written = [open(f).read() for f in files
               if os.path.exists(f) and os.path.getsize(f)]
    assert written == [made]


def test_a_placement_claims_mdev_is_made_and_recorded(host):
    vfs = a40_host(host, instances={0: (MDEV, 558)})
    free = next(f for f in host.inv().cards[0].functions() if not f.address)
    assign(host, DOMAIN_UUID, [free.id])
    rc, _, err = call(nova(rc="CUSTOM_ACCEL_MDEV_10DE_2235"))
    assert (rc, err) == (0, "")
    uuid = guard.claimed_mdev_uuid(DOMAIN_UUID, free.id)
    assert open(create_file(host, vfs[1])).read() == uuid
    inv = host.inv()
    assert inv.function_index()[free.id][2].address == uuid
    assert inv.claims[DOMAIN_UUID].created_mdevs == [uuid]
    # The kernel makes it; the attach worker then gives it as an mdev.
    host.fs.create_mdev(vfs[1], uuid, "nvidia-558")
    element, key = resolve.resolve(host_conf(host), host.inv(), free.id)
    assert key == ("mdev", uuid)
    assert resolve.claim_refusals(host_conf(host), host.inv(),
                                  DOMAIN_UUID) == []
    # A rescan keeps the function's id by the mdev's UUID.
    host.scan()
    assert host.inv().function_index()[free.id][2].address == uuid


# -- Myriad X sticks named by their connector ------------------------------

def test_a_stick_that_reenumerated_on_its_connector_is_found(host):
    layouts.myriad_boot(host.fs)
    layouts.myriad_connector(host.fs)
    host.scan()
    [stick] = host.inv().cards
    xml = domain_xml(xmlgen.usb_hostdev(*layouts.MYRIAD_BOOT, bus=1,
                                        device=9))
    assert call(xml) == (0, "", "")
    assert call(xml, op="release", subop="end")[0] == 0
    # Its firmware loaded: on the connector's USB 3 port, before a rescan.
    host.fs.unplug_usb(layouts.BOOT_PORT)
    layouts.myriad_booted(host.fs)
    function = stick.functions()[0]
    now = resolve.host_now(host.fs.root, stick, function)
    assert now.usb.name == layouts.BOOTED_PORT
    element = devices.element_for(stick, function, now, "accbr-")
    assert devices.device_key(element) == ("usb", "03e7", "f63b", "2", "4")


def test_two_sticks_of_one_serial_are_each_their_own(host):
    layouts.myriad_boot(host.fs)
    layouts.myriad_boot(host.fs, "1-4.4.1", devnum=10)
    host.scan()
    assert {c.status for c in host.inv().cards} == {model.STATUS_ADDED}
    first = domain_xml(xmlgen.usb_hostdev(*layouts.MYRIAD_BOOT, bus=1,
                                          device=9))
    second = domain_xml(xmlgen.usb_hostdev(*layouts.MYRIAD_BOOT, bus=1,
                                           device=10), uuid=OTHER_UUID,
                        name="vm2")
    assert call(first) == (0, "", "")
    assert call(second, name="vm2") == (0, "", "")
    held = {host.claim().functions[0], host.claim(OTHER_UUID).functions[0]}
    assert len(held) == 2


# -- a card whose PFs differ -----------------------------------------------

def test_a_pf_of_another_vendor_on_the_card_is_judged_by_its_own_ids(host):
    pfs = layouts.n6000(host.fs)
    host.scan()
    [card] = host.inv().cards
    assert kinds.of(card).name == "pci"
    assert call(domain_xml(xmlgen.pci_hostdev(pfs[3]))) == (0, "", "")
    assert host.claim().functions == [card.regions[3].functions[0].id]


# -- the attach worker, when the sync assigned after the start -------------

@pytest.fixture
def conn():
    import libvirt

    connection = libvirt.open("test:///default")
    yield connection
    connection.close()


def test_the_worker_makes_the_vgpu_before_it_plugs_the_vf(host, conn):
    from libvirt_hooks import attach

    vfs = a10_host(host)
    uuid = conn.lookupByName("test").UUIDString()
    fid = function_at(host, vfs[7]).id
    assign(host, uuid, [fid])
    document = attach.attach_claim(conn, host_conf(host), uuid)
    assert current(host, vfs[7]) == str(A10_4Q)
    assert host.claim(uuid).set_vgpus == {vfs[7]: A10_4Q}
    # The test driver plugs no PCI device; what the worker tried was the
    # VF itself.
    assert document["devices"][fid]["device"] == f"pci {vfs[7]}"
    # A VF that can no longer take it: nothing plugged, the reason kept.
    other = function_at(host, vfs[8]).id
    host.fs.set_vgpu(vfs[8], {}, 0)
    assign(host, uuid, [fid, other])
    document = attach.attach_claim(conn, host_conf(host), uuid)
    assert "is no longer creatable there" in \
        document["devices"][other]["reason"]
    assert current(host, vfs[8]) == "0"


def test_the_worker_makes_the_mdev_before_it_plugs_it(host, conn):
    from libvirt_hooks import attach

    vfs = a40_host(host, instances={0: (MDEV, 558)})
    uuid = conn.lookupByName("test").UUIDString()
    free = next(f for f in host.inv().cards[0].functions() if not f.address)
    assign(host, uuid, [free.id])
    attach.attach_claim(conn, host_conf(host), uuid)
    made = guard.claimed_mdev_uuid(uuid, free.id)
    assert open(create_file(host, vfs[1])).read() == made
    assert host.inv().function_index()[free.id][2].address == made
    assert host.claim(uuid).created_mdevs == [made]


# -- re-enumerations: a claim follows its own device, no guest gets another -

A10_TYPE = {"10de:2236": str(A10_4Q)}
REVERSED = list(reversed(range(layouts.A10_VFS)))


def reboot(host):
    """The host after a reboot: a fresh sysfs tree, the same cache."""
    host.use(FakeSysfs(host.fs.root + "-rebooted"))


def given(host, fid):
    """The device key of what the hook and the attach worker give for
    ``fid`` now."""
    return resolve.resolve(host_conf(host), host.inv(), fid)[1]


def test_a_moved_gpus_vgpu_is_made_on_its_own_vf_not_in_its_old_slot(host):
    """The A10 moved to another slot and its VFs were made in another
    order; an A10 of another serial now sits in its old slot."""
    layouts.a10_vendor_vfio(host.fs)
    host.scan(vgpu_types=A10_TYPE)
    [card] = host.inv().cards
    fid = card.regions[0].functions[6].id
    assign(host, DOMAIN_UUID, [fid])
    reboot(host)
    moved = layouts.a10_vendor_vfio(host.fs, pf="0000:81:00.0",
                                    root_port="0000:80:03.1", order=REVERSED)
    there = layouts.a10_vendor_vfio(host.fs, dsn=0xA11)
    host.scan(vgpu_types=A10_TYPE)
    inv = host.inv()
    assert {c.id: c.status for c in inv.cards} == {
        card.id: model.STATUS_MOVED, "dsn-0000000000000a11": "added"}
    assert inv.claims[DOMAIN_UUID].functions == [fid]
    assert given(host, fid) == ("pci", moved[6])
    assert call(nova()) == (0, "", "")
    assert (current(host, moved[6]), current(host, there[6])) == ("593",
                                                                  "0")
    assert host.claim().set_vgpus == {moved[6]: A10_4Q}
    assert call(nova(), op="release", subop="end")[0] == 0
    assert current(host, moved[6]) == "0"


def test_a_moved_gpus_mdev_is_made_on_its_own_vfs_not_in_its_old_slot(host):
    """The A40 moved to another slot after a reboot (its VFs made in
    another order, the placement claim's vGPU gone); an A40 of another
    serial, with room on every VF, now sits in its old slot."""
    vfs = a40_host(host, instances={0: (MDEV, 558)})
    free = next(f for f in host.inv().cards[0].functions() if not f.address)
    assign(host, DOMAIN_UUID, [free.id])
    rc = "CUSTOM_ACCEL_MDEV_10DE_2235"
    assert call(nova(rc=rc)) == (0, "", "")
    uuid = guard.claimed_mdev_uuid(DOMAIN_UUID, free.id)
    assert open(create_file(host, vfs[1])).read() == uuid
    host.fs.create_mdev(vfs[1], uuid, "nvidia-558")  # what the kernel does
    assert call(nova(rc=rc), op="release", subop="end")[0] == 0
    reboot(host)
    moved = layouts.a40_mdev_on_vfs(
        host.fs, pf="0000:c1:00.0", root_port="0000:c0:01.1",
        instances={0: (MDEV, 558)}, order=REVERSED)
    there = layouts.a40_mdev_on_vfs(host.fs, dsn=0xB, instances={
        0: (OTHER_MDEV, 558)})
    host.scan()
    inv = host.inv()
    assert inv.claims[DOMAIN_UUID].functions == [free.id]
    assert call(nova(rc=rc)) == (0, "", "")
    made_on = [vf for vf in moved + there
               if open(create_file(host, vf)).read() == uuid]
    # On a VF of its own GPU that can take one (any: its slots are alike),
    # none of the GPU that took its old slot.
    assert len(made_on) == 1 and made_on[0] in moved[1:]


def stick_host(host):
    layouts.myriad_boot(host.fs)
    host.scan()
    [stick] = host.inv().cards
    fid = stick.functions()[0].id
    assign(host, DOMAIN_UUID, [fid])
    return stick, fid


NCS = "CUSTOM_ACCEL_MOVIDIUS_NCS"
BOOT_KEY = ("usb", *layouts.MYRIAD_BOOT)


def test_a_held_stick_stays_its_holders_beside_an_identical_one(host):
    stick, fid = stick_host(host)
    layouts.myriad_boot(host.fs, "1-4.4.1", devnum=10)
    host.scan()
    inv = host.inv()
    assert len(inv.cards) == 2 and stick.id in {c.id for c in inv.cards}
    assert inv.claims[DOMAIN_UUID].functions == [fid]
    assert given(host, fid) == (*BOOT_KEY, "1", "9")
    assert call(nova(rc=NCS)) == (0, "", "")


def test_a_held_stick_moved_to_another_port_is_followed(host):
    stick, fid = stick_host(host)
    host.fs.unplug_usb(layouts.BOOT_PORT)
    layouts.myriad_boot(host.fs, "3-1", devnum=2)
    host.scan()
    assert [c.id for c in host.inv().cards] == [stick.id]
    assert given(host, fid) == (*BOOT_KEY, "3", "2")
    assert call(nova(rc=NCS)) == (0, "", "")


def test_identical_sticks_moved_at_once_are_given_to_no_one(host):
    """Nothing says which of the two is the held one: its holder is
    refused, and given neither."""
    stick, fid = stick_host(host)
    layouts.myriad_boot(host.fs, "1-4.4.1", devnum=10)
    host.scan()
    reboot(host)
    layouts.myriad_boot(host.fs, "3-1", devnum=2)
    layouts.myriad_boot(host.fs, "3-2", devnum=3)
    host.scan()
    assert host.inv().function_index()[fid][0].status == model.STATUS_LOST
    with pytest.raises(devices.DeviceError, match="is lost"):
        given(host, fid)
    rc, _, err = call(nova(rc=NCS))
    assert rc == 1 and err.count("\n") == 1 and fid in err


def test_qat_vfs_made_in_another_order_give_the_same_vf(host):
    vfs = layouts.qat(host.fs)
    host.scan()
    fid = host.inv().cards[0].regions[0].functions[9].id
    assign(host, DOMAIN_UUID, [fid])
    reboot(host)
    layouts.qat(host.fs, order=list(reversed(range(layouts.QAT_VFS))))
    host.scan()
    assert host.inv().claims[DOMAIN_UUID].functions == [fid]
    assert given(host, fid) == ("pci", vfs[9])
    assert call(nova(rc="CUSTOM_ACCEL_PCI_8086_37C8")) == (0, "", "")


def test_a_board_in_another_slot_gives_its_own_fec_vf(host):
    layouts.n3000_board(host.fs, slot="5")
    host.scan()
    [card] = host.inv().cards
    fid = card.regions[1].functions[1].id
    assign(host, DOMAIN_UUID, [fid])
    reboot(host)
    board = layouts.n3000_board(host.fs, bus=0x5a, slot="7")
    host.scan()
    assert [c.id for c in host.inv().cards] == [card.id]
    assert given(host, fid) == ("pci", board["fec_vfs"][1])
