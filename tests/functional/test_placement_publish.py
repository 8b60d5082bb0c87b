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

"""Publish and allocation sync against real placement code, in-process.

Placement runs from its own test fixture (its WSGI app behind
wsgi-intercept, SQLite in memory). The publisher reaches it through the
``[placement]`` options, loaded the way the agent loads them, and the
tests check the result with plain placement requests.
"""

import copy
import io
import pathlib
import uuid

import pytest

from accel_inventory import agent
from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import cli
from accel_inventory import model
from accel_inventory import placement
from tests.common import placement_host
from tests.common.placement_builders import HOST
from tests.common.placement_builders import make_inventory
from tests.common.placement_host import RC, card_uuid, region_uuid

host = placement_host.host


def moved(inv, card=0):
    """``inv`` after the card was put in another slot: new addresses."""
    new = copy.deepcopy(inv)
    c = new.cards[card]
    c.previous_addresses = [c.address]
    c.address, c.status = "0000:af:00.0", model.STATUS_MOVED
    for region in c.regions:
        region.address = "0000:af:00." + str(region.index)
        for f in region.functions:
            f.address = f"0000:b0:{region.index:02x}.{f.id[-1]}"
    return new


def test_first_publish_builds_the_tree(host):
    inv = make_inventory(cards=2, regions=3, functions=4)
    report = host.publisher().publish(inv)
    assert len(report.created) == 2 + 6 and report.attempts == 1
    tree = host.tree()
    assert len(tree) == 1 + 2 + 6
    card = tree[card_uuid(inv, 1)]
    assert card["parent_provider_uuid"] == host.root
    assert card["name"] == f"{HOST}:{inv.cards[1].id}"
    region = region_uuid(inv, 1, 2)
    assert tree[region]["parent_provider_uuid"] == card["uuid"]
    assert host.inventory(region)[RC]["total"] == 4
    assert host.inventory(region)[RC]["reserved"] == 0
    assert host.traits(region) == {
        placement.OWNER_TRAIT, "CUSTOM_ACCEL_REGION",
        "CUSTOM_ACCEL_REGION_SIZE_4", "CUSTOM_ACCEL_KIND_PCI",
        "CUSTOM_ACCEL_NUMA_0", "CUSTOM_ACCEL_MOVE_COLD"}
    assert host.traits(card["uuid"]) == {
        placement.OWNER_TRAIT, "CUSTOM_ACCEL_CARD",
        "CUSTOM_ACCEL_VENDOR_1172", "CUSTOM_ACCEL_PRODUCT_1172_5052",
        "CUSTOM_ACCEL_MOVE_COLD"}
    # Placement can now place a request for two functions of a region.
    candidates = host.get(f"/allocation_candidates?resources={RC}:2"
                          f"&required=CUSTOM_ACCEL_REGION")
    assert len(candidates["allocation_requests"]) == 6


def test_unchanged_republish_costs_one_request(host):
    inv = make_inventory(cards=2, regions=2, functions=4)
    publisher = host.publisher()
    publisher.publish(inv)
    before = host.tree()
    report = publisher.publish(inv)
    assert report.requests == 1
    assert not report.changed
    assert host.tree() == before
    # The allocation read of a sync with no allocations costs nothing more.
    start = publisher.client.requests
    assert all(a == {} for a in publisher.read_allocations(inv).values())
    assert publisher.client.requests == start


def test_fresh_publisher_reads_once_then_writes_nothing(host):
    """What a one-shot ``accel-inventory publish`` pays on a stable host:
    the lookups it cannot remember, and no write."""
    inv = make_inventory(cards=2, regions=2, functions=4)
    host.publisher().publish(inv)
    generations = {u: rp["generation"] for u, rp in host.tree().items()}
    report = host.publisher().publish(inv)
    assert not report.changed
    assert {u: rp["generation"] for u, rp in host.tree().items()} \
        == generations
    # Ownership trait (a no-op PUT), root lookup, listing, and the
    # inventories and traits of each of the 6 providers.
    assert report.requests == 1 + 1 + 1 + 2 * 6


