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

"""What a live migration may do with the functions the attach worker
plugged: each kind's move capability decides (stateless ones are
unplugged first, anything else refuses in one line), on the sample host's
cache and libvirt's in-process test driver (which refuses hot-unplug: the
guest that never lets go)."""

import libvirt
import pytest

from accel_inventory import cache, claims, model
from libvirt_hooks import migration
from tests.common import attach_host
from tests.common.attach_host import NODE0, STICK, assign, domain_bytes
from tests.common.placement_builders import make_inventory

conn = attach_host.conn
host = attach_host.host
SERVER = "aaaaaaaa-0000-4000-8000-000000000001"
VF = "dsn-0011223344556677/r0/f1"

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def holding(kind, source="placement"):
    inv = make_inventory(cards=1, regions=1, functions=2)
    inv.cards[0].kind = kind
    fid = inv.cards[0].regions[0].functions[1].id
    return claims.record_claim(inv, model.Claim(
        consumer=SERVER, functions=[fid], source=source)), fid


@pytest.mark.parametrize("kind", ["ippcie", "usb", "mdev"])
def test_stateless_kinds_move_live(kind):
    inv, _fid = holding(kind)
    assert migration.live_refusal(inv, SERVER) is None


def test_a_stateful_function_refuses_in_one_line_naming_it():
    inv, fid = holding("pci")
    refusal = migration.live_refusal(inv, SERVER)
    assert refusal == (
        f"cannot be live-migrated: its pci functions move cold only (a live "
        f"migration would lose their state); cold-migrate it instead "
        f"('openstack server migrate {SERVER}'): {fid}")
    # nova keeps 255 characters of a reason, its own prefix included.
    assert len("Migration pre-check error: " + refusal) <= 255


def test_a_kind_that_says_nothing_never_moves():
    inv, _fid = holding("some-future-kind")
    assert "never move " in migration.live_refusal(inv, SERVER)
    assert "cannot be moved" in migration.live_refusal(inv, SERVER)


def test_what_nova_put_in_the_domain_is_novas_to_move():
    inv, _fid = holding("pci", source="hook")
    assert migration.live_refusal(inv, SERVER) is None
    assert migration.live_refusal(inv, "nobody") is None


def test_on_the_sample_host(host):
    assign(host, SERVER, [NODE0, STICK])
    assert migration.refusal(host["config"], SERVER) is None
    assign(host, SERVER, [NODE0, VF])
    assert VF in migration.refusal(host["config"], SERVER)


def test_an_unreadable_cache_refuses(host):
    with open(host["cache"], "w") as f:
        f.write("{not json")
    with open(cache.good_copy_path(host["cache"]), "w") as f:
        f.write("{not json")
    assert "nova-accel cannot tell what it holds" in migration.refusal(
        host["config"], SERVER)


def test_nothing_plugged_nothing_to_unplug(host, conn):
    uuid = conn.lookupByName("test").UUIDString()
    assert migration.unplug(conn, host["config"], uuid) == []


def test_a_guest_that_keeps_its_device_stops_the_migration(host, conn):
    dom = conn.lookupByName("test")
    uuid = dom.UUIDString()
    assign(host, uuid, [STICK])
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    with open(host["config"], "a") as f:
        f.write("unplug_timeout = 3\n")
    # The stick is not in the domain: nothing to wait for.
    assert migration.unplug(conn, host["config"], uuid,
                            clock=lambda: now[0], sleep=sleep) == [
        f"{STICK}: absent (usb 03e7:2485 bus 3 device 4)"]
    assert slept == []
    # In the domain, and the test driver refuses to unplug it.
    node = conn.defineXML(domain_bytes(
        "eeeeeeee-0000-4000-8000-000000000009", _usb_hostdev(),
        name="vm9").decode())
    node.create()
    try:
        assign(host, node.UUIDString(), [STICK])
        with pytest.raises(migration.MoveError) as raised:
            migration.unplug(conn, host["config"], node.UUIDString(),
                             clock=lambda: now[0], sleep=sleep)
        message = str(raised.value)
        assert message.startswith(f"server {node.UUIDString()} is not "
                                  f"live-migrated: its guest did not release "
                                  f"{STICK} within 3.0 s")
        assert "\n" not in message
        assert len(slept) == 3
    finally:
        node.destroy()
        node.undefine()


def _usb_hostdev():
    from libvirt_hooks import xmlgen

    return xmlgen.usb_hostdev("03e7", "2485", bus=3, device=4)
