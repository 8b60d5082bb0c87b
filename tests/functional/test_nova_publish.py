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

"""Real nova (API, conductor, scheduler, compute on the fake driver) and
real placement: our providers live beside nova's and get its instances.

The agent publishes a host under the compute node's provider; nova's
periodic resource update must leave those providers alone; a flavor
asking ``resources1:<region class>=2`` lands on one of our region
providers, and the allocation sync records it in the cache.
"""

import os

import fixtures
from tests.common.nova_base import NovaAccelTestCase

from accel_inventory import agent
from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import model
from accel_inventory import provider_tree

from tests.common.placement_builders import make_card

HOST = "compute1"


class NovaPublishTest(NovaAccelTestCase):
    def setUp(self):
        super().setUp()
        self.compute = self._start_compute(HOST)
        self.root = self._get_provider_uuid_by_host(HOST)
        tmp = self.useFixture(fixtures.TempDir()).path
        self.cache_path = os.path.join(tmp, "inventory.json")
        _path, self.accel_conf = self.accel_config(tmp, HOST,
                                                   self.cache_path)

    def _tree(self):
        return {rp["uuid"]: rp for rp in self.placement.get(
            f"/resource_providers?in_tree={self.root}",
            version="1.36").body["resource_providers"]}

    def test_region_allocation_is_published_kept_and_synced(self):
        inv = model.Inventory(
            hostname=HOST, cards=[make_card(1, regions=2, functions=4)])
        rc = inv.cards[0].regions[0].resource_class
        cache.save(self.cache_path, inv)
        publisher = agent.publisher_from_conf(self.accel_conf)
        agent.run_round(self.accel_conf, publisher, rescan=False)
        ours = {provider_tree.provider_uuid(HOST, inv.cards[0].id)} | {
            provider_tree.provider_uuid(HOST, r.id)
            for r in inv.cards[0].regions}
        tree = self._tree()
        assert ours <= set(tree)
        generations = {u: tree[u]["generation"] for u in ours}

        # nova's periodic update keeps our providers as they are.
        self._run_periodics(raise_on_error=True)
        tree = self._tree()
        assert {u: tree[u]["generation"] for u in ours} == generations
        report = publisher.publish(inv)
        assert not report.changed and report.requests == 1

        flavor = self._create_flavor(extra_spec={
            f"resources1:{rc}": "2",
            "trait1:CUSTOM_ACCEL_REGION": "required"})
        server = self._create_server(flavor_id=flavor, networks="none")
        allocations = self._get_allocations_by_server_uuid(server["id"])
        regions = [rp for rp in allocations if rp in ours]
        assert len(regions) == 1
        assert allocations[regions[0]]["resources"] == {rc: 2}
        assert allocations[self.root]["resources"]["VCPU"] == 2

        round_ = agent.run_round(self.accel_conf, publisher, rescan=False)
        assert round_.sync.changed == [server["id"]]
        saved = cache.load(self.cache_path)
        region = next(r for r in inv.cards[0].regions
                      if provider_tree.provider_uuid(HOST, r.id) == regions[0])
        held = claims.functions_of(saved, server["id"])
        assert held == [f"{region.id}/f0", f"{region.id}/f1"]
        assert saved.claims[server["id"]].source == "placement"

        # Deleting the server releases the functions at the next sync.
        self._delete_and_check_allocations(server)
        round_ = agent.run_round(self.accel_conf, publisher, rescan=False)
        assert round_.sync.changed == [server["id"]]
        assert server["id"] not in cache.load(self.cache_path).claims
