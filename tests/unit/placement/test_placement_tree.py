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

"""desired_tree and diff: what our providers should be and how to get there."""

import copy
import uuid

import pytest

from accel_inventory import contract
from accel_inventory import model
from accel_inventory import placement
from accel_inventory import provider_tree
from tests.common.placement_builders import HOST
from tests.common.placement_builders import ROOT
from tests.common.placement_builders import make_card
from tests.common.placement_builders import make_inventory


@pytest.fixture
def inventory():
    return make_inventory()


def by_source(specs):
    return {s.source_id: s for s in specs}


def test_provider_uuid_follows_identity_not_address():
    inv = make_inventory(cards=1)
    moved = copy.deepcopy(inv)
    moved.cards[0].address = "0000:af:00.0"
    moved.cards[0].status = model.STATUS_MOVED
    for region in moved.cards[0].regions:
        for f in region.functions:
            f.address = "0000:b0:00." + f.id[-1]
    before = [s.uuid for s in provider_tree.desired_tree(inv, ROOT)]
    after = [s.uuid for s in provider_tree.desired_tree(moved, ROOT)]
    assert before == after
    card_id = inv.cards[0].id
    assert before[0] == str(uuid.uuid5(provider_tree.NOVA_ACCEL_NAMESPACE,
                                       f"{HOST}:{card_id}"))


def test_provider_uuid_differs_per_host():
    assert (provider_tree.provider_uuid("a", "dsn-1")
            != provider_tree.provider_uuid("b", "dsn-1"))


def test_tree_layout_card_under_root_region_under_card(inventory):
    specs = provider_tree.desired_tree(inventory, ROOT)
    assert len(specs) == 2 + 4
    card = inventory.cards[1]
    found = by_source(specs)
    card_spec = found[card.id]
    assert card_spec.parent_uuid == ROOT
    assert card_spec.inventories == {}
    region_spec = found[card.regions[1].id]
    assert region_spec.parent_uuid == card_spec.uuid
    # Parents come before children.
    order = [s.uuid for s in specs]
    assert order.index(card_spec.uuid) < order.index(region_spec.uuid)


def test_region_inventory_and_traits():
    card = make_card(3, regions=1, functions=6, kind="ippcie", numa_node=1)
    inv = model.Inventory(hostname=HOST, cards=[card])
    spec = by_source(provider_tree.desired_tree(inv, ROOT))[card.regions[0].id]
    assert spec.inventories == {"CUSTOM_ACCEL_PCI_1172_5052": {
        "total": 6, "reserved": 0, "min_unit": 1, "max_unit": 6,
        "step_size": 1, "allocation_ratio": 1.0}}
    assert spec.traits == {
        "CUSTOM_NOVA_ACCEL_MANAGED", "CUSTOM_ACCEL_REGION",
        "CUSTOM_ACCEL_REGION_SIZE_6", "CUSTOM_ACCEL_KIND_IPPCIE",
        "CUSTOM_ACCEL_NUMA_1", "CUSTOM_ACCEL_MOVE_LIVE"}


def test_card_traits():
    card = make_card(3, regions=1)
    card.vendor_id, card.product_id = "10de", "1eb8"
    spec = by_source(provider_tree.desired_tree(
        model.Inventory(hostname=HOST, cards=[card]), ROOT))[card.id]
    assert spec.traits == {"CUSTOM_NOVA_ACCEL_MANAGED", "CUSTOM_ACCEL_CARD",
                           "CUSTOM_ACCEL_VENDOR_10DE",
                           "CUSTOM_ACCEL_PRODUCT_10DE_1EB8",
                           "CUSTOM_ACCEL_MOVE_COLD"}


def test_unknown_numa_node_gives_no_numa_trait():
    for numa in (None, -1):
        card = make_card(1, regions=1, numa_node=numa)
        spec = provider_tree.desired_tree(
            model.Inventory(hostname=HOST, cards=[card]), ROOT)[1]
        assert not any(t.startswith("CUSTOM_ACCEL_NUMA_")
                       for t in spec.traits)


def test_degraded_card_reserves_everything_and_is_marked():
    for status in model.DEGRADED_STATUSES:
        card = make_card(1, regions=2, functions=4, status=status)
        specs = provider_tree.desired_tree(
            model.Inventory(hostname=HOST, cards=[card]), ROOT)
        assert all(placement.DEGRADED_TRAIT in s.traits for s in specs)
        for spec in specs[1:]:
            inv = spec.inventories["CUSTOM_ACCEL_PCI_1172_5052"]
            assert inv["reserved"] == inv["total"] == 4


def test_empty_region_has_no_inventory():
    card = make_card(1, regions=1, functions=0)
    spec = provider_tree.desired_tree(
        model.Inventory(hostname=HOST, cards=[card]), ROOT)[1]
    assert spec.inventories == {}
    assert "CUSTOM_ACCEL_REGION_SIZE_0" in spec.traits


def test_long_names_are_shortened_uniquely():
    a = provider_tree.provider_name(HOST, "path-" + "x" * 300 + "a")
    b = provider_tree.provider_name(HOST, "path-" + "x" * 300 + "b")
    assert len(a) <= 200 and len(b) <= 200 and a != b


