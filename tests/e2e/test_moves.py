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

"""Servers that hold accelerators move, through nova's libvirt driver
(nova_accel_compute's, as compute hosts run it) on the one libvirtd:
after every step placement's allocations and the cache's claims agree,
per consumer and region, and the domain holds the node its claim names.

- A resize on the host and its revert, a resize and its confirm; a cold
  migration to this host (from nova's fake driver: nova's libvirt driver
  never cold-migrates to its own host) and its revert, another and its
  confirm: the migration's consumer holds the source's claim, the new
  domain gets the functions of the new allocation, the revert gives the
  old ones back, the confirm releases them.
- Evacuation: the failed host is nova's fake driver (nothing of it runs
  once it is down); the destination is the libvirt host, whose own node
  its worker plugs; the failed host's agent releases the old claim when
  that host comes back and nova removes its allocation there, and no
  other server's.
- Live migration: a second nova-compute (its own hypervisor name and
  node) on the same libvirtd, with its own accelerators, cache and agent.
  libvirt cannot migrate a domain to the daemon it runs under, so only
  libvirt's part is emulated: the destination's hooks run with that
  host's configuration on the XML nova gives libvirt (the domain is the
  same one), and the source's as its qemu would end. Everything else is
  nova's and ours: the pre-checks, the unplug before (the guest ejects
  the node like an OS), nova's post-migration steps, the destination's
  worker plugging its node. The refusal of a server holding an FPGA
  function is asserted the same way.
"""

import io
import os
import pathlib
import subprocess
import sys
import time

import fixtures
import libvirt
from nova.virt.libvirt import host as libvirt_host
from nova.virt.libvirt import migration as libvirt_migration
from oslo_utils import uuidutils

from accel_inventory import agent, cache, claims, cli, identity, model
from accel_inventory import profiles
from accel_inventory import provider_tree, sample, sysfs
from libvirt_hooks import hostview
from tests.e2e.e2e_base import (FPGA_CLASS, HOST, NODE_BDFS, NODE_CLASS,
                                NodeServerBase, bridge_members, bridges_of,
                                ip, node_bridge, wait_for)

OTHER = "compute2"
# The second compute's hypervisor name: the libvirtd it shares names
# itself once, and placement wants one provider name per node.
OTHER_NODE = "compute2-hv"
OTHER_IFACES = ["e2enode2", "e2enode3"]
OTHER_PEERS = ["e2epeer2", "e2epeer3"]
HOOK = os.path.join(os.path.dirname(sys.executable), "accel-libvirt-hook")


class Host:
    """A compute host's accelerators: its sysfs tree, cache and agent."""

    def __init__(self, test, nodename, root, cache_path, config, conf):
        self.nodename, self.root, self.cache_path = nodename, root, cache_path
        self.config, self.conf = config, conf
        self.publisher = agent.publisher_from_conf(conf)
        self.test = test

    def round(self):
        return agent.run_round(self.conf, self.publisher)

    def claims(self):
        return cache.load(self.cache_path).claims

    def agreement(self):
        """Placement's allocations on this host's regions equal the
        cache's claims, per consumer and region; returns the cache."""
        inv = cache.load(self.cache_path)
        assert claims.inconsistencies(inv) == []
        placed, claimed = {}, {}
        for card in inv.cards:
            for region in card.regions:
                rp = provider_tree.provider_uuid(inv.hostname, region.id)
                for consumer, allocation in self.test.placement.get(
                        f"/resource_providers/{rp}/allocations").body[
                            "allocations"].items():
                    amount = allocation["resources"].get(
                        region.resource_class, 0)
                    if amount:
                        placed[consumer, region.id] = amount
        index = inv.function_index()
        for claim in inv.claims.values():
            for fid in claim.functions:
                key = (claim.consumer, index[fid][1].id)
                claimed[key] = claimed.get(key, 0) + 1
        assert claimed == placed
        return inv

    def record(self, server, since):
        """The worker's record for ``server`` once written after
        ``since``."""
        def written():
            claim = self.claims().get(server["id"])
            return claim if claim and claim.attach.get("at", 0) > since \
                else None
        return wait_for(written, f"the attach worker's record for "
                        f"{server['id']} on {self.nodename}")

    def plugged_node(self, server, since):
        """After the worker's record newer than ``since``: the running
        domain has one interface, on the bridge of the node its claim here
        names, which holds that node's interface and the domain's tap; the
        persistent definition has none. Returns the node."""
        record = self.record(server, since)
        index = cache.load(self.cache_path).function_index()
        [node] = [f for f in record.functions
                  if index[f][0].kind == "ippcie"]
        assert record.attach["devices"][node]["state"] in (
            "attached", "present"), record.attach
        assert record.running
        name = node_bridge(node)
        live = self.test.dumpxml(server)
        assert bridges_of(live) == [name]
        [tap] = [t.get("dev") for t in live.iterfind(
            f"devices/interface/source[@bridge='{name}']/../target")]
        iface = hostview.node_interface(self.root, index[node][2].address)
        assert bridge_members(name) == sorted([iface, tap])
        assert bridges_of(self.test.dumpxml(server, inactive=True)) == []
        return node


