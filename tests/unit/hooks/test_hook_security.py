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

"""What a local user without root cannot make the hook do.

The hook trusts its configuration and cache only when root (the user it
runs as) alone can change them; it runs no shell; and nothing a domain XML
or the sysfs tree says leads it to a path outside the sysfs root.
"""

import ast
import io
import os
import pathlib
import stat

import pytest

from accel_inventory import cache, claims, model
from libvirt_hooks import bridge, decide, hook, hostview, mdev, trust, xmlgen
from tests.common.hooks import DOMAIN_UUID, FPGA, OTHER_UUID, add_pci, card
from tests.common.hooks import domain_xml

PACKAGES = [pathlib.Path(__file__).parents[3] / name for name in
            ("accel_inventory", "libvirt_hooks", "nova_accel_weigher")]
FILE = stat.S_IFREG
DIR = stat.S_IFDIR


# -- the decision --------------------------------------------------------

def node(mode, uid=0, holds=True, path="/x"):
    return trust.Node(path=path, uid=uid, mode=mode, holds=holds)


def test_owned_by_the_hooks_user_or_root_and_private_is_trusted():
    assert trust.problems([node(FILE | 0o600, uid=0),
                           node(DIR | 0o755, uid=0, holds=False),
                           node(FILE | 0o644, uid=1000)], owner_uid=1000) \
        == []


def test_another_owner_is_refused():
    [line] = trust.problems([node(FILE | 0o600, uid=1000,
                                  path="/etc/nova-accel/nova-accel.conf")],
                            owner_uid=0)
    assert line == ("/etc/nova-accel/nova-accel.conf is owned by uid 1000, "
                    "not 0")


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_group_or_other_write_is_refused(mode):
    [line] = trust.problems([node(FILE | mode, path="/var/lib/c.json")], 0)
    assert line == (f"/var/lib/c.json is writable by its group or others "
                    f"(mode {mode:04o})")


def test_a_sticky_directory_is_trusted_above_but_not_holding_the_file():
    tmp = DIR | stat.S_ISVTX | 0o777
    assert trust.problems([node(tmp, holds=False)], 0) == []
    assert len(trust.problems([node(tmp, holds=True)], 0)) == 1
    # Without the sticky bit anyone could rename what is below it.
    assert len(trust.problems([node(DIR | 0o777, holds=False)], 0)) == 1


def test_symlinks_are_judged_by_their_directory_and_target():
    assert trust.problems([node(stat.S_IFLNK | 0o777, uid=1000)], 0) == []


# -- the edge --------------------------------------------------------------

def someone_else_owns(path):
    """Give ``path`` an owner that is neither root nor the hook's user;
    return the uid the hook runs as."""
    if os.geteuid() == 0:
        os.chown(path, 4242, -1)
        return 0
    return os.geteuid() + 1  # our files are then someone else's


@pytest.fixture
def private(tmp_path):
    """A configuration and cache only their owner can change."""
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir(mode=0o755)
    lib.mkdir(mode=0o700)
    config = etc / "nova-accel.conf"
    config.write_text("[inventory]\n")
    config.chmod(0o644)
    path = str(lib / "inventory.json")
    cache.save(path, model.Inventory(hostname="compute1"))
    return config, path


def test_private_files_under_sticky_tmp_are_trusted(private):
    config, path = private
    assert trust.refusal(str(config), path) is None


def test_world_writable_cache_directory_is_refused(private):
    config, path = private
    os.chmod(os.path.dirname(path), 0o777)
    reason = trust.refusal(str(config), path)
    assert f"{os.path.dirname(path)} is writable by its group or others " \
           f"(mode 0777)" in reason


def test_last_good_copy_is_checked_too(private):
    config, path = private
    good = cache.good_copy_path(path)
    os.chmod(good, 0o666)
    assert f"{good} is writable" in trust.refusal(str(config), path)


def test_config_owned_by_someone_else_is_refused(private):
    config, path = private
    owner = someone_else_owns(config)
    reason = trust.refusal(str(config), path, owner_uid=owner)
    assert f"{config} is owned by uid" in reason
    assert reason.endswith("writable by it alone")


