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

"""Scenario 4: the host re-enumerates while servers are stopped, as after
a reboot with a card added ahead of ours. Addresses shift and the node's
interface is renamed (the new card's nodes take the old names); the
agent rescans. The node server starts with its node attached under the
new name; a server whose function vanished (its PF's VFs were not made
again) does not start, neither with the device now at its old address nor
with the whole PF, and nova records why."""

import shutil
import subprocess
import time

from tests.e2e.e2e_base import NODE_BDFS, NODE_IFACES
from tests.e2e.e2e_base import VCA_SERIAL, ip, node_bridge, wait_for
from tests.e2e.e2e_base import NodeServerBase

from accel_inventory import cache, sample

NEW_IFACES = ["e2enode2", "e2enode3"]
NEW_PEERS = ["e2epeer2", "e2epeer3"]


class TestReenumeration(NodeServerBase):

    def reboot_with_a_card_ahead(self, vanished_pf):
        """The sysfs tree and the node links after the reboot: an FPGA
        and a VCA card of the same models ahead of ours, ours one bus
        further, no VFs on our PF ``vanished_pf``; every bridge gone."""
        shutil.rmtree(self.fs.root)
        self.fs = sample.FakeSysfs(self.fs.root)
        for bus, dsn, skip in ((0x3b, 0x00E2E0000000FFFF, None),
                               (0x3c, 0x00E2E00000000001, vanished_pf)):
            for pf in range(3):
                pf_bdf = f"0000:{bus:02x}:00.{pf}"
                self.fs.add_pci(pf_bdf, *sample.SAMPLE_FPGA, numa_node=0,
                                dsn=dsn, totalvfs=4, driver="ifpga")
                if pf != skip:
                    self.fs.add_vfs(pf_bdf, [
                        f"0000:{bus:02x}:{1 + 3 * (bus - 0x3b) + pf:02x}.{vf}"
                        for vf in range(4)], "5001")
        self.fs.add_vca_card(0, "0000:5e:00.0", NODE_BDFS,
                             serial="VCA2-SN-AHEAD", interfaces=NODE_IFACES)
        self.fs.add_vca_card(1, "0000:60:00.0",
                             ["0000:61:00.0", "0000:61:00.1"],
                             serial=VCA_SERIAL, interfaces=NEW_IFACES)
        for fid in self.nodes:
            subprocess.run(["ip", "link", "delete", node_bridge(fid)],
                           capture_output=True)
        for old, new, peer in zip(NODE_IFACES, NEW_IFACES, NEW_PEERS,
                                  strict=True):
            self.addCleanup(subprocess.run, ["ip", "link", "delete", new],
                            capture_output=True)
            ip("link", "set", "dev", old, "down")
            ip("link", "set", "dev", old, "name", new)
            # The new card's node takes the old name, as the kernel would
            # give it.
            ip("link", "add", old, "type", "veth", "peer", "name", peer)

    def test_node_follows_its_rename_vanished_function_is_not_replaced(self):
        node_server, fpga = self.boot_node_and_fpga_servers(1)
        [fpga_fid] = self.claim(fpga).functions
        index = cache.load(self.cache_path).function_index()
        old_address = index[fpga_fid][2].address
        # VFs of PF n sit on bus 3b, device n + 1.
        vanished_pf = int(old_address.split(":")[2][:2], 16) - 1
        for server in (node_server, fpga):
            self._stop_server(server)

        self.reboot_with_a_card_ahead(vanished_pf)
        self.agent_round()

        since = time.time()
        self._start_server(node_server)
        self.assert_node_attached(node_server, since,
                                  also_held_by=[fpga["id"]])
        assert self.node_of(node_server)[1] in NEW_IFACES

        # The VF it held is gone (its PF's VFs were not made again); at its
        # old address is now the VF of the card ahead, same vendor and
        # product. The function keeps its id without a device, the PF is
        # not given in its place, and the start is refused: the reason
        # reaches nova and our log, in one line.
        _card, _region, function = cache.load(
            self.cache_path).function_index()[fpga_fid]
        assert function.address is None, function
        since = time.time()
        self.api.post_server_action(fpga["id"], {"os-start": None})
        event = wait_for(lambda: self.start_failure(fpga),
                         "nova's record of the refused start")
        reason = self.refusal_logged(fpga_fid)
        assert f"the device of {fpga_fid} (last at {old_address}) is gone" \
            in reason
        # The event says the start failed; the instance's fault (nova
        # keeps the libvirt error's text in its details) says why.
        assert event["result"] == "Error"
        name = self.api.get_server(fpga["id"])[
            "OS-EXT-SRV-ATTR:instance_name"]
        assert f"nova-accel: domain {name}: {reason}" in \
            self.fault_details(fpga)
        assert self._wait_for_state_change(fpga, "SHUTOFF")
        # No worker ran for a domain that never came up.
        assert self.claim(fpga).attach.get("at", 0) < since
