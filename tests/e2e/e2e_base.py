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

"""Nova's functional framework with the real libvirt driver.

API, conductor, scheduler (our filter and weigher, as README's nova.conf
says), placement and one compute run in this process as nova's own
functional tests run them, except that the compute's driver is nova's
libvirt driver (nova-accel's ``AccelLibvirtDriver``) on the real
libvirtd (``virt_type = qemu``, TCG), so every domain is defined and
started by nova itself and runs our installed hook. The host's
accelerators are a fake sysfs tree (the hook's and the agent's
``sysfs_root``) whose IP-over-PCIe nodes are real veth interfaces; the
agent's rounds (scan, publish, sync) run here at the points where its
interval would run them.
"""

import io
import os
import shutil
import struct
import subprocess
import time

# Nova's test base forbids importing libvirt later (ImportModulePoison).
import libvirt  # noqa: F401
import fixtures
import pytest
from lxml import etree
from nova import context as nova_context
from nova import objects
from nova.tests import fixtures as nova_fixtures

from accel_inventory import agent, cache, identity, profiles, sample, sysfs
from libvirt_hooks import bridge, hostview
from nova_accel_compute import COMPUTE_DRIVER
from tests.common.scheduler_base import SchedulerTestBase

URI = "qemu:///system"
HOST = "compute1"
FPGA_CLASS = "CUSTOM_ACCEL_FPGA"
NODE_CLASS = "CUSTOM_ACCEL_VCA_NODE"
REGION_SIZE = 4
VCA_SERIAL = "VCA2-SN-E2E"
NODE_BDFS = ["0000:5f:00.0", "0000:5f:00.1"]
# Host-side ends of the nodes' veth pairs (the "virtual Ethernet
# interface per node" of a VCA card), and their far ends.
NODE_IFACES = ["e2enode0", "e2enode1"]
NODE_PEERS = ["e2epeer0", "e2epeer1"]
WAIT = 60.0


# The guest's boot sector (16-bit, assembled with GNU as):
#       sti                 ; the BIOS timer (18.2 Hz) wakes the hlt
#   1:  hlt
#       mov $0xae04, %dx    ; PIIX4 ACPI PCI hot-plug: slots to remove
#       in (%dx), %eax
#       test %eax, %eax
#       jz 1b
#       mov $0xae08, %dx    ; eject them, as an OS's ACPI _EJ0 does
#       out %eax, (%dx)
#       jmp 1b
GUEST_CODE = bytes.fromhex("fbf4ba04ae66ed6685c074f5ba08ae66efebee")


def boot_sector_disk() -> bytes:
    """A 1 MiB raw disk whose boot sector idles the CPU in ``hlt`` and
    answers PCI hot-unplug requests on nova's ``pc`` machine the way an
    operating system does (it ejects the slots QEMU asks it to): a guest
    that really boots (SeaBIOS loads it) and lets a device go when libvirt
    detaches it, cheaply. Its partition table holds one Linux partition
    (nova's image safety check refuses an MBR without one)."""
    sector = bytearray(512)
    sector[0:len(GUEST_CODE)] = GUEST_CODE
    sector[446:462] = struct.pack("<B3BB3BII", 0, 0, 2, 0, 0x83, 0, 0, 0,
                                  1, 2047)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector) + bytes(1024 * 1024 - 512)


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


