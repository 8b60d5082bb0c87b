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

"""Scenario 1, the meeting, through nova's real libvirt driver: servers
asking 1, 2 and 1 FPGA functions share one region, and a server asking
two whole regions gets the other two; all four run."""

import time

from tests.e2e.e2e_base import FPGA_CLASS, REGION_SIZE, LibvirtE2ETestCase

from accel_inventory import cache
from accel_inventory import claim_sync, provider_tree

WHOLE_REGION = f"CUSTOM_ACCEL_REGION_SIZE_{REGION_SIZE}"


class TestMeeting(LibvirtE2ETestCase):

    def regions(self):
        """The FPGA card's region providers, by region id."""
        inv = cache.load(self.cache_path)
        return {provider_tree.provider_uuid(self.nodename, r.id): r
                for c in inv.cards if c.kind == "pci" for r in c.regions}

    def test_three_small_servers_share_a_region_two_whole_regions_fit(self):
        regions = self.regions()
        small = {n: self.accel_flavor(f"fpga-{n}", {
            f"resources1:{FPGA_CLASS}": str(n)}) for n in (1, 2)}
        whole = self.accel_flavor("fpga-2-regions", {
            "group_policy": "isolate",
            f"resources1:{FPGA_CLASS}": str(REGION_SIZE),
            f"trait1:{WHOLE_REGION}": "required",
            f"resources2:{FPGA_CLASS}": str(REGION_SIZE),
            f"trait2:{WHOLE_REGION}": "required"})
        since = time.time()
        servers = [self.boot(small[n]) for n in (1, 2, 1)]
        servers.append(self.boot(whole))

        held = [self.held_functions(s, FPGA_CLASS) for s in servers]
        [shared] = held[0]
        assert held[:3] == [{shared: 1}, {shared: 2}, {shared: 1}]
        assert held[3] == {rp: REGION_SIZE for rp in regions if rp != shared}
        for server in servers:
            assert self.domstate(server) == "running"

        # The agent's sync gives each server functions of the regions
        # placement allocated it, none twice.
        round_ = self.agent_round()
        assert sorted(round_.sync.changed) == sorted(s["id"] for s in servers)
        taken = []
        for server, allocation in zip(servers, held, strict=True):
            claim = self.claim(server)
            assert claim.source == claim_sync.CLAIM_SOURCE
            by_region = {}
            for fid in claim.functions:
                region = fid.rsplit("/", 1)[0]
                by_region[region] = by_region.get(region, 0) + 1
            assert by_region == {regions[rp].id: n
                                 for rp, n in allocation.items()}
            taken += claim.functions
        assert len(taken) == len(set(taken)) == 3 * REGION_SIZE

        # The worker each domain's start launched was waiting for that
        # sync; it tries to plug each function as a PCI hostdev. This
        # machine has no VFIO and the functions are in the fake sysfs only,
        # so libvirt refuses ("host doesn't support passthrough of host PCI
        # devices"): the worker asked for each function's own address, the
        # reason is recorded, the domain runs on, its XML unchanged (no
        # hostdev).
        index = cache.load(self.cache_path).function_index()
        for server in servers:
            record = self.attach_record(server, since)
            for fid in record.functions:
                outcome = record.attach["devices"][fid]
                assert outcome["state"] == "failed", outcome
                assert outcome["device"] == f"pci {index[fid][2].address}"
                assert "passthrough" in outcome["reason"], outcome
            assert not record.running
            assert self.domstate(server) == "running"
            assert self.dumpxml(server).find("devices/hostdev") is None
