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

"""The attach worker across moves, on libvirt's in-process test driver: it
plugs nothing into a domain still receiving an incoming migration, and
after a resize on the host (the domain runs with another nova flavor than
at its last attach) it waits for a sync of the allocations nova made for
the new flavor instead of plugging what the old ones gave."""

import os
import threading
import time

import libvirt
import pytest
from lxml import etree

from accel_inventory import cache, claims
from libvirt_hooks import attach, common
from libvirt_hooks import domain as domain_xml
from tests.common import attach_host
from tests.common.attach_host import STICK, assign, domain_bytes

conn = attach_host.conn
host = attach_host.host

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
UUID = "abababab-0000-4000-8000-000000000007"

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def nova_domain(flavor_id):
    """A domain with the metadata nova's libvirt driver writes."""
    tree = etree.fromstring(domain_bytes(UUID, name="vm7"))
    metadata = etree.SubElement(tree, "metadata")
    instance = etree.SubElement(metadata, f"{{{NOVA_NS}}}instance",
                                nsmap={"nova": NOVA_NS})
    etree.SubElement(instance, f"{{{NOVA_NS}}}flavor", name=f"f{flavor_id}",
                     id=str(flavor_id))
    return etree.tostring(tree).decode()


@pytest.mark.parametrize("state, up", [
    ((libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED), True),
    ((libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED),
     True),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_STARTING_UP),
     True),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER), True),
    # The destination of a live migration, before it ends.
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION),
     False),
    ((libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_SHUTDOWN),
     False),
])
def test_an_incoming_migration_is_not_up(state, up):
    assert attach.is_up(list(state)) is up


def test_nova_flavor_is_read_from_novas_metadata():
    tree = etree.fromstring(nova_domain(42).encode())
    assert domain_xml.nova_flavor(tree) == "42"
    assert domain_xml.nova_flavor(etree.fromstring(domain_bytes(UUID))) \
        is None


def resized_domain(host, conn):
    """A running domain of flavor 2 whose claim was last attached under
    flavor 1, with a marker from before the worker starts."""
    dom = conn.defineXML(nova_domain(2))
    dom.create()
    assign(host, UUID, [STICK])
    inv = claims.record_attach(cache.load(host["cache"]), UUID,
                               {"flavor": "1", "at": 1.0, "devices": {}},
                               running=False, boot_id=None)
    cache.save(host["cache"], inv)
    marker = common.marker_path(host["cache"], UUID)
    os.utime(marker, (time.time() - 60, time.time() - 60))
    with open(host["config"], "a") as f:
        f.write("assignment_wait = 2\n")
    return dom, marker


def test_after_a_resize_the_worker_waits_for_a_fresh_sync(host, conn):
    dom, _marker = resized_domain(host, conn)
    try:
        assert attach.resized(host["conf"], UUID, dom)
        rc = attach.run_worker(UUID, host["config"],
                               connect=lambda uri: conn)
        assert rc == 0
        assert "was not assigned any within 2.0 s" in \
            host["log"].read_text()
        # Nothing was plugged from the allocations of before.
        assert cache.load(host["cache"]).claims[UUID].attach["flavor"] == "1"
    finally:
        dom.destroy()
        dom.undefine()


def test_a_sync_after_the_start_lets_the_resized_domain_attach(host, conn):
    dom, marker = resized_domain(host, conn)

    def sync_runs():
        time.sleep(0.5)
        os.utime(marker)

    syncing = threading.Thread(target=sync_runs)
    syncing.start()
    try:
        rc = attach.run_worker(UUID, host["config"],
                               connect=lambda uri: conn)
        syncing.join()
        # The test driver refuses hot-plug: the attempt is what counts,
        # now recorded under the flavor the domain runs with.
        assert rc == 1
        record = cache.load(host["cache"]).claims[UUID].attach
        assert record["flavor"] == "2"
        assert record["devices"][STICK]["state"] == "failed"
    finally:
        dom.destroy()
        dom.undefine()


def test_same_flavor_attaches_at_once(host, conn):
    dom = conn.defineXML(nova_domain(1))
    dom.create()
    try:
        assign(host, UUID, [STICK])
        inv = claims.record_attach(cache.load(host["cache"]), UUID,
                                   {"flavor": "1", "devices": {}},
                                   running=False, boot_id=None)
        cache.save(host["cache"], inv)
        assert not attach.resized(host["conf"], UUID, dom)
        started = time.monotonic()
        assert attach.run_worker(UUID, host["config"],
                                 connect=lambda uri: conn) == 1
        assert time.monotonic() - started < attach.ASSIGNMENT_POLL
    finally:
        dom.destroy()
        dom.undefine()


class SeenRunning:
    """A domain the worker saw up (as after an evacuation's rebuild
    started it) that stopped before the worker plugged anything (nova
    stops an evacuated server that was stopped)."""

    def __init__(self, dom):
        self._dom = dom

    def __getattr__(self, name):
        return getattr(self._dom, name)

    def state(self):
        return [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED]


class Connection:
    def __init__(self, conn):
        self._conn = conn

    def __getattr__(self, name):
        return getattr(self._conn, name)

    def lookupByUUIDString(self, uuid):
        return SeenRunning(self._conn.lookupByUUIDString(uuid))


def test_a_domain_stopped_before_its_devices_were_plugged_gets_none(host,
                                                                    conn):
    dom = conn.defineXML(nova_domain(1))
    try:
        assign(host, UUID, [STICK])
        assert attach.run_worker(UUID, host["config"],
                                 connect=lambda uri: Connection(conn),
                                 await_assignment=True) == 0
        assert "stopped before its devices were plugged; its next start " \
            "plugs them" in host["log"].read_text()
        assert cache.load(host["cache"]).claims[UUID].attach == {}
    finally:
        dom.undefine()