class MovesBase(NodeServerBase):

    def setUp(self):
        super().setUp()
        self.here = Host(self, self.nodename, self.fs.root, self.cache_path,
                         self.machine["config"], self.agent_conf)

    def start_other_host(self, *, fake):
        """compute2 with a VCA card of two nodes and an FPGA card of one
        region: nova's fake driver, or the libvirt driver on this libvirtd
        under a name of its own."""
        if fake:
            self.flags(compute_driver="fake.MediumFakeDriver")
            compute = self._start_compute(OTHER)
            self.flags(compute_driver=self.compute_driver)
            nodename = OTHER
        else:
            node_uuid = uuidutils.generate_uuid()
            real = libvirt_host.Host.__init__

            def named(host, *args, **kwargs):
                real(host, *args, **kwargs)
                host.get_hostname = lambda: OTHER_NODE
                host._node_uuid = node_uuid

            with fixtures.MonkeyPatch(
                    "nova.virt.libvirt.host.Host.__init__", named):
                compute = self._start_compute(OTHER)
            nodename = OTHER_NODE
        # nova's test base points CONF.host at the last compute started;
        # the first one's driver reads it (a confirm undefines the domain
        # of an instance on another host).
        self.flags(host=HOST)
        directory = pathlib.Path(self.useFixture(fixtures.TempDir()).path)
        root = str(directory / "sys")
        fs = sample.FakeSysfs(root)
        fs.add_vca_card(0, "0000:5e:00.0", NODE_BDFS,
                        serial="VCA2-SN-E2E-OTHER", interfaces=OTHER_IFACES)
        fs.add_pci("0000:3b:00.0", *sample.SAMPLE_FPGA, numa_node=0,
                   dsn=0x00E2E00000000002, totalvfs=4, driver="ifpga")
        fs.add_vfs("0000:3b:00.0", [f"0000:3b:01.{vf}" for vf in range(4)],
                   "5001")
        for iface, peer in zip(OTHER_IFACES, OTHER_PEERS, strict=True):
            subprocess.run(["ip", "link", "delete", iface],
                           capture_output=True)
            ip("link", "add", iface, "type", "veth", "peer", "name", peer)
            self.addCleanup(subprocess.run, ["ip", "link", "delete", iface],
                            capture_output=True)
        cache_path = str(directory / "inventory.json")
        scanned = sysfs.scan_cards(root,
                                   profiles=profiles.load_profiles(None))
        inv, _ = identity.reconcile(None, scanned.cards, nodename)
        cache.save(cache_path, inv)
        for fid in (f.id for c in inv.cards for f in c.functions()):
            self.addCleanup(subprocess.run,
                            ["ip", "link", "delete", node_bridge(fid)],
                            capture_output=True)
        config, conf = self.accel_config(
            str(directory), nodename, cache_path,
            f"sysfs_root = {root}\n[libvirt_hooks]\n"
            f"log_file = {directory / 'hook.log'}\n")
        other = Host(self, nodename, root, cache_path, config, conf)
        other.round()
        return compute, other


