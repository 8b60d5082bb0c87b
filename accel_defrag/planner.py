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

"""The fewest server moves that make N more whole regions free.

Freeing a region means moving every server that holds a function of it;
a server that holds functions of several regions (a flavor with several
request groups) frees its share of all of them with one move, so the
cost of a set of regions is the number of servers in the union of their
holders, not the sum. The plan:

1. **Candidates**: regions of the class and size that are used, not
   degraded, and whose every holder can move: its kinds allow it
   (``contract.MOVE_*``, the least movable function decides), it holds
   nothing the planner does not model, it does not take a whole region
   of the target size (moving it would need another), and some host has
   room for it (CPU, memory, disk and every region amount).
2. **Exact per component**: regions linked by shared holders form a
   component (all on one host). For a component of at most
   ``EXACT_REGIONS`` regions every subset is tried: the cheapest way to
   free j of its regions, for every j. A larger component is planned
   greedily (the region of least extra cost next), which costs at most
   j times the optimum for j regions (each greedy step costs at most
   what the optimum's unfreed regions cost alone, at most the optimum);
   the plan says it is not exact.
3. **Exact across components**: a knapsack over components gives the
   cheapest n regions for every n (components without shared holders
   are single regions and are taken cheapest first). Cost is moves,
   then cold moves (downtime), then fewer functions moved.
4. **Destinations in turn**: the moves are simulated region by region,
   each server to the host and regions that fit it tightest (best fit,
   as our filter packs), never into a region being freed nor into a
   whole free region of the target (that would undo the gain), on a
   host with room for its CPU, memory and disk. A region whose servers
   find no room is dropped and the rest planned again: the plan is then
   the fewest moves among the regions whose servers fit in turn.

Pure: the cluster comes in as data (``accel_defrag.cluster``), the plan
goes out. Greedy (fewest holders first) is not optimal where holders are
shared: see the unit tests for the case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accel_inventory import contract
from accel_defrag import cluster as cl

EXACT_REGIONS = 16
# Moves weigh above cold moves, which weigh above functions moved.
_MOVE_WEIGHT = 1 << 40
_COLD_WEIGHT = 1 << 20
_INFINITE = float("inf")


@dataclass(frozen=True)
class Target:
    """What to free: ``count`` more whole regions of ``resource_class``
    and ``size``; with ``max_moves``, the most regions (up to count)
    that many moves can free. ``same_host`` lets a server move to
    another region of its own host where its compute node allows
    (COMPUTE_SAME_HOST_COLD_MIGRATE: a cold migration without --host,
    which nova's scheduler may place elsewhere)."""

    resource_class: str
    size: int
    count: int
    max_moves: int | None = None
    same_host: bool = False


@dataclass(frozen=True)
class Move:
    """One server to another host: ``how`` is live or cold, ``why``
    says which kind decided; ``regions`` maps each source region to the
    destination region the plan expects (our filter packs it there);
    ``frees`` the regions whole free once this move is done."""

    server: str
    source: str
    destination: str
    how: str
    why: str
    regions: tuple[tuple[str, str], ...]
    frees: tuple[str, ...] = ()


@dataclass
class Plan:
    target: Target
    moves: list[Move] = field(default_factory=list)
    freed: list[str] = field(default_factory=list)
    # (whole free regions of the target, fragmented functions of its
    # class), before and after the plan.
    before: tuple[int, int] = (0, 0)
    after: tuple[int, int] = (0, 0)
    exact: bool = True
    # Regions left out, each with why.
    left_out: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        """Whether the plan frees what was asked (within max_moves, the
        most it can is what was asked)."""
        return (len(self.freed) >= self.target.count
                or self.target.max_moves is not None)

    @property
    def cold_moves(self) -> int:
        return sum(m.how == contract.MOVE_COLD for m in self.moves)


class _State:
    """The cloud as the simulated moves change it: use of each region,
    room of each host, where each server is, and per (class, size) the
    regions by free functions (the best-fit search walks them from the
    amount asked up)."""

    def __init__(self, cluster: cl.Cluster):
        self.cluster = cluster
        self.used = {u: r.used for u, r in cluster.regions.items()}
        self.free = {u: dict(h.free) for u, h in cluster.hosts.items()}
        self.at = {u: (s.host, dict(s.regions))
                   for u, s in cluster.servers.items()}
        self._buckets: dict[tuple[str, int], list[dict[str, None]]] = {}
        for region in sorted(cluster.regions.values(),
                             key=lambda r: (cluster.hosts[r.host].name
                                            if r.host in cluster.hosts
                                            else r.host, r.name)):
            self._bucket(region)[self.region_free(region)][region.uuid] = None

    def _bucket(self, region: cl.Region) -> list[dict[str, None]]:
        shape = (region.resource_class, region.size)
        if shape not in self._buckets:
            self._buckets[shape] = [{} for _ in range(region.size + 1)]
        return self._buckets[shape]

    def region_free(self, region: cl.Region) -> int:
        if region.degraded:
            return 0
        return min(max(region.capacity - self.used[region.uuid], 0),
                   region.size)

    def whole_free(self, region: cl.Region) -> bool:
        return (not region.degraded and self.used[region.uuid] == 0
                and region.capacity >= region.size > 0)

    def fitting(self, shape: tuple[str, int], amount: int):
        """The regions of ``shape`` with ``amount`` free or more, the
        least free first."""
        buckets = self._buckets.get(shape, ())
        for free in range(amount, len(buckets)):
            for uuid in list(buckets[free]):
                yield self.cluster.regions[uuid]

    def host_fits(self, host: str, server: cl.Server) -> bool:
        room = self.free.get(host, {})
        return all(room.get(rc, 0) >= amount
                   for rc, amount in server.root.items())

    def _use(self, uuid: str, delta: int) -> None:
        region = self.cluster.regions[uuid]
        buckets = self._bucket(region)
        del buckets[self.region_free(region)][uuid]
        self.used[uuid] += delta
        buckets[self.region_free(region)][uuid] = None

    def apply(self, server: cl.Server, destination: str,
              mapping: dict[str, str]) -> None:
        """Move ``server`` to ``destination``, each region it holds now to
        the region ``mapping`` names."""
        source, regions = self.at[server.uuid]
        for rc, amount in server.root.items():
            self.free[source][rc] = self.free[source].get(rc, 0) + amount
            self.free[destination][rc] = (
                self.free[destination].get(rc, 0) - amount)
        moved = {}
        for src, amount in regions.items():
            dst = mapping[src]
            self._use(src, -amount)
            self._use(dst, amount)
            moved[dst] = amount
        self.at[server.uuid] = (destination, moved)


def _destination(state: _State, server: cl.Server, target: Target,
                 protected: set[str]) -> tuple[str, dict[str, str]] | None:
    """Where ``server`` goes: the host, and a region for each of its
    region amounts (same class and size, distinct, enough free, neither
    protected nor a whole free region of the target), best fit: the
    least left free first."""
    source, regions = state.at[server.uuid]
    cluster = state.cluster
    asks = sorted(((cluster.regions[r], amount)
                   for r, amount in regions.items()),
                  key=lambda item: (-item[1], item[0].name))
    if not asks:
        return None
    own = set(regions)
    target_shape = (target.resource_class, target.size)

    def usable(region: cl.Region) -> bool:
        if region.uuid in protected or region.uuid in own:
            return False
        return not ((region.resource_class, region.size) == target_shape
                    and state.whole_free(region))

    def host_ok(host: str) -> bool:
        if host == source and not (target.same_host
                                   and cluster.hosts[host].same_host_moves):
            return False
        return state.host_fits(host, server)

    first, amount = asks[0]
    tried: set[str] = set()
    for region in state.fitting((first.resource_class, first.size), amount):
        host = region.host
        if host in tried or not usable(region):
            continue
        tried.add(host)
        if not host_ok(host):
            continue
        mapping = {first.uuid: region.uuid}
        for other, other_amount in asks[1:]:
            best = next((r for r in state.fitting(
                (other.resource_class, other.size), other_amount)
                if r.host == host and r.uuid not in mapping.values()
                and usable(r)), None)
            if best is None:
                break
            mapping[other.uuid] = best.uuid
        else:
            return host, mapping
    return None


def _why_unmovable(cluster: cl.Cluster, server: cl.Server,
                   target: Target) -> str | None:
    move = cluster.move_of(server)
    if move == contract.MOVE_NONE:
        kinds = sorted({cluster.regions[r].name for r in server.regions
                        if cluster.regions[r].move == contract.MOVE_NONE})
        return (f"server {server.uuid} holds functions of {', '.join(kinds)}"
                f", whose kind cannot move (no CUSTOM_ACCEL_MOVE_LIVE or "
                f"_COLD trait)")
    if server.elsewhere:
        return (f"server {server.uuid} also holds resources of "
                f"{', '.join(server.elsewhere)}, which the planner cannot "
                f"find room for")
    for r, amount in server.regions.items():
        region = cluster.regions[r]
        if (region.resource_class == target.resource_class
                and region.size == target.size and amount >= region.size):
            return (f"server {server.uuid} takes the whole region: moving "
                    f"it would take another")
    return None


def _how(cluster: cl.Cluster, server: cl.Server) -> tuple[str, str]:
    move = cluster.move_of(server)
    if move == contract.MOVE_LIVE:
        return move, "every function it holds is of a kind nova can " \
                     "live-migrate (CUSTOM_ACCEL_MOVE_LIVE)"
    cold = sorted(cluster.regions[r].name for r in server.regions
                  if cluster.regions[r].move == contract.MOVE_COLD)
    return move, (f"{', '.join(cold)} keeps state a live migration would "
                  f"lose (CUSTOM_ACCEL_MOVE_COLD)")


def _cost(cluster: cl.Cluster, servers: set[str], cold: set[str]) -> int:
    functions = sum(sum(cluster.servers[s].regions.values())
                    for s in servers)
    return (len(servers) * _MOVE_WEIGHT + len(servers & cold) * _COLD_WEIGHT
            + functions)


def _component_options(cluster: cl.Cluster, regions: list[str],
                       held: dict[str, list[str]], cold: set[str]
                       ) -> tuple[list[tuple[int, tuple[str, ...]]], bool]:
    """For j = 1..len(regions): the cheapest cost and regions freeing j of
    them; and whether that was found exactly."""
    if len(regions) == 1:
        servers = set(held[regions[0]])
        return [(_cost(cluster, servers, cold), (regions[0],))], True
    if len(regions) <= EXACT_REGIONS:
        names = sorted({s for r in regions for s in held[r]})
        bit = {s: 1 << i for i, s in enumerate(names)}
        masks = [sum(bit[s] for s in held[r]) for r in regions]
        best: list[tuple[int, tuple[str, ...]] | None] = [None] * len(regions)
        union = [0] * (1 << len(regions))
        for subset in range(1, 1 << len(regions)):
            low = subset & -subset
            union[subset] = union[subset ^ low] | masks[low.bit_length() - 1]
            chosen = [regions[i] for i in range(len(regions))
                      if subset >> i & 1]
            servers = {s for s in names if union[subset] & bit[s]}
            cost = _cost(cluster, servers, cold)
            j = len(chosen) - 1
            if best[j] is None or cost < best[j][0]:
                best[j] = (cost, tuple(chosen))
        return [b for b in best if b is not None], True
    # Greedy: the region of least extra cost next.
    chosen: list[str] = []
    servers: set[str] = set()
    options = []
    left = list(regions)
    while left:
        extra = min(left, key=lambda r: (_cost(cluster, set(held[r])
                                               - servers, cold), r))
        left.remove(extra)
        chosen.append(extra)
        servers |= set(held[extra])
        options.append((_cost(cluster, servers, cold), tuple(chosen)))
    return options, False


def _components(candidates: list[str], held: dict[str, list[str]]
                ) -> list[list[str]]:
    parent = {r: r for r in candidates}

    def find(r):
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    first_region: dict[str, str] = {}
    for region in candidates:
        for server in held[region]:
            other = first_region.setdefault(server, region)
            parent[find(region)] = find(other)
    groups: dict[str, list[str]] = {}
    for region in candidates:
        groups.setdefault(find(region), []).append(region)
    return list(groups.values())


def _cheapest(options: list[list[tuple[int, tuple[str, ...]]]],
              limit: int) -> list[tuple[float, tuple[str, ...]]]:
    """For n = 0..limit, the cheapest regions freeing n: single regions
    cheapest first, then a knapsack over the larger components."""
    singles = sorted((o[0] for o in options if len(o) == 1),
                     key=lambda c: (c[0], c[1]))
    multis = [o for o in options if len(o) > 1]
    multi_total = min(sum(len(o) for o in multis), limit)
    dp: list[tuple[float, tuple[str, ...]]] = [(0, ())] + [
        (_INFINITE, ())] * multi_total
    for component in multis:
        nxt = list(dp)
        for n, (cost, chosen) in enumerate(dp):
            if cost == _INFINITE:
                continue
            for j, (extra, regions) in enumerate(component, 1):
                if n + j > multi_total:
                    break
                total = cost + extra
                if total < nxt[n + j][0]:
                    nxt[n + j] = (total, chosen + regions)
        dp = nxt
    prefix: list[tuple[float, tuple[str, ...]]] = [(0, ())]
    for cost, regions in singles[:limit]:
        prefix.append((prefix[-1][0] + cost, prefix[-1][1] + regions))
    best: list[tuple[float, tuple[str, ...]]] = []
    for n in range(limit + 1):
        found: tuple[float, tuple[str, ...]] = (_INFINITE, ())
        for n_multi in range(min(n, multi_total) + 1):
            n_single = n - n_multi
            if n_single >= len(prefix) or dp[n_multi][0] == _INFINITE:
                continue
            cost = dp[n_multi][0] + prefix[n_single][0]
            if cost < found[0]:
                found = (cost, dp[n_multi][1] + prefix[n_single][1])
        best.append(found)
    return best


def plan(cluster: cl.Cluster, target: Target) -> Plan:
    """The plan for ``target`` on ``cluster`` (see the module's
    docstring)."""
    if target.count < 1:
        raise ValueError("the count of regions to free must be 1 or more")
    if target.max_moves is not None and target.max_moves < 0:
        raise ValueError("max moves must be 0 or more")
    result = Plan(target=target)
    result.before = cl.totals(cluster.regions.values(),
                              target.resource_class, target.size)
    held = {r: list(s) for r, s in cl.holders(cluster).items()}
    shape = [r for r in cluster.regions.values()
             if r.resource_class == target.resource_class
             and r.size == target.size]
    state = _State(cluster)
    protected_now = {r.uuid for r in shape if state.whole_free(r)}
    unmovable: dict[str, str | None] = {}
    cold: set[str] = set()

    def why_stuck(uuid: str) -> str | None:
        if uuid not in unmovable:
            server = cluster.servers[uuid]
            why = _why_unmovable(cluster, server, target)
            if why is None and _destination(state, server, target,
                                            protected_now) is None:
                why = (f"no host has room for server {uuid} (its CPU, "
                       f"memory, disk and functions of the same class and "
                       f"size)")
            if why is None and cluster.move_of(server) == contract.MOVE_COLD:
                cold.add(uuid)
            unmovable[uuid] = why
        return unmovable[uuid]

    candidates = []
    for region in sorted(shape, key=lambda r: r.name):
        if region.uuid in protected_now:
            continue
        if region.degraded:
            result.left_out[region.uuid] = "degraded"
        elif region.capacity < region.size:
            result.left_out[region.uuid] = (
                "part of it is reserved (a vanished function): it cannot "
                "be whole")
        elif not held[region.uuid]:
            result.left_out[region.uuid] = (
                "used by consumers the planner did not read")
        else:
            stuck = [why for why in map(why_stuck, held[region.uuid]) if why]
            if stuck:
                result.left_out[region.uuid] = stuck[0]
            else:
                candidates.append(region.uuid)
    dropped: set[str] = set()
    while True:
        moves, freed, failed, exact = _attempt(
            cluster, target, [r for r in candidates if r not in dropped],
            held, cold, protected_now)
        if not failed:
            break
        # The first region that found no room only: the others may fit
        # once it is out.
        region, why = next(iter(failed.items()))
        dropped.add(region)
        result.left_out[region] = why
    result.moves, result.freed, result.exact = moves, freed, exact
    after = _State(cluster)
    for move in moves:
        after.apply(cluster.servers[move.server], move.destination,
                    dict(move.regions))
    regions_after = [cl.Region(**{**vars(r), "used": after.used[r.uuid]})
                     for r in cluster.regions.values()]
    result.after = cl.totals(regions_after, target.resource_class,
                             target.size)
    if len(freed) < target.count:
        limit = (f" within {target.max_moves} moves"
                 if target.max_moves is not None else "")
        result.notes.append(
            f"{len(freed)} of the {target.count} regions asked can be "
            f"freed{limit}")
    if not exact:
        result.notes.append(
            f"a host has more than {EXACT_REGIONS} regions linked by shared "
            f"servers: planned greedily there, at most j times the fewest "
            f"moves for its j regions")
    if not target.same_host:
        result.notes.append(
            "no move within a host: nova refuses --host naming the "
            "server's own host, and a cold migration may stay on it only "
            "where the compute node reports COMPUTE_SAME_HOST_COLD_MIGRATE "
            "(--same-host)")
    return result


def _attempt(cluster: cl.Cluster, target: Target, candidates: list[str],
             held: dict[str, list[str]], cold: set[str],
             protected_now: set[str]
             ) -> tuple[list[Move], list[str], dict[str, str], bool]:
    """One plan over ``candidates``: the moves, the regions freed, the
    regions whose servers found no room (with why), whether exact."""
    components = _components(candidates, held)
    options = []
    exact = True
    for component in components:
        found, was_exact = _component_options(cluster, component, held, cold)
        options.append(found)
        exact = exact and was_exact
    limit = min(target.count, len(candidates))
    if target.max_moves is not None:
        most = max((len(cluster.servers[s].regions) for r in candidates
                    for s in held[r]), default=1)
        limit = min(limit, target.max_moves * most)
    cheapest = _cheapest(options, limit)
    n = max((n for n, (cost, _) in enumerate(cheapest) if cost != _INFINITE
             and (target.max_moves is None
                  or cost // _MOVE_WEIGHT <= target.max_moves)), default=0)
    chosen = list(cheapest[n][1])
    # The hardest to place first (the largest amount a holder moves, then
    # the most holders), as first fit decreasing packs: what is small fits
    # in what is left.
    order = {r: (-max(sum(cluster.servers[s].regions.values())
                      for s in held[r]), -len(held[r]),
                 cluster.regions[r].name) for r in chosen}
    chosen.sort(key=order.__getitem__)
    state = _State(cluster)
    target_shape = (target.resource_class, target.size)
    protected = set(protected_now) | set(chosen)
    moves: list[Move] = []
    freed: list[str] = []
    failed: dict[str, str] = {}
    moved: set[str] = set()
    for region in chosen:
        step: list[Move] = []
        for server_uuid in held[region]:
            server = cluster.servers[server_uuid]
            if server_uuid in moved:
                continue  # moved already, for an earlier region
            found = _destination(state, server, target, protected)
            if found is None:
                failed[region] = (f"no room left for server {server_uuid} "
                                  f"once the plan's other moves are made")
                break
            host, mapping = found
            how, why = _how(cluster, server)
            state.apply(server, host, mapping)
            moved.add(server_uuid)
            step.append(Move(server_uuid, server.host, host, how, why,
                             tuple(sorted(mapping.items()))))
        if region in failed:
            for move in reversed(step):
                state.apply(cluster.servers[move.server], move.source,
                            {dst: src for src, dst in move.regions})
                moved.discard(move.server)
            continue
        if step:
            # What the step emptied of the target's shape, asked or not
            # (a server holding functions of two regions frees both).
            left = {src for move in step for src, _ in move.regions}
            frees = tuple(sorted(
                r for r in left if r not in freed
                and (cluster.regions[r].resource_class,
                     cluster.regions[r].size) == target_shape
                and state.whole_free(cluster.regions[r])))
            step[-1] = Move(**{**vars(step[-1]), "frees": frees})
            freed.extend(frees)
        moves.extend(step)
    return moves, freed, failed, exact