def test_a_link_into_a_writable_directory_is_followed(private, tmp_path):
    config, path = private
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "nova-accel.conf").write_text("[inventory]\n")
    config.unlink()
    config.symlink_to(shared / "nova-accel.conf")
    assert f"{shared} is writable" in trust.refusal(str(config), path)


# -- the hook refuses, in one line, and touches nothing ----------------------

@pytest.fixture
def host(tmp_path, monkeypatch):
    sysfs = tmp_path / "sys"
    add_pci(sysfs, "0000:3b:00.0", *FPGA)
    lib = tmp_path / "lib"
    lib.mkdir(mode=0o700)
    path = str(lib / "inventory.json")
    cache.save(path, model.Inventory(hostname="compute1", cards=[
        card("dsn-00000000000000aa", ["0000:3b:00.0"])]))
    config = tmp_path / "nova-accel.conf"
    log = tmp_path / "hook.log"
    config.write_text(f"[inventory]\nsysfs_root = {sysfs}\ncache_path = "
                      f"{path}\n[libvirt_hooks]\nlog_file = {log}\n")
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(config))
    return {"config": config, "cache": path, "log": log}


def call(xml):
    out, err = io.StringIO(), io.StringIO()
    rc = hook.main(["vm1", "prepare", "begin", "-"], stdin=io.BytesIO(xml),
                   stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_hook_trusts_a_private_setup(host):
    assert call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0"))) == (0, "",
                                                                      "")
    assert DOMAIN_UUID in cache.load(host["cache"]).claims


@pytest.mark.parametrize("loosen", ["config", "cache", "cache_dir"])
def test_hook_fails_closed_when_others_can_write(host, loosen):
    target = {"config": host["config"], "cache": host["cache"],
              "cache_dir": os.path.dirname(host["cache"])}[loosen]
    os.chmod(target, 0o777 if loosen == "cache_dir" else 0o666)
    before = pathlib.Path(host["cache"]).read_bytes()
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")))
    assert (rc, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith("nova-accel: domain vm1: refusing to trust")
    assert f"{target} is writable" in err
    # Nothing acted on: no claim recorded, no log file opened.
    assert pathlib.Path(host["cache"]).read_bytes() == before
    assert not host["log"].exists()


def test_fast_path_domains_never_pay_for_an_untrusted_setup(host):
    os.chmod(host["config"], 0o666)
    assert call(domain_xml()) == (0, "", "")


# -- no shell, anywhere ------------------------------------------------------

# Each of these hands its command to /bin/sh.
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"),
               ("subprocess", "getstatusoutput"),
               ("asyncio", "create_subprocess_shell")}


def shell_uses(source: str, filename: str) -> list[str]:
    found = []
    for call_ in ast.walk(ast.parse(source, filename)):
        if not isinstance(call_, ast.Call):
            continue
        func = call_.func
        if (isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in SHELL_CALLS):
            found.append(f"{filename}:{call_.lineno} "
                         f"{func.value.id}.{func.attr}")
        for keyword in call_.keywords:
            if (keyword.arg == "shell"
                    and not (isinstance(keyword.value, ast.Constant)
                             and keyword.value.value is False)):
                found.append(f"{filename}:{call_.lineno} shell=")
    return found


def test_the_checker_sees_each_way_to_a_shell():
    source = ("import os, subprocess\nos.system('x')\nos.popen('x')\n"
              "subprocess.run('x', shell=True)\nsubprocess.run(['x'], "
              "shell=flag)\nsubprocess.getoutput('x')\n"
              "subprocess.run(['x'], shell=False)\n")
    assert [f.split(" ", 1)[1] for f in shell_uses(source, "f.py")] == [
        "os.system", "os.popen", "shell=", "shell=", "subprocess.getoutput"]


def test_no_code_of_the_project_runs_a_shell():
    files = [p for package in PACKAGES for p in sorted(package.rglob("*.py"))]
    assert len(files) > 20
    found = [use for p in files
             for use in shell_uses(p.read_text(), str(p))]
    assert found == []


# -- paths stay inside the sysfs root ----------------------------------------

@pytest.mark.parametrize("bdf", ["../../../etc", "0000:3b:00.0/../../..",
                                 "0000:3b:00.0/../0000:00:1f.0", "",
                                 "/etc/passwd", "0000:3B:00.0\n"])
