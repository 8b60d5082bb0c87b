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

"""No tenant gets another's leftovers, with real nova and placement: a
server that ran with a whole FPGA region is deleted, and the next server
placed on that region is given its functions only once the agent reset
them; where the profile says an operator cleans them, placement reserves
them and no server gets them until ``accel-inventory clear``.

The agent's rounds, the hook (``prepare begin`` and ``release end``, as
libvirt calls it for the server's domain) and ``accel-inventory`` run as
on a compute host, on the sample host's fake sysfs. libvirt's test driver
cannot hot-plug a device, so the attach worker's record of a successful
attach (the claim runs in this boot) is written as the worker writes it.
"""

import io
import os
import uuid
from unittest import mock

import fixtures
from nova.virt.libvirt import config as libvirt_config

from accel_inventory import agent, cache, claims, cli, identity, inventory
from accel_inventory import profiles, provider_tree, release, sample, sysfs
from libvirt_hooks import hook, xmlgen
from tests.common.hooks import domain_xml
from tests.common.nova_base import NovaAccelTestCase

HOST = "compute1"
FPGA_CLASS = "CUSTOM_ACCEL_FPGA"
WHOLE_REGION = {f"resources1:{FPGA_CLASS}": "4",
                "trait1:CUSTOM_ACCEL_REGION_SIZE_4": "required"}
PROJECT = "6f1a3e0c-0000-4000-8000-00000000aaaa"


class NoLeftoversBase(NovaAccelTestCase):
    on_release = None  # the sample FPGA's profile as shipped

    def setUp(self):
        super().setUp()
        # Nova 34 still uses noload(), which SQLAlchemy 2.1 deprecates, and
        # nova's WarningsFixture makes that an error where a server that
        # no host can take is buried in cell0.
        self.useFixture(fixtures.WarningsFilter([{
            "action": "ignore", "message": r"The noload\(\) option"}]))
        self.compute = self._start_compute(HOST)
        tmp = self.useFixture(fixtures.TempDir()).path
        self.root = sample.build_sample_host(os.path.join(tmp, "sys"))
        profiles_dir = os.path.join(tmp, "profiles.d")
        os.mkdir(profiles_dir, 0o700)
        if self.on_release is not None:
            with open(os.path.join(profiles_dir, "fpga.json"), "w") as f:
                f.write('{"name": "sample-fpga", "match": ["1172:5000"], '
                        '"resource_class": "CUSTOM_ACCEL_FPGA", '
                        f'"on_release": "{self.on_release}"}}')
        self.cache_path = os.path.join(tmp, "inventory.json")
        found = sysfs.scan_cards(self.root, profiles=profiles.load_profiles(
            profiles_dir))
        inv, _ = identity.reconcile(None, found.cards, HOST)
        cache.save(self.cache_path, inv)
        self.config, _ = self.accel_config(tmp, HOST, self.cache_path)
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace("[inventory]\n", (
                f"[inventory]\nsysfs_root = {self.root}\n"
                f"profiles_dir = {profiles_dir}\n"))
                + f"[libvirt_hooks]\nlog_file = {tmp}/hook.log\n")
        self.conf = inventory_conf_of(self.config)
        self.useFixture(fixtures.EnvironmentVariable("NOVA_ACCEL_CONFIG",
                                                     self.config))
        self.publisher = agent.publisher_from_conf(self.conf)
        self.round()
        [self.fpga] = [c for c in inv.cards if c.kind == "pci"]
        self.flavor = self._create_flavor(extra_spec=WHOLE_REGION)

    def round(self):
        return agent.run_round(self.conf, self.publisher, rescan=False)

    def region_uuid(self, region):
        return provider_tree.provider_uuid(HOST, region.id)

    def occupy_all_but(self, kept):
        """Allocate every FPGA region but ``kept`` to a stranger, so that
        the next whole-region server lands on ``kept``."""
        for region in self.fpga.regions:
            if region.id == kept.id:
                continue
            self.placement.put(f"/allocations/{uuid.uuid4()}", {
                "allocations": {self.region_uuid(region): {
                    "resources": {FPGA_CLASS: 4}}},
                "project_id": PROJECT, "user_id": PROJECT,
                "consumer_generation": None}, version="1.28")

    def held_on(self, server):
        allocations = self._get_allocations_by_server_uuid(server["id"])
        return [r for r in self.fpga.regions
                if self.region_uuid(r) in allocations]

    def domain(self, server):
        """The server's domain XML as nova writes it (its flavor's extra
        specs in the metadata)."""
        flavor = libvirt_config.LibvirtConfigGuestMetaNovaFlavor()
        flavor.name, flavor.id = "accel", self.flavor
        flavor.extra_specs = WHOLE_REGION
        return (f"<domain type='kvm'><name>instance-{server['id'][:8]}"
                f"</name><uuid>{server['id']}</uuid><metadata>"
                f"<nova:instance xmlns:nova='http://openstack.org/xmlns/"
                f"libvirt/nova/1.1'>{flavor.to_xml()}</nova:instance>"
                f"</metadata><devices/></domain>").encode()

    def hook(self, xml, op="prepare", subop="begin"):
        out, err = io.StringIO(), io.StringIO()
        rc = hook.main(["instance", op, subop, "-"],
                       stdin=io.BytesIO(xml), stdout=out, stderr=err)
        return rc, err.getvalue()

    def runs_and_stops(self, server):
        """The server's domain starts (the hook checks it; the attach
        worker hot-plugs its functions and records that), then stops."""
        xml = self.domain(server)
        assert self.hook(xml) == (0, "")
        cache.update(self.cache_path, lambda inv: claims.record_attach(
            inv, server["id"], {"domain": "instance"}, running=True,
            boot_id=inventory.current_boot_id()))
        assert self.hook(xml, "release", "end") == (0, "")

    def claim_of(self, server):
        return claims.functions_of(cache.load(self.cache_path), server["id"])

    def reserved(self, region):
        inventories = self.placement.get(
            f"/resource_providers/{self.region_uuid(region)}/inventories"
        ).body["inventories"]
        return inventories[FPGA_CLASS]["reserved"]

    def vf_resets(self, region):
        return [open(os.path.join(self.root, "bus", "pci", "devices",
                                  f.address, "reset")).read()
                for f in region.functions]


