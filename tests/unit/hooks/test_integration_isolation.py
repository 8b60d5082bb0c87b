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

"""The libvirt integration tests never touch an installation (14.5): their
hook is a file of their own that names the session's configuration, and
any installed qemu hook stops them before they change anything."""

import importlib.util
import os
import subprocess
import sys

from tests.common.hooks import domain_xml
from libvirt_hooks import xmlgen

CONFTEST = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "integration", "libvirt", "conftest.py")


def load_conftest():
    spec = importlib.util.spec_from_file_location("libvirt_it", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_session_hook_is_not_the_installation():
    it = load_conftest()
    assert it.TEST_HOOK != it.HOOK_PATH
    assert os.path.dirname(it.TEST_HOOK) == os.path.dirname(it.HOOK_PATH)


def test_every_installed_qemu_hook_is_found(tmp_path):
    it = load_conftest()
    assert it.other_hooks(str(tmp_path)) == []
    (tmp_path / "qemu.d").mkdir()
    assert it.other_hooks(str(tmp_path)) == []
    (tmp_path / "qemu.d" / "nova-accel").write_text("")
    (tmp_path / "qemu").symlink_to(tmp_path / "gone")
    assert it.other_hooks(str(tmp_path)) == [
        str(tmp_path / "qemu"), str(tmp_path / "qemu.d" / "nova-accel")]


def test_the_session_hook_reads_the_session_configuration(tmp_path):
    # Run without NOVA_ACCEL_CONFIG, as libvirtd runs hooks: the script
    # itself must name the file. A cache_path that is a directory makes
    # the hook refuse, naming it: proof of which file it read.
    it = load_conftest()
    folder = tmp_path / "cache-folder"
    folder.mkdir()
    config = tmp_path / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {tmp_path}\n"
                      f"cache_path = {folder}\n")
    script = tmp_path / "hook"
    script.write_text(it.hook_script(sys.executable, str(config)))
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k != "NOVA_ACCEL_CONFIG" and not k.startswith("OS_")}
    result = subprocess.run(
        [str(script), "vm1", "prepare", "begin", "-"],
        input=domain_xml(xmlgen.pci_hostdev("0000:3b:00.1")), env=env,
        capture_output=True, timeout=60)
    assert result.returncode == 1
    assert f"{folder} is a directory".encode() in result.stderr


def test_only_a_dead_sessions_files_are_leftovers(tmp_path):
    # A session killed mid-run (a CI job stopped) leaves its hook behind;
    # the next session removes it, and nothing that is not such a file.
    it = load_conftest()
    live = tmp_path / "live"
    live.write_text(it.hook_script(sys.executable, "/x.conf"))
    other_boot = tmp_path / "other-boot"
    other_boot.write_text(f"#!/bin/sh\n{it.SESSION_MARK}0000 pid "
                          f"{os.getpid()}\n")
    gone = subprocess.run([sys.executable, "-c", "import os; print("
                           "os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    dead = tmp_path / "dead"
    dead.write_text(f"{it.SESSION_MARK}{it._boot_id()} pid {gone}\n[x]\n")
    installed = tmp_path / "installed"
    installed.write_text("#!/usr/bin/python3\nfrom libvirt_hooks.hook "
                         "import main\n")
    link = tmp_path / "link"
    link.symlink_to(dead)
    paths = [str(p) for p in (live, other_boot, dead, installed, link,
                              tmp_path / "absent")]
    assert it.remove_leftovers(paths) == [str(other_boot), str(dead)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "installed", "link", "live"]
