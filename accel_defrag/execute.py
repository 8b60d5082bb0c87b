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

"""``accel-defrag plan --execute``: a plan's moves through nova's API,
one at a time, for clouds without OpenStack Watcher.

Each move: the server is read (it must still be where the plan found
it), migrated to the plan's host (live where its kinds allow and it is
ACTIVE, cold otherwise), waited for, and placement is read: a cold
migration whose functions landed in a whole free region of the target
(the scheduler chose so) is reverted, the server back where it was; a
cold one that landed well is confirmed. Then the regions the move was
to free must be empty in placement. The first failure stops the run and
is reported with what nova or placement said; nothing is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from accel_inventory import contract
from accel_inventory import placement
from accel_defrag import cluster as cl
from accel_defrag import nova as nova_api
from accel_defrag import planner

HOST = "OS-EXT-SRV-ATTR:host"
NODE = "OS-EXT-SRV-ATTR:hypervisor_hostname"
TASK = "OS-EXT-STS:task_state"


class MoveFailed(Exception):
    """A move did not happen as planned; the message says what and what
    state the server is in."""


@dataclass
class Outcome:
    done: list[planner.Move] = field(default_factory=list)
    failed: planner.Move | None = None
    reason: str | None = None


def _usage(client: placement.Client, region: cl.Region) -> int:
    response = client.call("GET",
                           f"/resource_providers/{region.uuid}/usages")
    if response.status_code != 200:
        raise MoveFailed(f"placement answered {response.status_code} for "
                         f"the usage of {region.name}")
    return int(response.json()["usages"].get(region.resource_class, 0))


def _landed(client: placement.Client, cluster: cl.Cluster,
            server: str) -> dict[str, int]:
    """The regions of ours ``server`` holds now, with how many
    functions (the instance's own allocations; during a cold migration
    the source's are held by the migration)."""
    response = client.call("GET", f"/allocations/{server}")
    if response.status_code != 200:
        raise MoveFailed(f"placement answered {response.status_code} for "
                         f"the allocations of {server}")
    held = {}
    for rp, alloc in response.json()["allocations"].items():
        region = cluster.regions.get(rp)
        if region is not None:
            held[rp] = int(alloc["resources"].get(region.resource_class, 0))
    return held


def _spoils(client: placement.Client, cluster: cl.Cluster,
            target: planner.Target, landed: dict[str, int]) -> list[str]:
    """The target-shaped regions the server took whole (it is alone on
    them): the scheduler undid the gain."""
    spoiled = []
    for rp, amount in landed.items():
        region = cluster.regions[rp]
        if ((region.resource_class, region.size)
                == (target.resource_class, target.size)
                and _usage(client, region) == amount):
            spoiled.append(region.name)
    return spoiled


def run_move(move: planner.Move, cluster: cl.Cluster,
             target: planner.Target, nova: nova_api.Nova,
             client: placement.Client, timeout: float,
             say: Callable[[str], None], interval: float = 2.0) -> None:
    """One move; raises MoveFailed (or NovaError) when it did not
    happen as planned."""
    source = cluster.hosts[move.source].name
    destination = cluster.hosts[move.destination].name
    server = nova.server(move.server)
    if server.get(NODE) != source:
        raise MoveFailed(f"server {move.server} is on "
                         f"{server.get(NODE)}, not on {source} where the "
                         f"plan found it; plan again")
    if server.get(TASK):
        raise MoveFailed(f"server {move.server} is busy ({server[TASK]}); "
                         f"plan again once it is done")
    status = server.get("status")
    how = move.how
    if how == contract.MOVE_LIVE and status != "ACTIVE":
        how = contract.MOVE_COLD
        say(f"  {move.server} is {status}, not ACTIVE: moved cold")
    host = nova.service_host(destination)

    def finished(s):
        return not s.get(TASK)

    if how == contract.MOVE_LIVE:
        nova.live_migrate(move.server, host)
        after = nova.wait(move.server, finished, timeout, interval)
        if after.get("status") == "ERROR" or after.get(NODE) != destination:
            raise MoveFailed(f"the live migration of {move.server} did not "
                             f"reach {destination}: it is "
                             f"{after.get('status')} on {after.get(NODE)}"
                             f"{_fault(after)}")
        spoiled = _spoils(client, cluster, target,
                          _landed(client, cluster, move.server))
        if spoiled:
            raise MoveFailed(f"nova's scheduler put {move.server} in the "
                             f"whole free region(s) {', '.join(spoiled)}; "
                             f"stopped so that no further move builds on "
                             f"it (the server runs there, unharmed)")
    else:
        nova.cold_migrate(move.server, host)
        after = nova.wait(move.server, finished, timeout, interval)
        if after.get("status") != "VERIFY_RESIZE":
            raise MoveFailed(f"the cold migration of {move.server} ended "
                             f"{after.get('status')} on {after.get(NODE)}"
                             f"{_fault(after)}")
        spoiled = _spoils(client, cluster, target,
                          _landed(client, cluster, move.server))
        if spoiled:
            nova.revert(move.server)
            nova.wait(move.server, lambda s: finished(s) and s.get(
                "status") != "VERIFY_RESIZE", timeout, interval)
            raise MoveFailed(f"nova's scheduler put {move.server} in the "
                             f"whole free region(s) {', '.join(spoiled)}; "
                             f"the migration was reverted, the server is "
                             f"back on {source}")
        nova.confirm(move.server)
        nova.wait(move.server, lambda s: finished(s) and s.get(
            "status") != "VERIFY_RESIZE", timeout, interval)
    # Nova drops the source's allocations (the migration's) last, after
    # the server is ACTIVE again: wait for them within the timeout.
    deadline = nova.clock() + timeout
    while True:
        still = [cluster.regions[r].name for r in move.frees
                 if _usage(client, cluster.regions[r])]
        if not still:
            return
        if nova.clock() >= deadline:
            raise MoveFailed(
                f"{', '.join(still)} still in use {timeout:g} s after the "
                f"move of {move.server} (another server landed there, or "
                f"an allocation is left); plan again")
        nova.sleep(interval)


def _fault(server: dict) -> str:
    fault = (server.get("fault") or {}).get("message")
    return f" ({fault})" if fault else ""


def execute(plan: planner.Plan, cluster: cl.Cluster, nova: nova_api.Nova,
            client: placement.Client, *, timeout: float,
            say: Callable[[str], None], interval: float = 2.0) -> Outcome:
    """Run ``plan``'s moves in order, polling nova every ``interval``
    seconds; stop at the first that fails."""
    outcome = Outcome()
    total = len(plan.moves)
    for i, move in enumerate(plan.moves, 1):
        what = (f"{i}/{total} {move.server}: {move.how} migration "
                f"{cluster.hosts[move.source].name} -> "
                f"{cluster.hosts[move.destination].name}")
        say(what + " ...")
        try:
            run_move(move, cluster, plan.target, nova, client, timeout, say,
                     interval)
        except (MoveFailed, nova_api.NovaError,
                placement.PlacementError) as e:
            outcome.failed, outcome.reason = move, str(e)
            say(f"{what}: failed: {e}")
            say(f"stopped: {len(outcome.done)} of {total} moves done; the "
                f"rest not tried")
            return outcome
        outcome.done.append(move)
        frees = ", ".join(cluster.regions[r].name for r in move.frees)
        say(f"{what}: done" + (f", {frees} whole free" if frees else ""))
    return outcome
