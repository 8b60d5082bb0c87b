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

"""NUMA affinity at a domain's start: the hook at ``prepare begin`` and
the attach worker, on the sample host (its FPGA on node 0, its GPU and
VCA card on node 1) with two NUMA nodes of four CPUs each, and domains as
nova's libvirt driver writes them for an instance with a NUMA topology
(``<numatune>``, ``<cputune>``, the flavor's extra specs in the
metadata)."""

import io

import libvirt
import pytest
from lxml import etree

from accel_inventory import cache, claims, model
from accel_inventory.contract import NUMA_AFFINITY_SPEC
from libvirt_hooks import affinity, attach, domain, hook, xmlgen
from tests.common import attach_host
from tests.common.attach_host import assign

NOVA_NS = "http://openstack.org/xmlns/libvirt/nova/1.1"
UUID = "5a5a5a5a-0000-4000-8000-00000000005a"
FPGA_REGION = "dsn-0011223344556677/r0"
VF0, VF1 = f"{FPGA_REGION}/f0", f"{FPGA_REGION}/f1"
OTHER = "6b6b6b6b-0000-4000-8000-00000000006b"

conn = attach_host.conn
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


host = attach_host.host


@pytest.fixture
def numa_host(host):
    """The sample host with its NUMA nodes: 0 (CPUs 0-3) and 1 (4-7) on
    socket 0, 2 (8-11) on socket 1."""
    for node, socket in ((0, 0), (1, 0), (2, 1)):
        host["fs"].add_numa_node(node, list(range(4 * node, 4 * node + 4)),
                                 socket=socket)
    return host


def nova_domain(*devices, nodeset=None, vcpus=None, policy=None,
                uuid=UUID, domain_type="qemu"):
    """A domain as nova's libvirt driver writes one: memory bound to
    ``nodeset`` and vCPUs pinned to ``vcpus`` (host CPUs), the flavor
    asking one of our classes and ``policy``."""
    dom = etree.fromstring(attach_host.domain_bytes(uuid, *devices)
                           if domain_type == "test" else
                           _plain(uuid, devices))
    metadata = etree.SubElement(dom, "metadata")
    instance = etree.SubElement(metadata, f"{{{NOVA_NS}}}instance",
                                nsmap={"nova": NOVA_NS})
    flavor = etree.SubElement(instance, f"{{{NOVA_NS}}}flavor", name="f")
    specs = etree.SubElement(flavor, f"{{{NOVA_NS}}}extraSpecs")
    for name, value in (("resources1:CUSTOM_ACCEL_FPGA", "1"),
                        (NUMA_AFFINITY_SPEC, policy)):
        if value is not None:
            etree.SubElement(specs, f"{{{NOVA_NS}}}extraSpec",
                             name=name).text = value
    if nodeset is not None:
        # The guest's one NUMA cell, which nova describes beside.
        cell = etree.SubElement(etree.SubElement(dom, "cpu"), "numa")
        etree.SubElement(cell, "cell", id="0", cpus="0", memory="65536",
                         unit="KiB")
        numatune = etree.SubElement(dom, "numatune")
        etree.SubElement(numatune, "memory", mode="strict", nodeset=nodeset)
        etree.SubElement(numatune, "memnode", cellid="0", mode="strict",
                         nodeset=nodeset)
    if vcpus is not None:
        cputune = etree.SubElement(dom, "cputune")
        for vcpu, cpu in enumerate(vcpus):
            etree.SubElement(cputune, "vcpupin", vcpu=str(vcpu),
                             cpuset=str(cpu))
    return etree.tostring(dom)


def _plain(uuid, devices):
    from tests.common.hooks import domain_xml
    return domain_xml(*devices, uuid=uuid)


def prepare(xml):
    out, err = io.StringIO(), io.StringIO()
    rc = hook.main(["vm1", "prepare", "begin", "-"], stdin=io.BytesIO(xml),
                   stdout=out, stderr=err)
    return rc, err.getvalue()


def bdf_of(numa_host, fid):
    return cache.load(numa_host["cache"]).function_index()[fid][2].address


def held(numa_host, consumer=UUID):
    return cache.load(numa_host["cache"]).claims[consumer].functions


# -- the hook

def test_required_refuses_a_function_away_from_the_guest(numa_host):
    assign(numa_host, UUID, [VF0])
    rc, err = prepare(nova_domain(nodeset="1", policy="required"))
    assert rc == 1
    [line] = err.splitlines()
    assert line.startswith("nova-accel: domain vm1: ")
    assert f"{VF0} ({bdf_of(numa_host, VF0)}) on NUMA node 0" in line
    assert "not on the NUMA node(s) 1 of the guest's CPUs and memory" in line
    assert f"{NUMA_AFFINITY_SPEC}=required" in line
    assert " refused: " in numa_host["log"].read_text()


def test_required_lets_a_function_on_the_guests_node_start(numa_host):
    assign(numa_host, UUID, [VF0])
    assert prepare(nova_domain(nodeset="0", policy="required")) == (0, "")


def test_preferred_lets_it_start_and_says_so_once(numa_host):
    assign(numa_host, UUID, [VF0])
    assert prepare(nova_domain(nodeset="1", policy="preferred")) == (0, "")
    warnings = [line for line in numa_host["log"].read_text().splitlines()
                if "WARNING" in line]
    assert len(warnings) == 1
    assert "NUMA node 0" in warnings[0] and "preferred" in warnings[0]


@pytest.mark.parametrize("xml", [
    # No policy: packing decided, nothing to hold the start to.
    nova_domain(nodeset="1"),
    # A policy, but no NUMA topology: nothing says where the guest is.
    nova_domain(policy="required")])
