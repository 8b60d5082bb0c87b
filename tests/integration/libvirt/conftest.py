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

"""A real libvirtd for the hook's integration tests.

CI runs these on a fresh machine as root: the fixture installs what is
missing (apt-get), starts virtlogd and libvirtd when they are not running,
installs a hook of its own pointing at a test sysfs tree and cache, and
makes libvirtd re-read its hooks.

It never touches an installation: the hook goes to its own file in
qemu.d (``TEST_HOOK``) and reads the session's configuration through
``NOVA_ACCEL_CONFIG``, set by that file (libvirt passes hooks no
environment of ours), so ``/etc/nova-accel/nova-accel.conf`` is neither
read nor written. Where any other qemu hook is installed (a compute
host's, or the end-to-end tests' running now) the session refuses: that
hook would check the test domains against its own cache. At the end it
removes exactly what it created.
"""

import os
import shutil
import stat
import subprocess
import sys
import time

import pytest

PACKAGES = ["libvirt-daemon-system", "libvirt-daemon-driver-qemu",
            "qemu-system-x86", "libvirt-clients", "libxml2-utils"]
# Where an installation lives (the end-to-end tests install there).
HOOK_CONFIG = "/etc/nova-accel/nova-accel.conf"
HOOK_PATH = "/etc/libvirt/hooks/qemu.d/nova-accel"
HOOKS_DIR = os.path.dirname(os.path.dirname(HOOK_PATH))
# This session's own hook.
TEST_HOOK = os.path.join(os.path.dirname(HOOK_PATH), "nova-accel-it")


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


# The first lines of every file a session writes outside its own
# folders: a session that was killed (a CI job stopped, a machine saved
# while one ran) leaves them behind, and they are then known as its own.
SESSION_MARK = "# written by a nova-accel test session: boot "


def _boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def session_mark() -> str:
    return f"{SESSION_MARK}{_boot_id()} pid {os.getpid()}\n"


def left_by_a_dead_session(path: str) -> bool:
    """Whether ``path`` is a regular file written by a test session that
    no longer runs: its mark names another boot, or a process gone."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path) as f:
            head = [f.readline() for _ in range(3)]
    except (OSError, UnicodeDecodeError):
        return False
    for line in head:
        if line.startswith(SESSION_MARK):
            try:
                boot, _, pid = line[len(SESSION_MARK):].split()
                return boot != _boot_id() or not os.path.exists(
                    f"/proc/{int(pid)}")
            except ValueError:
                return False
    return False


def remove_leftovers(paths: list[str]) -> list[str]:
    """Remove those of ``paths`` a dead test session left (and nothing
    else); returns them."""
    removed = [path for path in paths if left_by_a_dead_session(path)]
    for path in removed:
        os.unlink(path)
    return removed


def other_hooks(hooks_dir: str = HOOKS_DIR) -> list[str]:
    """The qemu hooks installed under ``hooks_dir``: libvirt runs
    ``qemu`` and every file in ``qemu.d``."""
    found = [os.path.join(hooks_dir, "qemu")]
    qemu_d = os.path.join(hooks_dir, "qemu.d")
    if os.path.isdir(qemu_d):
        found += [os.path.join(qemu_d, name) for name in os.listdir(qemu_d)]
    return sorted(path for path in found if os.path.lexists(path))


def hook_script(python: str, config: str) -> str:
    """The session's hook: the installed one's, with its configuration."""
    return (f"#!{python}\n"
            f"{session_mark()}"
            "import os, sys\n"
            f"os.environ['NOVA_ACCEL_CONFIG'] = {config!r}\n"
            "from libvirt_hooks.hook import main\n"
            "sys.exit(main())\n")


def _missing_dirs(path: str) -> list[str]:
    """The directories above ``path`` that do not exist, deepest first."""
    missing = []
    directory = os.path.dirname(path)
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    return missing


def _hup_libvirtd():
    # Whether any hook exists is read at the daemon's start and at SIGHUP.
    if _running("libvirtd"):
        subprocess.run(["pkill", "-HUP", "-x", "libvirtd"], check=True)


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the libvirt integration tests need root (they start "
                    "libvirtd and install the hook)")
    left = remove_leftovers([TEST_HOOK])
    if left:
        print(f"removed {', '.join(left)}: a killed session's")
    installed = other_hooks()
    if installed:
        pytest.fail(f"qemu hooks are installed on this machine "
                    f"({', '.join(installed)}); they would judge this "
                    f"session's domains by their own cache, and these tests "
                    f"never touch an installation: run them elsewhere")
    _install_packages()
    state = tmp_path_factory.mktemp("hook")
    config = state / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {state / 'sys'}\n"
                      f"cache_path = {state / 'inventory.json'}\n"
                      f"[libvirt_hooks]\nlog_file = {state / 'hook.log'}\n")
    created = _missing_dirs(TEST_HOOK)
    os.makedirs(os.path.dirname(TEST_HOOK), mode=0o755, exist_ok=True)
    with open(TEST_HOOK, "x") as f:
        f.write(hook_script(sys.executable, str(config)))
    os.chmod(TEST_HOOK, 0o755)
    try:
        if not _running("virtlogd"):
            subprocess.run(["virtlogd", "-d"], check=True)
        if _running("libvirtd"):
            _hup_libvirtd()
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
        yield {"conn": conn, "state": state, "config": str(config)}
        conn.close()
    finally:
        os.unlink(TEST_HOOK)
        for directory in created:
            os.rmdir(directory)
        _hup_libvirtd()


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
