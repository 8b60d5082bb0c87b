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

"""Real nova and placement: a server whose flavor asks for a USB stick of
the sample host gets a stick assigned by the allocation sync, and the
marker that makes the libvirt hook attach it at the domain's start; both
go when the server is deleted."""

import os

import fixtures
from tests.common.nova_base import NovaAccelTestCase
from nova.virt.libvirt import config as libvirt_config

from accel_inventory import agent, cache, identity, profiles
from accel_inventory import claim_sync, provider_tree
from accel_inventory import sample, sysfs
from libvirt_hooks import trigger

HOST = "compute1"
STICK_CLASS = "CUSTOM_ACCEL_MOVIDIUS_NCS"


class NovaAttachTest(NovaAccelTestCase):
    def setUp(self):
        super().setUp()
        self.compute = self._start_compute(HOST)
        tmp = self.useFixture(fixtures.TempDir()).path
        self.cache_path = os.path.join(tmp, "inventory.json")
        root = sample.build_sample_host(os.path.join(tmp, "sys"))
        scanned = sysfs.scan_cards(root,
                                   profiles=profiles.load_profiles(None))
        inv, _ = identity.reconcile(None, scanned.cards, HOST)
        cache.save(self.cache_path, inv)
        self.sticks = {provider_tree.provider_uuid(HOST, r.id): r
                       for c in inv.cards if c.kind == "usb"
                       for r in c.regions}
        self.config, self.accel_conf = self.accel_config(
            tmp, HOST, self.cache_path)

    def _domain_started(self, server_id):
        """Whether the hook, at this server's domain start, would launch
        the attach worker (the domain XML as libvirt gives it)."""
        xml = (f"<domain type='kvm'><name>instance-1</name>"
               f"<uuid>{server_id}</uuid></domain>").encode()
        return trigger.assigned_consumer(xml, self.config) is not None

    def test_hook_recognises_nova_s_own_flavor_metadata(self):
        # What Nova's libvirt driver writes into the domain for a flavor:
        # the hook launches the worker for the one asking for our class.
        flavor = libvirt_config.LibvirtConfigGuestMetaNovaFlavor()
        flavor.name, flavor.id = "accel", "1"
        flavor.extra_specs = {f"resources1:{STICK_CLASS}": "1",
                              "hw:cpu_policy": "shared"}
        assert trigger.ACCEL_REQUEST.search(flavor.to_xml().encode())
        flavor.extra_specs = {"resources:VCPU": "2"}
        assert not trigger.ACCEL_REQUEST.search(flavor.to_xml().encode())

    def test_server_with_a_stick_gets_an_assignment_and_a_marker(self):
        publisher = agent.publisher_from_conf(self.accel_conf)
        agent.run_round(self.accel_conf, publisher, rescan=False)
        flavor = self._create_flavor(extra_spec={
            f"resources1:{STICK_CLASS}": "1"})
        server = self._create_server(flavor_id=flavor, networks="none")
        allocations = self._get_allocations_by_server_uuid(server["id"])
        held = [rp for rp in allocations if rp in self.sticks]
        assert len(held) == 1
        assert allocations[held[0]]["resources"] == {STICK_CLASS: 1}
        assert not self._domain_started(server["id"])

        round_ = agent.run_round(self.accel_conf, publisher, rescan=False)
        assert round_.sync.changed == [server["id"]]
        claim = cache.load(self.cache_path).claims[server["id"]]
        assert claim.source == claim_sync.CLAIM_SOURCE
        assert claim.functions == [f"{self.sticks[held[0]].id}/f0"]
        assert self._domain_started(server["id"])

        # Another sync changes nothing while the allocation stays.
        round_ = agent.run_round(self.accel_conf, publisher, rescan=False)
        assert round_.sync.changed == []

        # Deleting it ends the claim and the marker at the next sync.
        self._delete_and_check_allocations(server)
        round_ = agent.run_round(self.accel_conf, publisher, rescan=False)
        assert round_.sync.changed == [server["id"]]
        assert server["id"] not in cache.load(self.cache_path).claims
        assert not self._domain_started(server["id"])
