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

"""The accelerator_defragmentation strategy inside Watcher's own code:
Watcher's strategy test base (which stands a compute model in for the
collector's), its decision-engine model, its loaders finding the goal
and the strategy by their entry points, its solution and efficacy, and
its migrate action's schema checking each action; the accelerators come
from real placement (its own fixture). Watcher and nova cannot share a
process (each picks oslo.service's backend), so tox runs these apart."""

import pathlib
import tempfile
from unittest import mock

import jsonschema
# First: Watcher's test package picks oslo.service's threading backend,
# which must happen before any other Watcher module picks the default.
from watcher.tests.unit.decision_engine.strategy.strategies import test_base
from placement.tests.functional.fixtures import placement as placement_fx
from watcher.applier.actions import migration
from watcher.common import utils
from watcher.decision_engine.loading import default
from watcher.decision_engine.model import element
from watcher.decision_engine.model import model_root

from accel_defrag import watcher as defrag_watcher
from tests.common.defrag_cloud import OTHER, Cloud
from tests.common.placement_builders import HOST
from tests.common.placement_host import RC, Host


class StrategyTest(test_base.TestBaseStrategy):
    kind = "pci"

    def setUp(self):
        super().setUp()
        service = placement_fx.PlacementFixture()
        service.setUp()
        self.addCleanup(service.cleanUp)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

        self.host = Host(service.endpoint, pathlib.Path(self.tmp.name))
        self.cloud = Cloud(self.host, kind=self.kind).fragmented()
        self.model = self.watcher_model()
        self.m_c_model.return_value = self.model
        self.strategy = default.DefaultStrategyLoader().load(
            defrag_watcher.NAME)
        self.strategy.input_parameters = utils.Struct(
            {"resource_class": RC, "size": 4, "count": 1})
        client = self.host.raw
        patcher = mock.patch.object(
            defrag_watcher.AcceleratorDefragmentationStrategy,
            "placement_client", return_value=client)
        patcher.start()
        self.addCleanup(patcher.stop)
        # Placement's fixture shares one SQLite connection between its
        # requests: one at a time.
        self.strategy.read_workers = 1

    def watcher_model(self, stopped=()):
        """Watcher's compute model of the same cloud: its nodes are
        nova's compute nodes (placement's roots), its instances nova's
        servers (placement's consumers)."""
        model = model_root.ModelRoot()
        for index, (name, root) in enumerate(self.cloud.roots.items()):
            model.add_node(element.ComputeNode(
                id=index, uuid=root, hostname=name, memory=32768,
                memory_mb_reserved=0, memory_ratio=1.0, disk=500,
                disk_gb_reserved=0, disk_ratio=1.0, vcpus=16,
                vcpu_reserved=0, vcpu_ratio=1.0))
        hosts = {"s1": HOST, "s2": HOST, "s3": HOST, "s4": OTHER}
        for name, consumer in self.cloud.servers.items():
            instance = element.Instance(
                uuid=consumer, name=name, memory=2048, disk=10, vcpus=2,
                host=hosts[name], hypervisor_hostname=hosts[name],
                state="stopped" if name in stopped else "active",
                project_id="91ffffe3-78a0-4152-acd2-8310ff274dc9",
                metadata={})
            model.add_instance(instance)
            model.map_instance(instance, model.get_node_by_uuid(
                self.cloud.roots[hosts[name]]))
        return model


class TestColdStrategy(StrategyTest):

    def test_the_goal_and_strategy_load_by_their_entry_points(self):
        goal = default.DefaultGoalLoader().load(defrag_watcher.NAME)
        assert isinstance(goal, defrag_watcher.AcceleratorDefragmentation)
        assert self.strategy.goal.name == defrag_watcher.NAME
        jsonschema.validate({"resource_class": RC, "size": 4, "count": 2},
                            self.strategy.get_schema())
        with self.assertRaises(jsonschema.ValidationError):
            jsonschema.validate({"resource_class": RC},
                                self.strategy.get_schema())

    def test_the_plan_becomes_watcher_migrate_actions(self):
        solution = self.strategy.execute()

        [action] = solution.actions
        assert action["action_type"] == "migrate"
        params = action["input_parameters"]
        assert params == {"migration_type": "cold", "source_node": HOST,
                          "destination_node": OTHER, "resource_name": "s1",
                          "resource_id": self.cloud.servers["s1"]}
        # What Watcher's applier will accept from it.
        jsonschema.validate(params,
                            migration.Migrate(config=mock.Mock()).schema)
        # Watcher's model follows the plan.
        assert self.model.get_node_by_instance_uuid(
            self.cloud.servers["s1"]).hostname == OTHER
        indicators = {i.name: i.value
                      for i in solution.efficacy_indicators}
        assert indicators == {"freed_regions_count": 1,
                              "instance_migrations_count": 1}
        [efficacy] = solution.global_efficacy
        assert (efficacy["name"], efficacy["value"]) == (
            "freed_regions_per_migration", 1.0)

    def test_a_consumer_watcher_does_not_know_stops_the_plan(self):
        self.model.remove_instance(self.model.get_instance_by_uuid(
            self.cloud.servers["s1"]))
        solution = self.strategy.execute()
        assert solution.actions == []


class TestLiveStrategy(StrategyTest):
    """vGPU cards: live where Watcher's model has the server active."""

    kind = "mdev"

    def test_active_moves_live(self):
        [action] = self.strategy.execute().actions
        assert action["input_parameters"]["migration_type"] == "live"

    def test_stopped_moves_cold(self):
        self.model = self.watcher_model(stopped={"s1"})
        self.m_c_model.return_value = self.model
        [action] = self.strategy.execute().actions
        assert action["input_parameters"]["migration_type"] == "cold"
