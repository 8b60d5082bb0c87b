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

"""The planner as an OpenStack Watcher strategy, so that operators audit,
approve and run its moves with Watcher's own API, CLI and dashboard.

Goal ``accelerator_defragmentation`` (entry point ``watcher_goals``),
strategy ``accelerator_defragmentation`` (``watcher_strategies``): the
strategy reads the accelerators from placement through Watcher's own
keystone session (``accel_defrag.reader``), plans with
``accel_defrag.planner``, and emits one Watcher ``migrate`` action per
move (live where the server's kinds allow and Watcher's model has it
active, cold otherwise), each from and to the compute nodes of Watcher's
compute model, which it updates as it goes. Its efficacy: the whole
regions freed, the migrations, and regions freed per migration.

Loaded by Watcher's decision engine only (it imports watcher).
"""

from __future__ import annotations

from oslo_log import log
from watcher.common import exception
from watcher.decision_engine.goal import base as goal_base
from watcher.decision_engine.goal.efficacy import base as efficacy_base
from watcher.decision_engine.goal.efficacy import indicators
from watcher.decision_engine.model import element
from watcher.decision_engine.solution import efficacy
from watcher.decision_engine.strategy.strategies import base

from accel_inventory import contract
from accel_inventory import placement
from accel_defrag import planner
from accel_defrag import reader

LOG = log.getLogger(__name__)

NAME = "accelerator_defragmentation"


class FreedRegionsCount(indicators.IndicatorSpecification):
    def __init__(self):
        super().__init__(
            name="freed_regions_count",
            description="The whole accelerator regions the plan frees.",
            unit=None)

    @property
    def schema(self):
        return {"type": "integer", "minimum": 0}


class AcceleratorDefragmentationSpec(efficacy_base.EfficacySpecification):
    def get_indicators_specifications(self):
        return [FreedRegionsCount(), indicators.InstanceMigrationsCount()]

    def get_global_efficacy_indicator(self, indicators_map=None):
        value = 0.0
        if indicators_map and indicators_map.instance_migrations_count:
            value = (indicators_map.freed_regions_count
                     / indicators_map.instance_migrations_count)
        return [efficacy.Indicator(
            name="freed_regions_per_migration",
            description="Whole accelerator regions freed per server "
                        "migrated.", unit=None, value=value)]


class _Named:
    """The goal's and the strategy's names: Watcher asks each its own."""

    @classmethod
    def get_name(cls):
        return NAME

    @classmethod
    def get_display_name(cls):
        return "Accelerator defragmentation"

    @classmethod
    def get_translatable_display_name(cls):
        return "Accelerator defragmentation"


class AcceleratorDefragmentation(_Named, goal_base.Goal):
    """Free whole accelerator regions (a whole FPGA region, GPU, vGPU
    parent) with the fewest server migrations."""

    @classmethod
    def get_efficacy_specification(cls):
        return AcceleratorDefragmentationSpec()


class AcceleratorDefragmentationStrategy(_Named, base.BaseStrategy):
    """The fewest migrations that make ``count`` more whole regions of
    ``resource_class`` and ``size`` free (with ``max_moves``, the most
    within that many), as ``accel-defrag plan`` computes them."""

    # Placement requests in flight at once while reading the cloud.
    read_workers = reader.WORKERS

    @classmethod
    def get_goal_name(cls):
        return NAME

    @classmethod
    def get_config_opts(cls):
        return []

    @classmethod
    def get_schema(cls):
        return {
            "properties": {
                "resource_class": {
                    "description": "The regions' resource class "
                                   "(CUSTOM_ACCEL_...).",
                    "type": "string", "pattern": "^CUSTOM_[A-Z0-9_]+$"},
                "size": {"description": "The regions' size in functions.",
                         "type": "integer", "minimum": 1},
                "count": {"description": "How many more whole regions to "
                                         "free.",
                          "type": "integer", "minimum": 1, "default": 1},
                "max_moves": {"description": "At most this many "
                                             "migrations: the most regions "
                                             "they free.",
                              "type": "integer", "minimum": 0},
            },
            "required": ["resource_class", "size"],
        }

    def placement_client(self) -> placement.Client:
        """Placement through Watcher's own keystone session."""
        from keystoneauth1 import adapter

        return placement.Client(adapter.Adapter(
            session=self.osc.session, service_type="placement",
            interface=["internal", "public"]))

    def pre_execute(self):
        self._pre_execute()

    def do_execute(self, audit=None):
        params = self.input_parameters
        target = planner.Target(
            params["resource_class"], int(params["size"]),
            int(params.get("count", 1)), params.get("max_moves"))
        cluster = reader.read(self.placement_client(),
                              workers=self.read_workers)
        self.plan = planner.plan(cluster, target)
        model = self.compute_model
        migrated = 0
        for move in self.plan.moves:
            try:
                instance = model.get_instance_by_uuid(move.server)
                source = model.get_node_by_uuid(move.source)
                destination = model.get_node_by_uuid(move.destination)
            except (exception.InstanceNotFound,
                    exception.ComputeNodeNotFound) as e:
                # A consumer nova does not list (a migration in progress)
                # or a node out of the audit's scope: the later moves
                # were planned on this one, so none of them either.
                LOG.warning("accelerator_defragmentation: %s; the plan "
                            "stops before move %s of %s", e, migrated + 1,
                            move.server)
                break
            how = move.how
            if how == contract.MOVE_LIVE and (
                    instance.state != element.InstanceState.ACTIVE.value):
                how = contract.MOVE_COLD
            self.add_action_migrate(instance, how, source, destination)
            model.migrate_instance(instance, source, destination)
            migrated += 1
        self.migrated = migrated
        for note in self.plan.notes:
            LOG.info("accelerator_defragmentation: %s", note)

    def post_execute(self):
        self.solution.set_efficacy_indicators(
            freed_regions_count=len(self.plan.freed),
            instance_migrations_count=self.migrated)
