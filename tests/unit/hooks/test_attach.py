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

"""The attach path: markers, the hook's dispatch, devices and the worker on
libvirt's in-process test driver (which refuses hot-plug: the failure is
recorded with its reason and the domain is left as it was)."""

import io
import os
import shutil
import subprocess
import sys
import threading

import libvirt
import pytest
from lxml import etree

from accel_inventory import agent, cache, claims, identity, inventory, model
from accel_inventory import profiles, sysfs
from accel_inventory import claim_sync, kinds, settings
from libvirt_hooks import attach, bridge, common, devices, hook, resolve
from libvirt_hooks import trigger
from tests.common import attach_host, hooks
from tests.common.hooks import nova_domain
from tests.common.attach_host import NODE0, STICK
from tests.common.attach_host import assign, domain_bytes

DEFAULT_CACHE_PATH = settings.OPTIONS[("inventory", "cache_path")][1]

SCHEMA = "/usr/share/libvirt/schemas/domain.rng"
VF = "dsn-0011223344556677/r0/f1"
MDEV = "dsn-1eb8000000000001/r0/f0"
UNCREATED_MDEV = "dsn-1eb8000000000001/r0/f1"

conn = attach_host.conn
host = attach_host.host

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


@pytest.fixture(scope="module")
def relaxng():
    return etree.RelaxNG(etree.parse(SCHEMA))


