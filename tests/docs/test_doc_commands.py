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

"""Every command README.rst and doc/source show runs, or says why not.

The shell blocks of the documentation (literal ``::`` blocks, and
``.. code-block:: console``, ``shell``, ``bash`` or ``sh``) are extracted;
each command in them is either run here, on the bundled sample host in a
temporary directory, or listed in ``NOT_RUN`` with the reason. A command
that is neither fails the test, so a new command in the docs is either
checked or deliberately left out.

A literal block that holds a configuration file (an ``[section]`` or
``key = value`` lines), JSON or XML is not a shell block. Output shown in
the docs goes in ``.. code-block:: text``, which is never run.

A command that is run must exit 0, or the code its line states in a
trailing comment (``accel-inventory publish  # exits 1``). Paths of a real
host in a command (``/etc/nova-accel/``, ``/var/lib/nova-accel/``,
``/sys/``, ``/tmp/``, the wheel's ``/opt/nova-accel/bin/``) are rewritten
into the temporary directory and the test's own environment; a command
that would still touch anything outside it is refused, not run.

No nova import here: this runs in the py3 environment's first pytest run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMEOUT = 60

# Command prefixes the test does not run, and why. Every entry must be
# used by some command of the docs (test_not_run_entries_are_used).
NOT_RUN = {
    "sh tools/install-deps.sh": "installs packages and the test "
        "environments as root; .ci/run runs README's command on a fresh "
        "machine",
    "reno new": "writes a release note into the tree; tox -e docs runs "
        "reno lint on the notes",
    "python3 -m pip install build": "installs into the system's Python; "
        "tox -e packaging has build in its own environment",
    "python3 -m build": "builds the sdist and wheel (a minute); tox -e "
        "packaging builds them and installs the wheel",
    "python3 -m venv /opt/nova-accel": "creates /opt/nova-accel; tox -e "
        "packaging installs the built wheel into clean venvs",
    "pip install": "installs the wheel; tox -e packaging installs the "
        "built wheel into clean venvs",
    "/opt/nova/bin/pip install": "installs into nova's environment; tox "
        "-e packaging installs the wheel beside nova",
    "accel-libvirt-hook --install": "writes /etc/libvirt/hooks as root; "
        "tox -e packaging runs --install DIR from the installed wheel",
    "rm /etc/libvirt/hooks/": "removes the installed hook (root)",
    "cp /opt/nova-accel/share/nova-accel/systemd/": "installs a unit "
        "into /etc/systemd (root); tox -e packaging checks the wheel "
        "ships it",
    "sed -i 's#/usr/local/bin/#/opt/nova-accel/bin/#' /etc/systemd/":
        "edits a unit in /etc/systemd (root)",
    "systemctl ": "acts on the host's services (root, systemd)",
    "journalctl ": "reads the host's journal (systemd)",
    "chown ": "changes owners of /etc/nova-accel (root)",
    "chmod ": "changes modes of the host's /etc/nova-accel and "
        "/var/lib/nova-accel (root)",
    "openstack ": "needs a cloud (keystone, nova, placement)",
    "virsh ": "acts on domains of the host's libvirtd",
    "accel-inventory agent": "needs placement; tests/integration runs the "
        "agent against a real one",
    "accel-domain attach": "needs a running domain holding a placement "
        "claim; tests/e2e attach through the hook and accel-domain",
    "accel-defrag ": "needs placement (and nova to --execute); "
        "tests/functional run it against placement's and nova's own code",
    "/opt/watcher/bin/pip install": "installs into Watcher's environment; "
        "tests/watcher load the plugin through Watcher's own loaders",
    "accel-inventory clear": "needs a function a server released and the "
        "agent held (the sample host has none); tests/unit/inventory/"
        "test_release.py and tests/functional/test_no_leftovers.py run it",
}

# Commands this test runs: the project's console scripts, from this
# environment, and a few commands on files under the temporary directory.
# The hook runs for --help only: --install writes /etc/libvirt/hooks.
RUN = ("accel-inventory ", "accel-domain ", "accel-sim",
       "accel-libvirt-hook --help", "oslo-config-generator ", "ls ", "mv ")
# Where the install guide's virtual environment has the console scripts:
# this environment's are run instead.
VENV_BIN = "/opt/nova-accel/bin/"

# What a placeholder of a command stands for on the sample host (the
# libvirt test driver's domain is called "test").
PLACEHOLDERS = {"<domain>": "test", "<bdf>": "0000:86:00.0"}

SHELL_LANGUAGES = {"console", "shell", "bash", "sh"}
DIRECTIVE = re.compile(r"^\s*\.\. ([\w:-]+)::\s*(.*)$")
INI_LINE = re.compile(r"^(\[[\w:-]+\]|[\w.-]+ *= .*|#.*)$")
EXIT = re.compile(r"\s+#\s*exits?\s+(\d+)\s*$")


@dataclass(frozen=True)
class Command:
    """One command of the docs: where it is and its text (continuation
    lines joined)."""

    path: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.text}"


def documents() -> list[Path]:
    return [ROOT / "README.rst",
            *sorted((ROOT / "doc" / "source").rglob("*.rst"))]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line, language, body)`` for every literal block and code block
    of an RST document; ``language`` is ``literal`` for a ``::`` block."""
    lines = text.splitlines()
    found = []
    i = 0
    while i < len(lines):
        directive = DIRECTIVE.match(lines[i])
        if directive and directive.group(1) in ("code-block", "code",
                                                "sourcecode"):
            language = directive.group(2).strip() or "default"
        elif directive is None and lines[i].rstrip().endswith("::"):
            language = "literal"
        else:
            i += 1
            continue
        j = i + 1
        # Blank lines, and a directive's options, before the body.
        while j < len(lines) and (not lines[j].strip() or (
                language != "literal"
                and lines[j].strip().startswith(":"))):
            j += 1
        if j == len(lines) or _indent(lines[j]) <= _indent(lines[i]):
            i = j
            continue
        start, indent = j, _indent(lines[j])
        while j < len(lines) and (not lines[j].strip()
                                  or _indent(lines[j]) >= indent):
            j += 1
        found.append((start + 1, language,
                      textwrap.dedent("\n".join(lines[start:j])).strip()))
        i = j
    return found


