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

"""assign across nova's moves: a migration's consumer takes over the very
functions of the server whose allocation nova moved to it
(``move_allocations``), once the server's domain no longer runs with
them; a revert gives them back, a confirm releases them; an evacuated
server's old claims go when its allocation on the failed host does, and
nobody else's with them."""

import dataclasses

import pytest

from accel_inventory import claims
from accel_inventory import claim_sync
from tests.common.placement_builders import make_inventory

SERVER = "aaaaaaaa-0000-4000-8000-000000000001"
MIGRATION = "cccccccc-0000-4000-8000-000000000003"
OTHER = "bbbbbbbb-0000-4000-8000-000000000002"
BOOT = "boot-1"


@pytest.fixture
def inv():
    return make_inventory(cards=1, regions=2, functions=4)


def regions(inv):
    return [r.id for r in inv.cards[0].regions]


def fids(inv, consumer):
    return claims.functions_of(inv, consumer)


def step(inv, held, boot=BOOT, elsewhere=(SERVER, OTHER)):
    """One sync; the claims must agree with ``claimed_by`` and, region by
    region, with what placement allocates each consumer (all of it).
    The servers hold allocations in placement (``elsewhere``): on their
    destination when nova moved them away."""
    result = claim_sync.assign(inv, held, boot, elsewhere=elsewhere)
    assert claims.inconsistencies(result.inventory) == []
    return result


def by_region(inv, consumer):
    counts = {}
    for fid in fids(inv, consumer):
        region = fid.rsplit("/", 1)[0]
        counts[region] = counts.get(region, 0) + 1
    return counts


def test_migration_takes_over_the_servers_functions_until_confirmed(inv):
    r0, _r1 = regions(inv)
    held = step(inv, {r0: {OTHER: 1, SERVER: 2}}).inventory
    mine = fids(held, SERVER)
    # Cold migration to another host: the whole source allocation moves
    # to the migration's consumer.
    moved = step(held, {r0: {OTHER: 1, MIGRATION: 2}})
    assert fids(moved.inventory, MIGRATION) == mine
    assert moved.inventory.claims[MIGRATION].moved_from == SERVER
    assert SERVER not in moved.inventory.claims
    assert fids(moved.inventory, OTHER) == fids(held, OTHER)
    assert moved.problems == []
    assert any(f"{MIGRATION} took over the allocation of {SERVER}" in n
               for n in moved.notes)
    # Confirmed: nova deletes the migration's allocation.
    confirmed = step(moved.inventory, {r0: {OTHER: 1}})
    assert MIGRATION not in confirmed.inventory.claims
    assert fids(confirmed.inventory, OTHER) == fids(held, OTHER)


def test_revert_gives_the_server_its_own_functions_back(inv):
    r0, _r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 2}}).inventory
    mine = fids(held, SERVER)
    moved = step(held, {r0: {MIGRATION: 2}}).inventory
    # Meanwhile another server lands in the region: it gets the lowest
    # free function, never the ones the migration holds.
    moved = step(moved, {r0: {MIGRATION: 2, OTHER: 1}}).inventory
    assert set(fids(moved, OTHER)).isdisjoint(mine)
    # Reverted (nova moves the allocation back), while yet another
    # consumer arrives asking as much as the server: the link decides.
    newcomer = "dddddddd-0000-4000-8000-000000000004"
    reverted = step(moved, {r0: {SERVER: 2, OTHER: 1, newcomer: 1}})
    assert fids(reverted.inventory, SERVER) == mine
    assert reverted.inventory.claims[SERVER].moved_from is None
    assert MIGRATION not in reverted.inventory.claims
    assert set(fids(reverted.inventory, newcomer)).isdisjoint(mine)


def test_a_running_domain_keeps_its_functions_until_it_stops(inv):
    r0, _r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 2}}).inventory
    mine = fids(held, SERVER)
    running = claims.mark_running(held, SERVER, BOOT)
    # Live migration (or a cold one before nova powers the source off):
    # the domain runs here with its functions while placement says the
    # migration holds them. Nobody gets them twice.
    during = step(running, {r0: {MIGRATION: 2}})
    assert fids(during.inventory, SERVER) == mine
    assert MIGRATION not in during.inventory.claims
    assert during.problems == []
    assert any("still runs here" in n for n in during.notes)
    # The domain stops (the hook's release end): the migration takes them.
    stopped = claims.mark_stopped(during.inventory, SERVER)
    after = step(stopped, {r0: {MIGRATION: 2}})
    assert fids(after.inventory, MIGRATION) == mine
    assert SERVER not in after.inventory.claims


def test_a_rolled_back_live_migration_leaves_the_server_as_it_was(inv):
    r0, _r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 2}}).inventory
    running = claims.mark_running(held, SERVER, BOOT)
    during = step(running, {r0: {MIGRATION: 2}}).inventory
    rolled_back = step(during, {r0: {SERVER: 2}})
    assert rolled_back.inventory == running
    assert rolled_back.changed == []


