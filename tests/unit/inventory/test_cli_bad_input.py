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

"""``accel-inventory`` given bad input: unknown options, missing and
unreadable files, values of the wrong type, hostile values. Each ends
with exit 1 (operational) or 2 (usage), one line on stderr and no
traceback, and leaves the cache and its last good copy byte for byte as
they were."""

import json
import os
import subprocess
import sys

import pytest

from accel_inventory import cli, sample
from accel_inventory.cache import good_copy_path


@pytest.fixture
def host(tmp_path, monkeypatch):
    """The sample host scanned into a cache that the file
    NOVA_ACCEL_CONFIG names points at, and what the cache holds."""
    for name in list(os.environ):
        if name.startswith(("OS_INVENTORY__", "OS_AGENT__",
                            "OS_PLACEMENT__")):
            monkeypatch.delenv(name)
    root = sample.build_sample_host(str(tmp_path / "sys"))
    path = str(tmp_path / "inventory.json")
    config = tmp_path / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {root}\n"
                      f"cache_path = {path}\nhostname = h1\n")
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(config))
    assert cli.main(["scan"]) == 0
    before = {p: open(p, "rb").read() for p in (path, good_copy_path(path))}
    folder = tmp_path / "folder"
    folder.mkdir()
    (tmp_path / "binary.conf").write_bytes(b"\xff\xfe\x00[inventory\n")
    return {"tmp": tmp_path, "root": root, "cache": path, "before": before,
            "folder": str(folder), "config": str(config)}


def write_config(host, text):
    path = host["tmp"] / "bad.conf"
    path.write_text(text)
    return str(path)


