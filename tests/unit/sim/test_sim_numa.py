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

"""The simulator's NUMA hosts and workloads: nova's cell fit, stock
nova's refused starts and alternates, our filter's affinity and the NUMA
node term."""

import io
import json
import math
import random

import pytest

from accel_inventory.contract import NUMA_PREFERRED, NUMA_REQUIRED
from nova_accel_weigher import packing, sim

CLUSTER = "numa:4:2:2x4:8"


def policy(name):
    return sim.Policy(name, (), random.Random(1), seed=1,
                      task_mix=packing.cloud_mix([4]))


def request(functions=1, pinned=4, affinity=NUMA_REQUIRED, whole=0):
    return sim.Request(0, math.inf, functions, whole, pinned=pinned,
                       affinity=affinity)


def test_a_numa_cluster_puts_each_card_on_its_node():
    [host] = sim.build_cluster("numa:1:2:2x4:8")
    assert [r.node for r in host.regions] == [0, 0, 1, 1]
    assert host.cells == [8, 8] and host.cells_used == [0, 0]


def test_nova_spreads_pinned_guests_over_the_cells():
    [host] = sim.build_cluster("numa:1:2:2x4:8")
    assert host.guest_cell(request()) == 0
    host.cells_used[0] = 2
    assert host.guest_cell(request()) == 1
    host.cells_used[1] = 6
    assert host.guest_cell(request()) == 0
    host.cells_used[0] = 5
    assert host.guest_cell(request()) is None  # NUMATopologyFilter
    assert not sim.fits(host, request())


@pytest.mark.parametrize("name", sim.HOST_FRAGMENTATION)
def test_our_filter_gives_required_guests_a_region_on_their_cell(name):
    # Every host: node 0's regions partly used, so packing alone takes
    # them; the guests' cells are whichever has more CPUs free.
    hosts = sim.build_cluster(CLUSTER)
    for host in hosts:
        host.regions[0].used = 2
        host.cells_used[0] = 4
    chosen = policy(name).choose(hosts, request())
    assert chosen is not None
    host, demand = chosen
    [region] = [r for r in host.regions if r.name in demand]
    assert region.node == host.guest_cell(request()) == 1
    # Without a policy packing decides.
    host, demand = policy(name).choose(hosts, request(affinity=None))
    assert demand == {host.regions[0].name: 1}


def test_preferred_takes_a_far_region_when_none_is_near():
    hosts = sim.build_cluster("numa:1:2:2x4:8")
    for region in hosts[0].regions[2:]:
        region.used = 4  # node 1 full
    hosts[0].cells_used[0] = 4  # the guest goes to cell 1
    assert policy("host-fragmentation").choose(hosts, request()) is None
    host, demand = policy("host-fragmentation").choose(
        hosts, request(affinity=NUMA_PREFERRED))
    assert set(demand) <= {r.name for r in host.regions[:2]}


def first_node(host):
    """The node of the region placement's order gives ``host`` first."""
    first = sim.placement_order(host, request(), 1)[0]
    [node] = [r.node for r in host.regions if r.name in first]
    return node


def test_stock_nova_tries_its_alternates_when_the_hook_refuses():
    # Every guest goes to cell 0 (both free); nova ranks the hosts in
    # their order (all alike). Placement's order gives host0 a region on
    # node 1 first: the hook refuses it, nova takes host1, its alternate.
    hosts = sim.build_cluster("numa:6:2:2x4:8")
    nodes = [first_node(h) for h in hosts]
    assert nodes[:2] == [1, 0]
    host, demand = policy("stock-nova").choose(hosts, request())
    assert host is hosts[1]
    # With every first candidate far, nova gives up after its attempts.
    far = [h for h, node in zip(hosts, nodes, strict=True) if node == 1]
    assert len(far) >= sim.MAX_ATTEMPTS
    assert policy("stock-nova").choose(far, request()) is None
    # Our filter finds node 0's regions there.
    assert policy("host-fragmentation").choose(far, request()) is not None


def test_the_node_term_opens_a_fresh_region_on_the_node_in_use():
    # Node 0 has a full region and a fresh one, node 1 two fresh ones.
    # A pinned guest without a policy (so it may go anywhere) asking a
    # whole region: every fresh region packs alike, the term picks node
    # 0's.
    [host] = sim.build_cluster("numa:1:2:2x4:8")
    host.regions[0].used = 4
    whole = request(functions=4, whole=1, affinity=None)
    with_term = policy("host-fragmentation").choose([host], whole)
    assert with_term[1] == {host.regions[1].name: 4}
    # Without it placement's order decides: here a region of node 1.
    _host, without = policy("host-fragmentation-no-numa-term").choose(
        [host], whole)
    assert without != with_term[1]
    assert set(without) <= {r.name for r in host.regions[2:]}


def test_a_numa_replay_reports_required_rejections():
    out = io.StringIO()
    assert sim.main(["--cluster", CLUSTER, "--workload", "numa:400:0.05",
                     "--policies", ",".join(sim.NUMA_AWARE), "--json"],
                    out=out) == 0
    metrics = json.loads(out.getvalue())["policies"]
    for name in sim.HOST_FRAGMENTATION:
        assert metrics[name]["preferred_near_share"] == 1.0
        assert metrics[name]["required_rejection_rate"] < \
            metrics["stock-nova"]["required_rejection_rate"]
    # Stock nova picks regions blind to the guest's cell.
    assert metrics["stock-nova"]["preferred_near_share"] < 1.0
    assert 0 < metrics["stock-nova"]["required_asked"]


def test_every_required_guest_placed_has_its_regions_on_its_cell():
    requests = sim.build_workload("numa:400:0.05", 3, 4)
    for name in sim.HOST_FRAGMENTATION:
        result = sim.simulate(CLUSTER, requests, name, "replay", 1.3, 3)
        asked, rejected, near = result.numa[NUMA_REQUIRED]
        assert asked and near == asked - rejected


def test_policies_that_model_no_numa_are_refused_for_such_workloads(capsys):
    with pytest.raises(SystemExit) as exit_:
        sim.main(["--cluster", CLUSTER, "--workload", "numa:10",
                  "--policies", "fgd,stock-nova"])
    assert exit_.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "runs under stock-nova, host-fragmentation" in line
    assert "not fgd" in line


@pytest.mark.parametrize("spec", ["numa:4:2:2x4", "numa:4:0:2x4:8",
                                  "numa:4:2:24:8"])
def test_bad_numa_clusters_are_one_line(capsys, spec):
    with pytest.raises(SystemExit):
        sim.main(["--cluster", spec, "--workload", "numa:10"])
    assert len(capsys.readouterr().err.splitlines()) == 1
