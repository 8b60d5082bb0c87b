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

"""``accel-domain``: what each domain holds, and an operator's hands on it.

``status`` shows each claim's domain and where each of its functions is
now; ``attach`` and ``detach`` hot-plug or unplug, live only, the devices
of a placement claim (what the hook's worker does at start); ``repair``
rewrites a domain's persistent definition whose accelerator addresses are
stale (the diff first, ``--yes`` to apply); ``start`` repairs and starts,
for operators who run libvirt without Nova.

Configuration: the hook's file (``--config-file``, else
``NOVA_ACCEL_CONFIG``, else ``/etc/nova-accel/nova-accel.conf``) and
``OS_<GROUP>__<OPTION>`` variables. Exit codes: 0 success, 1 an
operational error (one line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import difflib
import sys

import libvirt
from lxml import etree

from accel_inventory import cache, claims, settings, usage
from accel_inventory.inventory import current_boot_id
from libvirt_hooks import attach, decide, devices, guard, hostview
from libvirt_hooks import resolve, trust
from libvirt_hooks import domain as domain_xml

PROG = "accel-domain"
EXIT_ERROR = 1
EXIT_USAGE = 2
STATES = {libvirt.VIR_DOMAIN_RUNNING: "running",
          libvirt.VIR_DOMAIN_PAUSED: "paused",
          libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
          libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
          libvirt.VIR_DOMAIN_CRASHED: "crashed",
          libvirt.VIR_DOMAIN_BLOCKED: "blocked",
          libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended"}


class CommandError(Exception):
    """The command cannot do what was asked; the message says why."""


def build_parser() -> argparse.ArgumentParser:
    parser = usage.Parser(
        prog=PROG,
        description="What each domain holds of the host's accelerators, "
                    "and the devices Nova does not manage: attach, detach, "
                    "repair stale addresses, start.",
        epilog="Exit codes: 0 success, 1 operational error, 2 usage error.")
    parser.add_argument("--connect", metavar="URI",
                        help="libvirt connection (default: [libvirt_hooks] "
                             "libvirt_uri, itself qemu:///system by "
                             "default).")
    parser.add_argument("--config-file", metavar="PATH",
                        help="nova-accel configuration (default: "
                             "$NOVA_ACCEL_CONFIG, else "
                             f"{settings.DEFAULT_CONFIG}).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     required=True)

    def command(name, help_text, domain_nargs=None):
        sub = commands.add_parser(name, help=help_text,
                                  description=help_text)
        sub.add_argument("domain", metavar="DOMAIN", nargs=domain_nargs,
                         help="Domain name or UUID.")
        return sub

    command("status", "What each domain holds (or DOMAIN only) and where "
                      "each function is now.", "?")
    command("attach", "Hot-plug, live only, the devices of DOMAIN's "
                      "placement claim that it lacks.")
    command("detach", "Unplug, live only, the devices of DOMAIN's "
                      "placement claim; the claim stays.")
    repair = command("repair", "Show how DOMAIN's persistent definition "
                               "differs from where its devices are now; "
                               "with --yes, redefine it.")
    repair.add_argument("--yes", action="store_true",
                        help="Redefine the domain with the resolved "
                             "addresses.")
    command("start", "Repair DOMAIN's definition, then start it.")
    return parser


def lookup(conn, name_or_uuid: str):
    for find in (conn.lookupByName, conn.lookupByUUIDString):
        try:
            return find(name_or_uuid)
        except libvirt.libvirtError:
            continue
    raise CommandError(f"no domain named {name_or_uuid} on "
                       f"{conn.getURI()}; see 'virsh list --all'")


def _inventory(conf):
    inv = cache.load(conf.inventory.cache_path)
    if inv is None:
        raise CommandError(f"there is no inventory cache at "
                           f"{conf.inventory.cache_path}; run "
                           f"'accel-inventory scan' first")
    return inv


def _where(conf, inv, fid: str, present) -> str:
    try:
        _element, key = resolve.resolve(conf, inv, fid)
    except devices.DeviceError as exc:
        return f"cannot be given now: {exc}"
    where = devices.describe(key)
    if key[0] == "bridge":
        address, interface = resolve.node_interface(conf, inv, fid)
        where += f" (node {address}, interface {interface or 'none'})"
    return where + ("; in the domain" if key in present
                    else "; not in the domain")


def status(conn, conf, args, out) -> int:
    inv = _inventory(conf)
    if args.domain:
        consumer = lookup(conn, args.domain).UUIDString()
        if consumer not in inv.claims:
            print(f"{args.domain} holds no accelerator", file=out)
            return 0
        consumers = [consumer]
    else:
        consumers = sorted(inv.claims)
    boot_id = current_boot_id()
    for consumer in consumers:
        claim = inv.claims[consumer]
        present = {}
        try:
            dom = conn.lookupByUUIDString(consumer)
            name, state = dom.name(), STATES.get(dom.state()[0], "unknown")
            if dom.isActive():
                present = devices.devices_by_key(domain_xml.parse(
                    dom.XMLDesc(0).encode(),
                    conf.libvirt_hooks.max_xml_bytes).tree)
        except libvirt.libvirtError:
            name, state = claim.domain_name or "-", "not defined here"
        held = "running" if claim.is_running(boot_id) else "not running"
        print(f"{name} ({consumer}): {state}; {claim.source} claim, "
              f"{held}", file=out)
        last = claim.attach.get("devices", {})
        for fid in claim.functions:
            line = f"  {fid}: {_where(conf, inv, fid, present)}"
            if fid in last:
                line += f"; last {last[fid]['state']}"
                if last[fid].get("reason"):
                    line += f": {last[fid]['reason']}"
            print(line, file=out)
    return 0


def _running(conn, name: str):
    dom = lookup(conn, name)
    if not dom.isActive():
        raise CommandError(f"domain {dom.name()} is not running; devices "
                           f"are hot-plugged into a running domain (the "
                           f"hook does it at each start)")
    return dom


def _report(document: dict, out) -> int:
    for line in attach.outcome_lines(document):
        print(line, file=out)
    return EXIT_ERROR if attach.failed(document) else 0


def attach_command(conn, conf, args, out) -> int:
    dom = _running(conn, args.domain)
    return _report(attach.attach_claim(conn, conf, dom.UUIDString()), out)


def detach_command(conn, conf, args, out) -> int:
    dom = _running(conn, args.domain)
    return _report(attach.detach_claim(conn, conf, dom.UUIDString()), out)


def _verdict(conf, inv, parsed):
    host = hostview.read(conf.inventory.sysfs_root, parsed, inv)
    return guard.check(parsed, inv, host, current_boot_id(),
                       decide.policy(conf, parsed))


def resolved_definition(conf, dom) -> tuple[str, str | None]:
    """The persistent definition of ``dom`` and the same with every
    accelerator device where its function is now (None when nothing
    moved). Raises CommandError when the result still would not start."""
    inv = _inventory(conf)
    limit = conf.libvirt_hooks.max_xml_bytes
    parsed = domain_xml.parse(
        dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode(), limit)
    # Serialised as the rewrite will be, so that the diff shows only what
    # changed (rewrite edits the parsed tree in place).
    defined = etree.tostring(parsed.tree, encoding="unicode")
    verdict = _verdict(conf, inv, parsed)
    rewritten = domain_xml.rewrite(parsed, verdict.pci_moved,
                                   verdict.usb_moved,
                                   verdict.interfaces_moved)
    if rewritten is not None:
        verdict = _verdict(conf, inv, domain_xml.parse(rewritten, limit))
    if not verdict.allowed:
        raise CommandError(f"domain {dom.name()} would still be refused "
                           f"after resolving its addresses: "
                           f"{'; '.join(verdict.refusals)}")
    return defined, rewritten.decode() if rewritten is not None else None


def _repair(conn, conf, dom, out, apply: bool):
    defined, resolved = resolved_definition(conf, dom)
    if resolved is None:
        print(f"domain {dom.name()}: its definition is current", file=out)
        return dom
    for line in difflib.unified_diff(
            defined.splitlines(), resolved.splitlines(),
            f"{dom.name()} (defined)", f"{dom.name()} (resolved now)",
            lineterm=""):
        print(line, file=out)
    if not apply:
        print(f"run 'accel-domain repair {dom.name()} --yes' to redefine "
              f"it", file=out)
        return dom
    dom = conn.defineXML(resolved)
    print(f"domain {dom.name()}: redefined", file=out)
    return dom


def repair_command(conn, conf, args, out) -> int:
    _repair(conn, conf, lookup(conn, args.domain), out, args.yes)
    return 0


def start_command(conn, conf, args, out) -> int:
    dom = lookup(conn, args.domain)
    if dom.isActive():
        raise CommandError(f"domain {dom.name()} is already running")
    dom = _repair(conn, conf, dom, out, apply=True)
    dom.create()
    print(f"domain {dom.name()}: started", file=out)
    return 0


COMMANDS = {"status": status, "attach": attach_command,
            "detach": detach_command, "repair": repair_command,
            "start": start_command}


def main(argv=None, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    config_file = args.config_file or settings.config_file()
    try:
        conf = decide.load_conf(config_file)
        # It acts as root on what the hook's configuration names, so it
        # trusts it no more than the hook does.
        untrusted = trust.refusal(config_file, conf.inventory.cache_path,
                                  others=trust.hook_paths(conf))
        if untrusted:
            raise CommandError(untrusted)
        conn = libvirt.open(args.connect or conf.libvirt_hooks.libvirt_uri)
    except (settings.SettingsError, CommandError,
            libvirt.libvirtError) as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_ERROR
    try:
        return COMMANDS[args.command](conn, conf, args, out)
    except (CommandError, LookupError, libvirt.libvirtError,
            cache.CacheError, claims.ClaimError,
            domain_xml.DomainXMLError) as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_ERROR
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
