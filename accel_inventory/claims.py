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

"""Who holds which function: pure functions over an Inventory.

A claim is recorded twice, on purpose: ``Inventory.claims`` answers "what
does this domain hold" and ``Function.claimed_by`` answers "who holds this
function". Every function here keeps the two in agreement, and
``inconsistencies`` (run by every cache load and save) says where they do
not. Functions return a new Inventory and never change their argument, so
a caller that fails half-way has nothing to undo.

A claim only blocks others while it is running in the current boot: after
a host crash the claims marked running are from a previous boot, and the
domains that made them are not running any more.
"""

from __future__ import annotations

import copy
import dataclasses

from accel_inventory import model


class ClaimError(Exception):
    """A claim cannot be recorded or changed; the message says why."""


class ClaimConflict(ClaimError):
    """A function is held by another consumer that is running now."""


def inconsistencies(inv: model.Inventory) -> list[str]:
    """Every disagreement between the claims and ``claimed_by``.

    A claim may name a function the inventory no longer lists (a rescan
    never drops a claim); it may not share a function with another claim.
    """
    problems = []
    owner: dict[str, str] = {}
    for key, claim in inv.claims.items():
        if key != claim.consumer:
            problems.append(f"claim under {key!r} names consumer "
                            f"{claim.consumer!r}")
        for fid in claim.functions:
            if fid in owner and owner[fid] != claim.consumer:
                problems.append(f"{fid} is claimed by both {owner[fid]} and "
                                f"{claim.consumer}")
            owner[fid] = claim.consumer
    for fid, (_card, _region, function) in inv.function_index().items():
        if function.claimed_by != owner.get(fid):
            problems.append(f"{fid} has claimed_by={function.claimed_by!r} "
                            f"but the claims say {owner.get(fid)!r}")
    return problems


def holder_of(inv: model.Inventory, function_id: str,
              boot_id: str | None) -> model.Claim | None:
    """The claim that holds ``function_id`` now, if it is running.

    A claim that is stopped, or that was running in another boot, holds
    the function on paper only and does not stop another consumer.
    """
    function = _function(inv, function_id)
    if function.claimed_by is None:
        return None
    claim = inv.claims.get(function.claimed_by)
    if claim is None or not claim.is_running(boot_id):
        return None
    return claim


def functions_of(inv: model.Inventory, consumer: str) -> list[str]:
    """The function ids ``consumer`` holds, in claim order; [] if none."""
    claim = inv.claims.get(consumer)
    return list(claim.functions) if claim else []


def record_claim(inv: model.Inventory, claim: model.Claim, *,
                 boot_id: str | None = None) -> model.Inventory:
    """Record that ``claim.consumer`` holds exactly ``claim.functions``.

    A consumer's earlier claim is replaced: functions it no longer names
    are freed. A function held by a stale claim (stopped, or running in a
    previous boot) is taken from it. ``boot_id`` is the current boot,
    ``claim.boot_id`` when not given.

    Raises ClaimError for a function the inventory does not list or that
    waits to be cleaned (``Inventory.cleaning``), and ClaimConflict for
    one held by another consumer running in this boot.
    """
    current = claim.boot_id if boot_id is None else boot_id
    if len(set(claim.functions)) != len(claim.functions):
        raise ClaimError(f"claim of {claim.consumer} names a function more "
                         f"than once: {claim.functions}")
    index = inv.function_index()
    unknown = [fid for fid in claim.functions if fid not in index]
    if unknown:
        raise ClaimError(f"cannot record the claim of {claim.consumer}: "
                         f"{', '.join(unknown)} not in the inventory of "
                         f"{inv.hostname}; rescan with 'accel-inventory "
                         f"scan' if the device was just added")
    waiting = [fid for fid in claim.functions if fid in inv.cleaning]
    if waiting:
        raise ClaimError(
            f"cannot record the claim of {claim.consumer}: "
            + "; ".join(f"{fid} was released by {inv.cleaning[fid].after} "
                        f"and is not clean yet ({inv.cleaning[fid].state})"
                        for fid in waiting)
            + "; see 'accel-inventory status'")
    for fid in claim.functions:
        holder = index[fid][2].claimed_by
        if holder is None or holder == claim.consumer:
            continue
        other = inv.claims[holder]
        if other.is_running(current):
            raise ClaimConflict(
                f"{fid} is held by {holder}"
                + (f" (domain {other.domain_name})" if other.domain_name
                   else "")
                + f", which is running; stop it or release its claim "
                  f"before giving the function to {claim.consumer}")

    new = model.clone(inv)
    taken = set(claim.functions)
    for other in list(new.claims.values()):
        if other.consumer == claim.consumer:
            continue
        if taken.intersection(other.functions):
            other.functions = [f for f in other.functions if f not in taken]
            if not other.functions:
                del new.claims[other.consumer]
    new.claims.pop(claim.consumer, None)
    new.claims[claim.consumer] = dataclasses.replace(
        claim, functions=list(claim.functions),
        created_mdevs=list(claim.created_mdevs),
        set_vgpus=dict(claim.set_vgpus), attach=dict(claim.attach))
    _sync_claimed_by(new)
    return new