def call_hook(xml, op, subop):
    out, err = io.StringIO(), io.StringIO()
    rc = hook.main(["vm1", op, subop, "-"], stdin=io.BytesIO(xml),
                   stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


class Bridges:
    """Stands in for bridge.ensure_node_bridge: records what was asked."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, interface):
        self.calls.append((name, interface))
        return [f"added {interface} to {name}"]


# -- what the hook side needs, without oslo.config ------------------------

def test_constants_agree_with_the_agent():
    assert common.ASSIGNED_SUFFIX == cache.ASSIGNED_SUFFIX


def test_domain_uuid_is_read_from_the_bytes():
    uuid = "0F3A4A52-6C1E-4B8C-9A3E-2D7C2F6B1A01"
    assert trigger.domain_uuid(domain_bytes(uuid)) == uuid.lower()
    assert trigger.domain_uuid(b"<domain><name>x</name></domain>") is None
    assert trigger.domain_uuid(b"<uuid>../../etc/passwd</uuid>") is None


def test_cache_path_follows_env_then_file_then_default(tmp_path,
                                                       monkeypatch):
    monkeypatch.delenv("OS_INVENTORY__CACHE_PATH", raising=False)
    config = tmp_path / "a.conf"
    config.write_text("[inventory]\ncache_path = /x/inv.json\n"
                      "[placement]\npassword = 50%off\n")
    assert common.cache_path(str(config)) == "/x/inv.json"
    assert common.cache_path(None) == DEFAULT_CACHE_PATH
    config.write_text("[placement]\nauth_type = password\n")
    assert common.cache_path(str(config)) == DEFAULT_CACHE_PATH
    config.write_text("not an ini file at all\n")
    assert common.cache_path(str(config)) == DEFAULT_CACHE_PATH
    monkeypatch.setenv("OS_INVENTORY__CACHE_PATH", "/y/inv.json")
    assert common.cache_path(str(config)) == "/y/inv.json"


def test_markers_follow_the_placement_claims(host):
    a = "aaaaaaaa-0000-4000-8000-000000000001"
    b = "bbbbbbbb-0000-4000-8000-000000000002"
    directory = host["cache"] + cache.ASSIGNED_SUFFIX
    assign(host, a, [STICK])
    inv = claims.record_claim(cache.load(host["cache"]), model.Claim(
        consumer=b, functions=[VF], source="hook"))
    agent.write_assigned_markers(host["cache"], inv)
    assert os.listdir(directory) == [a]
    agent.write_assigned_markers(host["cache"], claims.release_claim(inv, a))
    assert os.listdir(directory) == []


def test_started_without_assignment_launches_nothing(host, mocker):
    popen = mocker.patch("subprocess.Popen")
    uuid = "cccccccc-0000-4000-8000-000000000003"
    assert call_hook(domain_bytes(uuid), "started", "begin") == (0, "", "")
    popen.assert_not_called()


def test_started_with_assignment_launches_a_detached_worker(host, mocker):
    popen = mocker.patch("subprocess.Popen")
    uuid = "cccccccc-0000-4000-8000-000000000003"
    assign(host, uuid, [STICK])
    assert call_hook(domain_bytes(uuid), "started", "begin") == (0, "", "")
    (argv,), kwargs = popen.call_args
    assert argv == [sys.executable, "-m", "libvirt_hooks.attach", uuid]
    assert kwargs["start_new_session"] is True
    assert {kwargs[k] for k in ("stdin", "stdout", "stderr")} == {
        subprocess.DEVNULL}
    assert kwargs["env"]["NOVA_ACCEL_CONFIG"] == host["config"]


def test_started_before_the_sync_waits_for_the_assignment(host, mocker):
    popen = mocker.patch("subprocess.Popen")
    uuid = "cccccccc-0000-4000-8000-000000000003"
    plain = nova_domain(uuid, {"hw:cpu_policy": "dedicated"})
    assert call_hook(plain, "started", "begin") == (0, "", "")
    popen.assert_not_called()
    asking = nova_domain(uuid, {"resources1:CUSTOM_ACCEL_MOVIDIUS_NCS": "1"})
    assert call_hook(asking, "started", "begin") == (0, "", "")
    (argv,), _kwargs = popen.call_args
    assert argv == [sys.executable, "-m", "libvirt_hooks.attach",
                    "--await-assignment", uuid]


def test_started_fast_path_imports_only_the_standard_library(host):
    assert hooks.fast_path_imports(
        "started", b"<domain><name>vm</name><uuid>cccccccc-0000-4000-8000-"
        b"000000000003</uuid></domain>") == (0, [])


# -- devices ---------------------------------------------------------------

def test_each_kind_becomes_a_device_libvirt_accepts(host, relaxng):
    inv = cache.load(host["cache"])
    index = inv.function_index()
    found = {}
    for fid in (NODE0, STICK, VF, MDEV):
        card, _region, function = index[fid]
        now = resolve.host_now(host["root"], card, function)
        element = devices.element_for(card, function, now, "accbr-")
        doc = etree.fromstring(domain_bytes(
            "cccccccc-0000-4000-8000-000000000003", element))
        assert relaxng.validate(doc), relaxng.error_log
        found[fid] = devices.device_key(element)
    assert found == {
        NODE0: ("bridge", bridge.bridge_name("accbr-", NODE0)),
        STICK: ("usb", "03e7", "2485", "3", "4"),
        VF: ("pci", "0000:3b:01.1"),
        MDEV: ("mdev", "4b20d080-1b54-4048-85b3-a6a62d165c01")}


def test_stick_is_attached_where_it_is_now(host):
    # The stick re-enumerated (firmware loaded): new device number.
    inv = cache.load(host["cache"])
    card, _region, function = inv.function_index()[STICK]
    with open(os.path.join(host["root"], "bus", "usb", "devices", "3-1",
                           "devnum"), "w") as f:
        f.write("9\n")
    now = resolve.host_now(host["root"], card, function)
    element = devices.element_for(card, function, now, "accbr-")
    assert devices.device_key(element) == ("usb", "03e7", "2485", "3", "9")


@pytest.mark.parametrize("fid, damage, reason", [
    (VF, "pci", "no PCI device at 0000:3b:01.1 now"),
    (STICK, "usb", "no USB device at port 3-1 now"),
    (UNCREATED_MDEV, None, "has no address on the host"),
    (VF, "lost", "is lost"),
    # Same vendor, another device: the check is the guard's, not vendor
    # alone.
    (VF, "other-product", "PCI address 0000:3b:01.1 holds 1172:5002 now"),
    (STICK, "other-stick", "USB port 3-1 holds 03e7:03e72485ZZ now"),
])
def test_what_cannot_be_attached_says_why(host, fid, damage, reason):
    inv = cache.load(host["cache"])
    card, _region, function = inv.function_index()[fid]
    if damage == "pci":
        os.unlink(os.path.join(host["root"], "bus", "pci", "devices",
                               function.address))
    elif damage == "usb":
        os.unlink(os.path.join(host["root"], "bus", "usb", "devices",
                               function.address))
    elif damage == "lost":
        card.status = model.STATUS_LOST
    elif damage == "other-product":
        with open(os.path.join(host["root"], "bus", "pci", "devices",
                               function.address, "device"), "w") as f:
            f.write("0x5002\n")
    elif damage == "other-stick":
        with open(os.path.join(host["root"], "bus", "usb", "devices",
                               function.address, "serial"), "w") as f:
            f.write("03e72485ZZ\n")
    now = resolve.host_now(host["root"], card, function)
    with pytest.raises(devices.DeviceError, match=reason) as exc:
        devices.element_for(card, function, now, "accbr-")
    assert "accel-inventory scan" in str(exc.value)


# -- the start of a domain the sync assigned functions ----------------------

def unmake_vfs(host, fid):
    """The PF of ``fid`` without its VFs, as after a reboot before
    sriov_numvfs is written again; then the agent's rescan."""
    previous = cache.load(host["cache"])
    pf = previous.function_index()[fid][1].address
    pf_dir = os.path.realpath(os.path.join(host["root"], "bus", "pci",
                                           "devices", pf))
    for link in [n for n in os.listdir(pf_dir) if n.startswith("virtfn")]:
        vf_dir = os.path.realpath(os.path.join(pf_dir, link))
        os.unlink(os.path.join(host["root"], "bus", "pci", "devices",
                               os.path.basename(vf_dir)))
        shutil.rmtree(vf_dir)
        os.unlink(os.path.join(pf_dir, link))
    scanned = sysfs.scan_cards(host["root"],
                               profiles=profiles.load_profiles(None))
    inv, _ = identity.reconcile(previous, scanned.cards, "compute1")
    cache.save(host["cache"], inventory.keep_claims(previous, inv))


def test_start_is_refused_when_a_function_it_was_given_is_gone(host):
    uuid = "ffffffff-0000-4000-8000-000000000007"
    assign(host, uuid, [NODE0, VF])
    unmake_vfs(host, VF)
    xml = nova_domain(uuid, {"resources1:CUSTOM_ACCEL_FPGA": "1",
                             "resources2:CUSTOM_ACCEL_VCA_NODE": "1"})
    # Its id is kept for it, with no device: the PF is not handed out in
    # its place, and nothing else gets the id.
    card, _region, function = cache.load(host["cache"]).function_index()[VF]
    assert function.address is None and kinds.vanished(card, function)
    rc, out, err = call_hook(xml, "prepare", "begin")
    assert (rc, out) == (1, "")
    [line] = err.splitlines()
    assert line.startswith("nova-accel: domain vm1: ")
    assert f"{VF}: the device of {VF} (last at 0000:3b:01.1) is gone" in line
    assert NODE0 not in line  # the node is there: only what is gone
    [logged] = [entry for entry in host["log"].read_text().splitlines()
                if "refused" in entry]
    assert line.split(": ", 2)[2] in logged


def test_start_of_an_assigned_domain_with_its_functions_goes_on(host):
    uuid = "ffffffff-0000-4000-8000-000000000008"
    assign(host, uuid, [NODE0, VF, STICK])
    xml = nova_domain(uuid, {"resources1:CUSTOM_ACCEL_FPGA": "1"})
    assert call_hook(xml, "prepare", "begin") == (0, "", "")


def test_prepare_of_a_domain_without_accelerators_stays_fast(host, mocker):
    run = mocker.patch("libvirt_hooks.decide.run")
    assigned = "ffffffff-0000-4000-8000-000000000009"
    assign(host, assigned, [VF])
    unmake_vfs(host, VF)
    # Not a Nova domain asking for our classes: not even a stat.
    stat = mocker.spy(os.path, "exists")
    for xml in (domain_bytes(assigned),
                nova_domain("ffffffff-0000-4000-8000-00000000000a",
                            {"hw:cpu_policy": "dedicated"})):
        assert call_hook(xml, "prepare", "begin") == (0, "", "")
    run.assert_not_called()
    stat.assert_not_called()


# -- the worker on the test driver ----------------------------------------

def test_refused_hot_plug_is_recorded_and_leaves_the_domain(host, conn):
    dom = conn.lookupByName("test")
    uuid = dom.UUIDString()
    before = dom.XMLDesc(0)
    assign(host, uuid, [NODE0, STICK])
    bridges = Bridges()
    document = attach.attach_claim(conn, host["conf"], uuid,
                                   ensure_bridge=bridges)
    name = bridge.bridge_name("accbr-", NODE0)
    # The node's bridge was made to hold its interface as it is now.
    assert bridges.calls == [(name, "eth4")]
    assert dom.XMLDesc(0) == before
    outcomes = document["devices"]
    assert [outcomes[f]["state"] for f in (NODE0, STICK)] == ["failed"] * 2
    assert "not supported" in outcomes[STICK]["reason"]
    assert outcomes[NODE0]["device"] == f"bridge {name}"
    assert attach.outcome_lines(document)[0].startswith(
        f"{NODE0}: failed (bridge {name}); added eth4 to {name}: this "
        f"function is not supported")
    claim = cache.load(host["cache"]).claims[uuid]
    assert claim.attach == document
    assert claim.running is False


def test_device_already_in_the_domain_is_not_added_twice(host, conn):
    name = bridge.bridge_name("accbr-", NODE0)
    uuid = "dddddddd-0000-4000-8000-000000000004"
    interface = etree.Element("interface", type="bridge")
    etree.SubElement(interface, "source", bridge=name)
    dom = conn.createXML(domain_bytes(uuid, interface, name="vm2").decode())
    assign(host, uuid, [NODE0])
    document = attach.attach_claim(conn, host["conf"], uuid,
                                   ensure_bridge=Bridges())
    assert document["devices"][NODE0]["state"] == "present"
    claim = cache.load(host["cache"]).claims[uuid]
    # The running domain holds the node now: the guard protects it.
    assert claim.running and claim.boot_id == document["boot_id"]
    assert dom.XMLDesc(0).count(name) == 1


def test_renamed_node_interface_is_resolved_at_attach(host, conn):
    host["fs"].rename_netdev("0000:5f:00.0", "eth4", "eth9")
    dom = conn.lookupByName("test")
    assign(host, dom.UUIDString(), [NODE0])
    bridges = Bridges()
    attach.attach_claim(conn, host["conf"], dom.UUIDString(),
                        ensure_bridge=bridges)
    assert bridges.calls == [(bridge.bridge_name("accbr-", NODE0), "eth9")]


def test_node_without_interface_fails_before_touching_bridges(host, conn):
    node_net = os.path.join(os.path.realpath(os.path.join(
        host["root"], "bus", "pci", "devices", "0000:5f:00.0")), "net")
    os.rename(os.path.join(node_net, "eth4"),
              os.path.join(os.path.dirname(node_net), "gone"))
    dom = conn.lookupByName("test")
    assign(host, dom.UUIDString(), [NODE0])
    bridges = Bridges()
    document = attach.attach_claim(conn, host["conf"], dom.UUIDString(),
                                   ensure_bridge=bridges)
    assert bridges.calls == []
    assert "no host-side interface" in document["devices"][NODE0]["reason"]


def test_attaches_for_one_host_wait_for_each_other(host, conn):
    dom = conn.lookupByName("test")
    assign(host, dom.UUIDString(), [NODE0])
    plumbing = threading.Event()

    def ensure_bridge(name, interface):
        plumbing.set()
        return []

    worker = threading.Thread(target=attach.attach_claim, args=(
        conn, host["conf"], dom.UUIDString()),
        kwargs={"ensure_bridge": ensure_bridge})
    with cache.markers_locked(host["cache"]):
        worker.start()
        assert not plumbing.wait(0.5)
    assert plumbing.wait(30)
    worker.join(30)
    assert cache.load(host["cache"]).claims[dom.UUIDString()].attach


def test_domain_without_placement_claim_is_a_lookup_error(host, conn):
    with pytest.raises(LookupError, match="nothing to attach"):
        attach.attach_claim(conn, host["conf"],
                            conn.lookupByName("test").UUIDString())


def test_worker_records_and_logs_the_failure(host, conn):
    dom = conn.lookupByName("test")
    uuid = dom.UUIDString()
    assign(host, uuid, [STICK])
    rc = attach.run_worker(uuid, host["config"], connect=lambda uri: conn)
    assert rc == 1
    log = host["log"].read_text()
    assert f"domain test ({uuid}): {STICK}: failed" in log
    assert "'accel-domain attach test'" in log
    state = cache.load(host["cache"]).claims[uuid].attach
    assert state["devices"][STICK]["state"] == "failed"


def test_worker_without_a_log_target_prints_no_traceback(
        host, conn, monkeypatch, tmp_path, capfd):
    from libvirt_hooks import decide

    monkeypatch.setattr(decide, "SYSLOG_ADDRESS", str(tmp_path / "no-log"))
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__LOG_FILE",
                       str(tmp_path / "missing-dir" / "hook.log"))
    uuid = conn.lookupByName("test").UUIDString()
    assign(host, uuid, [STICK])
    assert attach.run_worker(uuid, host["config"],
                             connect=lambda uri: conn) == 1
    assert capfd.readouterr() == ("", "")
    state = cache.load(host["cache"]).claims[uuid].attach
    assert state["devices"][STICK]["state"] == "failed"


