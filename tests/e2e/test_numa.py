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

"""NUMA affinity through nova's real libvirt driver on this machine's
libvirtd, whose host has one NUMA node: a server with a NUMA topology
(``hw:numa_nodes=1``) under ``required`` gets a region of the FPGA on
node 0 and starts; once the firmware reports that region's functions on
node 1, its start is refused by the hook and nova records why."""

from accel_inventory import cache
from accel_inventory.contract import NUMA_AFFINITY_SPEC
from tests.e2e.e2e_base import FPGA_CLASS, LibvirtE2ETestCase, wait_for


class TestNumaAffinity(LibvirtE2ETestCase):

    def test_a_required_server_starts_and_a_far_function_is_refused(self):
        flavor = self.accel_flavor("fpga-numa", {
            f"resources1:{FPGA_CLASS}": "1", "hw:numa_nodes": "1",
            NUMA_AFFINITY_SPEC: "required"})
        server = self.boot(flavor)
        assert self.domstate(server) == "running"
        # Nova put the guest's memory on host node 0.
        assert self.dumpxml(server).find(
            "numatune/memnode").get("nodeset") == "0"
        self.agent_round()  # the sync assigns its function
        self.attach_record(server, 0)  # (the plug fails for want of VFIO)
        [fid] = self.claim(server).functions
        self._stop_server(server)

        # The firmware reports the region's functions on node 1 now.
        inv = cache.load(self.cache_path)
        region = inv.function_index()[fid][1]
        for function in region.functions:
            self.fs.set_numa_node(function.address, 1)
        self.api.post_server_action(server["id"], {"os-start": None})
        wait_for(lambda: self.start_failure(server),
                 "nova's record of the refused start")
        reason = self.refusal_logged(fid)
        assert "on NUMA node 1: not on the NUMA node(s) 0" in reason
        name = self.api.get_server(server["id"])[
            "OS-EXT-SRV-ATTR:instance_name"]
        assert f"nova-accel: domain {name}: {reason}" in \
            self.fault_details(server)
        assert self._wait_for_state_change(server, "SHUTOFF")
