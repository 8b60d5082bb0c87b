"""Scenario 4: the host re-enumerates while servers are stopped, as after
a reboot with a card added ahead of ours. Addresses shift and the node's
interface is renamed (the new card's nodes take the old names); the
agent rescans. The node server starts with its node attached under the
new name; a server whose function vanished (its PF's VFs were not made
again) is not given the device now at its old address."""

import shutil
import subprocess
import time

from e2e_base import NODE_BDFS, NODE_IFACES
from e2e_base import VCA_SERIAL, ip, node_bridge
from test_node_lifecycle import NodeServerBase

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

        # The VF it held is gone; at its old address is now the VF of the
        # card ahead, same vendor and product: the worker must not plug
        # that one (the guard's "held by a cached card" rule).
        since = time.time()
        self._start_server(fpga)
        outcome = self.attach_record(fpga, since).attach["devices"][fpga_fid]
        assert outcome["state"] == "failed", outcome
        assert outcome["device"] != f"pci {old_address}", outcome
        [line] = [line for line in (self.state / "hook.log").read_text()
                  .splitlines() if line.startswith(time.strftime("%Y"))
                  and fpga["id"] in line and "failed" in line
                  and outcome["device"] in line]
        assert outcome["reason"] in line