def test_worker_trusts_the_configuration_no_more_than_the_hook(host,
                                                               conn):
    uuid = conn.lookupByName("test").UUIDString()
    assign(host, uuid, [STICK])
    os.chmod(host["config"], 0o666)
    rc = attach.run_worker(uuid, host["config"], connect=lambda uri: conn)
    assert rc == 1
    assert not host["log"].exists()
    assert cache.load(host["cache"]).claims[uuid].attach == {}


def test_worker_gives_up_on_a_domain_that_does_not_come_up(host, conn):
    uuid = "eeeeeeee-0000-4000-8000-000000000005"
    conn.defineXML(domain_bytes(uuid, name="vm3").decode())
    assign(host, uuid, [STICK])
    rc = attach.run_worker(uuid, host["config"], connect=lambda uri: conn)
    assert rc == 1
    assert "did not come up within 1.0 s" in host["log"].read_text()
    assert cache.load(host["cache"]).claims[uuid].attach == {}


def test_wait_for_assignment_sees_the_sync_mark_the_domain(host, conn):
    dom = conn.lookupByName("test")
    marker = common.marker_path(host["cache"], dom.UUIDString())
    polls = []

    def sync_runs_meanwhile(seconds):
        polls.append(seconds)
        assign(host, dom.UUIDString(), [STICK])

    assert attach.wait_for_assignment(marker, dom, 60,
                                      sleep=sync_runs_meanwhile)
    assert polls == [attach.ASSIGNMENT_POLL]