def test_hostview_reads_only_a_bdf_under_the_root(tmp_path, bdf):
    sysfs = tmp_path / "sys"
    add_pci(sysfs, "0000:3b:00.0", *FPGA)
    # A "device" one level up, where a ``..`` would lead.
    (sysfs / "bus" / "pci" / "vendor").write_text("0x1172\n")
    assert hostview.pci_identity(str(sysfs), bdf) is None



def test_a_device_link_leading_outside_the_root_is_nothing(tmp_path):
    # Only root makes links in /sys, but the scanner refuses them too.
    outside = tmp_path / "outside"
    add_pci(outside, "0000:3b:00.0", *FPGA)
    real = outside / "devices" / "pci0000:00" / "0000:3b:00.0"
    usb = outside / "usb" / "3-1"
    usb.mkdir(parents=True)
    for name, value in (("busnum", "3"), ("devnum", "4"),
                        ("idVendor", "03e7"), ("idProduct", "2485")):
        (usb / name).write_text(value + "\n")
    sysfs = tmp_path / "sys"
    for link, target in ((sysfs / "bus" / "pci" / "devices" / "0000:3b:00.0",
                          real),
                         (sysfs / "bus" / "usb" / "devices" / "3-1", usb)):
        link.parent.mkdir(parents=True)
        link.symlink_to(target)
    assert hostview.pci_identity(str(sysfs), "0000:3b:00.0") is None
    assert hostview.usb_devices(str(sysfs)) == ()


@pytest.mark.parametrize("parent, mdev_type, uuid", [
    ("..", "t", DOMAIN_UUID), ("0000:86:00.0", "../../x", DOMAIN_UUID),
    ("0000:86:00.0", "t", "../../../tmp"), ("0000:86:00.0", "", DOMAIN_UUID)])
def test_mdev_writes_refuse_names_that_are_not_one_entry(tmp_path, parent,
                                                         mdev_type, uuid):
    with pytest.raises(mdev.MdevError, match="cannot name a sysfs entry"):
        mdev.create(str(tmp_path), parent, mdev_type, uuid)
    if uuid != DOMAIN_UUID:
        with pytest.raises(mdev.MdevError):
            mdev.remove(str(tmp_path), uuid)


@pytest.mark.parametrize("uuid", ["", " ", "u", "../x", DOMAIN_UUID + "0"])
def test_a_domain_uuid_that_is_not_a_uuid_is_refused(host, uuid):
    # The UUID names the domain's claim: a blank one once made a claim
    # that every later load of the cache refused.
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0"),
                                   uuid=uuid))
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert cache.load(host["cache"], validate=True).claims == {}


def test_a_domain_uuid_is_read_as_libvirt_writes_it(host):
    rc, _, _ = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0"),
                               uuid=f" {DOMAIN_UUID.upper()} "))
    assert rc == 0
    assert list(cache.load(host["cache"]).claims) == [DOMAIN_UUID]


@pytest.mark.parametrize("name", ["..", "../../etc", "a/../../b", "/etc",
                                  "eth0/../../..", "x" * 16])
def test_an_interface_name_from_xml_never_leaves_the_root(tmp_path, name):
    # A ``device`` link wherever a ``..`` in the name could lead.
    device = tmp_path / "devices" / "0000:3b:00.0"
    device.mkdir(parents=True)
    for where in (tmp_path / "class" / "net", tmp_path / "class",
                  tmp_path):
        where.mkdir(parents=True, exist_ok=True)
        (where / "device").symlink_to(device)
    assert hostview.interface_device(str(tmp_path), name) is None


@pytest.mark.parametrize("uuid", ["..", "../../../tmp",
                                  "4b20d080-1b54-4048-85b3-a6a62d165c01/..",
                                  "/4b20d080-1b54-4048-85b3-a6a62d165c01"])
def test_an_mdev_uuid_from_xml_never_leaves_the_root(tmp_path, uuid):
    (tmp_path / "bus" / "mdev" / "devices").mkdir(parents=True)
    assert hostview.mdev_now(str(tmp_path), uuid) is None


