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

"""``accel-libvirt-hook``: libvirt's qemu hook for accelerator domains.

libvirt calls ``<domain> <op> <subop> <extra>`` with the domain XML on
stdin, and at a plain start ignores what the hook prints: the hook can
only refuse (non-zero exit, stderr shown in libvirt's error) or prepare.
So at ``prepare begin`` it checks every PCI and USB hostdev, mdev and
node interface against the host as it is now, creates missing mdevs on
the parent where the domain's card is now, puts each node's current
interface in the node's bridge, and records which functions the domain
holds; at ``release end`` it removes the mdevs it created and marks the
claim stopped; at ``restore begin``, one of the two points where libvirt
takes a new XML, it prints the XML with moved devices at their current
addresses; at ``migrate begin``, on the destination of a live migration,
it refuses a device nova chose there that is not this server's.

Most domains have no accelerator: they leave on the fast path, which
imports nothing beyond the standard library. The fast path looks at
element syntax only, never at text: the text of a domain XML (the server
name a tenant chose, in nova's ``<nova:name>``) cannot hold a ``<``, so
nothing a tenant writes sends a domain down the full path or starts a
worker. Every call is bounded by ``[libvirt_hooks] timeout`` from its
first step, before any file is opened; every file is opened through
``accel_inventory.safe_io``. Nothing here calls back into libvirt (that
deadlocks) or runs a shell.
"""

import os
import re
import sys

from accel_inventory import safe_io
from accel_inventory.settings import DEFAULT_CONFIG, config_file
from libvirt_hooks import common, trigger
from libvirt_hooks.common import (EXIT_REFUSED, EXIT_USAGE, INSTALL_PATH,
                                  fast_options)

# A domain whose XML holds no hostdev element has no device this hook
# checks (interfaces are looked at more closely: see reaches_accelerator).
HOSTDEV = re.compile(rb"<hostdev\b")
INTERFACE_START = re.compile(rb"<interface\b")
INTERFACE = re.compile(rb"<interface\b.*?</interface>", re.DOTALL)
HOST_INTERFACE = re.compile(
    rb"<(?:source|target)\b[^>]*?\b(?:dev|bridge)=[\"']([^\"'/]{1,15})[\"']")
FULL_PATH_OPS = {("prepare", "begin"), ("release", "end"),
                 ("migrate", "begin"), ("restore", "begin")}
USAGE = ("usage: accel-libvirt-hook DOMAIN OP SUBOP [EXTRA] < DOMAIN.xml | "
         "--install [DEST] | --help")
HELP = f"""{USAGE}

libvirt's qemu hook for nova-accel. At each domain start it checks every
PCI and USB hostdev, mdev and node interface of the domain against the
host as it is now and refuses the start (exit 1, one line that libvirt
shows as the error) when a device is not where the domain expects it; it
creates the domain's mdevs, puts node interfaces in their bridges,
records which functions the domain holds, and at restore prints the XML
with moved devices at their current addresses. At an incoming live
migration it refuses, in one line, a device that is not this server's
here. Domains without accelerators are let through at once.

  --install [DEST]  put the hook at DEST (default
                    {INSTALL_PATH}); safe to run
                    again; after the first install send libvirtd
                    SIGHUP so it runs the hook.
  --help            this text.

Configuration: $NOVA_ACCEL_CONFIG, else {DEFAULT_CONFIG}
([inventory] and [libvirt_hooks]; OS_<GROUP>__<OPTION> variables win).
Log: one line per decision to [libvirt_hooks] log_file, else syslog
(facility daemon), else nowhere; a refusal is also printed on stderr.
Exit codes: 0 allowed, 1 refused or failed, 2 usage error.
"""


def _cache_mentions(cache_path: str, names: list[bytes]) -> bool:
    """Whether the inventory cache names any of ``names`` (a node's
    interface as the last scan saw it): one read and a substring search,
    no JSON parse."""
    try:
        cached = safe_io.read(cache_path, common.MAX_CACHE_BYTES)
    except OSError:
        return False
    return any(b'"' + name + b'"' in cached for name in names)