def release_claim(inv: model.Inventory, consumer: str) -> model.Inventory:
    """Forget the claim of ``consumer`` and free its functions.

    Releasing a consumer without a claim changes nothing, so that a
    release repeated after a failure is harmless.
    """
    new = model.clone(inv)
    if new.claims.pop(consumer, None) is not None:
        _sync_claimed_by(new)
    return new


def undo_write(current: model.Inventory, before: model.Inventory,
               after: model.Inventory) -> model.Inventory:
    """``current`` with the claims that one write changed from ``before``
    to ``after`` put back as they were, for a write whose caller failed
    (the hook's refused start). A claim changed again since is left as
    it is now, and a function that another claim holds now stays with
    it. Harmless to apply when the write never landed."""
    changed = {c for c in set(before.claims) | set(after.claims)
               if before.claims.get(c) != after.claims.get(c)}
    restored = {c for c in changed
                if current.claims.get(c) == after.claims.get(c)}
    if not restored:
        return current
    new = model.clone(current)
    for consumer in restored:
        new.claims.pop(consumer, None)
        if consumer in before.claims:
            new.claims[consumer] = copy.deepcopy(before.claims[consumer])
    kept = {fid for c in new.claims.values() if c.consumer not in restored
            for fid in c.functions}
    for consumer in restored & set(new.claims):
        claim = new.claims[consumer]
        claim.functions = [f for f in claim.functions if f not in kept]
        if not claim.functions:
            del new.claims[consumer]
    _sync_claimed_by(new)
    return new


def mark_running(inv: model.Inventory, consumer: str,
                 boot_id: str) -> model.Inventory:
    """Mark the claim of ``consumer`` running in boot ``boot_id``.

    Raises ClaimError when the consumer holds nothing: record the claim
    first.
    """
    if consumer not in inv.claims:
        raise ClaimError(f"{consumer} holds no claim to mark running; "
                         f"record its claim first")
    new = model.clone(inv)
    claim = new.claims[consumer]
    claim.running = True
    claim.boot_id = boot_id
    return new


def mark_stopped(inv: model.Inventory, consumer: str) -> model.Inventory:
    """Mark the claim of ``consumer`` stopped; it keeps its functions.

    A consumer without a claim is left alone (a failed start ends with a
    stop of a domain that never recorded one).
    """
    new = model.clone(inv)
    claim = new.claims.get(consumer)
    if claim is not None:
        claim.running = False
    return new


def record_attach(inv: model.Inventory, consumer: str,
                  attach: dict, *, running: bool,
                  boot_id: str | None) -> model.Inventory:
    """Record in the claim of ``consumer`` what attaching its devices to
    its domain did (``attach``, free-form), and whether the running domain
    now holds them (``running`` in boot ``boot_id``).

    Raises ClaimError when the consumer holds nothing any more (its
    allocation went while the devices were being attached). A consumer
    whose own domain holds its devices took over no one's: its
    ``moved_from`` is cleared.
    """
    if consumer not in inv.claims:
        raise ClaimError(f"{consumer} holds no claim any more (its "
                         f"allocation went); its attach is not recorded")
    new = model.clone(inv)
    claim = new.claims[consumer]
    claim.attach = copy.deepcopy(attach)
    claim.moved_from = None
    claim.running = running
    claim.boot_id = boot_id if running else claim.boot_id
    return new


def _function(inv: model.Inventory, function_id: str) -> model.Function:
    entry = inv.function_index().get(function_id)
    if entry is None:
        raise ClaimError(f"{function_id} is not in the inventory of "
                         f"{inv.hostname}")
    return entry[2]


def with_claimed_by(inv: model.Inventory) -> model.Inventory:
    """``inv`` with every ``claimed_by`` set from ``inv.claims``.

    The claims are the record; a rescan uses this to bring the functions
    it found in line with them.
    """
    new = model.clone(inv)
    _sync_claimed_by(new)
    return new


def _sync_claimed_by(inv: model.Inventory) -> None:
    owner = {fid: c.consumer for c in inv.claims.values()
             for fid in c.functions}
    for card in inv.cards:
        for function in card.functions():
            function.claimed_by = owner.get(function.id)