class TestResizeOnTheHost(MovesBase):

    def setUp(self):
        super().setUp()
        self.flags(allow_resize_to_same_host=True)
        self.server, _ = self.boot_node_server()
        [self.first] = self.claim(self.server).functions
        self.here.agreement()

    def moved(self, move):
        """After ``move`` (a resize, waiting for VERIFY_RESIZE) and
        the agent's round: the migration's consumer holds the source's
        claim, which a revert needs, and the new domain runs with the new
        allocation's node; returns the migration and that node."""
        since = time.time()
        move()
        [migration] = [m["uuid"] for m in self.api.api_get(
            f"/os-migrations?instance_uuid={self.server['id']}").body[
                "migrations"] if m["status"] == "finished"]
        self.agent_round()
        inv = self.here.agreement()
        assert claims.functions_of(inv, migration) == [self.first]
        assert inv.claims[migration].moved_from == self.server["id"]
        node = self.here.plugged_node(self.server, since)
        assert node != self.first
        return migration, node

    def reverted(self, migration, node):
        """A revert gives the server its first node back and releases the
        migration's claim; the node it had meanwhile went with its domain
        (only the node's own interface is left on its bridge)."""
        since = time.time()
        self._revert_resize(self.server)
        self.agent_round()
        inv = self.here.agreement()
        assert migration not in inv.claims
        assert self.here.plugged_node(self.server, since) == self.first
        assert self.claim(self.server).functions == [self.first]
        assert len(bridge_members(node_bridge(node))) == 1
        # The node the new domain ran with keeps what it left: VCA2's
        # profile holds it for an operator, who clears it.
        waiting = cache.load(self.cache_path).cleaning
        assert {f: c.state for f, c in waiting.items()} == {
            node: model.CLEANING_HELD}
        assert cli.main(["--config-file", self.agent_config, "clear",
                         node], out=io.StringIO()) == 0
        self.agent_round()
        assert cache.load(self.cache_path).cleaning == {}

    def test_resize_and_its_revert_then_a_resize_and_its_confirm(self):
        """Nova's libvirt driver resizes to its own host (with
        ``allow_resize_to_same_host``) but never cold-migrates there: its
        capability ``supports_migrate_to_same_host`` is False, and nova's
        prep_resize refuses that with UnableToMigrateToSelf
        (TestColdMigration moves to this host from another)."""
        # The new flavor asks an FPGA function besides the node.
        bigger = self.accel_flavor("node-fpga", {
            "group_policy": "none", f"resources1:{NODE_CLASS}": "1",
            f"resources2:{FPGA_CLASS}": "1"}, memory_mb=128)

        def resize():
            migration, node = self.moved(
                lambda: self._resize_server(self.server, bigger))
            # The worker asked for the FPGA function too (this machine has
            # no VFIO: libvirt refuses it, and says so).
            fpga = [f for f in self.claim(self.server).functions
                    if f != node]
            assert len(fpga) == 1
            outcome = self.claim(self.server).attach["devices"][fpga[0]]
            assert outcome["state"] == "failed"
            assert "passthrough" in outcome["reason"]
            return migration, node

        self.reverted(*resize())
        migration, node = resize()
        self._confirm_resize(self.server)
        self.agent_round()
        inv = self.here.agreement()
        assert migration not in inv.claims
        assert sorted(inv.claims) == [self.server["id"]]
        assert self.here.plugged_node(self.server, 0) == node
        assert self.domstate(self.server) == "running"