def test_a_crafted_mdev_uuid_is_refused_and_nothing_is_written(host,
                                                               tmp_path):
    target = tmp_path / "outside"
    (target / "mdev_supported_types" / "t").mkdir(parents=True)
    (target / "mdev_supported_types" / "t" / "create").write_text("")
    hostdev = xmlgen.mdev_hostdev("4b20d080-1b54-4048-85b3-a6a62d165c01")
    hostdev.find("source/address").set("uuid", f"../../../{target.name}")
    rc, out, err = call(domain_xml(hostdev))
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert (target / "mdev_supported_types" / "t" / "create").read_text() \
        == ""


def test_an_interface_name_reaches_ip_as_one_argument(tmp_path,
                                                      monkeypatch):
    """The name comes from the cache (a scan of sysfs): whatever it holds,
    ``ip`` gets it as one argument, and nothing interprets it."""
    record, witness = tmp_path / "argv", tmp_path / "pwned"
    fake_ip = tmp_path / "bin" / "ip"
    fake_ip.parent.mkdir()
    fake_ip.write_text(f"#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' "
                       f"\"$a\"; done > {record}\n")
    fake_ip.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_ip.parent))
    name = f"eth0; touch {witness} $(touch {witness}) `touch {witness}`"
    bridge.run_ip(("link", "set", "dev", name, "up"))
    assert record.read_bytes().split(b"\0")[:-1] == [
        b"link", b"set", b"dev", name.encode(), b"up"]
    assert not witness.exists()


# -- root never opens what someone else can bend -----------------------------

HOOK = ("import sys; from libvirt_hooks.hook import main; "
        "sys.exit(main(sys.argv[1:]))")


def run_hook(xml, config, *argv, timeout=30):
    """The hook as libvirt runs it, in its own process, with a memory
    bound (a read without end dies of it) and a time bound."""
    import resource
    import subprocess
    import sys

    def bounded():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-c", HOOK, *(argv or ("vm1", "prepare", "begin",
                                                "-"))],
        input=xml, capture_output=True, timeout=timeout, preexec_fn=bounded,
        env=dict(os.environ, NOVA_ACCEL_CONFIG=str(config)))


