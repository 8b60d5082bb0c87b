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

"""Scenario 6: every server deleted, placement's allocations go, and one
agent round later every claim, assignment marker and tap in a node's
bridge goes too."""

import os

from tests.e2e.e2e_base import bridge_members, node_bridge
from tests.e2e.e2e_base import NodeServerBase

from accel_inventory import cache


class TestDelete(NodeServerBase):

    def test_delete_releases_everything_within_one_round(self):
        node_server, fpga = self.boot_node_and_fpga_servers(2)
        servers = [node_server, fpga]
        fid, iface = self.node_of(node_server)
        assert len(bridge_members(node_bridge(fid))) == 2

        for server in servers:
            self._delete_server(server)
            assert self._get_allocations_by_server_uuid(server["id"]) == {}
        round_ = self.agent_round()
        assert sorted(round_.sync.changed) == sorted(s["id"] for s in servers)
        assert cache.load(self.cache_path).claims == {}
        assert os.listdir(cache.markers_path(self.cache_path)) == []
        # The domain's tap went with it; the node's own interface stays in
        # its bridge, where the next server's start expects it.
        assert bridge_members(node_bridge(fid)) == [iface]