def is_shell(language: str, body: str) -> bool:
    """Whether a block holds commands: a shell code block, or a literal
    block that is not a configuration file, JSON or XML."""
    if language != "literal":
        return language in SHELL_LANGUAGES
    if body[:1] in ("{", "<"):
        return False
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    return not (all(INI_LINE.match(line) for line in lines)
                and any(not line.startswith("#") for line in lines))


def block_commands(path: str, line: int, language: str,
                   body: str) -> list[Command]:
    """The commands of one shell block: ``\\`` continuations joined,
    comments skipped; in a console block, the lines after a ``$``
    prompt (the others are output)."""
    commands: list[Command] = []
    pending: list[str] = []
    first = line
    for number, text in enumerate(body.splitlines(), start=line):
        text = text.strip()
        if not pending:
            if language == "console":
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            if not text or text.startswith("#"):
                continue
            first = number
        pending.append(text.removesuffix("\\").strip())
        if not text.endswith("\\"):
            commands.append(Command(path, first, " ".join(pending)))
            pending = []
    return commands


def doc_commands() -> list[list[Command]]:
    """The commands of every shell block of the docs, block by block."""
    blocks = []
    for document in documents():
        relative = str(document.relative_to(ROOT))
        for line, language, body in literal_blocks(document.read_text()):
            if is_shell(language, body):
                blocks.append(block_commands(relative, line, language, body))
    return [block for block in blocks if block]


def _program(command: Command) -> str:
    """The command as classified: the install guide's scripts are this
    environment's."""
    return command.text.removeprefix(VENV_BIN)


def not_run_reason(command: Command) -> str | None:
    for prefix, reason in NOT_RUN.items():
        if _program(command).startswith(prefix):
            return reason
    return None


def is_run(command: Command) -> bool:
    return (not_run_reason(command) is None
            and _program(command).startswith(RUN))


ALL_BLOCKS = doc_commands()
RUN_BLOCKS = [block for block in ALL_BLOCKS if any(map(is_run, block))]


def test_the_docs_have_shell_blocks_where_expected():
    # The extractor itself: README's two commands and the install guide's
    # are found (an extractor that finds nothing would pass every test).
    texts = {c.text for block in ALL_BLOCKS for c in block}
    paths = {c.path for block in ALL_BLOCKS for c in block}
    assert {"README.rst", "doc/source/install/compute.rst",
            "doc/source/admin/troubleshooting.rst"} <= paths
    assert any(t.startswith("sh tools/install-deps.sh && ") for t in texts)
    assert "openstack flavor set accel.2 --property " \
           "resources1:CUSTOM_ACCEL_FPGA=2 --property " \
           "trait1:CUSTOM_ACCEL_REGION=required" in texts
    assert "/opt/nova-accel/bin/accel-inventory scan" in texts


def test_configuration_json_and_output_blocks_are_not_commands():
    assert not is_shell("literal", "[agent]\ncompute_node = x\n# note")
    assert not is_shell("literal", '{"name": "x"}')
    assert not is_shell("text", "accel-inventory scan")
    assert is_shell("literal", "# a comment\naccel-inventory scan")
    assert [c.text for c in block_commands(
        "x", 1, "console", "$ accel-inventory \\\n  status\nhost: h\n")] \
        == ["accel-inventory status"]


