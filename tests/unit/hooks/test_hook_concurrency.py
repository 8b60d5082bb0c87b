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

"""Twenty domain starts, a rescan and a publish with allocation sync, all
at once, on one cache: every claim survives and the cache stays valid.

The hooks run as libvirt runs them (the installed entry point, one process
each, the domain XML on stdin); the rescan is ``accel-inventory scan`` in
its own process; the publish and sync run here against placement's real
code in-process. All of them write the cache under its lock.
"""

import io
import os
import subprocess
import sys
import threading
import uuid

from accel_inventory import agent, cache, claims, cli, placement, sample
from libvirt_hooks import xmlgen
from tests.common import placement_host
from tests.common.hooks import domain_xml
from tests.common.placement_host import region_uuid

DOMAINS = 20
FPGA = sample.SAMPLE_FPGA
BIN = os.path.dirname(sys.executable)

host = placement_host.host


def card_bdf(i):
    return f"0000:{0x20 + i:02x}:00.0"


def build_host(service, tmp_path):
    """One single-function card per domain, and an SR-IOV card of four VFs
    whose region placement allocates; scanned into the cache."""
    fs = sample.FakeSysfs(str(tmp_path / "sys"))
    for i in range(DOMAINS):
        fs.add_pci(card_bdf(i), *FPGA, dsn=0x1000 + i)
    fs.add_pci("0000:60:00.0", *FPGA, dsn=0xF0, totalvfs=4)
    fs.add_vfs("0000:60:00.0", [f"0000:60:01.{v}" for v in range(4)],
               "5001")
    service.config_file.write_text(
        service.config_file.read_text()
        + f"[inventory]\nsysfs_root = {fs.root}\n"
          f"[libvirt_hooks]\nlog_file = {tmp_path / 'hook.log'}\n")
    service.conf = service.load_conf()
    out = io.StringIO()
    assert cli.main(["--config-file", str(service.config_file), "scan"],
                    out=out) == 0
    return cache.load(service.cache_path)


def start_hook(config_file, i):
    xml = domain_xml(xmlgen.pci_hostdev(card_bdf(i)),
                     uuid=str(uuid.UUID(int=i + 1)), name=f"vm{i}")
    proc = subprocess.Popen(
        [os.path.join(BIN, "accel-libvirt-hook"), f"vm{i}", "prepare",
         "begin", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ, NOVA_ACCEL_CONFIG=str(config_file)))
    proc.stdin.write(xml)
    proc.stdin.close()
    return proc


def test_hooks_scan_and_publish_at_once_lose_no_claim(host, tmp_path):
    inv = build_host(host, tmp_path)
    sriov = next(c for c in inv.cards if c.address == "0000:60:00.0")
    publisher = host.publisher()
    publisher.publish(inv)
    region = region_uuid(inv, inv.cards.index(sriov))
    allocated = {str(uuid.uuid4()): 1, str(uuid.uuid4()): 2}
    for consumer, amount in allocated.items():
        host.allocate(consumer, region, amount,
                      rc=sriov.regions[0].resource_class)

    rounds = []
    publish = threading.Thread(target=lambda: rounds.append(
        agent.run_round(host.conf, publisher, rescan=False)))
    hooks = [start_hook(host.config_file, i) for i in range(DOMAINS)]
    scan = subprocess.Popen(
        [os.path.join(BIN, "accel-inventory"), "--config-file",
         str(host.config_file), "scan"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    publish.start()
    answers = [(p.wait(120), p.stderr.read().decode()) for p in hooks]
    scanned = (scan.wait(120), scan.stderr.read().decode())
    publish.join(120)

    assert answers == [(0, "")] * DOMAINS
    assert scanned == (0, "")
    assert len(rounds) == 1 and sorted(rounds[0].sync.changed) == sorted(
        allocated)
    final = cache.load(host.cache_path, validate=True)
    assert claims.inconsistencies(final) == []
    by_bdf = {f.address: f.id for c in final.cards for f in c.functions()}
    for i in range(DOMAINS):
        claim = final.claims[str(uuid.UUID(int=i + 1))]
        assert claim.functions == [by_bdf[card_bdf(i)]]
        assert claim.running and claim.domain_name == f"vm{i}"
    for consumer, amount in allocated.items():
        held = claims.functions_of(final, consumer)
        assert len(held) == amount
        assert {f.rsplit("/", 2)[0] for f in held} == {sriov.id}
    assert len(final.claims) == DOMAINS + len(allocated)
    assert placement.DEGRADED_TRAIT not in host.traits(region)
