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

"""The machine side of the end-to-end tests: a real libvirtd at
qemu:///system running our hook, installed by ``accel-libvirt-hook
--install``.

libvirtd reads hooks only from /etc/libvirt/hooks, and the hook reads its
options only from /etc/nova-accel/nova-accel.conf (libvirt passes hooks
no environment of ours). So the session installs both there only when
neither exists and no other qemu hook does, refuses otherwise (it never
overwrites an installation), and removes exactly what it created. It
installs packages, starts virtlogd and libvirtd the way the libvirt
integration tests do (their helpers, imported) when they are missing.
"""

import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
# The nova test base (tests/functional) and the scheduler's test base.


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


libvirt_it = _load("libvirt_it_conftest", os.path.join(
    TESTS, "integration", "libvirt", "conftest.py"))
HOOKS_DIR = os.path.dirname(os.path.dirname(libvirt_it.HOOK_PATH))


def _pid(name):
    found = subprocess.run(["pgrep", "-x", name], capture_output=True,
                           text=True).stdout.split()
    return int(found[0]) if found else None


def _remove_leftovers():
    """A killed session's hook and configuration: its configuration bears
    the session's mark, and the session only ever installs both where
    neither was."""
    if libvirt_it.remove_leftovers([libvirt_it.HOOK_CONFIG]):
        if os.path.lexists(libvirt_it.HOOK_PATH):
            os.unlink(libvirt_it.HOOK_PATH)
        print(f"removed {libvirt_it.HOOK_PATH} and {libvirt_it.HOOK_CONFIG}: "
              f"a killed session's")


def _refusal():
    """Why this machine's hook installation must not be touched, or
    None."""
    for path in (libvirt_it.HOOK_PATH, libvirt_it.HOOK_CONFIG,
                 os.path.join(HOOKS_DIR, "qemu")):
        if os.path.lexists(path):
            return f"{path} exists"
    qemu_d = os.path.dirname(libvirt_it.HOOK_PATH)
    if os.path.isdir(qemu_d) and os.listdir(qemu_d):
        return f"{qemu_d} holds other hooks"
    return None


def _kvm_readable():
    """libvirt re-probes QEMU's capabilities on every call (36-57 s each)
    while /dev/kvm is root:root 0600, as on these machines; group kvm,
    0660 is what Debian's udev rule gives it. Returns the undo."""
    try:
        st = os.stat("/dev/kvm")
    except FileNotFoundError:
        return lambda: None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o060 == 0o060:
        return lambda: None
    import grp

    os.chown("/dev/kvm", -1, grp.getgrnam("kvm").gr_gid)
    os.chmod("/dev/kvm", 0o660)

    def undo():
        os.chown("/dev/kvm", -1, st.st_gid)
        os.chmod("/dev/kvm", mode)
    return undo


def wait_for_libvirtd(timeout=30.0):
    import libvirt

    deadline = time.monotonic() + timeout
    while True:
        try:
            return libvirt.open("qemu:///system")
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                pytest.fail("libvirtd did not answer on qemu:///system")
            time.sleep(0.2)


class Libvirtd:
    """The libvirtd these tests talk to; restartable when this session
    started it or nothing but this session's domains run under it."""

    def __init__(self, started):
        self.started = started

    def restart(self, own_uuids):
        import libvirt

        conn = libvirt.open("qemu:///system")
        others = [d.name() for d in conn.listAllDomains(
            libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            if d.UUIDString() not in own_uuids]
        conn.close()
        if others and not self.started:
            pytest.fail(f"libvirtd runs domains of someone else "
                        f"({', '.join(others)}): not restarting it")
        pid = _pid("libvirtd")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid("libvirtd") == pid:
            if time.monotonic() > deadline:
                pytest.fail("libvirtd did not stop within 30 s")
            time.sleep(0.1)
        subprocess.run(["libvirtd", "-d"], check=True)
        wait_for_libvirtd().close()


@pytest.fixture(scope="session")
def machine(tmp_path_factory):
    """The hook installed for this session's sysfs tree and cache under a
    running libvirtd; yields their paths and the daemon."""
    if os.geteuid() != 0:
        pytest.fail("the end-to-end tests need root (they start libvirtd "
                    "and install the hook)")
    _remove_leftovers()
    refusal = _refusal()
    if refusal:
        pytest.fail(f"a libvirt hook is installed on this machine "
                    f"({refusal}); the end-to-end tests install their own "
                    f"and never overwrite one: remove it or run elsewhere")
    libvirt_it._install_packages()
    if not shutil.which("qemu-img"):  # nova's libvirt driver runs it
        subprocess.run(["apt-get", "install", "-y", "-qq",
                        "--no-install-recommends", "qemu-utils"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    undo_kvm = _kvm_readable()
    state = tmp_path_factory.mktemp("e2e")
    # Deepest first, every level that is missing (/etc/libvirt/hooks
    # itself may be).
    created = (libvirt_it._missing_dirs(libvirt_it.HOOK_PATH)
               + libvirt_it._missing_dirs(libvirt_it.HOOK_CONFIG))
    for directory in reversed(created):
        os.makedirs(directory, exist_ok=True)
    with open(libvirt_it.HOOK_CONFIG, "w") as f:
        f.write(f"{libvirt_it.session_mark()}"
                f"[inventory]\nsysfs_root = {state / 'sys'}\n"
                f"cache_path = {state / 'inventory.json'}\n"
                f"[libvirt_hooks]\nlog_file = {state / 'hook.log'}\n")
    subprocess.run([os.path.join(os.path.dirname(sys.executable),
                                 "accel-libvirt-hook"), "--install",
                    libvirt_it.HOOK_PATH], check=True)
    started_virtlogd = _pid("virtlogd") is None
    if started_virtlogd:
        subprocess.run(["virtlogd", "-d"], check=True)
    started = _pid("libvirtd") is None
    if started:
        subprocess.run(["libvirtd", "-d"], check=True)
    else:
        # Whether any hook exists is read at the daemon's start.
        os.kill(_pid("libvirtd"), signal.SIGHUP)
    wait_for_libvirtd().close()
    try:
        yield {"state": state, "config": libvirt_it.HOOK_CONFIG,
               "libvirtd": Libvirtd(started)}
    finally:
        os.unlink(libvirt_it.HOOK_PATH)
        os.unlink(libvirt_it.HOOK_CONFIG)
        for directory in created:
            os.rmdir(directory)
        pid = _pid("libvirtd")
        if pid is not None:
            os.kill(pid, signal.SIGTERM if started else signal.SIGHUP)
        if started_virtlogd and _pid("virtlogd") is not None:
            os.kill(_pid("virtlogd"), signal.SIGTERM)
        undo_kvm()
