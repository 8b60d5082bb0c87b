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

"""The attach path's host in the tests: the bundled sample host scanned
into a cache, the hook configured on it, libvirt's in-process test driver,
and the instance assignments the allocation sync records. Shared by the
attach worker's and accel-domain's tests (tests/unit/hooks)."""

import libvirt
import pytest

from accel_inventory import agent, cache, claims, identity, model
from accel_inventory import profiles, sample, sysfs
from accel_inventory import claim_sync
from tests.common.hooks import domain_xml

TEST_URI = "test:///default"
NODE0 = "vpd-8086-2953-VCA2-SN-0042/r0/f0"
STICK = "usb-03e7-03e72485A1/r0/f0"


@pytest.fixture
def conn():
    # test:///default is one in-process host while any connection to it is
    # open (the CLI's own connection sees this one's domains), and a fresh
    # one once all are closed.
    connection = libvirt.open(TEST_URI)
    yield connection
    connection.close()


@pytest.fixture
def host(tmp_path, monkeypatch):
    """The sample host scanned into a cache, and the hook's configuration
    pointing at both."""
    root = sample.build_sample_host(str(tmp_path / "sys"))
    scanned = sysfs.scan_cards(root, profiles=profiles.load_profiles(None))
    inv, _ = identity.reconcile(None, scanned.cards, "compute1")
    path = str(tmp_path / "inventory.json")
    cache.save(path, inv)
    config = tmp_path / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {root}\n"
                      f"cache_path = {path}\n[libvirt_hooks]\n"
                      f"log_file = {tmp_path / 'hook.log'}\n"
                      f"attach_timeout = 1\n")
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(config))
    monkeypatch.delenv("OS_INVENTORY__CACHE_PATH", raising=False)
    from libvirt_hooks import decide
    return {"root": root, "cache": path, "config": str(config),
            "conf": decide.load_conf(str(config)),
            "log": tmp_path / "hook.log", "fs": sample.FakeSysfs(root)}


def assign(host, consumer, functions):
    """What the sync records for an instance holding ``functions``."""
    claim = model.Claim(consumer=consumer, functions=functions,
                        source=claim_sync.CLAIM_SOURCE)
    inv = claims.record_claim(cache.load(host["cache"]), claim)
    cache.save(host["cache"], inv)
    agent.write_assigned_markers(host["cache"], inv)


def domain_bytes(uuid, *devices_, name="vm1"):
    """A domain for libvirt's test driver."""
    return domain_xml(*devices_, uuid=uuid, name=name, domain_type="test")
