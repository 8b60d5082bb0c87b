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

"""Every message an operator gets is on the troubleshooting page.

The messages are read from the sources, never imported: the text of each
exception raised with a reason, each refusal of the guard and the hook,
and each ERROR or WARNING log line of the hook, the attach worker,
``accel-domain``, ``accel-inventory`` and the agent. The longest constant
run of a message (the text between the values put into it) must appear,
whitespace aside, in ``doc/source/admin/troubleshooting.rst``: a new
message is documented with what it means and what to run, or this fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "doc" / "source" / "admin" / "troubleshooting.rst"
SOURCES = [
    *(f"libvirt_hooks/{name}.py" for name in (
        "affinity", "attach", "bridge", "cli", "common", "decide",
        "devices", "domain", "guard", "hook", "mdev", "resolve", "trigger",
        "trust", "undo", "vgpu")),
    *(f"accel_inventory/{name}.py" for name in (
        "agent", "cache", "claim_sync", "claims", "cli", "conf",
        "inventory", "metrics", "placement", "profiles", "provider_tree",
        "release", "safe_io", "settings", "sysfs_write", "trust")),
    *(f"accel_defrag/{name}.py" for name in (
        "cli", "execute", "nova", "plot", "reader")),
]
# Exceptions whose message reaches the operator as it is written.
EXCEPTIONS = {"BridgeError", "CacheError", "ClaimConflict", "ClaimError",
              "CommandError", "DeviceError", "DomainXMLError",
              "InventoryError", "LockTimeout", "LookupError", "MdevError",
              "PlacementError", "PlacementUnavailable", "Refused",
              "SettingsError", "MoveFailed", "NovaError", "PlotError",
              "VgpuError"}
# Exceptions whose message is another argument than the first: safe_io's
# Refused(path, reason), an OSError that callers print with its path.
MESSAGE_ARGUMENT = {"Refused": 1}
# The guard's and the hook's refusals: the reason is the last argument.
REFUSALS = {"refuse", "_refuse"}
# Functions that return the reason of a refusal (trust.refusal).
REASON_FUNCTIONS = {"refusal"}
LOG_LEVELS = {"error", "warning"}
# Shorter runs ("cannot open", "is") say nothing about which message it is.
MIN_RUN = 12
PRINTF = re.compile(r"%(?:\(\w+\))?[sdrg]")


def _runs(node: ast.expr) -> list[str]:
    """The constant runs of a string expression: a literal, an f-string
    or a ``+`` of them; a value put in splits two runs."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        runs, current = [], ""
        for value in node.values:
            if isinstance(value, ast.Constant):
                current += value.value
            else:
                runs.append(current)
                current = ""
        return runs + [current]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _runs(node.left), _runs(node.right)
        return left[:-1] + [left[-1] + right[0]] + right[1:]
    return ["", ""]  # a value between two runs


def _name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return getattr(call.func, "id", None)


def _words(text: str) -> str:
    return " ".join(text.split())


def key_run(runs: list[str]) -> str:
    """The longest run, without the punctuation that joins it to the
    values around it."""
    return max((_words(run).strip(" ;:,.()") for run in runs), key=len)


def messages(source: str) -> list[tuple[int, str]]:
    """``(line, key run)`` of every operator message in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name in REASON_FUNCTIONS:
            found += [(r.lineno, key_run(_runs(r.value)))
                      for r in ast.walk(node)
                      if isinstance(r, ast.Return) and r.value is not None
                      and len(key_run(_runs(r.value))) >= MIN_RUN]
            continue
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = _name(node)
        if name in EXCEPTIONS:
            position = MESSAGE_ARGUMENT.get(name, 0)
            if len(node.args) <= position:
                continue  # re-raised with a message built elsewhere
            runs = _runs(node.args[position])
        elif name in REFUSALS:
            runs = _runs(node.args[-1])
        elif (name in LOG_LEVELS and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            runs = PRINTF.split(node.args[0].value)
        else:
            continue
        run = key_run(runs)
        if len(run) >= MIN_RUN:
            found.append((node.lineno, run))
    return found


def all_messages() -> list[tuple[str, int, str]]:
    return [(path, line, run) for path in SOURCES
            for line, run in messages((ROOT / path).read_text())]


def test_messages_are_read_from_every_kind_of_call():
    source = '''
raise DeviceError(f"no PCI device at {address} now; {hint}")
judge.refuse(label, f"holds {x}, a device the inventory does not know")
LOG.warning("Cannot save the placement state %s: %s; the next", a, b)
raise CacheError("there is no inventory cache at " + path + " yet, run it")
raise Refused(path, f"is larger than the {limit} bytes nova-accel reads")
print("not a message to check")
def refusal(path):
    if path:
        return None
    return "refusing to trust " + path + ": it is open"
'''
    assert sorted(run for _line, run in messages(source)) == sorted([
        "no PCI device at", "a device the inventory does not know",
        "Cannot save the placement state", "there is no inventory cache at",
        "bytes nova-accel reads", "refusing to trust"])


def test_the_sources_give_the_known_messages():
    # The reader finds the refusals an operator meets most (a reader that
    # found nothing would pass the next test).
    runs = {run for _path, _line, run in all_messages()}
    assert {"no PCI device is there now",
            "make them and their directories owned by the user libvirtd runs "
            "hooks as and writable by it alone",
            "holds no functions assigned by placement in",
            "Cannot watch device events",
            "is not in the inventory of"} <= runs


def test_every_message_is_on_the_troubleshooting_page():
    page = _words(PAGE.read_text())
    missing = [f"{path}:{line}: {run!r}"
               for path, line, run in all_messages() if run not in page]
    assert not missing, (
        f"messages not on {PAGE.relative_to(ROOT)} (say what each means "
        f"and what to run):\n" + "\n".join(missing))
