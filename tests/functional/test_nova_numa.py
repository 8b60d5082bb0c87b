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

"""NUMA affinity in real nova: nova's libvirt functional base (the real
libvirt driver on nova's fake libvirt) with a host of two NUMA cells of
six CPUs (0-5 and 6-11; one of each shared, the others dedicated), our
agent scanning a fake sysfs tree of two FPGA cards, one on each node (two
regions of four functions each), and publishing it under the compute
node; our filter after NUMATopologyFilter, our weigher among nova's.
Placement is told to shuffle its candidates for every request. The guest
cells are nova's own (the instance's NUMA topology as the compute
claimed it); the domain XML the hook judges is the one nova's driver
defined."""

import io
import os

import fixtures
from nova.tests.fixtures import libvirt as fakelibvirt
from nova.tests.functional.api import client
from nova.tests.functional.libvirt import base

from accel_inventory import agent, cache, provider_tree, sample
from accel_inventory.contract import NUMA_AFFINITY_SPEC
from libvirt_hooks import hook
from tests.common.nova_base import NovaAccelMixin
from tests.common.scheduler_base import accel_scheduler_flags

HOST = "compute1"
RC = "CUSTOM_ACCEL_FPGA"
CPUS = {0: range(0, 6), 1: range(6, 12)}


