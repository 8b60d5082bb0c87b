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

"""``accel-libvirt-hook``, ``accel-domain`` and the attach worker given bad
input: unknown options, missing and unreadable files, values of the wrong
type, hostile values. Each ends with exit 1 or 2, one line on stderr (the
worker, whose stderr is /dev/null: one syslog line) and no traceback, and
leaves the cache byte for byte as it was."""

import io
import os
import subprocess
import sys

import pytest

from accel_inventory.cache import good_copy_path
from libvirt_hooks import attach, cli, hook, xmlgen
from tests.common import hooks
from tests.common.hooks import domain_xml

host = hooks.host
HOSTDEV = domain_xml(xmlgen.pci_hostdev("0000:3b:00.1"))


@pytest.fixture
def cached(host, tmp_path, monkeypatch):
    """The hook's host, no option from the environment, and what its cache
    holds now."""
    for name in list(os.environ):
        if name.startswith(("OS_INVENTORY__", "OS_LIBVIRT_HOOKS__")):
            monkeypatch.delenv(name)
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "binary.conf").write_bytes(b"\xff\xfe\x00[inventory\n")
    paths = (host["cache"], good_copy_path(host["cache"]))
    host.update(tmp=str(tmp_path), folder=str(folder),
                config=os.environ["NOVA_ACCEL_CONFIG"],
                before={p: open(p, "rb").read() for p in paths})
    return host


def unchanged(host):
    return {p: open(p, "rb").read() for p in host["before"]} == \
        host["before"]


def fill(text, host):
    return text.format(tmp=host["tmp"], folder=host["folder"],
                       cache=host["cache"], config=host["config"])


def test_help_says_what_the_hook_does_how_to_install_and_where_it_logs():
    out, err = io.StringIO(), io.StringIO()
    assert hook.main(["--help"], stdout=out, stderr=err) == 0
    text = out.getvalue()
    assert text.startswith("usage: accel-libvirt-hook")
    assert err.getvalue() == ""
    for promise in ("refuses the start", "--install", hook.INSTALL_PATH,
                    "SIGHUP", "log_file", "syslog", hook.DEFAULT_CONFIG,
                    "NOVA_ACCEL_CONFIG"):
        assert promise in text, promise


@pytest.mark.parametrize("argv, code, says", [
    ([], 2, "no arguments"),
    (["--bogus"], 2, "unrecognized arguments: --bogus"),
    (["-h", "x"], 2, "unrecognized arguments: -h x"),
    (["--install", "--force"], 2, "--force"),
    (["--install", ""], 2, "--install"),
    (["vm1", "prepare"], 2, "vm1 prepare"),
    (["--install", "{cache}/hook"], 1, "cannot install"),
    (["--install", "{folder}"], 1, "cannot install"),
])
def test_hook_command_line(cached, argv, code, says):
    out, err = io.StringIO(), io.StringIO()
    assert hook.main([fill(a, cached) for a in argv], stdout=out,
                     stderr=err) == code
    assert out.getvalue() == "" and err.getvalue().count("\n") == 1
    assert fill(says, cached) in err.getvalue()
    assert os.listdir(cached["folder"]) == [] and unchanged(cached)


def test_a_domain_named_like_an_option_is_a_domain(cached, tmp_path):
    # libvirt passes four arguments: "--install" is then a domain's name,
    # never a request to install the hook in the working directory.
    os.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    assert hook.main(["--install", "started", "begin", "-"],
                     stdin=io.BytesIO(domain_xml()), stdout=out,
                     stderr=err) == 0
    assert (out.getvalue(), err.getvalue()) == ("", "")
    assert not (tmp_path / "started").exists()


@pytest.mark.parametrize("env, says", [
    ({"NOVA_ACCEL_CONFIG": "{tmp}/absent.conf"}, "absent.conf"),
    ({"NOVA_ACCEL_CONFIG": "{folder}"}, "folder"),
    ({"NOVA_ACCEL_CONFIG": "{tmp}/binary.conf"}, "binary.conf"),
    ({"OS_LIBVIRT_HOOKS__TIMEOUT": "soon"},
     "[libvirt_hooks] timeout = 'soon' (set in OS_LIBVIRT_HOOKS__TIMEOUT): "
     "expected a number of at least 0.5"),
    ({"OS_INVENTORY__MDEV_TYPES": "10de"}, "KEY=VALUE"),
    ({"OS_LIBVIRT_HOOKS__STRICT_IDENTITY": "maybe"}, "strict_identity"),
    ({"OS_INVENTORY__CACHE_PATH": "{folder}"}, "is a directory, not a file"),
    ({"OS_INVENTORY__CACHE_PATH": "{cache}/x.json"}, "is a file, not a"),
])
def test_hook_refuses_an_accelerator_domain_in_one_line(cached, monkeypatch,
                                                        env, says):
    for variable, value in env.items():
        monkeypatch.setenv(variable, fill(value, cached))
    rc, out, err = hooks.call(HOSTDEV)
    assert rc == hook.EXIT_REFUSED and out == ""
    assert err.count("\n") == 1 and fill(says, cached) in err, err
    assert unchanged(cached)
    # A domain without accelerators is never held up by it.
    assert hooks.call(domain_xml())[0] == 0


