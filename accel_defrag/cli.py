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

"""``accel-defrag``: the cloud's accelerator fragmentation from placement
(``fragmentation``), and the fewest server moves that free whole regions
(``plan``, run one at a time through nova with ``--execute``), for an
operator's workstation. Options: ``[placement]`` and ``[nova]`` of
``--config-file`` (else the file every nova-accel command reads). Exit
codes: 0 success, 1 an operational error or a plan short of its target
(one line on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid as uuid_lib

from oslo_config import cfg

from accel_inventory import conf as inventory_conf
from accel_inventory import placement
from accel_inventory import usage
from accel_defrag import conf as defrag_conf
from accel_defrag import execute
from accel_defrag import nova as nova_api
from accel_defrag import planner
from accel_defrag import plot
from accel_defrag import reader
from accel_defrag import report

PROG = "accel-defrag"


def _whole(minimum: int):
    """argparse's type for a whole number of ``minimum`` or more."""
    def whole(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number, {minimum} or more, not {text!r}")
        return value
    return whole


_positive = _whole(1)
_count = _whole(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds above 0, not {text!r}")
    return value


def _resource_class(text: str) -> str:
    if not text.startswith("CUSTOM_") or not text.replace("_", "").isalnum() \
            or text.upper() != text:
        raise argparse.ArgumentTypeError(
            f"expected a custom resource class (CUSTOM_ACCEL_...), not "
            f"{text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = usage.Parser(
        prog=PROG,
        description="See how fragmented the cloud's accelerator regions "
                    "are, from placement alone, and plan the fewest server "
                    "moves that free whole regions. Reads [placement] (and "
                    "[nova] for --execute and an aggregate's name) from "
                    "--config-file, else $NOVA_ACCEL_CONFIG, else "
                    "/etc/nova-accel/nova-accel.conf.",
        epilog="Exit codes: 0 success, 1 operational error or a plan "
               "short of its target, 2 usage error.")
    parser.add_argument("--config-file", action="append", default=[],
                        metavar="PATH",
                        help="Config file to read instead of the default "
                             "(repeatable).")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="Log what is done, not only problems.")
    parser.add_argument("--workers", type=_positive, default=reader.WORKERS,
                        metavar="N",
                        help="Placement requests in flight at once while "
                             "reading the cloud (default %(default)s).")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     required=True)

    def aggregate(sub):
        sub.add_argument("--aggregate", metavar="NAME",
                         help="Only the hosts of this host aggregate: its "
                              "UUID (as placement knows it), or its name "
                              "(looked up in nova's API: needs [nova]).")

    view = commands.add_parser(
        "fragmentation",
        help="Per host and resource class: whole free regions by size, "
             "fragmented functions, the largest request still placeable.",
        description="Per host and resource class, from placement: whole "
                    "free regions by size, fragmented functions (free "
                    "functions outside whole free regions), the largest "
                    "request of one region and the largest whole-region "
                    "request still placeable; then the totals per class.")
    aggregate(view)
    view.add_argument("--format", choices=("table", "json"),
                      default="table", help="table (default) or json.")
    view.add_argument("--plot", metavar="FILE.png",
                      help="Also draw a heatmap of the hosts (needs "
                           "matplotlib, the [sim] extra).")

    plan = commands.add_parser(
        "plan",
        help="The fewest server moves that free N whole regions.",
        description="From placement's allocations, the fewest server "
                    "moves (live where every device kind of the server "
                    "allows, cold otherwise, never a server whose device "
                    "cannot move) that make N more whole regions of the "
                    "class and size free; with --max-moves, the most "
                    "regions (up to N) that many moves free. Each server "
                    "goes to a host with room for all of it (CPU, memory, "
                    "disk and its functions). Prints the moves, why each "
                    "is live or cold, the exact openstack commands and "
                    "the gain.")
    plan.add_argument("--free", type=_positive, required=True, metavar="N",
                      help="How many more whole regions to free.")
    plan.add_argument("--class", dest="resource_class", required=True,
                      type=_resource_class, metavar="CUSTOM_ACCEL_X",
                      help="The regions' resource class.")
    plan.add_argument("--size", type=_positive, required=True, metavar="S",
                      help="The regions' size in functions (their "
                           "CUSTOM_ACCEL_REGION_SIZE_S trait).")
    plan.add_argument("--max-moves", type=_count, metavar="M",
                      help="At most M moves: the most regions they free.")
    aggregate(plan)
    plan.add_argument("--same-host", action="store_true",
                      help="Also move a server to another region of its own "
                           "host where its compute node reports "
                           "COMPUTE_SAME_HOST_COLD_MIGRATE (cold, without "
                           "--host: nova refuses --host naming the "
                           "server's own host, so its scheduler chooses).")
    plan.add_argument("--format", choices=("table", "json"),
                      default="table", help="table (default) or json.")
    plan.add_argument("--execute", action="store_true",
                      help="Run the moves through nova's API ([nova]), one "
                           "at a time, checking placement after each; stop "
                           "at the first failure, never retry.")
    plan.add_argument("--timeout", type=_seconds, default=600.0,
                      metavar="SECONDS",
                      help="--execute: how long one move may take "
                           "(default 600).")
    plan.add_argument("--poll-interval", type=_seconds, default=2.0,
                      metavar="SECONDS",
                      help="--execute: how often nova is asked how a move "
                           "goes (default 2).")
    return parser


