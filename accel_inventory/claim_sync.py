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

"""Placement's allocations into claims: which concrete functions each
consumer holds. Pure, beside ``claims``; the agent's sync reads the
allocations (``placement.Publisher``) and saves the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from accel_inventory import claims, kinds, model, numa, release
from accel_inventory.provider_tree import provider_uuid

# The source of a claim the sync made (the hook's are "hook").
CLAIM_SOURCE = "placement"


def holdings(inventory: model.Inventory,
             allocations: Mapping[str, Mapping[str, Mapping[str, int]]]
             ) -> dict[str, dict[str, int]]:
    """Functions each consumer holds per region, from provider allocations.

    ``allocations`` maps a region provider's UUID to placement's
    ``{consumer: {resource class: amount}}`` for it. Regions missing from
    it were not read and are missing from the result too.
    """
    by_uuid = {provider_uuid(inventory.hostname, r.id): r
               for c in inventory.cards for r in c.regions}
    result: dict[str, dict[str, int]] = {}
    for rp_uuid, consumers in allocations.items():
        region = by_uuid.get(rp_uuid)
        if region is None:
            continue
        result[region.id] = {
            consumer: amounts[region.resource_class]
            for consumer, amounts in consumers.items()
            if amounts.get(region.resource_class, 0) > 0}
    return result


@dataclass
class SyncResult:
    inventory: model.Inventory
    changed: list[str]   # consumers whose claim was recorded or released
    problems: list[str]  # what the operator should look at
    released: list[str] = dataclasses.field(default_factory=list)
    # ^ functions a consumer ran with and let go: to be cleaned
    notes: list[str] = field(default_factory=list)  # moves, for the log


def _counts(fids, region_of: Mapping[str, str], read) -> dict[str, int]:
    counts: dict[str, int] = {}
    for fid in fids:
        rid = region_of.get(fid)
        if rid in read:
            counts[rid] = counts.get(rid, 0) + 1
    return counts


@dataclass
class _Moves:
    """Which consumer new to the host took over which claim: nova moves a
    server's whole allocation to its migration's consumer in one request
    (``move_allocations``), so the newcomer asks, region by region, what
    the server's claim holds, and the server's own allocation no longer
    matches its claim. ``taken_over`` maps the newcomer to the server;
    ``waiting`` are newcomers whose server's domain still runs here with
    those functions (before a cold migration powers it off, during a live
    migration): they get nothing until it stops."""

    taken_over: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)


def _moves(inventory: model.Inventory, wants: Mapping[str, dict[str, int]],
           region_of: Mapping[str, str], read, boot_id: str | None,
           problems: list[str], elsewhere: Collection[str]) -> _Moves:
    def signature(counts):
        return tuple(sorted(counts.items()))

    # Only a server that still holds allocations (here, or ``elsewhere``:
    # nova moved it to another host) moved; one that holds none was
    # deleted, and whoever arrived meanwhile is another server, which
    # never gets its functions as they were.
    left: dict[tuple, list[str]] = {}
    for consumer, claim in inventory.claims.items():
        counts = _counts(claim.functions, region_of, read)
        if (claim.source == CLAIM_SOURCE and counts
                and wants.get(consumer, {}) != counts
                and (consumer in wants or consumer in elsewhere)):
            left.setdefault(signature(counts), []).append(consumer)
    # A consumer some claim took over from is coming back (a revert):
    # that is the link's to settle, not a signature's.
    returning = {c.moved_from for c in inventory.claims.values()}
    arrived: dict[tuple, list[str]] = {}
    for consumer in sorted(set(wants) - set(inventory.claims) - returning):
        arrived.setdefault(signature(wants[consumer]), []).append(consumer)
    moves = _Moves()
    for key, servers in sorted(left.items()):
        newcomers = arrived.get(key, [])
        if len(servers) == 1 and len(newcomers) == 1:
            [server], [newcomer] = servers, newcomers
            running = inventory.claims[server].is_running(boot_id)
            (moves.waiting if running else moves.taken_over)[newcomer] = \
                server
        elif newcomers:
            problems.append(
                f"the allocations of {', '.join(servers)} changed while "
                f"{', '.join(newcomers)} arrived asking the same functions; "
                f"which took over which cannot be told, so the newcomers "
                f"get free functions, not the ones the others held")
    return moves


def _give_back(inventory: model.Inventory,
               new_functions: dict[str, list[str]],
               want: Mapping[tuple[str, str], int],
               region_of: Mapping[str, str], boot_id: str | None) -> None:
    """A revert: the functions a claim took over from a consumer, and now
    loses with its allocation, go back to that consumer in place of the
    ones it was given meanwhile (unless its domain runs with those: then
    they only fill what it lacks)."""
    for claim in inventory.claims.values():
        origin = claim.moved_from
        lost = [f for f in claim.functions
                if f not in new_functions.get(claim.consumer, [])]
        if origin is None or not lost:
            continue
        before = inventory.claims.get(origin)
        running = before is not None and before.is_running(boot_id)
        mine = new_functions.setdefault(origin, [])
        for rid in dict.fromkeys(region_of.get(f) for f in lost):
            room = want.get((origin, rid), 0)
            there = [f for f in mine if region_of.get(f) == rid]
            back = [f for f in lost if region_of.get(f) == rid]
            if running:
                back = back[:max(room - len(there), 0)]
                keep = there
            else:
                back = back[:room]
                keep = there[:room - len(back)]
            mine[:] = [f for f in mine
                       if region_of.get(f) != rid or f in keep] + back


def assign(inventory: model.Inventory,
           held: Mapping[str, Mapping[str, int]],
           boot_id: str | None = None,
           policy_of: release.Policies = release.BY_DEFAULT,
           elsewhere: Collection[str] = frozenset()
           ) -> SyncResult:
    """Give each consumer concrete functions matching its allocations.

    ``held`` is ``holdings()``: per region read, how many functions each
    consumer holds. Functions a consumer already has stay its own (ids,
    not addresses, so this survives rescans and re-enumeration); missing
    ones come from the region's free functions, lowest index first.
    Claims this sync made (source ``placement``) shrink or go when the
    allocation does, unless the domain is running in this boot: its
    devices are attached, and giving them away would hand one function to
    two guests. Claims made by the hook or an operator are never taken
    away, only topped up. Regions not in ``held`` are left as they are.
    A withheld function (kinds.withheld) is never given to a new holder.

    A function a consumer let go after its domain ran with it is nobody's
    until it is clean (``release``, by ``policy_of``, the cards'
    profiles): it is never handed on in the same pass, and waits in
    ``inventory.cleaning``, as does every function already there.

    Moves (``_moves``): a consumer that takes over a server's allocation
    (nova's migration consumer during a cold or live migration, a resize
    and its evacuation's source) takes over the very functions of the
    server's claim, once the server's domain no longer runs with them;
    that claim remembers where they came from (``moved_from``), and a
    revert, which gives the allocation back, gives them back. A confirm
    deletes the allocation, and with it the claim. A server that left
    this host's regions moved only if it still holds allocations here or
    ``elsewhere`` (consumers placement says hold some); otherwise it was
    deleted and what it ran with is cleaned.
    """
    index = inventory.function_index()
    region_of = {fid: region.id for fid, (_c, region, _f) in index.items()}
    regions = {r.id: r for c in inventory.cards for r in c.regions}
    problems: list[str] = []
    notes: list[str] = []
    want = {(consumer, rid): n for rid, per in held.items()
            for consumer, n in per.items() if rid in regions and n > 0}
    wants: dict[str, dict[str, int]] = {}
    for (consumer, rid), n in want.items():
        wants.setdefault(consumer, {})[rid] = n
    moves = _moves(inventory, wants, region_of, held, boot_id, problems,
                   elsewhere)
    left_by = {server: newcomer
               for newcomer, server in moves.waiting.items()}
    for newcomer, server in moves.waiting.items():
        notes.append(f"{newcomer} took over the allocation of {server}, "
                     f"whose domain still runs here; it takes over its "
                     f"functions when the domain stops")

    new_functions: dict[str, list[str]] = {}
    for consumer, claim in inventory.claims.items():
        kept: list[str] = []
        for fid in claim.functions:
            rid = region_of.get(fid)
            mine = sum(1 for k in kept if region_of.get(k) == rid)
            if rid not in held or mine < want.get((consumer, rid), 0):
                kept.append(fid)
            elif claim.source != CLAIM_SOURCE:
                kept.append(fid)
                problems.append(
                    f"{consumer} holds {fid} by a {claim.source} claim but "
                    f"placement allocates it fewer functions of {rid}")
            elif claim.is_running(boot_id):
                kept.append(fid)
                if consumer not in left_by:
                    problems.append(
                        f"{consumer} is running with {fid} but placement no "
                        f"longer allocates it; the function is released "
                        f"when the domain stops")
        new_functions[consumer] = kept
    for newcomer, server in moves.taken_over.items():
        given = inventory.claims[server].functions
        new_functions[newcomer] = [f for f in given if region_of.get(f)
                                   in held]
        new_functions[server] = [f for f in given if region_of.get(f)
                                 not in held]
        notes.append(f"{newcomer} took over the allocation of {server} and "
                     f"with it {', '.join(new_functions[newcomer])}")

    _give_back(inventory, new_functions, want, region_of, boot_id)
    taken = {fid for fids in new_functions.values() for fid in fids}
    # What a consumer ran with and no claim keeps now waits to be cleaned;
    # a function a move took over, or a revert gave back, is kept.
    leftovers = {
        fid: consumer for consumer, claim in inventory.claims.items()
        if claim.boot_id is not None
        for fid in claim.functions
        if fid not in taken and fid in index
        and release.needs_cleaning(index[fid][0], policy_of)}
    taken |= set(leftovers) | set(inventory.cleaning)
    for consumer, rid in sorted(want):
        if consumer in moves.waiting:
            continue
        fids = new_functions.setdefault(consumer, [])
        need = want[consumer, rid] - sum(
            1 for f in fids if region_of.get(f) == rid)
        if need <= 0:
            continue
        free = [f.id for f in regions[rid].functions if f.id not in taken
                and not kinds.withheld(index[f.id][0], f)]
        fids.extend(free[:need])
        taken.update(free[:need])
        if len(free) < need:
            problems.append(
                f"placement allocates {want[consumer, rid]} functions of "
                f"{rid} to {consumer} but only {len(free)} more are free on "
                f"the host; check the claims with 'accel-inventory show'")

    # Shrinking claims first frees what growing ones may take.
    order = sorted(new_functions, key=lambda c: (
        not set(new_functions[c]) <= set(claims.functions_of(inventory, c)),
        c))
    new = inventory
    changed = []
    for consumer in order:
        fids = new_functions[consumer]
        old = inventory.claims.get(consumer)
        if old is not None and old.functions == fids:
            continue
        if not fids:
            if old is not None:
                new = claims.release_claim(new, consumer)
                changed.append(consumer)
            continue
        server = moves.taken_over.get(consumer)
        # A move's consumer holds what the server's domain ran with: at a
        # confirm those are cleaned as the server's would be.
        claim = (dataclasses.replace(old, functions=fids) if old is not None
                 else model.Claim(
                     consumer=consumer, functions=fids, source=CLAIM_SOURCE,
                     moved_from=server,
                     boot_id=(inventory.claims[server].boot_id
                              if server is not None else None)))
        new = claims.record_claim(new, claim, boot_id=boot_id)
        changed.append(consumer)
    new = release.mark(new, leftovers, policy_of)
    return SyncResult(new, changed, problems,
                      sorted(fid for fid in leftovers if fid in new.cleaning
                             and fid not in inventory.cleaning), notes)


def regions_held(inventory: model.Inventory, consumer: str
                 ) -> list[model.Region]:
    """The regions ``consumer``'s placement claim holds functions of."""
    claim = inventory.claims.get(consumer)
    if claim is None or claim.source != CLAIM_SOURCE:
        return []
    index = inventory.function_index()
    regions: dict[str, model.Region] = {}
    for fid in claim.functions:
        if fid in index:
            regions.setdefault(index[fid][1].id, index[fid][1])
    return list(regions.values())


def near_functions(inventory: model.Inventory, consumer: str,
                   node_of: Mapping[str, int | None],
                   local: frozenset[int]) -> model.Inventory | None:
    """``inventory`` with ``consumer``'s placement claim holding, in each
    region it holds functions of, functions on the NUMA nodes ``local``
    to its guest: each function elsewhere is swapped for a free one of
    the same region that is near (lowest index first); placement's
    allocation (so many functions of that region) is the same. None when
    nothing changes: every function is near, or no free one near is
    left to swap for. ``node_of`` is each function's node now (those of
    ``regions_held``)."""
    claim = inventory.claims.get(consumer)
    if claim is None or claim.source != CLAIM_SOURCE:
        return None
    index = inventory.function_index()
    held = set(claim.functions)
    chosen: list[str] = []
    for fid in claim.functions:
        entry = index.get(fid)
        if entry is None or numa.is_local(node_of.get(fid), local):
            chosen.append(fid)
            continue
        swap = next((f.id for f in entry[1].functions
                     if f.claimed_by is None and f.address is not None
                     and f.id not in held
                     and numa.is_local(node_of.get(f.id), local)), None)
        if swap is None:
            chosen.append(fid)
        else:
            chosen.append(swap)
            held.add(swap)
    if chosen == claim.functions:
        return None
    return claims.record_claim(
        inventory, dataclasses.replace(claim, functions=chosen))