def test_worker_gives_up_waiting_for_an_assignment_quietly(host, conn):
    uuid = conn.lookupByName("test").UUIDString()
    config = host["config"]
    with open(config, "a") as f:
        f.write("assignment_wait = 1\n")
    rc = attach.run_worker(uuid, config, connect=lambda uri: conn,
                           await_assignment=True)
    assert rc == 0
    assert "was not assigned any within 1.0 s" in host["log"].read_text()
    assert uuid not in cache.load(host["cache"]).claims


def test_worker_attaches_once_the_assignment_is_there(host, conn):
    uuid = conn.lookupByName("test").UUIDString()
    assign(host, uuid, [STICK])
    rc = attach.run_worker(uuid, host["config"], connect=lambda uri: conn,
                           await_assignment=True)
    # The test driver refuses hot-plug: the attempt is what is recorded.
    assert rc == 1
    state = cache.load(host["cache"]).claims[uuid].attach
    assert state["devices"][STICK]["state"] == "failed"


def test_wait_until_up_polls_until_the_deadline(conn):
    uuid = "eeeeeeee-0000-4000-8000-000000000005"
    dom = conn.defineXML(domain_bytes(uuid, name="vm3").decode())
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    assert not attach.wait_until_up(dom, 0.5, clock=lambda: now[0],
                                    sleep=sleep)
    assert len(slept) == 5
    dom.create()
    assert attach.wait_until_up(dom, 0.5, clock=lambda: now[0], sleep=sleep)