def test_commands_that_write_the_host_are_never_run():
    # The hook's --install without a directory writes
    # /etc/libvirt/hooks/qemu.d/nova-accel, with or without the venv path.
    for text in ("accel-libvirt-hook --install",
                 f"{VENV_BIN}accel-libvirt-hook --install",
                 f"{VENV_BIN}pip install x.whl", "accel-inventory agent"):
        assert not is_run(Command("x", 1, text)), text
    assert is_run(Command("x", 1, f"{VENV_BIN}accel-inventory scan"))
    assert outside_paths(["mv", "/var/lib/nova-accel/x", "--cache=/etc/y"],
                         Path("/tmp/t")) == ["/var/lib/nova-accel/x",
                                             "/etc/y"]


def test_every_command_is_run_or_classified():
    unclassified = [str(c) for block in ALL_BLOCKS for c in block
                    if not is_run(c) and not_run_reason(c) is None]
    assert not unclassified, (
        "commands in the docs that this test neither runs nor lists in "
        "NOT_RUN with a reason:\n" + "\n".join(unclassified))


def test_not_run_entries_are_used():
    used = {prefix for block in ALL_BLOCKS for c in block
            for prefix in NOT_RUN if _program(c).startswith(prefix)}
    assert set(NOT_RUN) - used == set()


@pytest.fixture
def sample_host(tmp_path):
    """The sample host scanned into a cache, with the configuration every
    command reads, all under ``tmp_path``; the environment and path
    rewrites that point commands at it."""
    from accel_inventory import sample

    root = sample.build_sample_host(str(tmp_path / "sys"))
    (tmp_path / "etc").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "tmp").mkdir()
    config = tmp_path / "etc" / "nova-accel.conf"
    cache = tmp_path / "var" / "inventory.json"
    config.write_text(f"[inventory]\nsysfs_root = {root}\n"
                      f"cache_path = {cache}\nhostname = sample-host\n")
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "HOME": str(tmp_path), "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
           "NOVA_ACCEL_CONFIG": str(config),
           "OS_INVENTORY__SYSFS_ROOT": root,
           "OS_INVENTORY__CACHE_PATH": str(cache),
           # libvirt's built-in test driver: no libvirtd, a domain "test".
           "OS_LIBVIRT_HOOKS__LIBVIRT_URI": "test:///default"}
    paths = {VENV_BIN: f"{BIN}/",
             "/etc/nova-accel/nova-accel.conf": str(config),
             "/var/lib/nova-accel/": f"{tmp_path / 'var'}/",
             "/sys/": f"{root}/", "/tmp/": f"{tmp_path / 'tmp'}/"}
    scan = subprocess.run([str(BIN / "accel-inventory"), "scan"], env=env,
                          cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert scan.returncode == 0, scan.stderr
    return {"env": env, "paths": paths, "cwd": tmp_path}


def runnable(text: str, paths: dict[str, str]) -> tuple[list[str], int]:
    """The argv of a command with its placeholders and host paths replaced,
    and the exit code it must give."""
    expected = EXIT.search(text)
    code = int(expected.group(1)) if expected else 0
    text = EXIT.sub("", text)
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    argv = []
    for word in shlex.split(text):
        for real, there in paths.items():
            if word.startswith(real):
                word = there + word[len(real):]
                break
        argv.append(word)
    return argv, code


def outside_paths(argv: list[str], tmp: Path) -> list[str]:
    """The absolute paths of ``argv`` (whole words, or values after ``=``)
    that are neither under ``tmp`` nor this environment's scripts."""
    inside = (f"{tmp}/", f"{BIN}/")
    return [part for word in argv for part in word.split("=")
            if part.startswith("/") and not part.startswith(inside)]


def test_placeholders_paths_and_stated_exit_codes():
    assert runnable("accel-inventory publish  # exits 1", {}) == (
        ["accel-inventory", "publish"], 1)
    assert runnable("accel-domain repair <domain> --cache "
                    "/var/lib/nova-accel/x", {"/var/lib/nova-accel/": "/t/"}
                    ) == (["accel-domain", "repair", "test", "--cache",
                           "/t/x"], 0)


@pytest.mark.parametrize("block", RUN_BLOCKS,
                         ids=[f"{b[0].path}:{b[0].line}" for b in RUN_BLOCKS])
def test_block_runs_on_the_sample_host(block, sample_host):
    for command in block:
        if not is_run(command):
            continue
        argv, code = runnable(command.text, sample_host["paths"])
        rest = " ".join(argv)
        assert "<" not in rest, f"{command}: a placeholder without a value"
        outside = outside_paths(argv, sample_host["cwd"])
        assert not outside, f"{command}: would touch {outside}, outside " \
                            f"the test's directory"
        done = subprocess.run(argv, env=sample_host["env"],
                              cwd=sample_host["cwd"], capture_output=True,
                              text=True, timeout=TIMEOUT)
        assert done.returncode == code, (
            f"{command}\nexit {done.returncode}, the docs say {code}\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
