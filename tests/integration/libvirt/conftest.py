"""A real libvirtd for the hook's integration tests.

CI runs these on a fresh machine as root: the fixture installs what is
missing (apt-get), starts virtlogd and libvirtd when they are not running,
installs the hook pointing at a test sysfs tree and cache, and makes
libvirtd re-read its hooks.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest

PACKAGES = ["libvirt-daemon-system", "libvirt-daemon-driver-qemu",
            "qemu-system-x86", "libvirt-clients", "libxml2-utils"]
HOOK_CONFIG = "/etc/nova-accel/nova-accel.conf"
HOOK_PATH = "/etc/libvirt/hooks/qemu.d/nova-accel"


def _running(name):
    return subprocess.run(["pgrep", "-x", name],
                          capture_output=True).returncode == 0


def _install_packages():
    if shutil.which("libvirtd") and shutil.which("virsh"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq",
                    "--no-install-recommends", *PACKAGES], check=True,
                   env=env)


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the libvirt integration tests need root (they start "
                    "libvirtd and install the hook)")
    _install_packages()
    state = tmp_path_factory.mktemp("hook")
    os.makedirs(os.path.dirname(HOOK_CONFIG), exist_ok=True)
    saved_config = None
    if os.path.exists(HOOK_CONFIG):
        with open(HOOK_CONFIG) as f:
            saved_config = f.read()
    with open(HOOK_CONFIG, "w") as f:
        f.write(f"[inventory]\nsysfs_root = {state / 'sys'}\n"
                f"cache_path = {state / 'inventory.json'}\n"
                f"[libvirt_hooks]\nlog_file = {state / 'hook.log'}\n")
    subprocess.run([sys.executable, "-m", "libvirt_hooks.hook", "--install",
                    HOOK_PATH], check=True)
    if not _running("virtlogd"):
        subprocess.run(["virtlogd", "-d"], check=True)
    if _running("libvirtd"):
        subprocess.run(["pkill", "-HUP", "-x", "libvirtd"], check=True)
    else:
        subprocess.run(["libvirtd", "-d"], check=True)
    import libvirt
    for _ in range(100):
        try:
            conn = libvirt.open("qemu:///system")
            break
        except libvirt.libvirtError:
            time.sleep(0.1)
    else:
        pytest.fail("libvirtd did not answer on qemu:///system")
    yield {"conn": conn, "state": state}
    conn.close()
    os.unlink(HOOK_PATH)
    if saved_config is None:
        os.unlink(HOOK_CONFIG)
    else:
        with open(HOOK_CONFIG, "w") as f:
            f.write(saved_config)
    if _running("libvirtd"):
        subprocess.run(["pkill", "-HUP", "-x", "libvirtd"])


@pytest.fixture
def fake_host(libvirtd):
    """An empty fake sysfs tree and no cache where the installed hook
    looks (the daemon's hook reads the session's configuration). Nothing
    of an earlier test's cache is left: a last good copy would bring its
    cards back as lost ones."""
    from accel_inventory.sample import FakeSysfs

    state = libvirtd["state"]
    shutil.rmtree(state / "sys", ignore_errors=True)
    for leftover in state.glob("inventory.json*"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return FakeSysfs(str(state / "sys"))


@pytest.fixture
def define(libvirtd):
    defined = []

    def _define(xml):
        dom = libvirtd["conn"].defineXML(xml)
        defined.append(dom)
        return dom

    yield _define
    for dom in defined:
        if dom.isActive():
            dom.destroy()
        dom.undefine()
