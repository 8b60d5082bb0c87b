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

"""Claims: who holds which function, kept in step with ``claimed_by``."""

import pytest

from accel_inventory import claims
from accel_inventory import model
from tests.common.cache_helpers import make_inventory

F0 = "dsn-0000000000000000/r0/f0"
F1 = "dsn-0000000000000000/r0/f1"
F2 = "dsn-0000000000000001/r1/f3"
BOOT, OLD_BOOT = "boot-now", "boot-before"


def claim(consumer, *fids, running=False, boot_id=BOOT, **kw):
    return model.Claim(consumer=consumer, functions=list(fids),
                       source="hook", running=running, boot_id=boot_id, **kw)


def owners(inv):
    return {fid: f.claimed_by for fid, (_c, _r, f)
            in inv.function_index().items() if f.claimed_by}


def test_record_sets_claimed_by_and_leaves_the_argument_alone():
    inv = make_inventory()
    new = claims.record_claim(inv, claim("vm-1", F0, F2, domain_name="a"))
    assert owners(new) == {F0: "vm-1", F2: "vm-1"}
    assert new.claims["vm-1"].domain_name == "a"
    assert claims.functions_of(new, "vm-1") == [F0, F2]
    assert inv == make_inventory()
    assert claims.inconsistencies(new) == []


def test_record_again_replaces_the_consumers_claim():
    inv = claims.record_claim(make_inventory(), claim("vm-1", F0, F1))
    inv = claims.record_claim(inv, claim("vm-1", F1, F2))
    assert owners(inv) == {F1: "vm-1", F2: "vm-1"}
    assert claims.inconsistencies(inv) == []


def test_record_refuses_a_function_held_by_a_running_consumer():
    inv = claims.record_claim(make_inventory(),
                              claim("vm-1", F0, running=True,
                                    domain_name="instance-0001"))
    with pytest.raises(claims.ClaimConflict) as e:
        claims.record_claim(inv, claim("vm-2", F1, F0), boot_id=BOOT)
    message = str(e.value)
    assert F0 in message and "vm-1" in message and "instance-0001" in message
    assert "vm-2" in message


@pytest.mark.parametrize("running, boot_id", [
    (False, BOOT),       # stopped in this boot
    (True, OLD_BOOT),    # running before the host rebooted
    (True, None),
])
def test_record_takes_a_function_from_a_stale_claim(running, boot_id):
    inv = claims.record_claim(make_inventory(),
                              claim("vm-1", F0, F1, running=running,
                                    boot_id=boot_id))
    new = claims.record_claim(inv, claim("vm-2", F0, running=True),
                              boot_id=BOOT)
    assert owners(new) == {F0: "vm-2", F1: "vm-1"}
    assert claims.functions_of(new, "vm-1") == [F1]
    assert claims.inconsistencies(new) == []


def test_a_stale_claim_left_empty_is_dropped():
    inv = claims.record_claim(make_inventory(), claim("vm-1", F0))
    new = claims.record_claim(inv, claim("vm-2", F0))
    assert list(new.claims) == ["vm-2"]


def test_record_uses_the_claims_boot_when_none_is_given():
    inv = claims.record_claim(make_inventory(),
                              claim("vm-1", F0, running=True))
    with pytest.raises(claims.ClaimConflict):
        claims.record_claim(inv, claim("vm-2", F0, boot_id=BOOT))
    claims.record_claim(inv, claim("vm-2", F0, boot_id=OLD_BOOT))


def test_record_refuses_unknown_and_repeated_functions():
    inv = make_inventory()
    with pytest.raises(claims.ClaimError, match="dsn-ffff/r0/f0.*scan"):
        claims.record_claim(inv, claim("vm-1", F0, "dsn-ffff/r0/f0"))
    with pytest.raises(claims.ClaimError, match="more than once"):
        claims.record_claim(inv, claim("vm-1", F0, F0))
    assert inv == make_inventory()


def test_release_frees_functions_and_is_idempotent():
    inv = claims.record_claim(make_inventory(), claim("vm-1", F0, F1))
    inv = claims.record_claim(inv, claim("vm-2", F2))
    released = claims.release_claim(inv, "vm-1")
    assert owners(released) == {F2: "vm-2"}
    assert list(released.claims) == ["vm-2"]
    assert claims.release_claim(released, "vm-1") == released
    assert claims.functions_of(released, "vm-1") == []


def test_running_and_stopped():
    inv = claims.record_claim(make_inventory(), claim("vm-1", F0,
                                                      boot_id=None))
    assert claims.holder_of(inv, F0, BOOT) is None
    running = claims.mark_running(inv, "vm-1", BOOT)
    assert claims.holder_of(running, F0, BOOT).consumer == "vm-1"
    assert claims.holder_of(running, F0, OLD_BOOT) is None
    assert claims.holder_of(running, F1, BOOT) is None
    stopped = claims.mark_stopped(running, "vm-1")
    assert claims.holder_of(stopped, F0, BOOT) is None
    assert stopped.claims["vm-1"].functions == [F0]
    assert owners(stopped) == {F0: "vm-1"}
    assert not inv.claims["vm-1"].running


def test_mark_running_needs_a_claim_and_mark_stopped_does_not():
    inv = make_inventory()
    with pytest.raises(claims.ClaimError, match="record its claim"):
        claims.mark_running(inv, "vm-1", BOOT)
    assert claims.mark_stopped(inv, "vm-1") == inv


def test_holder_of_an_unknown_function_is_an_error():
    with pytest.raises(claims.ClaimError, match="not in the inventory"):
        claims.holder_of(make_inventory(), "dsn-ffff/r0/f0", BOOT)


def test_inconsistencies_are_named():
    inv = claims.record_claim(make_inventory(), claim("vm-1", F0))
    inv.cards[0].regions[0].functions[1].claimed_by = "vm-1"
    inv.claims["vm-2"] = claim("vm-3", F0)
    problems = claims.inconsistencies(inv)
    assert any(F1 in p for p in problems)
    assert any("'vm-2'" in p and "'vm-3'" in p for p in problems)
    assert any("both vm-1 and vm-3" in p for p in problems)


def test_a_claim_may_outlive_its_function():
    # A rescan never drops a claim, even when the function is gone.
    inv = claims.record_claim(make_inventory(), claim("vm-1", F2))
    inv.cards.pop(1)
    assert claims.inconsistencies(inv) == []
    assert claims.functions_of(inv, "vm-1") == [F2]