def wait_for(predicate, what, timeout=WAIT, step=0.2):
    """``predicate()``'s first true value; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(step)


class LibvirtE2ETestCase(SchedulerTestBase):
    # nova's libvirt driver with nova-accel's live migration steps, by the
    # name nova.conf gives it and through nova's own loader.
    compute_driver = COMPUTE_DRIVER

    @pytest.fixture(autouse=True)
    def _machine(self, machine):
        self.machine = machine

    def setUp(self):
        # Guards of nova's test base that a real driver must pass: the
        # libvirt event thread would call sys.exit(1) (PoisonFunctions),
        # the compute reads psutil.net_if_addrs and os.uname, and these
        # tests read bridges in the real /sys (SysFsPoisonFixture).
        for guard in ("PoisonFunctions", "GenericPoisonFixture",
                      "SysFsPoisonFixture"):
            self.useFixture(fixtures.MonkeyPatch(
                f"nova.tests.fixtures.{guard}", fixtures.Fixture))
        # The driver's two endless event loops would sit on nova's default
        # pool, whose shutdown at teardown then waits forever.
        self.useFixture(fixtures.MonkeyPatch(
            "nova.virt.libvirt.host.thread_pool_factory", _OwnLoops()))
        tmp = self.useFixture(fixtures.TempDir()).path
        os.chmod(tmp, 0o755)  # qemu runs as libvirt-qemu
        state_path = os.path.join(tmp, "state")
        instances = os.path.join(tmp, "instances")
        os.makedirs(instances)
        self.flags(compute_driver=self.compute_driver, state_path=state_path,
                   instances_path=instances, shutdown_timeout=5)
        self.flags(virt_type="qemu", connection_uri=URI,
                   images_type="qcow2", wait_soft_reboot_seconds=5,
                   # Shelve's snapshot as raw, the format the image is
                   # registered with (unshelve checks content against it).
                   snapshot_image_format="raw", group="libvirt")
        self.flags(shutdown_retry_interval=1, group="compute")
        self.flags(enabled=False, group="vnc")
        self.flags(enabled=False, group="spice")
        super().setUp()
        # Nova 34 still uses noload(), which SQLAlchemy 2.1 deprecates, and
        # nova's WarningsFixture makes that an error on the paths a real
        # driver takes (stop, pause, suspend, lifecycle events).
        self.useFixture(fixtures.WarningsFilter([{
            "action": "ignore", "message": r"The noload\(\) option"}]))
        # Privileged calls run in this process (we are root); there is no
        # privsep helper here to start.
        self.useFixture(nova_fixtures.PrivsepFixture())
        self.servers = []
        self.addCleanup(self._destroy_domains)
        self.image = self.glance.create(
            None, {"name": "halt", "disk_format": "raw",
                   "container_format": "bare", "size": 1024 * 1024},
            data=io.BytesIO(boot_sector_disk()))["id"]
        self.compute = self._start_compute(HOST)
        self.nodename = objects.ComputeNodeList.get_all_by_host(
            nova_context.get_admin_context(), HOST)[0].hypervisor_hostname
        self.state = self.machine["state"]
        self.cache_path = str(self.state / "inventory.json")
        self._reset_host_state()
        self.fs = sample.FakeSysfs(str(self.state / "sys"))
        self.build_host()
        self.agent_config, self.agent_conf = self.accel_config(
            str(self.state), self.nodename, self.cache_path)
        self.agent_conf.set_override("sysfs_root", self.fs.root,
                                     group="inventory")
        self.publisher = agent.publisher_from_conf(self.agent_conf)
        self.agent_round()

    def _wait_for_state_change(self, server, expected_status,
                               max_retries=120, wait_for_fault_key=True):
        # A real hypervisor: a stop first waits shutdown_timeout for the
        # guest (which has no OS to answer ACPI), past nova's 10 x 0.5 s.
        return super()._wait_for_state_change(
            server, expected_status, max_retries, wait_for_fault_key)

    # -- the host

    def _reset_host_state(self):
        """No sysfs tree, cache or hook log of an earlier test: a last good
        copy of the cache would bring its cards back as lost ones."""
        shutil.rmtree(self.state / "sys", ignore_errors=True)
        for leftover in self.state.glob("inventory.json*"):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        (self.state / "hook.log").unlink(missing_ok=True)

    def build_host(self):
        """The issue's host: an FPGA card of 3 regions x 4 functions (3 PFs
        of 4 VFs) and a VCA card whose nodes' interfaces are veths."""
        for pf in range(3):
            pf_bdf = f"0000:3b:00.{pf}"
            self.fs.add_pci(pf_bdf, *sample.SAMPLE_FPGA, numa_node=0,
                            dsn=0x00E2E00000000001, totalvfs=4,
                            driver="ifpga")
            self.fs.add_vfs(pf_bdf, [f"0000:3b:{1 + pf:02x}.{vf}"
                                     for vf in range(4)], "5001")
        self.fs.add_vca_card(0, "0000:5e:00.0", NODE_BDFS,
                             serial=VCA_SERIAL, interfaces=NODE_IFACES)
        for iface, peer in zip(NODE_IFACES, NODE_PEERS, strict=True):
            subprocess.run(["ip", "link", "delete", iface],
                           capture_output=True)
            ip("link", "add", iface, "type", "veth", "peer", "name", peer)
            self.addCleanup(subprocess.run, ["ip", "link", "delete", iface],
                            capture_output=True)
        scanned = sysfs.scan_cards(self.fs.root,
                                   profiles=profiles.load_profiles(None))
        inv, _ = identity.reconcile(None, scanned.cards, self.nodename)
        cache.save(self.cache_path, inv)
        self.nodes = [f.id for c in inv.cards if c.kind == "ippcie"
                      for r in c.regions for f in r.functions]
        for fid in self.nodes:
            self.addCleanup(subprocess.run,
                            ["ip", "link", "delete", node_bridge(fid)],
                            capture_output=True)

    def agent_round(self, rescan=True):
        """One round of the agent, as its interval runs it."""
        return agent.run_round(self.agent_conf, self.publisher,
                               rescan=rescan)

    # -- servers and their domains

    def accel_flavor(self, name, spec, memory_mb=64):
        return self._create_flavor(name=name, memory_mb=memory_mb, vcpu=1,
                                   disk=1, ephemeral=0, extra_spec=spec)

    def boot(self, flavor_id, **kwargs):
        server = self._create_server(flavor_id=flavor_id,
                                     image_uuid=self.image, networks="none",
                                     **kwargs)
        self.servers.append(server["id"])
        return server

    def domain(self, server):
        conn = self.compute.manager.driver._host.get_connection()
        return conn.lookupByUUIDString(server["id"])

    def domstate(self, server):
        """What ``virsh domstate`` says of the server's domain."""
        return subprocess.run(
            ["virsh", "-c", URI, "domstate", server["id"]], check=True,
            capture_output=True, text=True).stdout.strip()

    def dumpxml(self, server, inactive=False):
        args = ["virsh", "-c", URI, "dumpxml", server["id"]]
        if inactive:
            args.append("--inactive")
        return etree.fromstring(subprocess.run(
            args, check=True, capture_output=True, text=True).stdout)

    def claim(self, server):
        return cache.load(self.cache_path).claims.get(server["id"])

    def attach_record(self, server, since):
        """The worker's record for ``server`` once written after
        ``since``."""
        def written():
            claim = self.claim(server)
            return claim if claim and claim.attach.get("at", 0) > since \
                else None
        return wait_for(written, f"the attach worker's record for "
                        f"{server['id']}")

    def held_functions(self, server, resource_class):
        """Placement's allocation of ``resource_class`` to ``server``,
        by provider."""
        allocations = self._get_allocations_by_server_uuid(server["id"])
        return {rp: alloc["resources"][resource_class]
                for rp, alloc in allocations.items()
                if resource_class in alloc["resources"]}

    def start_failure(self, server):
        """The failed event of nova's last start of ``server``, if any."""
        for action in self.api.get_instance_actions(server["id"]):
            if action["action"] != "start":
                continue
            for event in self.api.get_instance_action_details(
                    server["id"], action["request_id"])["events"]:
                if (event["event"] == "compute_start_instance"
                        and event["result"] == "Error"):
                    return event
        return None

    def refusal_logged(self, function_id):
        """The hook's one logged line refusing a start for
        ``function_id``: its reason."""
        [line] = [line for line in (self.state / "hook.log").read_text()
                  .splitlines() if " refused: " in line
                  and function_id in line]
        return line.split(" refused: ", 1)[1]

    def fault_details(self, server):
        [fault] = objects.InstanceFaultList.get_by_instance_uuids(
            nova_context.get_admin_context(), [server["id"]])
        return fault.details

    def _destroy_domains(self):
        """A failed test leaves no domain of its own behind."""
        conn = libvirt.open(URI)
        try:
            for uuid in self.servers:
                try:
                    dom = conn.lookupByUUIDString(uuid)
                except libvirt.libvirtError:
                    continue
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(
                    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        finally:
            conn.close()


def bridges_of(tree):
    return [source.get("bridge") for source in tree.iterfind(
        "devices/interface[@type='bridge']/source")]


def bridge_members(name):
    path = f"/sys/class/net/{name}/brif"
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def node_bridge(function_id):
    return bridge.bridge_name("accbr-", function_id)


class _OwnLoops:
    """nova's thread_pool_factory for the libvirt host module, except that
    ``spawn`` (used only for the event dispatch and connection event
    loops, which never end) runs its task on a green thread of its own."""

    def __getattr__(self, name):
        from nova import thread_pool_factory

        return getattr(thread_pool_factory, name)

    @staticmethod
    def spawn(func, *args, **kwargs):
        import eventlet

        return eventlet.spawn(func, *args, **kwargs)


class NodeServerBase(LibvirtE2ETestCase):

    def setUp(self):
        super().setUp()
        self.node_flavor = self.accel_flavor("node", {
            f"resources1:{NODE_CLASS}": "1"})

    def boot_node_server(self):
        """A server holding a node, once its interface is attached; the
        seconds from ACTIVE to attached."""
        server = self.boot(self.node_flavor)
        active = time.time()
        # The sync's round, as the agent's interval runs it after nova
        # started the domain (the worker waits for it).
        self.agent_round()
        self.assert_node_attached(server, active)
        return server, self.claim(server).attach["at"] - active

    def boot_node_and_fpga_servers(self, functions):
        """A node server (attached) and a server holding ``functions`` FPGA
        functions, once the worker has recorded its attach (the plug itself
        fails here for want of VFIO)."""
        node_server, _ = self.boot_node_server()
        fpga = self.boot(self.accel_flavor(f"fpga-{functions}", {
            f"resources1:{FPGA_CLASS}": str(functions)}))
        self.agent_round()
        self.attach_record(fpga, 0)
        return node_server, fpga

    def node_of(self, server):
        """The node function ``server`` holds and its host-side interface
        now."""
        [fid] = self.claim(server).functions
        address = cache.load(self.cache_path).function_index()[fid][2].address
        return fid, hostview.node_interface(self.fs.root, address)

    def assert_node_attached(self, server, since, also_held_by=()):
        """After the worker's record newer than ``since``: the running
        domain has one interface on the node's bridge, the bridge holds
        the node's interface and that domain's tap only, the persistent
        definition has none; the cache has claims and markers of this
        server (and of the consumers ``also_held_by``) only."""
        record = self.attach_record(server, since)
        fid, iface = self.node_of(server)
        assert record.attach["devices"][fid]["state"] in (
            "attached", "present"), record.attach
        assert record.running
        name = node_bridge(fid)
        live = self.dumpxml(server)
        assert bridges_of(live) == [name]
        [tap] = [t.get("dev") for t in live.iterfind(
            f"devices/interface/source[@bridge='{name}']/../target")]
        assert bridge_members(name) == sorted([iface, tap])
        assert os.path.basename(os.path.realpath(
            f"/sys/class/net/{iface}/master")) == name
        assert bridges_of(self.dumpxml(server, inactive=True)) == []
        consumers = sorted([server["id"], *also_held_by])
        assert sorted(cache.load(self.cache_path).claims) == consumers
        assert sorted(os.listdir(
            cache.markers_path(self.cache_path))) == consumers
