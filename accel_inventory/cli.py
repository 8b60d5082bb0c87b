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

"""``accel-inventory``: scan the host, show the topology, accept changes.

Options come from oslo.config (``--config-file``, else the hook's file:
``NOVA_ACCEL_CONFIG``, else ``/etc/nova-accel/nova-accel.conf``;
``--config-dir``; the ``OS_INVENTORY__<OPTION>`` environment variables);
the command's own flags (``--cache``, ``--sysfs-root``) override them.
Exit codes: 0 success, 1 an operational error (one line on stderr), 2 a
usage error.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import tempfile
import threading

from oslo_config import cfg

from accel_inventory import agent
from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import conf as inventory_conf
from accel_inventory import inventory
from accel_inventory import model
from accel_inventory import monitor
from accel_inventory import placement
from accel_inventory import usage

LOG = logging.getLogger(__name__)

PROG = "accel-inventory"
REPORTED = (model.STATUS_ADDED, model.STATUS_MOVED, model.STATUS_LOST,
            model.STATUS_AMBIGUOUS)
SAMPLE_HOSTNAME = "sample-host"


def build_parser() -> argparse.ArgumentParser:
    parser = usage.Parser(
        prog=PROG,
        description="Discover the host's accelerators (PCI cards, mdev "
                    "parents, USB sticks, IP-over-PCIe cards), keep them in "
                    "a local cache under stable ids, and show what holds "
                    "them. Options are read from --config-file, else "
                    "$NOVA_ACCEL_CONFIG, else /etc/nova-accel/"
                    "nova-accel.conf (the file the libvirt hook reads), "
                    "and OS_INVENTORY__<OPTION> environment variables; the "
                    "flags below override them.",
        epilog="Exit codes: 0 success, 1 operational error, 2 usage error.")
    parser.add_argument("--config-file", action="append", default=[],
                        metavar="PATH",
                        help="Config file to read instead of the default "
                             "(repeatable; later files override earlier "
                             "ones).")
    parser.add_argument("--config-dir", action="append", default=[],
                        metavar="DIR",
                        help="Directory of *.conf files to read.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="Log what is done, not only problems.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     required=True)

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text,
                                  description=help_text)
        sub.add_argument("--cache", metavar="FILE",
                         help="Inventory cache ([inventory] cache_path).")
        return sub

    def sysfs_root(sub):
        sub.add_argument("--sysfs-root", metavar="DIR",
                         help="Root of the sysfs tree to scan "
                              "([inventory] sysfs_root).")

    scan = command("scan", "Scan the host, reconcile with the cache and "
                           "save it; print one line per card that was "
                           "added, moved, lost or is ambiguous.")
    sysfs_root(scan)

    show = command("show", "Show the cached topology: host > NUMA node > "
                           "card > region > function, with addresses, "
                           "status and claims.")
    show.add_argument("--format", choices=("tree", "json"), default="tree",
                      help="tree (default) for people; json prints the "
                           "cache document.")
    show.add_argument("--sample", action="store_true",
                      help="Build the bundled sample host as a fake sysfs "
                           "tree in a temporary directory, scan it and show "
                           "it (works on any machine; --cache is ignored).")

    command("status", "Summarise the cache: cards per status, claims, and "
                      "what needs an operator.")

    ack = command("ack", "Accept a moved or added card (its status "
                         "becomes ok).")
    ack.add_argument("card", metavar="CARD", help="Card id.")

    forget = command("forget", "Drop a lost card from the cache; refused "
                               "while any of its functions is claimed.")
    forget.add_argument("card", metavar="CARD", help="Card id.")

    clear = command("clear", "Let functions that a server released and "
                             "that wait to be cleaned (held for an "
                             "operator, see 'status') go free, once you "
                             "have cleaned them: placement offers them "
                             "again at the agent's next round.")
    clear.add_argument("ids", metavar="ID", nargs="+",
                       help="A function id, or a region or card id for "
                            "every waiting function of it.")

    watch = command("watch", "Rescan at start and after every burst of "
                             "pci, usb, mdev or net device events, until "
                             "interrupted.")
    sysfs_root(watch)
    watch.add_argument("--debounce", type=_seconds, default=2.0,
                       metavar="SECONDS",
                       help="Quiet time after the last event before a "
                            "rescan (default 2).")

    command("publish", "Publish the cached topology to placement (one "
                       "provider per card and per region under the "
                       "compute node) and record the allocations on it "
                       "in the cache. Exit 1 when placement is "
                       "unreachable; the cache is then unchanged.")
    agent_cmd = command("agent", "Rescan, publish and record allocations "
                                 "at start, every [agent] interval seconds "
                                 "and after device events, until SIGTERM.")
    sysfs_root(agent_cmd)
    agent_cmd.add_argument("--once", action="store_true",
                       help="Run one round and exit (1 if it fails).")
    return parser


def _load_conf(args) -> cfg.ConfigOpts:
    oslo_args = []
    for path in args.config_file:
        oslo_args += ["--config-file", path]
    for path in args.config_dir:
        oslo_args += ["--config-dir", path]
    conf = inventory_conf.load(oslo_args)
    if args.cache:
        conf.set_override("cache_path", args.cache, group="inventory")
    if getattr(args, "sysfs_root", None):
        conf.set_override("sysfs_root", args.sysfs_root, group="inventory")
    if args.command in ("publish", "agent"):
        inventory_conf.register_placement_opts(conf)
    inventory_conf.check(conf)
    return conf


def _seconds(text: str) -> float:
    """A number of seconds, 0 or more (argparse's float takes -1, nan)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, 0 or more, not {text!r}")
    return value


def change_line(change) -> str:
    """One line per change: ``moved <card> <old> -> <new>: <message>``."""
    if change.status == model.STATUS_MOVED:
        where = f"{change.old_address} -> {change.new_address}"
    elif change.status == model.STATUS_LOST:
        where = f"was at {change.old_address}"
    else:
        where = f"at {change.new_address}"
    line = f"{change.status} {change.card_id} {where}"
    return f"{line}: {change.message}" if change.message else line


def _scan(conf, out) -> int:
    _inv, changes = inventory.refresh(conf)
    for change in changes:
        if change.status in REPORTED:
            print(change_line(change), file=out)
    return 0


def _load_existing(conf) -> model.Inventory:
    path = conf.inventory.cache_path
    inv = cache.load(path)
    if inv is None:
        raise cache.CacheError(f"there is no inventory cache at {path} yet; "
                               f"run '{PROG} scan' first")
    return inv


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _claim_state(claim: model.Claim, boot_id: str) -> str:
    if claim.is_running(boot_id):
        return "running"
    if claim.running:
        return "stale: running in a previous boot"
    return "stopped"


def _card_line(card: model.Card) -> str:
    parts = [f"card {card.id}", card.kind,
             f"{card.vendor_id}:{card.product_id}"]
    if card.name:
        parts.append(repr(card.name))
    parts.append(f"at {card.address or '-'}")
    parts.append(f"[{card.status}]")
    identity = f"identity {card.identity_source}"
    if card.weak_identity:
        identity += " (weak)"
    parts.append(identity)
    if card.previous_addresses:
        parts.append("was at " + ", ".join(card.previous_addresses))
    return " ".join(parts)


def _region_line(region: model.Region) -> str:
    claimed = sum(f.claimed_by is not None for f in region.functions)
    line = (f"region {region.index} {region.id} {region.resource_class} "
            f"at {region.address or '-'} ({claimed}/{region.size} claimed)")
    for key in ("fpga_region", "fpga_compat_ids", "fpga_afu_ids"):
        if key in region.attrs:
            value = region.attrs[key]
            line += f" {key} " + (", ".join(value) if isinstance(value, list)
                                  else str(value))
    return line


def _function_line(function: model.Function, inv: model.Inventory,
                   boot_id: str) -> str:
    line = f"{function.id.rsplit('/', 1)[1]} {function.id} at " \
           f"{function.address or '-'}"
    for key in ("interface", "mac", "mdev_type", "parent", "vgpu_type_id",
                "vgpu_type_name", "ports"):
        if key in function.attrs:
            value = function.attrs[key]
            line += f" {key} " + (",".join(value) if isinstance(value, list)
                                  else str(value))
    if function.attrs.get("unavailable"):
        line += f" unavailable ({function.attrs['unavailable']})"
    waiting = inv.cleaning.get(function.id)
    if waiting is not None:
        return line + (f" held for cleaning after {waiting.after}: "
                       f"{waiting.reason}"
                       if waiting.state == model.CLEANING_HELD else
                       f" being cleaned after {waiting.after}")
    if function.claimed_by is None:
        return line + " free"
    claim = inv.claims[function.claimed_by]
    domain = f" ({claim.domain_name})" if claim.domain_name else ""
    return (line + f" claimed by {claim.consumer}{domain}, "
            f"{_claim_state(claim, boot_id)}")


def render_tree(inv: model.Inventory, boot_id: str) -> list[str]:
    """The topology for a person, one line per node, ASCII branches."""
    lines = [f"host {inv.hostname} (scanned {_when(inv.scanned_at)})"]

    def branch(prefix, items, render, children):
        for i, item in enumerate(items):
            last = i == len(items) - 1
            lines.append(prefix + ("`-- " if last else "|-- ")
                         + render(item))
            children(prefix + ("    " if last else "|   "), item)

    def functions(prefix, region):
        branch(prefix, region.functions,
               lambda f: _function_line(f, inv, boot_id),
               lambda p, f: None)

    def regions(prefix, card):
        branch(prefix, card.regions, _region_line, functions)

    def cards(prefix, node):
        branch(prefix, nodes[node], _card_line, regions)

    nodes = inv.numa_nodes()
    order = sorted(nodes, key=lambda n: (n is None, n if n is not None
                                         else 0))
    branch("", order,
           lambda n: "NUMA node " + ("unknown" if n is None else str(n)),
           cards)
    if not inv.cards:
        lines.append("`-- no accelerators found")
    return lines


def _show(conf, args, out) -> int:
    if args.sample:
        return _show_sample(conf, args, out)
    inv = _load_existing(conf)
    _print_inventory(inv, args.format, out)
    return 0


def _print_inventory(inv, fmt, out):
    if fmt == "json":
        json.dump(model.to_dict(inv), out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        boot_id = inventory.current_boot_id()
        out.write("\n".join(render_tree(inv, boot_id)) + "\n")


def _show_sample(conf, args, out) -> int:
    from accel_inventory import sample

    with tempfile.TemporaryDirectory(prefix="nova-accel-sample-") as tmp:
        root = sample.build_sample_host(os.path.join(tmp, "sys"))
        conf.set_override("sysfs_root", root, group="inventory")
        conf.set_override("cache_path", os.path.join(tmp, "inventory.json"),
                          group="inventory")
        if not conf.inventory.hostname:
            conf.set_override("hostname", SAMPLE_HOSTNAME, group="inventory")
        inv, _changes = inventory.refresh(conf)
        _print_inventory(inv, args.format, out)
    return 0


def status_lines(inv: model.Inventory, path: str, boot_id: str) -> list[str]:
    """The summary ``status`` prints, attention items last."""
    by_status: dict[str, int] = {}
    for card in inv.cards:
        by_status[card.status] = by_status.get(card.status, 0) + 1
    functions = [f for c in inv.cards for f in c.functions()]
    running = [c for c in inv.claims.values() if c.is_running(boot_id)]
    stale = [c for c in inv.claims.values()
             if c.running and not c.is_running(boot_id)]
    lines = [
        f"host: {inv.hostname}",
        f"cache: {path} (scanned {_when(inv.scanned_at)})",
        f"cards: {len(inv.cards)} ("
        + ", ".join(f"{by_status[s]} {s}" for s in model.STATUSES
                    if s in by_status) + ")",
        f"functions: {len(functions)}, claimed "
        f"{sum(f.claimed_by is not None for f in functions)}",
        f"claims: {len(inv.claims)} ({len(running)} running, {len(stale)} "
        f"from a previous boot)",
        f"waiting to be cleaned: {len(inv.cleaning)} ("
        f"{sum(e.state == model.CLEANING_HELD for e in inv.cleaning.values())}"
        f" held for an operator)",
    ]
    for card in inv.cards:
        if card.status == model.STATUS_MOVED:
            lines.append(f"moved: {card.id} now at {card.address} (was "
                         f"{', '.join(card.previous_addresses)}); "
                         f"'{PROG} ack {card.id}' to accept")
        elif card.status == model.STATUS_ADDED:
            lines.append(f"added: {card.id} at {card.address}; "
                         f"'{PROG} ack {card.id}' to accept")
        elif card.status == model.STATUS_LOST:
            held = sorted({f.claimed_by for f in card.functions()
                           if f.claimed_by})
            lines.append(f"lost: {card.id} (last at {card.address}); "
                         + (f"claimed by {', '.join(held)}" if held else
                            f"'{PROG} forget {card.id}' to drop it"))
        elif card.status == model.STATUS_AMBIGUOUS:
            lines.append(f"ambiguous: {card.id} at {card.address} cannot be "
                         f"told apart from another card; give it a profile "
                         f"or a stronger identity")
    for claim in stale:
        lines.append(f"stale claim: {claim.consumer} was running in boot "
                     f"{claim.boot_id}; the hook marks it again at the "
                     f"next start")
    for fid, entry in sorted(inv.cleaning.items()):
        if entry.state == model.CLEANING_HELD:
            lines.append(f"held: {fid} (released by {entry.after} at "
                         f"{_when(entry.since)}): {entry.reason}; clean it, "
                         f"then '{PROG} clear {fid}'")
        else:
            lines.append(f"cleaning: {fid} (released by {entry.after} at "
                         f"{_when(entry.since)}): the agent cleans it at its "
                         f"next round")
    return lines


def _status(conf, out) -> int:
    inv = _load_existing(conf)
    lines = status_lines(inv, conf.inventory.cache_path,
                         inventory.current_boot_id())
    out.write("\n".join(lines) + "\n")
    return 0


def _ack(conf, args, out) -> int:
    was = []

    def apply(inv):
        new = inventory.ack(inv, args.card)
        was.append(inv.card(args.card).status)
        return new

    cache.update(conf.inventory.cache_path, apply,
                 conf.inventory.lock_timeout)
    print(f"acknowledged {args.card}: ok (was {was[-1]})", file=out)
    return 0


def _forget(conf, args, out) -> int:
    cache.update(conf.inventory.cache_path,
                 lambda inv: inventory.forget(inv, args.card),
                 conf.inventory.lock_timeout)
    print(f"forgot lost card {args.card}", file=out)
    return 0


def _clear(conf, args, out) -> int:
    cleared: list[model.Cleaning] = []

    def apply(inv):
        cleared.clear()
        for target in args.ids:
            inv, done = inventory.clear(inv, target)
            cleared.extend(done)
        return inv

    cache.update(conf.inventory.cache_path, apply,
                 conf.inventory.lock_timeout)
    for entry in cleared:
        print(f"cleared {entry.function} (released by {entry.after}, "
              f"{entry.state}); placement offers it again at the agent's "
              f"next round", file=out)
    return 0


def _watch(conf, args, out, event_source) -> int:
    source = event_source if event_source is not None \
        else monitor.udev_source()
    stop = threading.Event()

    def rescan():
        for line in _changes_now(conf):
            print(line, file=out, flush=True)

    try:
        monitor.watch(source, rescan, stop, debounce=args.debounce)
    except KeyboardInterrupt:
        LOG.info("Watch interrupted")
    return 0


def _changes_now(conf) -> list[str]:
    _inv, changes = inventory.refresh(conf)
    return [change_line(c) for c in changes if c.status in REPORTED]


def main(argv=None, *, event_source=None, out=None) -> int:
    """Run ``accel-inventory``; returns the exit code.

    ``event_source`` replaces the udev monitor of ``watch`` (tests script
    it); ``out`` replaces stdout.
    """
    out = out if out is not None else sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s")
    try:
        conf = _load_conf(args)
        inventory.check_trusted(conf, inventory_conf.config_files(conf))
        if args.command in ("watch", "agent"):
            # Long-running: a wrong root fails now, not in every round.
            inventory.check_sysfs_root(conf.inventory.sysfs_root)
        if args.command == "scan":
            return _scan(conf, out)
        if args.command == "show":
            return _show(conf, args, out)
        if args.command == "status":
            return _status(conf, out)
        if args.command == "ack":
            return _ack(conf, args, out)
        if args.command == "forget":
            return _forget(conf, args, out)
        if args.command == "clear":
            return _clear(conf, args, out)
        if args.command == "publish":
            return agent.publish_command(conf, out)
        if args.command == "agent":
            return agent.agent_command(conf, once=args.once,
                                       events=event_source)
        return _watch(conf, args, out, event_source)
    except placement.PlacementError as e:
        return _fail(str(e))
    except (cfg.Error, inventory_conf.ConfigError) as e:
        return _fail(f"configuration: {e}")
    except (cache.CacheError, claims.ClaimError,
            inventory.InventoryError) as e:
        return _fail(str(e))
    except OSError as e:
        name = f" {e.filename}" if e.filename else ""
        return _fail(f"{e.strerror or e}{name}")


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1
