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

"""Scenarios 2 and 3: a server asking one IP-over-PCIe node gets the node's
interface on its bridge after ACTIVE, live only, and keeps it, exactly
once and with nothing left over, through nova's lifecycle operations."""

import io
import time

from accel_inventory import cache, cli, model
from tests.e2e.e2e_base import NODE_CLASS, NodeServerBase


class TestNodeServer(NodeServerBase):

    def test_node_interface_on_its_bridge_after_active(self):
        server, seconds = self.boot_node_server()
        assert self.domstate(server) == "running"
        assert seconds < 30, seconds
        assert self.held_functions(server, NODE_CLASS)

    def test_lifecycle_keeps_the_node_exactly_once(self):
        self.flags(allow_resize_to_same_host=True)
        server, _ = self.boot_node_server()
        held = self.held_functions(server, NODE_CLASS)

        def step(operation, *args, also_held_by=(), **kwargs):
            since = time.time()
            operation(server, *args, **kwargs)
            self.agent_round()
            self.assert_node_attached(server, since, also_held_by)
            assert self.domstate(server) == "running", operation.__name__
            return self.held_functions(server, NODE_CLASS)

        assert step(self._reboot_server) == held
        assert step(self._reboot_server, hard=True) == held

        self._stop_server(server)
        assert self.domstate(server) == "shut off"
        assert not self.claim(server).running
        assert step(self._start_server) == held

        # Paused and unpaused, the domain never stops: no hook, no worker.
        self.api.post_server_action(server["id"], {"pause": None})
        self._wait_for_state_change(server, "PAUSED")
        self.api.post_server_action(server["id"], {"unpause": None})
        self._wait_for_state_change(server, "ACTIVE")
        self.assert_node_attached(server, 0)

        # Managed save; resume is libvirt's restore of the saved domain,
        # whose live XML already holds the interface.
        self._suspend_server(server)
        assert step(self._resume_server) == held

        # Shelve offloads (allocations go); unshelve schedules again.
        self._shelve_server(server)
        round_ = self.agent_round()
        assert server["id"] in round_.sync.changed
        assert self.claim(server) is None
        # The node it ran with keeps what the tenant left on it: VCA2's
        # profile holds it for an operator (a node runs its own operating
        # system), and placement reserves it until they clear it.
        waiting = cache.load(self.cache_path).cleaning
        assert [(c.after, c.state) for c in waiting.values()] == [
            (server["id"], model.CLEANING_HELD)]
        assert cli.main(["--config-file", self.agent_config, "clear",
                         *waiting], out=io.StringIO()) == 0
        self.agent_round()
        assert cache.load(self.cache_path).cleaning == {}
        held = step(self._unshelve_server)
        assert sum(held.values()) == 1

        bigger = self.accel_flavor("node-128", {
            f"resources1:{NODE_CLASS}": "1"}, memory_mb=128)
        # Same host: while the resize waits to be confirmed, the migration
        # holds the old flavor's node (a revert goes back to it), so the
        # sync gives it the card's other node; the server keeps its own
        # (its domain runs). Confirming releases the migration's.
        since = time.time()
        self._resize_server(server, bigger)
        migration = self.get_migration_uuid_for_instance(server["id"])
        node = self.node_of(server)
        self.agent_round()
        self.assert_node_attached(server, since, also_held_by=[migration])
        assert self.held_functions(server, NODE_CLASS) == held
        assert self.node_of(server) == node
        self._confirm_resize(server)
        self.agent_round()
        self.assert_node_attached(server, 0)
        assert self.held_functions(server, NODE_CLASS) == held

        assert step(self._rebuild_server, self.image) == held
