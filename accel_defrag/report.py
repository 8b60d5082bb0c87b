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

"""What accel-defrag prints: the cluster view and the plan, as tables
for people and JSON for scripts, and a plan's moves as the exact
``openstack`` commands. Pure text from data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from accel_inventory import contract, fragmentation
from accel_defrag import cluster as cl
from accel_defrag import planner

# The compute API microversion each command needs: --host on a live
# migration is checked by the scheduler from 2.30 (before, it bypassed
# it); a cold migration takes --host from 2.56.
LIVE_MICROVERSION = "2.30"
COLD_MICROVERSION = "2.56"


def _whole(figures: fragmentation.ClassFigures) -> str:
    return " ".join(f"{n}x{size}" for size, n in figures.whole_free.items()
                    ) or "-"


def _largest_whole(figures: fragmentation.ClassFigures) -> str:
    count, size = figures.largest_whole
    return f"{count}x region{size}" if count else "-"


def view_rows(cluster: cl.Cluster
              ) -> list[tuple[str, str, fragmentation.ClassFigures]]:
    """(host name, class, figures) per host and class, hosts by name."""
    rows = []
    for host, classes in cl.host_figures(cluster).items():
        name = cluster.hosts[host].name if host in cluster.hosts else host
        for rc, figures in classes.items():
            rows.append((name, rc, figures))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def _table(heads: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column)
              for column in zip(heads, *rows, strict=True)]
    return ["  ".join(str(c).ljust(w)
                      for c, w in zip(row, widths, strict=True)).rstrip()
            for row in [heads, *rows]]


def view_table(cluster: cl.Cluster) -> list[str]:
    rows = view_rows(cluster)
    if not rows:
        return ["no accelerator regions in placement (is the agent "
                "publishing?)"]
    heads = ["HOST", "RESOURCE CLASS", "REGIONS", "USED/CAPACITY",
             "WHOLE FREE", "FRAGMENTED", "LARGEST", "LARGEST WHOLE"]
    lines = _table(heads, [[
        host, rc, str(f.regions), f"{f.used}/{f.capacity}", _whole(f),
        str(f.fragmented), str(f.largest), _largest_whole(f)]
        for host, rc, f in rows])
    totals = fragmentation.class_figures(
        r.fill for r in cluster.regions.values())
    lines.append("")
    for rc, f in totals.items():
        lines.append(f"{rc}: {f.whole_free_regions} whole free regions "
                     f"({_whole(f)}), {f.fragmented} fragmented functions "
                     f"of {f.free} free, {f.used}/{f.capacity} used")
    return lines


def _figures_json(f: fragmentation.ClassFigures) -> dict[str, Any]:
    count, size = f.largest_whole
    return {"regions": f.regions, "capacity": f.capacity, "used": f.used,
            "free": f.free, "degraded_regions": f.degraded,
            "whole_free": {str(s): n for s, n in f.whole_free.items()},
            "fragmented_functions": f.fragmented,
            "largest_request_functions": f.largest,
            "largest_whole_request": {"regions": count, "size": size}}


def view_json(cluster: cl.Cluster) -> dict[str, Any]:
    hosts: dict[str, dict[str, Any]] = {}
    for host, rc, f in view_rows(cluster):
        hosts.setdefault(host, {})[rc] = _figures_json(f)
    totals = fragmentation.class_figures(
        r.fill for r in cluster.regions.values())
    return {"hosts": hosts,
            "totals": {rc: _figures_json(f) for rc, f in totals.items()}}


def commands(cluster: cl.Cluster, move: planner.Move) -> list[str]:
    """The ``openstack`` commands that make ``move``; a cold migration
    is confirmed once done (which releases the source)."""
    host = cluster.hosts[move.destination].name
    if move.how == contract.MOVE_LIVE:
        return [f"openstack --os-compute-api-version {LIVE_MICROVERSION} "
                f"server migrate --live-migration --host {host} --wait "
                f"{move.server}"]
    return [f"openstack --os-compute-api-version {COLD_MICROVERSION} "
            f"server migrate --host {host} --wait {move.server}",
            f"openstack server migration confirm {move.server}"]


def _region_name(cluster: cl.Cluster, uuid: str) -> str:
    region = cluster.regions.get(uuid)
    return region.name if region is not None else uuid


def plan_table(cluster: cl.Cluster, plan: planner.Plan) -> list[str]:
    t = plan.target
    within = (f" (the most within {t.max_moves} moves)"
              if t.max_moves is not None else " (fewest moves)")
    lines = [f"plan: free {t.count} whole region(s) of {t.resource_class} "
             f"size {t.size}{within}"]
    if plan.moves:
        rows = []
        for i, move in enumerate(plan.moves, 1):
            rows.append([
                str(i), move.server, cluster.hosts[move.source].name,
                cluster.hosts[move.destination].name, move.how,
                ", ".join(_region_name(cluster, r) for r in move.frees)
                or "-"])
        lines += _table(["#", "SERVER", "FROM", "TO", "HOW", "FREES"], rows)
        lines.append("")
        lines.append("why each moves so:")
        for i, move in enumerate(plan.moves, 1):
            lines.append(f"  {i}. {move.how}: {move.why}")
    else:
        lines.append("no move frees a region")
    lines.append("")
    lines.append(
        f"gain: {len(plan.freed)} region(s) freed by {len(plan.moves)} "
        f"move(s) ({plan.cold_moves} cold); whole free regions "
        f"{plan.before[0]} -> {plan.after[0]}, fragmented functions "
        f"{plan.before[1]} -> {plan.after[1]}")
    if plan.moves:
        lines.append("")
        lines.append(f"commands (compute API {COLD_MICROVERSION} for a cold "
                     f"migration to a host, {LIVE_MICROVERSION} for a live "
                     f"one; run them in order):")
        for move in plan.moves:
            lines += [f"  {c}" for c in commands(cluster, move)]
    if plan.left_out:
        lines.append("")
        lines.append("left out:")
        for region, why in sorted(plan.left_out.items(),
                                  key=lambda kv: _region_name(cluster,
                                                              kv[0])):
            lines.append(f"  {_region_name(cluster, region)}: {why}")
    if plan.notes:
        lines.append("")
        lines += [f"note: {n}" for n in plan.notes]
    return lines


def plan_json(cluster: cl.Cluster, plan: planner.Plan) -> dict[str, Any]:
    t = plan.target

    def region(uuid: str) -> Mapping[str, str]:
        return {"uuid": uuid, "name": _region_name(cluster, uuid)}

    return {
        "target": {"resource_class": t.resource_class, "size": t.size,
                   "count": t.count, "max_moves": t.max_moves,
                   "same_host": t.same_host},
        "met": plan.met, "exact": plan.exact,
        "moves": [{
            "server": m.server,
            "from": cluster.hosts[m.source].name,
            "to": cluster.hosts[m.destination].name,
            "how": m.how, "why": m.why,
            "microversion": (LIVE_MICROVERSION if m.how == contract.MOVE_LIVE
                             else COLD_MICROVERSION),
            "regions": [{"from": region(a), "to": region(b)}
                        for a, b in m.regions],
            "frees": [region(r) for r in m.frees],
            "commands": commands(cluster, m)} for m in plan.moves],
        "freed": [region(r) for r in plan.freed],
        "before": {"whole_free_regions": plan.before[0],
                   "fragmented_functions": plan.before[1]},
        "after": {"whole_free_regions": plan.after[0],
                  "fragmented_functions": plan.after[1]},
        "left_out": {_region_name(cluster, r): why
                     for r, why in sorted(plan.left_out.items())},
        "notes": plan.notes}