def test_without_a_policy_or_a_numa_topology_nothing_is_said(numa_host, xml):
    assign(numa_host, UUID, [VF0])
    assert prepare(xml) == (0, "")
    assert "WARNING" not in numa_host["log"].read_text()


def test_pinned_cpus_say_where_the_guest_is(numa_host):
    # No numatune: CPUs 4 and 5 are node 1's (sysfs cpulist).
    assign(numa_host, UUID, [VF0])
    assert prepare(nova_domain(vcpus=[4, 5], policy="required"))[0] == 1
    assert prepare(nova_domain(vcpus=[0, 1], policy="required")) == (0, "")


def test_socket_takes_the_other_node_of_the_guests_socket(numa_host):
    assign(numa_host, UUID, [VF0])
    # Node 1 shares socket 0 with the function's node 0; node 2 does not.
    assert prepare(nova_domain(nodeset="1", policy="socket")) == (0, "")
    rc, err = prepare(nova_domain(nodeset="2", policy="socket"))
    assert rc == 1
    assert "the socket of the guest's NUMA node(s) 2" in err


def test_a_placement_claim_takes_a_free_function_near_the_guest(numa_host):
    # The firmware puts one VF of the region on node 1; the sync gave the
    # domain another one.
    numa_host["fs"].set_numa_node(bdf_of(numa_host, VF1), 1)
    assign(numa_host, UUID, [VF0])
    assert prepare(nova_domain(nodeset="1", policy="required")) == (0, "")
    assert held(numa_host) == [VF1]
    assert f"now holds {VF1}" in numa_host["log"].read_text()


def test_no_free_function_near_the_guest_is_refused(numa_host):
    numa_host["fs"].set_numa_node(bdf_of(numa_host, VF1), 1)
    inv = claims.record_claim(cache.load(numa_host["cache"]), model.Claim(
        consumer=OTHER, functions=[VF1], source="hook"))
    cache.save(numa_host["cache"], inv)
    assign(numa_host, UUID, [VF0])
    assert prepare(nova_domain(nodeset="1", policy="required"))[0] == 1
    assert held(numa_host) == [VF0]
    assert held(numa_host, OTHER) == [VF1]


def test_a_hostdev_in_the_xml_is_judged_too(numa_host):
    hostdev = xmlgen.pci_hostdev(bdf_of(numa_host, VF0))
    rc, err = prepare(nova_domain(hostdev, nodeset="1", policy="required"))
    assert rc == 1 and VF0 in err
    assert prepare(nova_domain(hostdev, nodeset="0",
                               policy="required")) == (0, "")


def test_a_node_list_that_is_none_is_refused_in_one_line(numa_host):
    assign(numa_host, UUID, [VF0])
    rc, err = prepare(nova_domain(nodeset="0-x", policy="required"))
    assert rc == 1
    [line] = err.splitlines()
    assert "nodeset '0-x' is not a list of numbers" in line


def test_an_unknown_policy_is_ignored_and_said(numa_host):
    assign(numa_host, UUID, [VF0])
    assert prepare(nova_domain(nodeset="1", policy="legacy")) == (0, "")
    assert "is none of required, preferred, socket; ignored" in \
        numa_host["log"].read_text()


def test_guest_numa_reads_what_nova_writes():
    dom = domain.parse(nova_domain(nodeset="0-1,^1", vcpus=[2, 6],
                                   policy="socket"), 1 << 20)
    assert domain.guest_numa(dom) == domain.GuestNuma(
        frozenset({0}), frozenset({2, 6}), "socket")
    plain = domain.parse(nova_domain(), 1 << 20)
    assert not domain.guest_numa(plain).placed


# -- the attach worker

def test_the_worker_attaches_near_functions_and_refuses_far_ones(
        numa_host, conn):
    numa_host["fs"].set_numa_node(bdf_of(numa_host, VF1), 1)
    dom = conn.createXML(nova_domain(nodeset="1", policy="required",
                                     domain_type="test").decode())
    # The sync assigned it after the start: the worker picks near.
    assign(numa_host, UUID, [VF0])
    document = attach.attach_claim(conn, numa_host["conf"], UUID)
    assert held(numa_host) == [VF1]
    # The test driver refuses the hot-plug itself; NUMA did not.
    assert "NUMA" not in document["devices"][VF1]["reason"]
    dom.destroy()
    # Nothing near is free any more: the far one is not attached.
    dom = conn.createXML(nova_domain(nodeset="1", policy="required",
                                     domain_type="test").decode())
    inv = claims.record_claim(cache.load(numa_host["cache"]), model.Claim(
        consumer=OTHER, functions=[VF1], source="hook"))
    cache.save(numa_host["cache"], claims.release_claim(inv, UUID))
    assign(numa_host, UUID, [VF0])
    document = attach.attach_claim(conn, numa_host["conf"], UUID)
    outcome = document["devices"][VF0]
    assert outcome["state"] == "failed"
    assert "on NUMA node 0: not on the NUMA node(s) 1" in outcome["reason"]
    assert "device" not in outcome  # nothing was built or plugged
    dom.destroy()


def test_the_worker_leaves_a_guest_on_no_node_as_it_was(numa_host, conn):
    numa_host["fs"].set_numa_node(bdf_of(numa_host, VF1), 1)
    dom = conn.createXML(nova_domain(policy="required",
                                     domain_type="test").decode())
    assign(numa_host, UUID, [VF0])
    attach.attach_claim(conn, numa_host["conf"], UUID)
    assert held(numa_host) == [VF0]
    dom.destroy()


def test_judgement_is_one_line_per_policy():
    near = affinity.Nearness("required", frozenset({1}), frozenset({1}))
    refusal, warning = affinity.judgement(near, {"f": "f (x) on NUMA node 0"})
    assert warning is None and "\n" not in refusal
    assert affinity.judgement(near, {}) == (None, None)
