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

"""The agent against placement over HTTP on a real PostgreSQL server."""

import copy
import os
import subprocess
import sys
import threading
import uuid

import pytest
import requests

from accel_inventory import agent
from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import conf as inventory_conf
from accel_inventory import model
from accel_inventory import monitor
from accel_inventory import provider_tree
from tests.common.placement_builders import make_card

RC = "CUSTOM_ACCEL_PCI_1172_5052"
HEADERS = {"x-auth-token": "admin",
           "OpenStack-API-Version": "placement 1.36"}


class Site:
    """Our config, cache and compute node on the shared placement."""

    def __init__(self, endpoint, hostname, tmp_path):
        self.endpoint, self.hostname = endpoint, hostname
        self.cache_path = str(tmp_path / "inventory.json")
        self.config = tmp_path / "nova-accel.conf"
        self.config.write_text(
            f"[inventory]\nhostname = {hostname}\ncache_path = "
            f"{self.cache_path}\n[placement]\nauth_type = admin_token\n"
            f"endpoint = {endpoint}\ntoken = admin\n")
        self.root = self.request("POST", "/resource_providers",
                                 {"name": hostname}).json()["uuid"]

    def conf(self):
        conf = inventory_conf.load(["--config-file", str(self.config)])
        inventory_conf.register_placement_opts(conf)
        return conf

    def request(self, method, url, body=None):
        response = requests.request(method, self.endpoint + url, json=body,
                                    headers=HEADERS, timeout=30)
        assert response.status_code < 300, (url, response.text)
        return response

    def get(self, url):
        return self.request("GET", url).json()

    def tree(self):
        return {rp["uuid"]: rp for rp in self.get(
            f"/resource_providers?in_tree={self.root}")["resource_providers"]}

    def inventory(self):
        return model.Inventory(
            hostname=self.hostname,
            cards=[make_card(i, regions=2, functions=4) for i in range(2)])

    def region(self, inv, card, region):
        return provider_tree.provider_uuid(self.hostname,
                                       inv.cards[card].regions[region].id)

    def allocate(self, consumer, rp, amount):
        self.request("PUT", f"/allocations/{consumer}", {
            "allocations": {rp: {"resources": {RC: amount}}},
            "project_id": str(uuid.uuid4()), "user_id": str(uuid.uuid4()),
            "consumer_generation": None})

    def cli(self, *args):
        # The installed console script, as an operator runs it.
        script = os.path.join(os.path.dirname(sys.executable),
                              "accel-inventory")
        return subprocess.run(
            [script, "--config-file", str(self.config), *args],
            capture_output=True, text=True, timeout=120)


@pytest.fixture
def site(placement_endpoint, hostname, tmp_path):
    return Site(placement_endpoint, hostname, tmp_path)


def test_publish_command_publishes_and_syncs(site):
    inv = site.inventory()
    cache.save(site.cache_path, inv)
    first = site.cli("publish")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("published: 6 created")
    tree = site.tree()
    assert len(tree) == 7
    region = site.region(inv, 1, 1)
    assert site.get(f"/resource_providers/{region}/inventories")[
        "inventories"][RC]["total"] == 4

    consumer = str(uuid.uuid4())
    site.allocate(consumer, region, 3)
    second = site.cli("publish")
    assert second.returncode == 0, second.stderr
    assert "0 created, 0 updated, 0 removed" in second.stdout
    assert "claims changed: 1" in second.stdout
    saved = cache.load(site.cache_path)
    rid = inv.cards[1].regions[1].id
    assert claims.functions_of(saved, consumer) == [
        f"{rid}/f0", f"{rid}/f1", f"{rid}/f2"]
    assert {u: rp["generation"] for u, rp in site.tree().items()} == {
        u: rp["generation"] for u, rp in tree.items()} | {
        region: site.tree()[region]["generation"]}


def test_agent_rounds_follow_allocations(site):
    """The agent loop itself: rounds on its timer publish and sync."""
    inv = site.inventory()
    cache.save(site.cache_path, inv)
    conf = site.conf()
    publisher = agent.publisher_from_conf(conf)
    stop = threading.Event()
    rounds = []
    region = site.region(inv, 0, 0)
    consumer = str(uuid.uuid4())

    def round_():
        rounds.append(agent.run_round(conf, publisher, rescan=False))
        if len(rounds) == 1:
            # An instance lands on a region between two rounds.
            site.allocate(consumer, region, 2)
        else:
            stop.set()

    monitor.watch(agent.Periodic(agent.Quiet(stop), interval=0.2), round_,
                  stop, debounce=0.0)
    assert len(rounds) == 2
    assert rounds[0].publish.created and not rounds[1].publish.changed
    assert rounds[1].sync.changed == [consumer]
    assert len(claims.functions_of(cache.load(site.cache_path),
                                   consumer)) == 2


def test_concurrent_publishers_converge(site):
    """Two agents publishing the same host at once (a restart overlapping
    the old process): generation conflicts are retried, not fatal."""
    inv = site.inventory()
    conf = site.conf()
    lost = copy.deepcopy(inv)
    lost.cards[0].status = model.STATUS_LOST
    errors = []

    def publish(target):
        try:
            publisher = agent.publisher_from_conf(conf)
            for _ in range(3):
                publisher.publish(target)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=publish, args=(inv,)),
               threading.Thread(target=publish, args=(inv,))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(site.tree()) == 7
    report = agent.publisher_from_conf(conf).publish(lost)
    assert sorted(report.updated) == sorted(
        [lost.cards[0].id] + [r.id for r in lost.cards[0].regions])
    region = site.region(inv, 0, 1)
    assert site.get(f"/resource_providers/{region}/inventories")[
        "inventories"][RC]["reserved"] == 4