class NumaHostTest(NovaAccelMixin, base.ServersTestBase):

    def setUp(self):
        accel_scheduler_flags(self, before=["NUMATopologyFilter"])
        self.flags(cpu_shared_set="0,6", cpu_dedicated_set="1-5,7-11",
                   group="compute")
        super().setUp()
        # Servers without networks, and their NUMA topology (2.78).
        self.api.microversion = self.admin_api.microversion = "2.78"
        self.placement.fixture.conf_fixture.config(
            randomize_allocation_candidates=True, group="placement")
        # The domain XML nova's driver defines, as the hook gets it.
        self.defined = {}
        real_define = fakelibvirt.Connection.defineXML

        def define(connection, xml):
            domain = real_define(connection, xml)
            self.defined[domain.UUIDString()] = xml
            return domain

        self.useFixture(fixtures.MonkeyPatch(
            "nova.tests.fixtures.libvirt.Connection.defineXML", define))
        self.start_compute(HOST, host_info=fakelibvirt.HostInfo(
            cpu_nodes=2, cpu_sockets=1, cpu_cores=6, cpu_threads=1))
        tmp = self.useFixture(fixtures.TempDir()).path
        self.fs = sample.FakeSysfs(os.path.join(tmp, "sys"))
        for node, cpus in CPUS.items():
            self.fs.add_numa_node(node, list(cpus))
        # One card per node, two regions (PFs) of four functions (VFs).
        for node, bus in ((0, 0x3b), (1, 0xaf)):
            for pf in range(2):
                pf_bdf = f"0000:{bus:02x}:00.{pf}"
                self.fs.add_pci(pf_bdf, *sample.SAMPLE_FPGA, numa_node=node,
                                dsn=0x00A0000000000000 + bus, totalvfs=4,
                                driver="ifpga")
                self.fs.add_vfs(pf_bdf, [f"0000:{bus:02x}:{1 + pf:02x}.{vf}"
                                         for vf in range(4)], "5001")
        self.cache_path = os.path.join(tmp, "inventory.json")
        _config, self.agent_conf = self.accel_config(
            tmp, HOST, self.cache_path)
        self.agent_conf.set_override("sysfs_root", self.fs.root,
                                     group="inventory")
        # The hook's configuration: this tree and this cache.
        self.hook_config = os.path.join(tmp, "hook.conf")
        with open(self.hook_config, "w") as f:
            f.write(f"[inventory]\nsysfs_root = {self.fs.root}\n"
                    f"cache_path = {self.cache_path}\n[libvirt_hooks]\n"
                    f"log_file = {os.path.join(tmp, 'hook.log')}\n")
        self.publisher = agent.publisher_from_conf(self.agent_conf)
        self.agent_round()
        inv = cache.load(self.cache_path)
        self.node_of = {provider_tree.provider_uuid(HOST, r.id): c.numa_node
                        for c in inv.cards for r in c.regions}
        assert sorted(self.node_of.values()) == [0, 0, 1, 1]
        self.flavors = {}

    def agent_round(self):
        return agent.run_round(self.agent_conf, self.publisher, rescan=True)

    def flavor(self, policy=None, pinned=True):
        key = (policy, pinned)
        if key not in self.flavors:
            spec = {f"resources1:{RC}": "1"}
            if pinned:
                spec["hw:cpu_policy"] = "dedicated"
            if policy:
                spec[NUMA_AFFINITY_SPEC] = policy
            self.flavors[key] = self._create_flavor(
                name=f"fpga-{policy}-{pinned}", vcpu=2, memory_mb=512,
                disk=1, extra_spec=spec)
        return self.flavors[key]

    def boot(self, **flavor):
        return self._create_server(flavor_id=self.flavor(**flavor),
                                   networks="none")

    def region_of(self, server):
        allocations = self._get_allocations_by_server_uuid(server["id"])
        [region] = [rp for rp, alloc in allocations.items()
                    if RC in alloc["resources"]]
        return region

    def cells_of(self, server):
        """The host cells of the server's guest, as nova's API says."""
        topology = self.admin_api.api_get(
            f"/servers/{server['id']}/topology").body
        return {node["host_node"] for node in topology["nodes"]}

    def partly_used_region_on(self, node):
        """A server without NUMA topology holding one function of a region
        on ``node`` (booted until placement's shuffle puts it there):
        packing alone sends the next requests to that region."""
        while True:
            server = self.boot(pinned=False)
            region = self.region_of(server)
            if self.node_of[region] == node:
                return region
            self._delete_server(server)

    def prepare(self, server):
        """Our hook at ``prepare begin`` of the domain nova defined."""
        name = self.admin_api.get_server(server["id"])[
            "OS-EXT-SRV-ATTR:instance_name"]
        err = io.StringIO()
        self.useFixture(fixtures.EnvironmentVariable("NOVA_ACCEL_CONFIG",
                                                     self.hook_config))
        rc = hook.main([name, "prepare", "begin", "-"], stdin=io.BytesIO(
            self.defined[server["id"]].encode()), stdout=io.StringIO(),
            stderr=err)
        return rc, err.getvalue()

    # -- the tests

    def test_pinned_servers_under_required_get_regions_on_their_cell(self):
        # A partly used region on node 1 packs best for every server.
        self.partly_used_region_on(1)
        servers = [self.boot(policy="required") for _ in range(4)]
        # The ten dedicated CPUs hold four such servers, two per cell.
        cells = [self.cells_of(s) for s in servers]
        assert sorted(min(c) for c in cells) == [0, 0, 1, 1]
        for server, cell in zip(servers, cells, strict=True):
            assert {self.node_of[self.region_of(server)]} == cell

    def test_preferred_prefers_a_region_on_its_cell(self):
        # Packing alone would take the partly used region on node 1.
        self.partly_used_region_on(1)
        server = self.boot(policy="preferred")
        # Nova's fit, both cells free: cell 0.
        assert self.cells_of(server) == {0}
        assert self.node_of[self.region_of(server)] == 0

    def test_servers_without_a_numa_topology_are_unaffected(self):
        used = self.partly_used_region_on(0)
        # Its flavor names a policy, but without a NUMA topology there
        # is no cell to be near: packing's region, as without the policy.
        for policy in ("required", None):
            server = self.boot(policy=policy, pinned=False)
            assert self.region_of(server) == used
        # Nova's API validates the policy's value (our validator; extra
        # specs are validated from microversion 2.86).
        self.admin_api.microversion = "2.86"
        flavor = self.flavor(pinned=False)
        error = self.assertRaises(
            client.OpenStackApiException, self.admin_api.post_extra_spec,
            flavor, {"extra_specs": {NUMA_AFFINITY_SPEC: "legacy"}})
        assert error.response.status_code == 400

    def test_a_mismatch_the_filter_could_not_prevent_is_refused(self):
        server = self.boot(policy="required")
        [cell] = self.cells_of(server)
        region = self.region_of(server)
        assert self.node_of[region] == cell
        self.agent_round()  # the sync assigns the server its function
        assert self.prepare(server) == (0, "")
        # The firmware reports the card's functions on the other node now
        # (the scheduler had the region's trait, published before).
        inv = cache.load(self.cache_path)
        [functions] = [r.functions for c in inv.cards for r in c.regions
                       if provider_tree.provider_uuid(HOST, r.id) == region]
        for function in functions:
            self.fs.set_numa_node(function.address, 1 - cell)
        rc, err = self.prepare(server)
        assert rc == 1
        [line] = err.splitlines()
        [fid] = cache.load(self.cache_path).claims[server["id"]].functions
        assert f"{fid} (" in line and f"on NUMA node {1 - cell}" in line
        assert f"NUMA node(s) {cell} of the guest's CPUs" in line
        assert f"{NUMA_AFFINITY_SPEC}=required" in line