def inventory_conf_of(path):
    from accel_inventory import conf as inventory_conf

    conf = inventory_conf.load(["--config-file", path])
    inventory_conf.register_placement_opts(conf)
    return conf


class ResetTest(NoLeftoversBase):
    def test_the_next_server_gets_the_region_only_after_its_reset(self):
        region = self.fpga.regions[0]
        fids = [f.id for f in region.functions]
        self.occupy_all_but(region)
        first = self._create_server(flavor_id=self.flavor, networks="none")
        assert self.held_on(first) == [region]
        self.round()
        assert self.claim_of(first) == fids
        self.runs_and_stops(first)
        assert self.vf_resets(region) == [""] * 4

        # Deleted, and the next server placed on the freed region before
        # the agent's next round: placement had room at once.
        self._delete_server(first)
        assert self._get_allocations_by_server_uuid(first["id"]) == {}
        second = self._create_server(flavor_id=self.flavor,
                                     networks="none")
        assert self.held_on(second) == [region]

        seen = []
        clean = release.clean

        def clean_and_look(*args, **kwargs):
            seen.append((self.claim_of(second), self.vf_resets(region)))
            return clean(*args, **kwargs)

        with mock.patch.object(release, "clean", clean_and_look):
            round_ = self.round()
        # When the agent cleaned, the second server held nothing yet and
        # nothing had been reset; after, it holds the region, reset.
        assert seen == [([], [""] * 4)]
        assert round_.sync.released == fids
        assert self.vf_resets(region) == ["1"] * 4
        assert self.claim_of(second) == fids
        assert cache.load(self.cache_path).cleaning == {}
        assert self.reserved(region) == 0
        assert self.hook(self.domain(second)) == (0, "")


class HoldTest(NoLeftoversBase):
    on_release = "hold"

    def test_a_held_region_is_reserved_refused_and_freed_by_clear(self):
        region = self.fpga.regions[0]
        fids = [f.id for f in region.functions]
        self.occupy_all_but(region)
        first = self._create_server(flavor_id=self.flavor, networks="none")
        self.round()
        self.runs_and_stops(first)
        self._delete_server(first)
        assert self._get_allocations_by_server_uuid(first["id"]) == {}
        self.round()
        held = cache.load(self.cache_path).cleaning
        assert sorted(held) == fids
        assert {e.state for e in held.values()} == {"held"}
        assert self.vf_resets(region) == [""] * 4  # nobody reset them
        assert self.reserved(region) == 4

        # Placement has no room for the next server; a domain naming one
        # of its VFs (as nova's PCI passthrough would) is refused.
        refused = self._create_server(flavor_id=self.flavor,
                                      networks="none", expected_state="BUILD")
        self._wait_for_state_change(refused, "ERROR", max_retries=60)
        rc, err = self.hook(domain_xml(xmlgen.pci_hostdev(
            region.functions[0].address)))
        assert rc == 1 and "is not clean yet (held:" in err

        # The operator cleaned it: clear, and the next round offers it.
        assert cli.main(["clear", region.id], out=io.StringIO()) == 0
        self.round()
        assert self.reserved(region) == 0
        third = self._create_server(flavor_id=self.flavor, networks="none")
        assert self.held_on(third) == [region]
        self.round()
        assert self.claim_of(third) == fids

    def test_a_server_placed_before_the_round_never_gets_it(self):
        region = self.fpga.regions[0]
        self.occupy_all_but(region)
        first = self._create_server(flavor_id=self.flavor, networks="none")
        self.round()
        self.runs_and_stops(first)
        self._delete_server(first)
        assert self._get_allocations_by_server_uuid(first["id"]) == {}
        second = self._create_server(flavor_id=self.flavor,
                                     networks="none")
        round_ = self.round()
        assert self.claim_of(second) == []
        assert any("only 0 more are free" in p for p in round_.sync.problems)
        assert self.reserved(region) == 4
