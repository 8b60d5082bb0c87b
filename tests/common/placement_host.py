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

"""Real placement in-process for the tests: its own fixture (WSGI app
behind wsgi-intercept, SQLite in memory), our ``[placement]`` options
pointing at it, and a compute node provider, with plain placement
requests to check what the publisher did. Shared by the publish tests
(tests/functional) and the hook's concurrency test (tests/unit/hooks),
which import placement's code but not nova's."""

import pytest
from placement.tests.functional.fixtures import placement as placement_fx

from accel_inventory import agent
from accel_inventory import conf as inventory_conf
from accel_inventory import placement
from accel_inventory import provider_tree
from tests.common.placement_builders import HOST

RC = "CUSTOM_ACCEL_PCI_1172_5052"
PROJECT = "6f1a3e0c-0000-4000-8000-00000000aaaa"
USER = "6f1a3e0c-0000-4000-8000-00000000bbbb"


class Host:
    """A placement service, our config pointing at it, a compute node."""

    def __init__(self, endpoint, tmp_path):
        self.config_file = tmp_path / "nova-accel.conf"
        self.cache_path = str(tmp_path / "inventory.json")
        self.config_file.write_text(
            f"[inventory]\nhostname = {HOST}\ncache_path = "
            f"{self.cache_path}\n[placement]\nauth_type = admin_token\n"
            f"endpoint = {endpoint}\ntoken = admin\n")
        self.conf = self.load_conf()
        self.raw = placement.Client(placement.load_adapter(self.conf))
        self.root = self.post("/resource_providers", {"name": HOST})["uuid"]

    def load_conf(self):
        conf = inventory_conf.load(["--config-file", str(self.config_file)])
        inventory_conf.register_placement_opts(conf)
        return conf

    def publisher(self):
        return agent.publisher_from_conf(self.conf)

    def _json(self, method, url, body=None, ok=(200,)):
        response = self.raw.call(method, url, body)
        assert response.status_code in ok, (url, response.text)
        return response.json() if response.content else None

    def get(self, url):
        return self._json("GET", url)

    def post(self, url, body):
        return self._json("POST", url, body)

    def put(self, url, body, ok=(200, 204)):
        return self._json("PUT", url, body, ok)

    def tree(self):
        return {rp["uuid"]: rp for rp in self.get(
            f"/resource_providers?in_tree={self.root}")["resource_providers"]}

    def traits(self, rp):
        return set(self.get(f"/resource_providers/{rp}/traits")["traits"])

    def inventory(self, rp):
        return self.get(f"/resource_providers/{rp}/inventories")[
            "inventories"]

    def allocate(self, consumer, rp, amount, rc=RC):
        self.put(f"/allocations/{consumer}", {
            "allocations": {rp: {"resources": {rc: amount}}},
            "project_id": PROJECT, "user_id": USER,
            "consumer_generation": None}, ok=(204,))

    def free(self, consumer):
        response = self.raw.call("DELETE", f"/allocations/{consumer}")
        assert response.status_code == 204, response.text


@pytest.fixture
def host(tmp_path):
    service = placement_fx.PlacementFixture()
    service.setUp()
    try:
        yield Host(service.endpoint, tmp_path)
    finally:
        service.cleanUp()


def region_uuid(inv, card=0, region=0):
    return provider_tree.provider_uuid(
        inv.hostname, inv.cards[card].regions[region].id)


def card_uuid(inv, card=0):
    return provider_tree.provider_uuid(inv.hostname, inv.cards[card].id)