def test_republish_after_re_enumeration_keeps_providers_and_allocations(
        host):
    inv = make_inventory(cards=2, regions=2, functions=4)
    publisher = host.publisher()
    publisher.publish(inv)
    consumer = str(uuid.uuid4())
    host.allocate(consumer, region_uuid(inv, 0, 1), 3)
    before = host.tree()
    report = publisher.publish(moved(inv))
    assert not report.changed
    assert set(host.tree()) == set(before)
    allocations = host.get(f"/allocations/{consumer}")["allocations"]
    assert allocations == {region_uuid(inv, 0, 1): {
        "resources": {RC: 3}, "generation": allocations[
            region_uuid(inv, 0, 1)]["generation"]}}


def test_lost_card_is_degraded_and_keeps_allocations(host):
    inv = make_inventory(cards=2, regions=2, functions=4)
    publisher = host.publisher()
    publisher.publish(inv)
    consumer = str(uuid.uuid4())
    host.allocate(consumer, region_uuid(inv, 0, 0), 2)
    lost = copy.deepcopy(inv)
    lost.cards[0].status = model.STATUS_LOST
    report = publisher.publish(lost)
    assert report.attempts == 1 and not report.removed
    for rp in (card_uuid(inv), region_uuid(inv, 0, 0),
               region_uuid(inv, 0, 1)):
        assert placement.DEGRADED_TRAIT in host.traits(rp)
    assert host.inventory(region_uuid(inv, 0, 0))[RC]["reserved"] == 4
    assert consumer in host.get(f"/resource_providers/"
                                f"{region_uuid(inv, 0, 0)}/allocations"
                                )["allocations"]
    # Nothing new lands on the lost card's regions.
    candidates = host.get(f"/allocation_candidates?resources={RC}:1")
    landed = {rp for req in candidates["allocation_requests"]
              for rp in req["allocations"]}
    assert landed == {region_uuid(inv, 1, 0), region_uuid(inv, 1, 1)}
    # Back in place, it is a normal card again.
    publisher.publish(moved(inv))
    assert placement.DEGRADED_TRAIT not in host.traits(card_uuid(inv))
    assert host.inventory(region_uuid(inv, 0, 0))[RC]["reserved"] == 0


def test_forgotten_card_is_removed_only_without_allocations(host):
    inv = make_inventory(cards=3, regions=2, functions=4)
    publisher = host.publisher()
    publisher.publish(inv)
    consumer = str(uuid.uuid4())
    host.allocate(consumer, region_uuid(inv, 1, 0), 1)
    forgotten = copy.deepcopy(inv)
    forgotten.cards = [inv.cards[2]]
    report = publisher.publish(forgotten)
    tree = host.tree()
    # Card 0 had no allocations: gone. Card 1 keeps the allocated region
    # (reserved, degraded) and its parent; its free region is gone.
    for rp in (card_uuid(inv, 0), region_uuid(inv, 0, 0),
               region_uuid(inv, 0, 1), region_uuid(inv, 1, 1)):
        assert rp not in tree
    assert card_uuid(inv, 1) in tree and region_uuid(inv, 1, 0) in tree
    assert len(report.removed) == 4 and len(report.kept) == 2
    assert placement.DEGRADED_TRAIT in host.traits(region_uuid(inv, 1, 0))
    assert host.inventory(region_uuid(inv, 1, 0))[RC]["reserved"] == 4
    # Once the consumer is gone, the next publish removes the rest.
    host.free(consumer)
    report = publisher.publish(forgotten)
    assert sorted(report.removed) == sorted(
        [f"{HOST}:{inv.cards[1].id}", f"{HOST}:{inv.cards[1].regions[0].id}"])
    assert set(host.tree()) == {host.root, card_uuid(inv, 2),
                                region_uuid(inv, 2, 0),
                                region_uuid(inv, 2, 1)}


def test_providers_of_others_are_never_touched(host):
    inv = make_inventory(cards=1, regions=1, functions=2)
    other = host.post("/resource_providers", {
        "name": f"{HOST}_0000:3b:00.0", "parent_provider_uuid": host.root})
    publisher = host.publisher()
    publisher.publish(inv)
    publisher.publish(model.Inventory(hostname=HOST))
    assert set(host.tree()) == {host.root, other["uuid"]}


def test_half_created_provider_is_completed(host):
    """A publish cut off between creating a provider and marking it ours
    leaves a provider without traits; the next publish adopts it."""
    inv = make_inventory(cards=1, regions=1, functions=2)
    host.post("/resource_providers", {
        "uuid": card_uuid(inv), "name": f"{HOST}:{inv.cards[0].id}",
        "parent_provider_uuid": host.root})
    report = host.publisher().publish(inv)
    assert placement.OWNER_TRAIT in host.traits(card_uuid(inv))
    assert len(report.created) == 2