def _load_conf(args) -> cfg.ConfigOpts:
    oslo_args = []
    for path in args.config_file:
        oslo_args += ["--config-file", path]
    conf = inventory_conf.load(oslo_args)
    defrag_conf.register_opts(conf)
    inventory_conf.check(conf)
    return conf


def _placement(conf) -> placement.Client:
    return placement.Client(placement.load_adapter(conf))


def _hosts(conf, client, aggregate: str | None) -> set[str] | None:
    if aggregate is None:
        return None
    try:
        uuid_lib.UUID(aggregate)
    except ValueError:
        aggregate = nova_api.Nova(nova_api.load_adapter(conf)) \
            .aggregate_uuid(aggregate)
    members = reader.aggregate_members(client, aggregate)
    if not members:
        raise placement.PlacementError(
            f"aggregate {aggregate} has no compute node in placement")
    return members


def _fragmentation(conf, args, out) -> int:
    if args.plot:
        plot.check_target(args.plot)
    client = _placement(conf)
    cluster = reader.read(client, hosts=_hosts(conf, client, args.aggregate),
                          consumers=False, workers=args.workers)
    if args.format == "json":
        json.dump(report.view_json(cluster), out, indent=1, sort_keys=True)
        out.write("\n")
    else:
        out.write("\n".join(report.view_table(cluster)) + "\n")
    if args.plot:
        plot.heatmap(cluster, args.plot)
    return 0


def _plan(conf, args, out) -> int:
    client = _placement(conf)
    nova = (nova_api.Nova(nova_api.load_adapter(conf)) if args.execute
            else None)
    cluster = reader.read(client, hosts=_hosts(conf, client, args.aggregate),
                          workers=args.workers)
    result = planner.plan(cluster, planner.Target(
        args.resource_class, args.size, args.free, args.max_moves,
        args.same_host))
    if args.format == "json":
        json.dump(report.plan_json(cluster, result), out, indent=1,
                  sort_keys=True)
        out.write("\n")
    else:
        out.write("\n".join(report.plan_table(cluster, result)) + "\n")
    if not result.met:
        return _fail(f"only {len(result.freed)} of the {args.free} "
                     f"regions asked can be freed"
                     + ("; nothing executed" if args.execute else "")
                     + " (see 'left out')")
    if nova is None or not result.moves:
        return 0
    outcome = execute.execute(
        result, cluster, nova, client, timeout=args.timeout,
        say=lambda line: print(line, file=sys.stderr, flush=True),
        interval=args.poll_interval)
    if outcome.failed is not None:
        return _fail(f"move of {outcome.failed.server} failed: "
                     f"{outcome.reason}")
    return 0


def main(argv=None, out=None) -> int:
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
        if args.command == "fragmentation":
            return _fragmentation(conf, args, out)
        return _plan(conf, args, out)
    except (placement.PlacementError, nova_api.NovaError,
            plot.PlotError) as e:
        return _fail(str(e))
    except (cfg.Error, inventory_conf.ConfigError) as e:
        return _fail(f"configuration: {e}")
    except OSError as e:
        name = f" {e.filename}" if e.filename else ""
        return _fail(f"{e.strerror or e}{name}")


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1
