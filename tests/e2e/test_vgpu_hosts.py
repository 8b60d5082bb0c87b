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

"""Two vGPU hosts through nova's real libvirt driver, as far as a host
without VFIO allows: an A40 whose vGPUs are mdevs on its SR-IOV VFs, and
an A10 whose vGPUs are made through NVIDIA's vendor-specific VFIO
interface (tests/common/layouts.py, from NVIDIA's and OpenNebula's
guides). A server asks one vGPU of our resource class; placement
allocates it, the agent's sync assigns a function, and the attach worker
makes the vGPU on the host (the mdev on a VF that can take it, the
VF's vGPU type) and tries the hot-plug of the device it really is, which
libvirt here cannot do (no VFIO, and the fake sysfs is not the one libvirt
reads). Deleting the server undoes what was made."""

import os

from accel_inventory import cache, claims, identity, model, profiles, sysfs
from libvirt_hooks import guard
from tests.common import layouts
from tests.e2e.e2e_base import LibvirtE2ETestCase

A10_4Q = 593
OTHER_DOMAIN = "5f1c2e3d-0000-4000-8000-00000000e2e0"


class VgpuHostBase(LibvirtE2ETestCase):
    resource_class = None

    def build_host(self):
        self.vfs = self.build_gpu()
        scanned = sysfs.scan_cards(self.fs.root,
                                   profiles=profiles.load_profiles(None))
        assert scanned.warnings == []
        inv, _ = identity.reconcile(None, scanned.cards, self.nodename)
        cache.save(self.cache_path, self.held_already(inv))
        self.nodes = []

    def held_already(self, inv):
        return inv

    def boot_vgpu_server(self):
        """A server holding one vGPU, once the attach worker recorded what
        it did; its function and the worker's outcome for it."""
        server = self.boot(self.accel_flavor("vgpu", {
            f"resources1:{self.resource_class}": "1"}))
        assert self.domstate(server) == "running"
        self.agent_round()
        record = self.attach_record(server, 0)
        [fid] = record.functions
        return server, fid, record.attach["devices"][fid]

    def delete(self, server):
        self._delete_server(server)
        self.servers.remove(server["id"])


class TestVendorVfioHost(VgpuHostBase):
    resource_class = "CUSTOM_ACCEL_VENDOR_VFIO_10DE_2236"

    def build_gpu(self):
        # An operator's vGPU on virtfn5 says which type the GPU gives.
        return layouts.a10_vendor_vfio(self.fs, current={5: A10_4Q})

    def current(self, vf):
        with open(os.path.join(self.fs.root, "bus", "pci", "devices", vf,
                               "nvidia", "current_vgpu_type")) as f:
            return int(f.read())

    def test_the_vf_holds_its_vgpu_type_while_the_server_lives(self):
        server, fid, outcome = self.boot_vgpu_server()
        vf = cache.load(self.cache_path).function_index()[fid][2].address
        assert vf != self.vfs[5]
        assert self.current(vf) == A10_4Q
        assert self.claim(server).set_vgpus == {vf: A10_4Q}
        # The VF itself, unmanaged, is what the worker plugged; libvirt
        # here has no such device.
        assert outcome["device"] == f"pci {vf}"
        assert outcome["state"] == "failed"
        log = (self.state / "hook.log").read_text()
        assert f"VF {vf} holds vGPU type {A10_4Q} (NVIDIA A10-4Q)" in log
        self.delete(server)
        assert self.current(vf) == 0
        assert self.current(self.vfs[5]) == A10_4Q


class TestMdevOnVfsHost(VgpuHostBase):
    resource_class = "CUSTOM_ACCEL_MDEV_10DE_2235"

    def build_gpu(self):
        return layouts.a40_mdev_on_vfs(self.fs)  # one vGPU on virtfn0

    def held_already(self, inv):
        """A domain nova manages holds the vGPU on virtfn0."""
        [made] = [f.id for c in inv.cards for f in c.functions()
                  if f.address == layouts.A40_INSTANCE]
        return claims.record_claim(inv, model.Claim(
            consumer=OTHER_DOMAIN, functions=[made], source="hook",
            domain_name="other"))

    def test_the_mdev_is_made_on_a_vf_that_can_take_it(self):
        server, fid, outcome = self.boot_vgpu_server()
        uuid = guard.claimed_mdev_uuid(server["id"], fid)
        made_on = [vf for vf in self.vfs[1:] if open(os.path.join(
            self.fs.root, "class", "mdev_bus", vf, "mdev_supported_types",
            "nvidia-558", "create")).read() == uuid]
        assert len(made_on) == 1  # one VF with room, not virtfn0
        function = cache.load(self.cache_path).function_index()[fid][2]
        assert function.address == uuid
        assert self.claim(server).created_mdevs == [uuid]
        # The fake kernel makes no instance: the worker says so, and gives
        # no other device in its place.
        assert outcome["state"] == "failed"
        assert f"mdev {uuid} does not exist" in outcome["reason"]
        self.delete(server)
        claim = self.claim(server)
        assert claim is None or not claim.running