def run_domain(*argv):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(["--connect", "test:///default", *argv], out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv, env, code, says", [
    (["--bogus", "status"], {}, 2, "--bogus"),
    (["status", "--bogus"], {}, 2, "--bogus"),
    ([], {}, 2, "COMMAND"),
    (["repair"], {}, 2, "DOMAIN"),
    (["--config-file", "{tmp}/absent.conf", "status"], {}, 1, "absent.conf"),
    (["--config-file", "{folder}", "status"], {}, 1, "folder"),
    (["--config-file", "{tmp}/binary.conf", "status"], {}, 1, "binary.conf"),
    (["status"], {"NOVA_ACCEL_CONFIG": "{tmp}/absent.conf"}, 1,
     "absent.conf"),
    (["status"], {"OS_LIBVIRT_HOOKS__ATTACH_TIMEOUT": "0"}, 1,
     "[libvirt_hooks] attach_timeout = '0' (set in "
     "OS_LIBVIRT_HOOKS__ATTACH_TIMEOUT): expected a number of at least 1.0"),
    (["status"], {"OS_INVENTORY__CACHE_PATH": "{folder}"}, 1,
     "is a directory, not a file"),
    (["attach", "../../etc/passwd"], {}, 1, "passwd"),
    (["detach", "x" * 10_000], {}, 1, "xxx"),
])
def test_accel_domain(cached, monkeypatch, capsys, argv, env, code, says):
    for variable, value in env.items():
        monkeypatch.setenv(variable, fill(value, cached))
    rc, out, err = run_domain(*[fill(a, cached) for a in argv])
    err += capsys.readouterr().err  # argparse's, on sys.stderr
    assert (rc, out) == (code, "")
    assert err.count("\n") == 1 and err.startswith("accel-domain"), err
    assert fill(says, cached) in err
    assert unchanged(cached)


def test_worker_with_a_bad_option_says_so_in_syslog(cached, monkeypatch):
    # It raised SettingsError into /dev/null: nothing said anywhere.
    logged = []
    monkeypatch.setattr("syslog.syslog", lambda *args: logged.append(args))
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__ATTACH_TIMEOUT", "abc")
    uuid = "abababab-0000-4000-8000-000000000001"
    assert attach.run_worker(uuid, cached["config"],
                             connect=pytest.fail) == 1
    (_priority, line), = logged
    assert uuid in line and "attach_timeout" in line and \
        "OS_LIBVIRT_HOOKS__ATTACH_TIMEOUT" in line
    assert unchanged(cached)


@pytest.mark.parametrize("argv", [[], ["--bogus", "x"], ["--await"]])
def test_worker_command_line(cached, argv):
    result = subprocess.run([sys.executable, "-m", "libvirt_hooks.attach",
                             *argv], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "usage" in result.stderr
    assert unchanged(cached)


# -- a full disk -------------------------------------------------------------

def test_a_full_disk_at_the_last_good_copy_records_no_claim(cached,
                                                             monkeypatch):
    """The cache itself is written, its last good copy is not: before, the
    cache kept the refused domain's claim as running, and the next domain
    given the device was refused "held by running domain"."""
    sync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        sync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    rc, out, err = hooks.call(HOSTDEV)
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert "No space left on device" in err
    monkeypatch.undo()
    assert unchanged(cached)
    other = domain_xml(xmlgen.pci_hostdev("0000:3b:00.1"),
                       uuid=hooks.OTHER_UUID, name="vm2")
    assert hooks.call(other, name="vm2") == (0, "", "")


def test_a_lock_that_cannot_take_the_pid_is_one_line(cached, monkeypatch):
    def pwrite(fd, data, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", pwrite)
    rc, out, err = hooks.call(HOSTDEV)
    assert (rc, out) == (1, "") and err.count("\n") == 1
    assert "cannot write to the cache lock" in err
    assert "No space left on device" in err
    assert unchanged(cached)