def test_foreign_provider_with_our_name_is_refused(host):
    inv = make_inventory(cards=1, regions=1, functions=2)
    host.post("/resource_providers", {"name": f"{HOST}:{inv.cards[0].id}"})
    report = host.publisher().publish(inv)
    card, region = inv.cards[0].id, inv.cards[0].regions[0].id
    assert "is not ours" in report.failed[card]
    assert report.failed[region] == ("not published: its card's provider "
                                     "failed")
    assert report.created == []


class Bumping(placement.Client):
    """Bumps a provider's generation, as a concurrent client would, right
    before our next write of its inventory (``times`` times)."""

    def __init__(self, adapter, host, times):
        super().__init__(adapter)
        self.host, self.times, self.bumped = host, times, 0

    def call(self, method, url, body=None, microversion=None):
        if (method == "PUT" and url.endswith("/inventories")
                and self.bumped < self.times):
            self.bumped += 1
            rp = url.split("/")[2]
            # A change of aggregates: not ours to undo, but a new
            # generation all the same.
            url_ = f"/resource_providers/{rp}/aggregates"
            aggregates = self.host.get(url_)
            self.host.put(url_, {
                "aggregates": aggregates["aggregates"] + [str(uuid.uuid4())],
                "resource_provider_generation":
                    aggregates["resource_provider_generation"]})
        return super().call(method, url, body, microversion)


def test_generation_conflict_is_re_read_and_retried(host):
    inv = make_inventory(cards=1, regions=2, functions=4)
    publisher = host.publisher()
    publisher.publish(inv)
    lost = copy.deepcopy(inv)
    lost.cards[0].status = model.STATUS_LOST
    client = Bumping(publisher.client.adapter, host, times=1)
    publisher.client = client
    report = publisher.publish(lost)
    assert client.bumped == 1 and report.attempts == 2
    for r in range(2):
        assert host.inventory(region_uuid(inv, 0, r))[RC]["reserved"] == 4


def test_endless_conflicts_give_up_after_max_attempts(host):
    inv = make_inventory(cards=1, regions=1, functions=4)
    publisher = placement.Publisher(
        Bumping(placement.load_adapter(host.conf), host, times=100),
        max_attempts=3)
    with pytest.raises(placement.PlacementError,
                       match="after 3 generation conflicts"):
        publisher.publish(inv)
    assert publisher.client.bumped == 3


def test_sync_records_and_releases_allocations(host):
    inv = make_inventory(cards=2, regions=2, functions=4)
    cache.save(host.cache_path, inv)
    publisher = host.publisher()
    agent.run_round(host.conf, publisher, rescan=False)
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    host.allocate(a, region_uuid(inv, 1, 0), 2)
    host.allocate(b, region_uuid(inv, 1, 0), 1)
    report = agent.run_round(host.conf, publisher, rescan=False)
    assert sorted(report.sync.changed) == sorted([a, b])
    saved = cache.load(host.cache_path)
    r = inv.cards[1].regions[0].id
    assert set(claims.functions_of(saved, a)) | set(
        claims.functions_of(saved, b)) == {f"{r}/f0", f"{r}/f1", f"{r}/f2"}
    assert len(claims.functions_of(saved, a)) == 2
    assert saved.claims[a].source == "placement"

    # Re-enumeration: same functions for the same consumers.
    cache.save(host.cache_path, moved(saved, card=1))
    report = agent.run_round(host.conf, publisher, rescan=False)
    assert report.sync.changed == []
    again = cache.load(host.cache_path)
    assert again.claims == saved.claims

    host.free(a)
    report = agent.run_round(host.conf, publisher, rescan=False)
    assert report.sync.changed == [a]
    final = cache.load(host.cache_path)
    assert a not in final.claims and b in final.claims


def test_publish_command_prints_and_exits_zero(host):
    cache.save(host.cache_path, make_inventory(cards=1, regions=2))
    out = io.StringIO()
    assert cli.main(["--config-file", str(host.config_file), "publish"],
                    out=out) == 0
    assert out.getvalue().startswith("published: 3 created, 0 updated")