# -- claims end with the allocation, not with the domain --------------------

def test_claim_outlives_a_stop_and_ends_with_the_allocation(host, conn):
    dom = conn.lookupByName("test")
    uuid = dom.UUIDString()
    assign(host, uuid, [NODE0])
    name = bridge.bridge_name("accbr-", NODE0)
    interface = etree.Element("interface", type="bridge")
    etree.SubElement(interface, "source", bridge=name)
    live = domain_bytes(uuid, interface)
    # The running domain holds the node (as the worker records it).
    inv = claims.record_attach(cache.load(host["cache"]), uuid, {},
                               running=True, boot_id="boot-1")
    cache.save(host["cache"], inv)
    # release end: the domain's XML names no hostdev, only the node's
    # bridge; the marker sends it to the full path, which marks it stopped.
    assert call_hook(live, "release", "end") == (0, "", "")
    stopped = cache.load(host["cache"])
    assert stopped.claims[uuid].functions == [NODE0]
    assert stopped.claims[uuid].running is False
    # The allocation is still there: the sync keeps the claim.
    region = stopped.function_index()[NODE0][1].id
    kept = claim_sync.assign(stopped, {region: {uuid: 1}}, "boot-1")
    assert kept.changed == [] and uuid in kept.inventory.claims
    # The instance is deleted: placement no longer allocates; it ends.
    ended = claim_sync.assign(stopped, {region: {}}, "boot-1")
    assert ended.changed == [uuid] and uuid not in ended.inventory.claims
    agent.write_assigned_markers(host["cache"], ended.inventory)
    assert trigger.assigned_consumer(live, host["config"]) is None


def test_release_of_a_domain_without_assignment_stays_fast(host, mocker):
    run = mocker.patch("libvirt_hooks.decide.run")
    uuid = "ffffffff-0000-4000-8000-000000000006"
    assert call_hook(domain_bytes(uuid), "release", "end")[0] == 0
    run.assert_not_called()


def test_a_resized_domains_worker_counts_syncs_from_its_launch(monkeypatch):
    # The worker's imports take a while: a sync between the domain's
    # start and the worker's own start read the new allocations already.
    from libvirt_hooks import trigger

    launched = {}
    monkeypatch.setattr("subprocess.Popen",
                        lambda argv, env, **_: launched.update(env))
    trigger.launch("5a5a5a5a-0000-4000-8000-00000000005a", None)
    stamp = float(launched[trigger.LAUNCHED_AT])
    assert attach.launched_at(launched, stamp + 1.0) == stamp
    for told in ("", "soon", "nan", "inf", "-1", str(stamp + 5.0)):
        assert attach.launched_at({trigger.LAUNCHED_AT: told},
                                  stamp + 1.0) == stamp + 1.0
    assert attach.launched_at({}, 7.0) == 7.0