class TestColdMigration(MovesBase):
    """A cold migration to this host and its revert, then another and its
    confirm. The source is nova's fake driver, the destination nova's
    libvirt driver: the one libvirtd has one hook configuration (this
    host's), so a domain started for a second libvirt nova-compute there
    would be judged and plugged with this host's accelerators."""

    def setUp(self):
        super().setUp()
        # What a libvirt source returns: the disks it copied, here none
        # (nothing of the fake host exists); the destination builds the
        # server's disk from its image, as when the source's are gone.
        self.useFixture(fixtures.MonkeyPatch(
            "nova.virt.fake.FakeDriver.migrate_disk_and_power_off",
            lambda *args, **kwargs: "[]"))
        _compute2, self.other = self.start_other_host(fake=True)

    def migrated(self, server, first):
        """After the migration and both agents' rounds: the migration's
        consumer holds the source's claim; this host's worker plugged the
        node of the server's new allocation. Returns the migration and the
        node."""
        since = time.time()
        self._migrate_server(server)
        assert self.api.get_server(server["id"])[
            "OS-EXT-SRV-ATTR:host"] == HOST
        [migration] = [m["uuid"] for m in self.api.api_get(
            f"/os-migrations?instance_uuid={server['id']}").body[
                "migrations"] if m["status"] == "finished"]
        self.other.round()
        inv = self.other.agreement()
        assert claims.functions_of(inv, migration) == [first]
        assert inv.claims[migration].moved_from == server["id"]
        self.agent_round()
        self.here.agreement()
        return migration, self.here.plugged_node(server, since)

    def test_a_cold_migration_and_its_revert_then_one_confirmed(self):
        server = self._create_server(
            flavor_id=self.node_flavor, image_uuid=self.image,
            networks="none", host=OTHER)
        self.servers.append(server["id"])
        self.other.round()
        [first] = self.other.agreement().claims[server["id"]].functions

        migration, node = self.migrated(server, first)
        self._revert_resize(server)
        assert self.api.get_server(server["id"])[
            "OS-EXT-SRV-ATTR:host"] == OTHER
        self.agent_round()
        assert self.here.agreement().claims == {}
        # The node went with the destination's domain.
        assert len(bridge_members(node_bridge(node))) == 1
        self.other.round()
        inv = self.other.agreement()
        assert migration not in inv.claims
        assert inv.claims[server["id"]].functions == [first]

        migration, node = self.migrated(server, first)
        self._confirm_resize(server)
        self.other.round()
        assert self.other.agreement().claims == {}
        self.agent_round()
        assert sorted(self.here.agreement().claims) == [server["id"]]
        assert self.here.plugged_node(server, 0) == node
        assert self.domstate(server) == "running"


class TestEvacuation(MovesBase):

    def test_the_destination_plugs_its_own_the_failed_host_lets_go(self):
        compute2, other = self.start_other_host(fake=True)
        server = self._create_server(
            flavor_id=self.node_flavor, image_uuid=self.image,
            networks="none", host=OTHER)
        neighbour = self._create_server(
            flavor_id=self.node_flavor, image_uuid=self.image,
            networks="none", host=OTHER)
        self.servers += [server["id"], neighbour["id"]]
        other.round()
        other.agreement()
        kept = other.claims()[neighbour["id"]]

        # compute2 fails: its service stops and an operator forces it
        # down, then evacuates the server.
        compute2.stop()
        [service] = self.api.get_services(host=OTHER, binary="nova-compute")
        self.api.put_service_force_down(service["id"], True)
        # nova rebuilds it here, in the state nova's functional framework
        # leaves a server of a stopped compute service (SHUTOFF): the hook
        # guards and prepares the destination's start, and the sync gives
        # it a node of its own; it gets it when it runs.
        self.api.post_server_action(server["id"], {"evacuate": {}})
        wait_for(lambda: [m for m in self.api.api_get(
            f"/os-migrations?instance_uuid={server['id']}").body[
                "migrations"] if m["status"] == "done"],
            "the evacuation to be done")
        assert self._wait_for_state_change(server, "SHUTOFF")[
            "OS-EXT-SRV-ATTR:host"] == HOST
        self.agent_round()
        self.here.agreement()
        since = time.time()
        self._start_server(server)
        self.here.plugged_node(server, since)
        # The failed host still has its allocation, and its claim.
        assert server["id"] in other.agreement().claims

        # It comes back: nova removes what the evacuated server held
        # there; the agent releases that claim and nobody else's.
        self.restart_compute_service(compute2)
        self.api.put_service_force_down(service["id"], False)
        wait_for(lambda: not [
            rp for rp in self._get_allocations_by_server_uuid(server["id"])
            if rp in {provider_tree.provider_uuid(other.nodename, r.id)
                      for c in cache.load(other.cache_path).cards
                      for r in c.regions}],
            "nova removing the evacuated server's allocation on compute2")
        other.round()
        inv = other.agreement()
        assert server["id"] not in inv.claims
        assert inv.claims[neighbour["id"]] == kept
        self.agent_round()
        self.here.agreement()
        self.here.plugged_node(server, 0)


