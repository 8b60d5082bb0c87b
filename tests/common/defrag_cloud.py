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

"""Placement (its own fixture, through ``tests.common.placement_host``)
holding two compute nodes with a card of two regions of 4 each, published
by our publisher, and servers' allocations as nova writes them: what
accel-defrag reads in the functional and the Watcher tests."""

import uuid

from accel_inventory import model
from accel_inventory import placement
from accel_inventory import provider_tree
from tests.common.placement_builders import HOST, make_card
from tests.common.placement_host import PROJECT, RC, USER

OTHER = "compute-2"
ROOT_INVENTORY = {"VCPU": {"total": 16}, "MEMORY_MB": {"total": 32768},
                  "DISK_GB": {"total": 500}}
SERVER = {"VCPU": 2, "MEMORY_MB": 2048, "DISK_GB": 10}


class Cloud:
    """Two compute nodes with a card of two regions of 4 each, of
    ``kind``."""

    def __init__(self, host, kind="pci"):
        self.host = host
        self.roots = {HOST: host.root,
                      OTHER: host.post("/resource_providers",
                                       {"name": OTHER})["uuid"]}
        self.regions = {}
        for serial, (name, root) in enumerate(self.roots.items(), 1):
            rp = host.get(f"/resource_providers/{root}")
            host.put(f"/resource_providers/{root}/inventories", {
                "resource_provider_generation": rp["generation"],
                "inventories": ROOT_INVENTORY})
            card = make_card(serial, regions=2, functions=4, kind=kind)
            report = placement.Publisher(host.raw, compute_node=name) \
                .publish(model.Inventory(hostname=name, cards=[card]))
            assert not report.failed
            self.regions[name] = [provider_tree.provider_uuid(name, r.id)
                                  for r in card.regions]
        self.servers = {}

    def boot(self, name, on, region, functions):
        consumer = str(uuid.uuid4())
        self.host.put(f"/allocations/{consumer}", {
            "allocations": {
                self.roots[on]: {"resources": SERVER},
                self.regions[on][region]: {"resources": {RC: functions}}},
            "project_id": PROJECT, "user_id": USER,
            "consumer_generation": None}, ok=(204,))
        self.servers[name] = consumer
        return consumer

    def fragmented(self):
        """compute-1: one server of 1 function in one region, two of 2 and
        1 in the other; compute-2: one of 3 in one region, one whole."""
        self.boot("s1", HOST, 0, 1)
        self.boot("s2", HOST, 1, 2)
        self.boot("s3", HOST, 1, 1)
        self.boot("s4", OTHER, 0, 3)
        return self
