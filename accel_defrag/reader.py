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

"""The cluster (``accel_defrag.cluster``) read from placement alone.

One listing of every provider (names, parents, roots), one listing per
trait that matters (regions, degraded, the move capabilities, nova's
COMPUTE_SAME_HOST_COLD_MIGRATE), then per region provider its
inventories and its allocations (or only its usages for the view), per
host its root's inventories and usages, and per consumer holding one of
our regions its allocations (what else it takes where). The reads per
provider run a few at a time (``workers``): a cloud of 1,000 hosts and
8,000 regions is some 25,000 requests.
"""

from __future__ import annotations

import uuid as uuid_lib
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from accel_inventory import contract
from accel_inventory import placement
from accel_defrag import cluster as cl

SAME_HOST_TRAIT = "COMPUTE_SAME_HOST_COLD_MIGRATE"
WORKERS = 8


def _refused(response, what: str) -> placement.PlacementError:
    cls = (placement.PlacementUnavailable
           if response.status_code in (401, 403) or response.status_code
           >= 500 else placement.PlacementError)
    return cls(f"placement answered {response.status_code} to {what}: "
               f"{' '.join(response.text[:200].split())}")


def _get(client: placement.Client, url: str) -> dict[str, Any]:
    response = client.call("GET", url)
    if response.status_code != 200:
        raise _refused(response, f"GET {url}")
    return response.json()


def _with_trait(client: placement.Client, trait: str) -> set[str]:
    """The providers carrying ``trait``; none when placement does not
    know the trait (nothing ever carried it)."""
    response = client.call("GET", f"/resource_providers?required={trait}")
    if response.status_code == 400 and "No such trait" in response.text:
        return set()
    if response.status_code != 200:
        raise _refused(response, f"the listing of {trait}")
    return {rp["uuid"] for rp in response.json()["resource_providers"]}


def _capacity(inventory: dict[str, Any]) -> int:
    return int((inventory["total"] - inventory["reserved"])
               * inventory["allocation_ratio"])


def aggregate_members(client: placement.Client, aggregate: str) -> set[str]:
    """The root providers in placement aggregate ``aggregate`` (a UUID,
    as nova mirrors its host aggregates into placement)."""
    try:
        uuid_lib.UUID(aggregate)
    except ValueError:
        raise placement.PlacementError(
            f"aggregate {aggregate!r} is not a UUID: placement knows "
            f"aggregates by UUID only (give the nova aggregate's name "
            f"with the [nova] options set, or its UUID)") from None
    listed = _get(client, f"/resource_providers?member_of="
                          f"{quote(aggregate)}")["resource_providers"]
    return {rp["uuid"] for rp in listed}


def read(client: placement.Client, *, hosts: set[str] | None = None,
         consumers: bool = True, workers: int = WORKERS) -> cl.Cluster:
    """The cluster as placement holds it now. ``hosts``: only the trees
    of these root providers (an aggregate's); ``consumers``: read who
    holds what (the planner needs it; the view only needs usages)."""
    providers = {rp["uuid"]: rp for rp in _get(
        client, "/resource_providers")["resource_providers"]}
    regions = _with_trait(client, contract.REGION_TRAIT) & _with_trait(
        client, contract.OWNER_TRAIT)
    degraded = _with_trait(client, contract.DEGRADED_TRAIT)
    moves = {c: _with_trait(client, contract.move_trait(c))
             for c in (contract.MOVE_LIVE, contract.MOVE_COLD)}
    same_host = _with_trait(client, SAME_HOST_TRAIT)
    regions = {r for r in regions if r in providers and (
        hosts is None or providers[r]["root_provider_uuid"] in hosts)}
    roots = sorted({providers[r]["root_provider_uuid"] for r in regions})

    def map_(fn, items):
        with ThreadPoolExecutor(max_workers=workers) as executor:
            return list(executor.map(fn, items))

    def region_reads(rp):
        base = f"/resource_providers/{rp}"
        inv = _get(client, f"{base}/inventories")["inventories"]
        if consumers:
            held = _get(client, f"{base}/allocations")["allocations"]
            return rp, inv, {c: a["resources"] for c, a in held.items()}
        return rp, inv, _get(client, f"{base}/usages")["usages"]

    def root_reads(rp):
        base = f"/resource_providers/{rp}"
        return (rp, _get(client, f"{base}/inventories")["inventories"],
                _get(client, f"{base}/usages")["usages"])

    cluster = cl.Cluster()
    for rp, inv, usages in map_(root_reads, roots):
        free = {rc: max(_capacity(i) - int(usages.get(rc, 0)), 0)
                for rc, i in inv.items()}
        cluster.hosts[rp] = cl.Host(uuid=rp, name=providers[rp]["name"],
                                    free=free,
                                    same_host_moves=rp in same_host)
    holders: dict[str, set[str]] = {}
    for rp, inv, read in map_(region_reads, sorted(regions)):
        if len(inv) != 1:
            continue  # no functions (no inventory), or not ours to read
        [(rc, i)] = inv.items()
        if consumers:
            used = sum(int(a.get(rc, 0)) for a in read.values())
            for consumer in read:
                holders.setdefault(consumer, set()).add(rp)
        else:
            used = int(read.get(rc, 0))
        card = providers[rp].get("parent_provider_uuid") or rp
        move = next((c for c, members in moves.items()
                     if rp in members), contract.MOVE_NONE)
        cluster.regions[rp] = cl.Region(
            uuid=rp, name=providers[rp]["name"],
            host=providers[rp]["root_provider_uuid"], card=card,
            resource_class=rc, size=int(i["total"]), capacity=_capacity(i),
            used=used, degraded=rp in degraded or card in degraded,
            move=move)
    if consumers:
        def consumer_reads(consumer):
            return consumer, _get(client, f"/allocations/{consumer}")[
                "allocations"]

        for consumer, allocations in map_(consumer_reads, sorted(holders)):
            server = _server(consumer, allocations, cluster, providers)
            if server is not None:
                cluster.servers[consumer] = server
    return cluster


def _server(consumer: str, allocations: dict[str, Any], cluster: cl.Cluster,
            providers: dict[str, Any]) -> cl.Server | None:
    """A consumer's allocations as a server: what it takes of its host's
    root, of our regions, and which other providers it holds. None when
    its allocations are gone meanwhile."""
    ours = {rp: a["resources"] for rp, a in allocations.items()
            if rp in cluster.regions}
    if not ours:
        return None
    host = cluster.regions[next(iter(ours))].host
    server = cl.Server(uuid=consumer, host=host)
    elsewhere = []
    for rp, alloc in allocations.items():
        if rp in ours:
            region = cluster.regions[rp]
            server.regions[rp] = int(alloc["resources"].get(
                region.resource_class, 0))
        elif rp == host:
            server.root = {rc: int(n) for rc, n in alloc["resources"].items()}
        else:
            elsewhere.append(providers.get(rp, {}).get("name", rp))
    server.elsewhere = tuple(sorted(elsewhere))
    return server
