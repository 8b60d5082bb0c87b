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

"""Scenario 5: libvirtd restarts while domains run (libvirt runs the
``reconnect`` hook for each, and a non-zero exit would kill its qemu), then
nova-compute restarts: every domain survives with the same qemu, and
nothing is attached a second time."""

from tests.e2e.e2e_base import bridge_members, bridges_of, node_bridge
from tests.e2e.e2e_base import NodeServerBase

from accel_inventory import cache


class TestRestarts(NodeServerBase):

    def snapshot(self, servers):
        """What must not change across a restart: each domain's qemu (its
        id), its bridges, its attach record; the node bridge's ports."""
        inv = cache.load(self.cache_path)
        fid, _ = self.node_of(servers[0])
        return ({s["id"]: (self.domain(s).ID(), bridges_of(self.dumpxml(s)),
                           inv.claims[s["id"]].attach) for s in servers},
                bridge_members(node_bridge(fid)))

    def assert_unchanged(self, servers, before):
        for server in servers:
            assert self.domstate(server) == "running"
            assert self.api.get_server(server["id"])["status"] == "ACTIVE"
        # An agent round after the restart re-attaches nothing either.
        self.agent_round()
        assert self.snapshot(servers) == before

    def test_domains_survive_libvirtd_and_nova_compute_restarts(self):
        node_server, fpga = self.boot_node_and_fpga_servers(1)
        servers = [node_server, fpga]
        before = self.snapshot(servers)
        [(_, bridges, _)] = [before[0][node_server["id"]]]
        assert len(bridges) == 1

        self.machine["libvirtd"].restart([s["id"] for s in servers])
        self.assert_unchanged(servers, before)

        self.compute = self.restart_compute_service(self.compute)
        self.assert_unchanged(servers, before)
