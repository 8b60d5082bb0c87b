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

"""inventory.ack, forget, current_boot_id: the pure edges of the CLI."""

import pytest

from accel_inventory import claims
from accel_inventory import inventory
from accel_inventory import model
from tests.common.cache_helpers import make_inventory

CARD = "dsn-0000000000000001"


def with_status(status):
    inv = make_inventory()
    inv.cards[1].status = status
    return inv


@pytest.mark.parametrize("status", [model.STATUS_MOVED, model.STATUS_ADDED,
                                    model.STATUS_OK])
def test_ack_makes_a_card_ok(status):
    inv = with_status(status)
    new = inventory.ack(inv, CARD)
    assert new.card(CARD).status == model.STATUS_OK
    assert inv.card(CARD).status == status


@pytest.mark.parametrize("status, hint", [
    (model.STATUS_LOST, "forget"), (model.STATUS_AMBIGUOUS, "profile")])
def test_ack_refuses_degraded_cards(status, hint):
    with pytest.raises(inventory.InventoryError, match=hint):
        inventory.ack(with_status(status), CARD)


def test_forget_drops_a_lost_unclaimed_card():
    new = inventory.forget(with_status(model.STATUS_LOST), CARD)
    assert [c.id for c in new.cards] == ["dsn-0000000000000000"]


def test_forget_refuses_while_claimed_naming_the_domain():
    inv = claims.record_claim(with_status(model.STATUS_LOST), model.Claim(
        consumer="vm-1", functions=[f"{CARD}/r1/f2"], source="hook",
        domain_name="instance-0002"))
    with pytest.raises(inventory.InventoryError) as e:
        inventory.forget(inv, CARD)
    assert "vm-1 (domain instance-0002)" in str(e.value)
    assert inv.card(CARD) is not None


@pytest.mark.parametrize("status", [model.STATUS_OK, model.STATUS_MOVED,
                                    model.STATUS_AMBIGUOUS])
def test_forget_refuses_a_card_that_is_not_lost(status):
    with pytest.raises(inventory.InventoryError, match="not lost"):
        inventory.forget(with_status(status), CARD)


def test_unknown_card_lists_the_known_ones():
    with pytest.raises(inventory.InventoryError,
                       match="no card x .*dsn-0000000000000000"):
        inventory.ack(make_inventory(), "x")


def test_current_boot_id(tmp_path):
    assert len(inventory.current_boot_id()) == 36
    random = tmp_path / "sys" / "kernel" / "random"
    random.mkdir(parents=True)
    (random / "boot_id").write_text("1234-abcd\n")
    assert inventory.current_boot_id(str(tmp_path)) == "1234-abcd"
    (random / "boot_id").write_text("")
    with pytest.raises(inventory.InventoryError, match="empty"):
        inventory.current_boot_id(str(tmp_path))
    with pytest.raises(inventory.InventoryError, match="cannot read"):
        inventory.current_boot_id(str(tmp_path / "nowhere"))


def test_a_rescan_keeps_every_claim_of_the_cache():
    previous = claims.record_claim(make_inventory(), model.Claim(
        consumer="vm-1", functions=[f"{CARD}/r0/f1", f"{CARD}/r1/f3"],
        source="hook", running=True, boot_id="b", domain_name="i-1"))
    # What a reconciliation might hand back: fresh functions, no claims.
    scanned = make_inventory()
    scanned.cards[1].address = "0000:42:00.0"
    kept = inventory.keep_claims(previous, scanned)
    assert kept.claims == previous.claims
    assert kept.cards[1].address == "0000:42:00.0"
    assert {fid: f.claimed_by for fid, (_c, _r, f)
            in kept.function_index().items() if f.claimed_by} == {
        f"{CARD}/r0/f1": "vm-1", f"{CARD}/r1/f3": "vm-1"}
    assert claims.inconsistencies(kept) == []
    assert inventory.keep_claims(None, scanned).claims == {}


def test_a_claim_on_a_card_the_scan_no_longer_lists_is_kept():
    previous = claims.record_claim(make_inventory(), model.Claim(
        consumer="vm-1", functions=[f"{CARD}/r0/f1"], source="hook"))
    scanned = make_inventory(cards=1)
    kept = inventory.keep_claims(previous, scanned)
    assert claims.functions_of(kept, "vm-1") == [f"{CARD}/r0/f1"]
    assert claims.inconsistencies(kept) == []