def test_placement_down_exits_1_with_one_line_and_keeps_the_cache(
        tmp_path, capsys):
    cache_path = tmp_path / "inventory.json"
    inv = make_inventory(cards=1, regions=1)
    inv = claims.record_claim(inv, model.Claim(
        consumer="c1", functions=[inv.cards[0].regions[0].functions[0].id],
        source="placement"))
    cache.save(str(cache_path), inv)
    before = cache_path.read_bytes()
    config = tmp_path / "a.conf"
    # Port 9 (discard) on loopback: nothing listens there.
    config.write_text(
        f"[inventory]\nhostname = {HOST}\ncache_path = {cache_path}\n"
        f"[placement]\nauth_type = admin_token\n"
        f"endpoint = http://127.0.0.1:9/placement\ntoken = admin\n")
    rc = cli.main(["--config-file", str(config), "publish"], out=io.StringIO())
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "cannot reach placement" in err
    assert cache_path.read_bytes() == before


def test_refused_provider_does_not_hold_back_the_others(host, capsys):
    """A region whose resource class changed while allocated cannot be
    republished; placement refuses it, the rest of the host still is."""
    inv = make_inventory(cards=2, regions=1, functions=4)
    cache.save(host.cache_path, inv)
    publisher = host.publisher()
    publisher.publish(inv)
    consumer = str(uuid.uuid4())
    host.allocate(consumer, region_uuid(inv, 0, 0), 1)
    changed = copy.deepcopy(inv)
    changed.cards[0].regions[0].resource_class = "CUSTOM_ACCEL_OTHER"
    changed.cards[1].status = model.STATUS_LOST
    report = publisher.publish(changed)
    assert list(report.failed) == [changed.cards[0].regions[0].id]
    assert "still allocated" in report.failed[changed.cards[0].regions[0].id]
    assert placement.DEGRADED_TRAIT in host.traits(card_uuid(inv, 1))
    assert list(host.inventory(region_uuid(inv, 0, 0))) == [RC]
    # The command says so and exits 1.
    cache.save(host.cache_path, changed)
    assert cli.main(["--config-file", str(host.config_file), "publish"],
                    out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"accel-inventory: error: failed "
                          f"{changed.cards[0].regions[0].id}: ")


def test_publish_command_remembers_between_runs(host):
    """``accel-inventory publish`` keeps what it learnt beside the cache:
    a second run on an unchanged host costs one request."""
    cache.save(host.cache_path, make_inventory(cards=2, regions=2))
    outputs = []
    for _ in range(2):
        out = io.StringIO()
        assert cli.main(["--config-file", str(host.config_file),
                         "publish"], out=out) == 0
        outputs.append(out.getvalue())
    assert outputs[0].startswith("published: 6 created")
    assert outputs[1].startswith("published: 0 created, 0 updated")
    assert outputs[1].rstrip().endswith("requests to placement: 1")
    # A torn state file only costs requests.
    state = pathlib.Path(cache.state_path(host.cache_path))
    state.write_text(state.read_text()[:50])
    out = io.StringIO()
    assert cli.main(["--config-file", str(host.config_file), "publish"],
                    out=out) == 0
    assert out.getvalue().startswith("published: 0 created, 0 updated")


def test_names_lost_by_placement_are_created_again(host):
    """Placement's database was reset under a running agent: the traits
    and classes it remembers creating are gone. It notices and recreates
    them instead of failing every round."""
    inv = make_inventory(cards=1, regions=1)
    publisher = host.publisher()
    remembered = {"root_name": None, "root_uuid": None, "providers": [],
                  "exists": [f"/traits/{placement.OWNER_TRAIT}",
                             "/traits/CUSTOM_ACCEL_CARD",
                             f"/resource_classes/{RC}"]}
    assert publisher.import_state(remembered)
    report = publisher.publish(inv)
    assert report.attempts == 2 and len(report.created) == 2
    assert placement.OWNER_TRAIT in host.traits(card_uuid(inv))


def test_state_of_another_host_name_is_not_trusted_for_the_root(host):
    inv = make_inventory(cards=1, regions=1)
    publisher = host.publisher()
    publisher.publish(inv)
    state = publisher.export_state()
    state["root_name"] = "another-host"
    other = host.publisher()
    assert other.import_state(state)
    report = other.publish(inv)
    assert not report.changed and other.root_uuid == host.root
    assert not other.import_state({"providers": "nonsense"})