def test_a_link_where_the_log_goes_is_never_appended_through(host,
                                                            tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    host["log"].symlink_to(victim)
    assert call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")))[0] == 0
    assert victim.read_text() == "root's own file\n"
    assert DOMAIN_UUID in cache.load(host["cache"]).claims


def test_a_fifo_where_the_log_goes_never_hangs_the_start(host):
    os.mkfifo(host["log"])
    proc = run_hook(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")),
                    host["config"])
    assert proc.returncode == 0, proc.stderr
    assert DOMAIN_UUID in cache.load(host["cache"]).claims


def test_a_log_directory_others_can_write_is_refused(host, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    host["config"].write_text(host["config"].read_text().replace(
        str(host["log"]), str(shared / "hook.log")))
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")))
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert f"{shared} is writable by its group or others" in err
    assert not (shared / "hook.log").exists()


@pytest.mark.parametrize("option", ["profiles_dir", "sysfs_root"])
def test_profiles_and_sysfs_that_others_can_write_are_refused(host, tmp_path,
                                                             option):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    text = host["config"].read_text()
    if option == "sysfs_root":
        sysfs = text.split("sysfs_root = ")[1].split("\n")[0]
        os.chmod(sysfs, 0o777)
        expected = sysfs
    else:
        host["config"].write_text(text.replace(
            "[inventory]\n", f"[inventory]\nprofiles_dir = {shared}\n"))
        expected = str(shared)
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")))
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert f"{expected} is writable by its group or others" in err


def interface_xml(dev):
    from lxml import etree

    interface = etree.Element("interface", type="direct")
    etree.SubElement(interface, "source", dev=dev, mode="bridge")
    return domain_xml(interface)


@pytest.mark.parametrize("what", ["config", "cache"])
def test_a_fifo_for_the_config_or_the_cache_never_hangs_the_fast_path(
        host, what):
    # An ordinary <interface> whose name the fast path looks up in the
    # cache: before, a FIFO there (or as the configuration) hung the
    # start of every such domain.
    target = host["config"] if what == "config" else pathlib.Path(
        host["cache"])
    saved = target.read_bytes()
    target.unlink()
    os.mkfifo(target)
    try:
        proc = run_hook(interface_xml("eth9"), host["config"])
    finally:
        target.unlink()
        target.write_bytes(saved)
    assert proc.returncode in (0, 1) and b"Traceback" not in proc.stderr


def test_a_config_that_never_ends_is_refused_in_one_line(host, tmp_path):
    endless = tmp_path / "endless.conf"
    endless.symlink_to("/dev/zero")
    proc = run_hook(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")), endless)
    err = proc.stderr.decode()
    assert proc.returncode == 1 and err.count("\n") == 1, err
    assert "Traceback" not in err and "MemoryError" not in err
    # A plain domain is never held up by it.
    assert run_hook(domain_xml(), endless).returncode == 0


def test_the_timer_runs_before_anything_is_opened(host, monkeypatch):
    # A configuration on a hung disk: the read never returns. The hook
    # gives up at its timeout (from the environment: the file is what
    # hangs) with the one line, not never.
    import time

    from accel_inventory import settings

    def hung(path):
        time.sleep(30)

    monkeypatch.setattr(settings.safe_io, "read_config", hung)
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__TIMEOUT", "0.5")
    started = time.monotonic()
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")))
    assert time.monotonic() - started < 5
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert "did not finish within its timeout" in err


# -- nothing a tenant writes decides the path --------------------------------

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"


def named(server_name):
    """A plain domain as nova writes it, with the server's name (the
    tenant's choice) in its metadata."""
    from lxml import etree

    xml = etree.fromstring(domain_xml())
    metadata = etree.SubElement(xml, "metadata")
    instance = etree.SubElement(metadata, f"{{{NOVA_NS}}}instance",
                                nsmap={"nova": NOVA_NS})
    etree.SubElement(instance, f"{{{NOVA_NS}}}name").text = server_name
    xml.append(xml.find("devices"))
    return etree.tostring(xml)


TENANT_NAMES = ["my 'mdev' box", 'a "mdev" b', "<hostdev> & co",
                "name='resources1:CUSTOM_ACCEL_FPGA'",
                "x name=\"resources:CUSTOM_ACCEL_X\" <interface>"]


@pytest.mark.parametrize("server_name", TENANT_NAMES)
def test_a_server_name_never_sends_a_plain_domain_down_the_full_path(
        host, server_name):
    from tests.common.hooks import fast_path_imports

    xml = named(server_name)
    assert fast_path_imports("prepare", xml) == (0, [])


@pytest.mark.parametrize("server_name", TENANT_NAMES)
def test_a_server_name_never_starts_an_attach_worker(host, mocker,
                                                     server_name):
    popen = mocker.patch("subprocess.Popen")
    assert call(named(server_name))[0] == 0
    out, err = io.StringIO(), io.StringIO()
    assert hook.main(["vm1", "started", "begin", "-"],
                     stdin=io.BytesIO(named(server_name)), stdout=out,
                     stderr=err) == 0
    popen.assert_not_called()


# -- no tenant gets another's leftovers --------------------------------------

def test_a_function_waiting_to_be_cleaned_is_refused(host):
    from accel_inventory import release

    fid = model.function_id("dsn-00000000000000aa", 0, 0)
    before = cache.update(host["cache"], lambda inv: release.mark(
        inv, {fid: OTHER_UUID}, release.BY_DEFAULT))
    rc, out, err = call(domain_xml(xmlgen.pci_hostdev("0000:3b:00.0")))
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert (f"function {fid} was released by {OTHER_UUID} and is not clean "
            f"yet (the agent cleans it at its next round)") in err
    assert cache.load(host["cache"]) == before


def test_a_placement_claim_on_a_held_function_is_refused(host):
    from accel_inventory import claim_sync
    from libvirt_hooks import resolve

    fid = model.function_id("dsn-00000000000000aa", 0, 0)
    inv = cache.load(host["cache"])
    inv = claims.record_claim(inv, model.Claim(
        consumer=DOMAIN_UUID, functions=[fid],
        source=claim_sync.CLAIM_SOURCE))
    inv.cleaning[fid] = model.Cleaning(function=fid, after=OTHER_UUID,
                                       state=model.CLEANING_HELD, since=0.0,
                                       reason="no reset")
    conf = decide.load_conf(str(host["config"]))
    [line] = resolve.claim_refusals(conf, inv, DOMAIN_UUID)
    assert f"{fid} was released by {OTHER_UUID} and is not clean yet" in line