def test_invalid_names_are_reported(inventory):
    inventory.cards[0].regions[0].resource_class = "accel-fpga"
    bad = provider_tree.invalid_names(
        provider_tree.desired_tree(inventory, ROOT))
    assert bad == {inventory.cards[0].regions[0].id: "accel-fpga"}


def state_of(spec, generation=1):
    return provider_tree.ProviderState(
        uuid=spec.uuid, name=spec.name, parent_uuid=spec.parent_uuid,
        generation=generation,
        inventories=copy.deepcopy(spec.inventories), traits=spec.traits)


def test_diff_nothing_to_do_when_equal(inventory):
    specs = provider_tree.desired_tree(inventory, ROOT)
    assert provider_tree.diff(
        specs, {s.uuid: state_of(s) for s in specs}) == []


def test_diff_ignores_int_vs_float_from_placement(inventory):
    specs = provider_tree.desired_tree(inventory, ROOT)
    actual = {s.uuid: state_of(s) for s in specs}
    for state in actual.values():
        for inv in state.inventories.values():
            inv["allocation_ratio"] = 1
    assert provider_tree.diff(specs, actual) == []


def test_diff_creates_missing_in_order(inventory):
    specs = provider_tree.desired_tree(inventory, ROOT)
    steps = provider_tree.diff(specs, {})
    assert [s.action for s in steps] == ["create"] * len(specs)
    assert [s.uuid for s in steps] == [s.uuid for s in specs]


def test_diff_updates_degraded_card(inventory):
    specs = provider_tree.desired_tree(inventory, ROOT)
    actual = {s.uuid: state_of(s) for s in specs}
    inventory.cards[0].status = model.STATUS_LOST
    steps = provider_tree.diff(
        provider_tree.desired_tree(inventory, ROOT), actual)
    assert sorted((s.action, s.spec.source_id) for s in steps) == sorted(
        [("traits", inventory.cards[0].id)]
        + [(a, r.id) for r in inventory.cards[0].regions
           for a in ("traits", "inventories")])


def test_diff_removes_forgotten_card_children_first(inventory):
    specs = provider_tree.desired_tree(inventory, ROOT)
    actual = {s.uuid: state_of(s) for s in specs}
    inventory.cards.pop(0)
    steps = provider_tree.diff(
        provider_tree.desired_tree(inventory, ROOT), actual)
    assert {s.action for s in steps} == {"remove"}
    removed = [s.uuid for s in steps]
    card_uuid = specs[0].uuid
    assert len(removed) == 3 and removed[-1] == card_uuid


def test_diff_moves_provider_under_new_root(inventory):
    specs = provider_tree.desired_tree(inventory, ROOT)
    actual = {s.uuid: state_of(s) for s in specs}
    new_root = "9a1d1b5e-5bd2-4b3a-9f7e-1f9e0c3a2d10"
    steps = provider_tree.diff(provider_tree.desired_tree(inventory, new_root),
                           actual)
    assert [(s.action, s.spec.source_id) for s in steps] == [
        ("move", c.id) for c in inventory.cards]


def test_retired_reserves_everything_and_marks_degraded(inventory):
    spec = provider_tree.desired_tree(inventory, ROOT)[1]
    inventories, traits = provider_tree.retired(state_of(spec))
    (inv,) = inventories.values()
    assert inv["reserved"] == inv["total"] == 4
    assert traits == spec.traits | {placement.DEGRADED_TRAIT}


def test_each_kind_says_how_its_servers_move_on_card_and_region():
    """The move capability is the kind's (one place), published as one
    trait on the card and on each region: stateful PCI functions (an
    FPGA's loaded AFU, a GPU passed through) move cold, the stateless or
    nova-migrated ones (a vGPU, an IP-over-PCIe node, a USB stick) live;
    a kind that says nothing is never moved."""
    expected = {"pci": "CUSTOM_ACCEL_MOVE_COLD",
                "mdev": "CUSTOM_ACCEL_MOVE_LIVE",
                "ippcie": "CUSTOM_ACCEL_MOVE_LIVE",
                "usb": "CUSTOM_ACCEL_MOVE_LIVE",
                "unregistered-kind": "CUSTOM_ACCEL_MOVE_NONE"}
    for kind, trait in expected.items():
        card = make_card(1, regions=2, kind=kind)
        specs = provider_tree.desired_tree(
            model.Inventory(hostname=HOST, cards=[card]), ROOT)
        moves = [{t for t in spec.traits if "_MOVE_" in t} for spec in specs]
        assert moves == [{trait}] * 3, kind
        assert all(contract.move_of(spec.traits) == trait.rsplit("_", 1)[
            1].lower() for spec in specs)


def test_a_provider_without_one_move_trait_is_never_moved():
    assert contract.move_of({"CUSTOM_ACCEL_REGION"}) == contract.MOVE_NONE
    assert contract.move_of({contract.move_trait("live"),
                             contract.move_trait("cold")}) == "none"
    assert contract.least_movable(["live", "cold", "live"]) == "cold"
    assert contract.least_movable(["live", "none"]) == "none"
    with pytest.raises(ValueError, match="unknown move capability"):
        contract.move_trait("warm")
