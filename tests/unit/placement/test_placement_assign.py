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

"""holdings and assign: allocations become concrete functions, stably."""

import copy

import pytest

from accel_inventory import claims
from accel_inventory import model
from accel_inventory import claim_sync, provider_tree
from tests.common.placement_builders import HOST
from tests.common.placement_builders import make_inventory

A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"
BOOT = "boot-1"
RC = "CUSTOM_ACCEL_PCI_1172_5052"


@pytest.fixture
def inv():
    return make_inventory(cards=2, regions=2, functions=4)


def rid(inv, card=0, region=0):
    return inv.cards[card].regions[region].id


def fids(inv, consumer):
    return claims.functions_of(inv, consumer)


def test_holdings_maps_providers_to_regions(inv):
    r0 = inv.cards[0].regions[0]
    r1 = inv.cards[1].regions[1]
    allocations = {
        provider_tree.provider_uuid(HOST, r0.id): {A: {RC: 2}},
        provider_tree.provider_uuid(HOST, r1.id): {A: {RC: 1}, B: {RC: 3},
                                               "c": {"VCPU": 2}},
        "not-ours": {B: {RC: 1}},
    }
    assert claim_sync.holdings(inv, allocations) == {
        r0.id: {A: 2}, r1.id: {A: 1, B: 3}}


def test_new_allocation_gets_lowest_free_functions(inv):
    r = rid(inv)
    result = claim_sync.assign(inv, {r: {A: 2}}, BOOT)
    assert fids(result.inventory, A) == [f"{r}/f0", f"{r}/f1"]
    claim = result.inventory.claims[A]
    assert claim.source == "placement"
    assert result.changed == [A] and result.problems == []
    assert claims.inconsistencies(result.inventory) == []
    # The argument is not changed.
    assert inv.claims == {}


def test_assignment_is_stable_and_idempotent(inv):
    r = rid(inv)
    first = claim_sync.assign(inv, {r: {B: 1}}, BOOT).inventory
    second = claim_sync.assign(first, {r: {A: 2, B: 1}}, BOOT)
    assert fids(second.inventory, B) == [f"{r}/f0"]
    assert fids(second.inventory, A) == [f"{r}/f1", f"{r}/f2"]
    again = claim_sync.assign(second.inventory, {r: {A: 2, B: 1}}, BOOT)
    assert again.changed == []
    assert again.inventory == second.inventory


def test_assignment_survives_re_enumeration(inv):
    r = rid(inv)
    held = claim_sync.assign(inv, {r: {A: 2}}, BOOT).inventory
    moved = copy.deepcopy(held)
    card = moved.cards[0]
    card.address, card.status = "0000:af:00.0", model.STATUS_MOVED
    for region in card.regions:
        for f in region.functions:
            f.address = "0000:b0:00." + f.id[-1]
    again = claim_sync.assign(moved, {r: {A: 2}}, BOOT)
    assert again.changed == []
    assert fids(again.inventory, A) == fids(held, A)


def test_released_when_placement_no_longer_allocates(inv):
    r = rid(inv)
    held = claim_sync.assign(inv, {r: {A: 2, B: 1}}, BOOT).inventory
    result = claim_sync.assign(held, {r: {B: 1}}, BOOT)
    assert A not in result.inventory.claims
    assert result.changed == [A]
    assert all(f.claimed_by in (None, B)
               for f in result.inventory.cards[0].regions[0].functions)


def test_shrinking_keeps_the_first_functions(inv):
    r = rid(inv)
    held = claim_sync.assign(inv, {r: {A: 3}}, BOOT).inventory
    result = claim_sync.assign(held, {r: {A: 1}}, BOOT)
    assert fids(result.inventory, A) == [f"{r}/f0"]


def test_freed_function_goes_to_another_consumer_in_one_sync(inv):
    r = rid(inv)
    held = claim_sync.assign(inv, {r: {A: 4}}, BOOT).inventory
    result = claim_sync.assign(held, {r: {B: 4}}, BOOT)
    assert fids(result.inventory, B) == [f"{r}/f{i}" for i in range(4)]
    assert A not in result.inventory.claims


def test_running_domain_keeps_its_functions(inv):
    r = rid(inv)
    held = claim_sync.assign(inv, {r: {A: 2}}, BOOT).inventory
    running = claims.mark_running(held, A, BOOT)
    result = claim_sync.assign(running, {}, BOOT)
    assert result.inventory == running
    result = claim_sync.assign(running, {r: {}}, BOOT)
    assert fids(result.inventory, A) == [f"{r}/f0", f"{r}/f1"]
    assert any("running" in p for p in result.problems)
    # From a previous boot it is not running any more.
    result = claim_sync.assign(running, {r: {}}, "boot-2")
    assert A not in result.inventory.claims


def test_hook_claim_is_topped_up_never_taken(inv):
    r = rid(inv)
    hook = model.Claim(consumer=A, functions=[f"{r}/f3"], source="hook",
                       domain_name="instance-1")
    inv = claims.record_claim(inv, hook, boot_id=BOOT)
    result = claim_sync.assign(inv, {r: {A: 2}}, BOOT)
    claim = result.inventory.claims[A]
    assert claim.source == "hook" and claim.domain_name == "instance-1"
    assert claim.functions == [f"{r}/f3", f"{r}/f0"]
    result = claim_sync.assign(result.inventory, {r: {}}, BOOT)
    assert result.inventory.claims[A].functions == [f"{r}/f3", f"{r}/f0"]
    assert result.problems


def test_regions_not_read_are_left_alone(inv):
    r0, r1 = rid(inv, 0, 0), rid(inv, 1, 0)
    held = claim_sync.assign(inv, {r0: {A: 1}, r1: {A: 1}}, BOOT).inventory
    result = claim_sync.assign(held, {r0: {A: 1}}, BOOT)
    assert fids(result.inventory, A) == [f"{r0}/f0", f"{r1}/f0"]


def test_more_allocated_than_free_is_reported(inv):
    r = rid(inv)
    operator = model.Claim(consumer=B, functions=[f"{r}/f{i}"
                                                  for i in range(3)],
                           source="operator")
    inv = claims.record_claim(inv, operator, boot_id=BOOT)
    result = claim_sync.assign(inv, {r: {A: 2}}, BOOT)
    assert fids(result.inventory, A) == [f"{r}/f3"]
    assert any("only 1 more are free" in p for p in result.problems)


def test_lost_card_keeps_claims(inv):
    r = rid(inv)
    held = claim_sync.assign(inv, {r: {A: 2}}, BOOT).inventory
    held.cards[0].status = model.STATUS_LOST
    result = claim_sync.assign(held, {r: {A: 2}}, BOOT)
    assert result.changed == []
    assert fids(result.inventory, A) == fids(held, A)