class TestLiveMigration(MovesBase):

    def setUp(self):
        super().setUp()
        self.migrated = set()
        self.useFixture(fixtures.MonkeyPatch(
            "nova.virt.libvirt.guest.Guest.migrate", self._migrate))
        real = libvirt_migration.find_job_type

        def job_type(guest, instance, logging_ok=True):
            # The domain runs on: here that is the destination's.
            if guest.uuid in self.migrated:
                return libvirt.VIR_DOMAIN_JOB_COMPLETED
            return real(guest, instance, logging_ok)

        self.useFixture(fixtures.MonkeyPatch(
            "nova.virt.libvirt.migration.find_job_type", job_type))
        # Before any domain exists: a new nova-compute refuses to start
        # on a hypervisor that already runs some.
        _compute2, self.other = self.start_other_host(fake=False)

    def _hook(self, config, name, op, subop, xml):
        done = subprocess.run(
            [HOOK, name, op, subop, "-"], input=xml, capture_output=True,
            env=dict(os.environ, NOVA_ACCEL_CONFIG=config))
        return done.returncode, done.stdout, done.stderr.decode()

    def _migrate(self, guest, destination, migrate_uri=None,
                 migrate_disks=None, destination_xml=None, flags=0,
                 bandwidth=0, parallel=None):
        """What libvirt does for a migration between two daemons, on this
        one: the destination's hooks on the XML nova gave, a refusal
        failing the migration as libvirt's "hook script execution
        failed", then the source's hooks as its qemu ends."""
        xml = destination_xml.encode()
        name = guest.name
        for op, subop in (("migrate", "begin"), ("prepare", "begin"),
                          ("start", "begin"), ("started", "begin")):
            rc, out, err = self._hook(self.other.config, name, op, subop, xml)
            if rc:
                raise libvirt.libvirtError(f"Hook script execution failed: "
                                           f"{err}")
            xml = out or xml
        for op, subop in (("stopped", "end"), ("release", "end")):
            self._hook(self.here.config, name, op, subop,
                       guest.get_xml_desc().encode())
        self.migrated.add(guest.uuid)

    def test_a_node_is_unplugged_before_and_the_destinations_after(self):
        server = self.boot(self.node_flavor, host=HOST)
        since = time.time()
        self.agent_round()
        self.here.plugged_node(server, since)
        [first] = self.claim(server).functions
        since = time.time()
        self._live_migrate(server)
        assert self.api.get_server(server["id"])[
            "OS-EXT-SRV-ATTR:host"] == OTHER
        # Unplugged here: the guest ejected it, the bridge holds only the
        # node's own interface.
        assert bridge_members(node_bridge(first)) == ["e2enode0"]
        self.agent_round()
        assert self.here.agreement().claims == {}
        self.other.round()
        self.other.agreement()
        node = self.other.plugged_node(server, since)
        [vca] = [c for c in cache.load(self.other.cache_path).cards
                 if c.kind == "ippcie"]
        assert node.startswith(f"{vca.id}/")
        assert self.domstate(server) == "running"

    def test_a_server_holding_an_fpga_function_is_refused_at_once(self):
        fpga = self.accel_flavor("fpga-1", {f"resources1:{FPGA_CLASS}": "1"})
        server = self.boot(fpga, host=HOST)
        self.agent_round()
        self.here.record(server, 0)
        before = self.here.agreement().claims[server["id"]]
        self._live_migrate(server, migration_expected_state="error")
        [action] = [a for a in self.api.get_instance_actions(server["id"])
                    if a["action"] == "live-migration"]
        events = self.api.get_instance_action_details(
            server["id"], action["request_id"])["events"]
        # The source's check says why, in one line (the event's details,
        # what 'openstack server event show' prints).
        [event] = [e for e in events
                   if e["event"] == "compute_check_can_live_migrate_source"]
        assert event["result"] == "Error", event
        assert event["details"] == (
            f"Migration pre-check error: cannot be live-migrated: its pci "
            f"functions move cold only (a live migration would lose their "
            f"state); cold-migrate it instead ('openstack server migrate "
            f"{server['id']}'): {before.functions[0]}")
        server = self.api.get_server(server["id"])
        assert server["OS-EXT-SRV-ATTR:host"] == HOST
        assert server["status"] == "ACTIVE"
        assert self.domstate(server) == "running"
        assert not self.migrated
        self.agent_round()
        assert self.here.agreement().claims[server["id"]] == before
        self.other.round()
        assert self.other.agreement().claims == {}