def reaches_accelerator(xml: bytes, config: str | None) -> bool:
    """Whether an ``<interface>`` of the domain is on a node bridge of ours,
    names a host interface backed by a device (perhaps an IP-over-PCIe
    node's), or names an interface the inventory recorded for a node (it
    may have been renamed since). Bridges, taps and veths of ordinary
    networks are none of these, so those domains stay on the fast path."""
    interfaces = INTERFACE.findall(xml)
    if not interfaces:
        return False
    options = fast_options(config)
    prefix = options[("libvirt_hooks", "bridge_prefix")].encode()
    sysfs_root = options[("inventory", "sysfs_root")]
    unknown = []
    for interface in interfaces:
        for host_name in HOST_INTERFACE.findall(interface):
            if host_name.startswith(prefix) or os.path.lexists(os.path.join(
                    sysfs_root, "class", "net", os.fsdecode(host_name),
                    "device")):
                return True
            unknown.append(host_name)
    return bool(unknown) and _cache_mentions(
        options[("inventory", "cache_path")], unknown)


def needs_full_path(op: str, subop: str, xml: bytes,
                    config: str | None = None) -> bool:
    if (op, subop) not in FULL_PATH_OPS:
        return False
    return bool(HOSTDEV.search(xml)
                or (INTERFACE_START.search(xml)
                    and reaches_accelerator(xml, config)))


def main(argv=None, stdin=None, stdout=None, stderr=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    stderr = stderr or sys.stderr
    # libvirt always passes four arguments, and a domain may be named
    # "--install": options are only read from shorter command lines.
    if len(argv) < 3:
        return _command(argv, stdout or sys.stdout, stderr)
    name, op, subop = argv[:3]
    previous = common.start_timer()
    try:
        return _call(name, op, subop, (stdin or sys.stdin.buffer).read(),
                     stdout or sys.stdout, stderr)
    except common.HookTimeout:
        # Before the full path set its log up: the configuration or the
        # cache took too long to read (a hung disk).
        if (op, subop) not in FULL_PATH_OPS:
            return 0
        stderr.write(f"nova-accel: domain {' '.join(name.split())}: the "
                     f"hook did not finish within its timeout ([libvirt_"
                     f"hooks] timeout); the start is refused to be safe\n")
        return EXIT_REFUSED
    finally:
        common.stop_timer(previous)


def _call(name: str, op: str, subop: str, xml: bytes, stdout,
          stderr) -> int:
    # Devices Nova does not manage: attached after the start by a detached
    # worker, released with the domain. Standard library only; one stat
    # for a domain that has none (see trigger.py).
    config = config_file()
    if (op, subop) == ("started", "begin"):
        return trigger.on_started(xml, config)
    if not needs_full_path(op, subop, xml, config) and \
            not trigger.holds_assignment(op, subop, xml, config):
        return 0
    from libvirt_hooks import decide
    return decide.run(name, op, subop, xml, config, stdout, stderr)


def _command(argv: list[str], stdout, stderr) -> int:
    """``--help`` and ``--install``, run by an operator."""
    if argv in (["--help"], ["-h"]):
        stdout.write(HELP)
        return 0
    if argv[:1] == ["--install"] and not any(
            arg.startswith("-") or not arg for arg in argv[1:]):
        dest = argv[1] if argv[1:] else INSTALL_PATH
        try:
            return install(dest, stderr)
        except OSError as exc:
            stderr.write(f"accel-libvirt-hook: error: cannot install "
                         f"{dest}: {exc.strerror or exc}\n")
            return EXIT_REFUSED
    wrong = ("unrecognized arguments: " + " ".join(argv)) if argv \
        else "no arguments"
    stderr.write(f"accel-libvirt-hook: error: {wrong}; {USAGE}\n")
    return EXIT_USAGE


def install(dest: str, stderr) -> int:
    """Put the hook at ``dest``, where libvirt looks for it; safe to run
    again."""
    hooks_dir = os.path.dirname(os.path.abspath(dest))
    new_dir = not os.path.isdir(hooks_dir)
    os.makedirs(hooks_dir, mode=0o755, exist_ok=True)
    script = (f"#!{sys.executable}\n"
              "import sys\n"
              "from libvirt_hooks.hook import main\n"
              "sys.exit(main())\n")
    try:
        current = safe_io.read(dest, len(script) + 1, truncate=True)
    except (FileNotFoundError, safe_io.Refused):
        current = None  # none yet, or a link: replaced, never written through
    if current != script.encode():
        # An operator's command, never on a domain's path.
        from accel_inventory import cache

        cache.write_atomically(dest, script.encode(), mode=0o755)
        stderr.write(f"installed {dest}\n")
    else:
        stderr.write(f"{dest} is already current\n")
    if new_dir:
        stderr.write("libvirtd reads whether any hook exists when it starts: "
                     "send it SIGHUP (or restart it) so it runs this one\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