def test_resize_on_the_same_host_and_its_revert(inv):
    r0, r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 2}}).inventory
    mine = fids(held, SERVER)
    # The new flavor's allocation lands in the other region; the
    # migration holds the old flavor's.
    resized = step(held, {r0: {MIGRATION: 2}, r1: {SERVER: 1}})
    assert fids(resized.inventory, MIGRATION) == mine
    assert fids(resized.inventory, SERVER) == [f"{r1}/f0"]
    reverted = step(resized.inventory, {r0: {SERVER: 2}, r1: {}})
    assert fids(reverted.inventory, SERVER) == mine
    assert MIGRATION not in reverted.inventory.claims
    # Resized again and confirmed: the new flavor's functions stay.
    again = step(reverted.inventory, {r0: {MIGRATION: 2}, r1: {SERVER: 1}})
    confirmed = step(again.inventory, {r0: {}, r1: {SERVER: 1}})
    assert fids(confirmed.inventory, SERVER) == [f"{r1}/f0"]
    assert MIGRATION not in confirmed.inventory.claims


def test_resize_that_keeps_the_allocation_leaves_the_claim_alone(inv):
    """Same regions, same amounts (a flavor that changes only memory): the
    server keeps its functions; the migration's old allocation gets free
    ones, and a revert or confirm just drops it."""
    r0, _r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 1}}).inventory
    resized = step(held, {r0: {SERVER: 1, MIGRATION: 1}})
    assert fids(resized.inventory, SERVER) == fids(held, SERVER)
    assert resized.inventory.claims[MIGRATION].moved_from is None
    back = step(resized.inventory, {r0: {SERVER: 1}})
    assert back.inventory == held


def test_which_took_over_which_must_be_told_apart(inv):
    r0, _r1 = regions(inv)
    second = "eeeeeeee-0000-4000-8000-000000000005"
    other_migration = "ffffffff-0000-4000-8000-000000000006"
    held = step(inv, {r0: {SERVER: 1, second: 1}}).inventory
    moved = step(held, {r0: {MIGRATION: 1, other_migration: 1}})
    assert moved.inventory.claims[MIGRATION].moved_from is None
    assert moved.inventory.claims[other_migration].moved_from is None
    assert any("cannot be told" in p for p in moved.problems)


def test_the_failed_hosts_old_claims_go_and_nobody_elses(inv):
    """Evacuation: the server keeps its allocation on the failed host
    until that host's nova-compute comes back and removes it. Its claim,
    running in the boot before the failure, goes then; the claims of the
    other servers, running in this boot, are untouched."""
    r0, r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 2}, r1: {OTHER: 1}}, "boot-0").inventory
    held = claims.mark_running(held, SERVER, "boot-0")
    held = claims.mark_running(held, OTHER, BOOT)
    back = step(held, {r0: {SERVER: 2}, r1: {OTHER: 1}})
    assert back.changed == []
    cleaned = step(back.inventory, {r0: {}, r1: {OTHER: 1}})
    assert SERVER not in cleaned.inventory.claims
    assert cleaned.inventory.claims[OTHER] == held.claims[OTHER]
    assert cleaned.changed == [SERVER]


def test_a_worker_attach_clears_the_link(inv):
    r0, _r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 1}}).inventory
    moved = step(held, {r0: {MIGRATION: 1}}).inventory
    attached = claims.record_attach(moved, MIGRATION, {"devices": {}},
                                    running=True, boot_id=BOOT)
    assert attached.claims[MIGRATION].moved_from is None


def test_a_revert_undoes_a_resize_within_one_region(inv):
    """The new flavor asked more of the same region: the migration took
    over the server's function and the server got two others; the revert
    gives it back its own, not one of those."""
    r0, _r1 = regions(inv)
    held = step(inv, {r0: {SERVER: 1}}).inventory
    mine = fids(held, SERVER)
    resized = step(held, {r0: {MIGRATION: 1, SERVER: 2}})
    assert fids(resized.inventory, MIGRATION) == mine
    assert set(fids(resized.inventory, SERVER)).isdisjoint(mine)
    reverted = step(resized.inventory, {r0: {SERVER: 1}})
    assert fids(reverted.inventory, SERVER) == mine
    assert MIGRATION not in reverted.inventory.claims


def test_a_deleted_server_is_not_taken_over_by_a_newcomer(inv):
    """Placement's view of one host cannot tell a migration's consumer
    from a new server that arrived as a deleted one left: the server that
    holds no allocation anywhere was deleted, and the newcomer gets free
    functions, not the ones it ran with."""
    first, second = regions(inv)
    inv = step(inv, {first: {SERVER: 2}, second: {}}).inventory
    held = fids(inv, SERVER)
    # Its domain ran with them (the hook said so).
    inv = claims.record_claim(inv, dataclasses.replace(
        inv.claims[SERVER], boot_id=BOOT))
    result = step(inv, {first: {MIGRATION: 2}, second: {}}, elsewhere=())
    assert SERVER not in result.inventory.claims
    assert result.inventory.claims[MIGRATION].moved_from is None
    assert not set(fids(result.inventory, MIGRATION)) & set(held)
    assert sorted(result.inventory.cleaning) == sorted(held)
    # The same, the server holding allocations on its destination: a move.
    result = step(inv, {first: {MIGRATION: 2}, second: {}})
    assert result.inventory.claims[MIGRATION].moved_from == SERVER
    assert fids(result.inventory, MIGRATION) == held