# (argv, environment, exit code, what the line must say); {tmp}, {folder},
# {cache} and {root} are the fixture's paths.
CASES = {
    "unknown global option": (["--bogus", "status"], {}, 2, "--bogus"),
    "unknown command option": (["status", "--bogus"], {}, 2, "--bogus"),
    "no command": ([], {}, 2, "COMMAND"),
    "unknown command": (["frobnicate"], {}, 2, "frobnicate"),
    "bad --format": (["show", "--format", "xml"], {}, 2, "xml"),
    "negative debounce": (["watch", "--debounce", "-1"], {}, 2, "-1"),
    "nan debounce": (["watch", "--debounce", "nan"], {}, 2, "nan"),
    "missing --config-file": (["--config-file", "{tmp}/absent.conf",
                               "status"], {}, 1, "absent.conf"),
    "--config-file a folder": (["--config-file", "{folder}", "status"], {}, 1,
                               "folder"),
    "--config-file not text": (["--config-file", "{tmp}/binary.conf",
                                "status"], {}, 1, "binary.conf"),
    "missing NOVA_ACCEL_CONFIG": (["status"], {
        "NOVA_ACCEL_CONFIG": "{tmp}/absent.conf"}, 1, "absent.conf"),
    "float from the environment": (["status"], {
        "OS_INVENTORY__LOCK_TIMEOUT": "abc"}, 1,
        "[inventory] lock_timeout = 'abc' (set in "
        "OS_INVENTORY__LOCK_TIMEOUT): expected a number of at least 0.0"),
    "below the minimum": (["status"], {
        "OS_INVENTORY__LOCK_TIMEOUT": "-1"}, 1, "lock_timeout"),
    "dict from the environment": (["show"], {
        "OS_INVENTORY__MDEV_TYPES": "10de"}, 1, "mdev_types"),
    "agent option": (["agent", "--once"], {"OS_AGENT__INTERVAL": "0"}, 1,
                     "[agent] interval = '0'"),
    "placement option": (["publish"], {"OS_PLACEMENT__TIMEOUT": "soon"}, 1,
                         "[placement] timeout = 'soon'"),
    "cache a folder": (["status", "--cache", "{folder}"], {}, 1,
                       "is a directory, not a file"),
    "scan into a folder": (["scan", "--cache", "{folder}"], {}, 1,
                           "is a directory, not a file"),
    "cache below a file": (["scan", "--cache", "{cache}/x.json"], {}, 1,
                           "is a file, not a directory"),
    "ack below a file": (["ack", "x", "--cache", "{cache}/x.json"], {}, 1,
                         "is a file, not a directory"),
    "missing sysfs root": (["scan", "--sysfs-root", "{tmp}/nothing"], {}, 1,
                           "nothing"),
    "sysfs root a file": (["scan", "--sysfs-root", "{cache}"], {}, 1,
                          "bus/pci"),
    "watch a missing root": (["watch", "--sysfs-root", "{tmp}/nothing"], {},
                             1, "nothing"),
    "card id a path": (["ack", "../../etc/passwd"], {}, 1, "passwd"),
    "card id huge": (["forget", "x" * 100_000], {}, 1, "xxx"),
    "card id a newline": (["ack", "a\nb"], {}, 1, "a b"),
    "cache name too long": (["status", "--cache", "{tmp}/" + "c" * 5000],
                            {}, 1, "too long"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_the_cache(host, monkeypatch,
                                                    capsys, name):
    argv, env, code, says = CASES[name]
    fill = {k: host[k] for k in ("tmp", "folder", "cache", "root")}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value.format(**fill))
    assert cli.main([arg.format(**fill) for arg in argv]) == code
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("accel-inventory"), err
    assert says in err
    assert {p: open(p, "rb").read() for p in host["before"]} == \
        host["before"]


def test_a_cache_folder_is_not_told_to_be_moved_aside(host, capsys):
    # Moving "the file" aside and rescanning cannot help a folder.
    assert cli.main(["status", "--cache", host["folder"]]) == 1
    err = capsys.readouterr().err
    assert "Move the file aside" not in err
    assert os.path.join(host["folder"], "inventory.json") in err


def test_an_unusable_cache_stays_as_it_was(host, capsys):
    for path in host["before"]:
        with open(path, "wb") as f:
            f.write(b'{"version": "\xff')
    assert cli.main(["ack", "dsn-x"]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    for path in host["before"]:
        with open(path, "rb") as f:
            assert f.read() == b'{"version": "\xff'


def test_the_console_script_prints_no_traceback(host):
    # The process as operators run it: the same one line, nothing else.
    result = subprocess.run(
        [sys.executable, "-c",
         "import sys; from accel_inventory.cli import main; "
         "sys.exit(main())", "status"],
        env=dict(os.environ, OS_INVENTORY__LOCK_TIMEOUT="1e",
                 OS_INVENTORY__USE_UDEV="maybe"),
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("accel-inventory: error: configuration: "
                                    "[inventory] lock_timeout = '1e'")
    assert result.stderr.count("\n") == 1


# -- what root relies on, others cannot change ------------------------------

def loosen(host, what):
    """Make ``what`` writable by others; the path the refusal names."""
    if what == "config":
        os.chmod(host["config"], 0o666)
        return host["config"]
    if what == "cache_dir":
        os.chmod(host["tmp"], 0o777)
        return str(host["tmp"])
    if what == "sysfs_root":
        os.chmod(host["root"], 0o777)
        return host["root"]
    shared = host["tmp"] / "profiles.d"
    shared.mkdir()
    shared.chmod(0o777)
    with open(host["config"], "a") as f:
        f.write(f"profiles_dir = {shared}\n")
    return str(shared)


@pytest.mark.parametrize("command", [["status"], ["scan"], ["clear", "x"]])
@pytest.mark.parametrize("what", ["config", "cache_dir", "sysfs_root",
                                  "profiles_dir"])
def test_a_path_others_can_write_is_refused(host, capsys, what, command):
    named = loosen(host, what)
    assert cli.main(command) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("accel-inventory: error: refusing to trust")
    assert f"{named} is writable by its group or others" in err
    assert {p: open(p, "rb").read() for p in host["before"]} == \
        host["before"]


def run_cli(*argv, timeout=30, **env):
    """``accel-inventory`` in its own process, bounded in time and memory
    (a read without end dies of it)."""
    import resource

    def bounded():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    return subprocess.run(
        [sys.executable, "-c", "import sys; from accel_inventory.cli import "
         "main; sys.exit(main())", *argv], capture_output=True, text=True,
        timeout=timeout, preexec_fn=bounded, env=dict(os.environ, **env))


@pytest.mark.parametrize("kind", ["fifo", "endless"])
def test_a_config_file_that_is_not_a_file_is_one_line(host, kind):
    odd = host["tmp"] / "odd.conf"
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to("/dev/zero")
    result = run_cli("--config-file", str(odd), "status")
    assert result.returncode == 1 and result.stderr.count("\n") == 1, \
        result.stderr
    assert f"cannot read the configuration file {odd}" in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "endless"])
def test_a_profile_that_is_not_a_file_is_skipped(host, kind):
    folder = host["tmp"] / "profiles.d"
    folder.mkdir()
    odd = folder / "odd.json"
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to("/dev/zero")
    with open(host["config"], "a") as f:
        f.write(f"profiles_dir = {folder}\n")
    result = run_cli("scan")
    assert result.returncode == 0, result.stderr
    assert f"Ignoring profile {odd}" in result.stderr


def test_a_profile_others_can_write_is_skipped(host):
    # Root runs a profile's on_release command: a profile anyone can
    # rewrite is nobody's to follow, however right it looks.
    folder = host["tmp"] / "profiles.d"
    folder.mkdir(mode=0o700)
    bent = folder / "sample-fpga.json"
    bent.write_text(json.dumps({
        "name": "sample-fpga", "match": ["1172:5000"],
        "resource_class": "CUSTOM_ACCEL_BENT",
        "on_release": {"command": ["/bin/sh", "-c", "id"]}}))
    bent.chmod(0o666)
    with open(host["config"], "a") as f:
        f.write(f"profiles_dir = {folder}\n")
    result = run_cli("scan")
    assert result.returncode == 0, result.stderr
    assert (f"Ignoring profile {bent}: is writable by its group or others "
            f"(mode 0666)") in result.stderr
    assert "CUSTOM_ACCEL_BENT" not in open(host["cache"]).read()
    bent.chmod(0o644)  # the operator's own: followed
    assert run_cli("scan").returncode == 0
    assert "CUSTOM_ACCEL_BENT" in open(host["cache"]).read()


# -- a placement that answers slowly or wrongly -----------------------------

class Answers:
    """A local HTTP server that answers as ``mode`` says: ``drip`` (a
    right answer, a byte at a time), ``not-json``, ``shape`` (JSON, not
    placement's), ``redirect`` (to ``target``); PUTs (the trait this
    project creates first) succeed. ``hits`` counts the requests."""

    def __init__(self, mode, target=None):
        import http.server
        import threading

        answers = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                answers.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def do_GET(self):
                answers.hits.append(self.path)
                answers.answer(self)

        self.mode, self.target, self.hits = mode, target, []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def answer(self, handler):
        import json
        import time

        body = {"drip": json.dumps({"resource_providers": [
                    {"uuid": "0" * 36, "name": "x" * 200, "generation": 1}]
                    * 20}),
                "not-json": "<html>a proxy's page</html>",
                "shape": json.dumps({"resource_providers": "none"})
                }.get(self.mode, "").encode()
        if self.mode == "redirect":
            handler.send_response(302)
            handler.send_header("Location", self.target + handler.path)
            handler.end_headers()
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            for i in range(len(body)):
                handler.wfile.write(body[i:i + 1])
                handler.wfile.flush()
                if self.mode == "drip":
                    time.sleep(0.3)  # each read well within the timeout
        except OSError:
            pass  # the client gave up

    def close(self):
        self.server.shutdown()


@pytest.fixture
def answers(host):
    servers = []

    def start(mode):
        other = Answers("shape")
        server = Answers(mode, target=other.url)
        servers.extend([server, other])
        with open(host["config"], "a") as f:
            f.write(f"[placement]\nauth_type = admin_token\nendpoint = "
                    f"{server.url}\ntoken = secret\ntimeout = 1\n")
        return server, other

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("mode, says", [
    ("drip", "timed out"),
    ("not-json", "is not JSON"),
    ("shape", "['resource_providers'] is str, not list"),
    ("redirect", "a redirect to"),
])
@pytest.mark.parametrize("command", [["publish"], ["agent", "--once"]])
def test_a_wrong_placement_answer_is_one_line_naming_the_request(
        host, answers, capsys, mode, says, command):
    import time

    server, other = answers(mode)
    started = time.monotonic()
    assert cli.main(command) == 1
    out, err = capsys.readouterr()
    assert time.monotonic() - started < 10
    assert err.count("\n") == 1 and err.startswith("accel-inventory"), err
    assert says in err
    if mode != "drip":
        assert "the lookup of provider h1" in err
    # A redirect is not followed: the token never reaches the other server.
    assert other.hits == []
