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

"""The host index chooses exactly what a look at every host chooses."""

import io
import random

import pytest

from nova_accel_weigher import sim


def assert_index_matches_scan(cluster, workload, policy, mode):
    """The host index and a look at every host make the same run; the
    scanned run is returned."""
    requests = sim.build_workload(workload, 1, 4)
    indexed = sim.simulate(cluster, requests, policy, mode, 1.3, 1,
                           indexed=True)
    scanned = sim.simulate(cluster, requests, policy, mode, 1.3, 1,
                           indexed=False)
    assert indexed.metrics == scanned.metrics
    assert indexed.timeline == scanned.timeline
    return scanned


@pytest.mark.parametrize("policy", sim.POLICIES)
@pytest.mark.parametrize("cluster,workload,mode", [
    ("mixed:12", "poisson:1500", "replay"),
    ("homogeneous:25:3x4", "poisson:1500", "replay"),
    ("mixed:10", "poisson:600", "fill"),
])
def test_index_gives_the_same_run_as_looking_at_every_host(
        policy, cluster, workload, mode):
    scanned = assert_index_matches_scan(cluster, workload, policy, mode)
    # The run was loaded enough for choices to matter.
    assert scanned.metrics["utilisation"] > 0.3


@pytest.mark.parametrize("policy", sim.POLICIES)
def test_index_and_scan_agree_request_by_request(policy):
    requests = sim.build_workload("poisson:400", 2, 4)
    scan_hosts = sim.build_cluster("mixed:6")
    index_hosts = sim.build_cluster("mixed:6")
    scan = sim.Policy(policy, sim.request_mix(requests), random.Random(5))
    index = sim.HostIndex(index_hosts, sim.Policy(
        policy, sim.request_mix(requests), random.Random(5)))
    held = []
    for request in requests:
        if len(held) > 30:
            # Free the oldest on both sides so hosts change both ways.
            old, old_scan, old_index = held.pop(0)
            sim._apply(old_scan, old, -1)
            sim._apply(old_index, old, -1, index)
        by_scan = scan.choose(scan_hosts, request)
        by_index = index.choose(request)
        if by_scan is None:
            assert by_index is None
            continue
        assert by_index[0].name == by_scan[0].name
        assert by_index[1] == by_scan[1]
        sim._apply(by_scan, request, +1)
        sim._apply(by_index, request, +1, index)
        held.append((request, by_scan, by_index))


def test_equal_host_states_share_one_score_but_keep_host_order():
    hosts = sim.build_cluster("homogeneous:4:3x4")
    index = sim.HostIndex(hosts, sim.Policy(
        "fragmentation", sim.packing.DEFAULT_MIX, random.Random(1)))
    calls = []
    real = index.policy.best_scored
    index.policy.best_scored = lambda h, r: calls.append(h) or real(h, r)
    request = sim.Request(0, 1, 1)
    host, demand = index.choose(request)
    # Four empty hosts are one state: scored once, the first host wins.
    assert len(calls) == 1 and host is hosts[0]
    sim._apply((host, demand), request, +1, index)
    assert index.choose(sim.Request(0, 1, 1))[0] is hosts[0]


def test_feasible_hosts_kth():
    feasible = sim._FeasibleHosts(10)
    for position in (7, 2, 9, 4):
        feasible.set(position, True)
    feasible.set(9, False)
    feasible.set(2, True)  # setting again changes nothing
    assert feasible.count == 3
    assert [feasible.kth(k) for k in range(3)] == [2, 4, 7]


def test_progress_bar_on_request():
    err = io.StringIO()
    bar = sim.Progress("best-fit", err)
    for step in range(1000):
        bar.update(step, 1000)
    bar.done(1000)
    lines = err.getvalue().split("\r")
    assert 100 < len(lines) <= 202
    assert "100.0% 1000/1000 events" in lines[-1]
    assert lines[-1].endswith("\n")


def test_progress_flag_draws_on_stderr(capsys):
    assert sim.main(["--cluster", "meeting", "--workload", "meeting",
                     "--policies", "best-fit", "--progress"],
                    out=io.StringIO()) == 0
    assert "100.0% 4/4 events" in capsys.readouterr().err


def openb_like(tmp_path, hosts=12, pods=400, seed=7):
    """A small openb-shaped trace where CPU and memory run out before
    the GPUs do on some hosts."""
    rng = random.Random(seed)
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\n" + "".join(
        f"n{i},{rng.choice([16000, 32000, 64000])},"
        f"{rng.choice([65536, 131072])},{rng.choice([1, 2, 4, 8])},V100\n"
        for i in range(hosts)))
    lines = []
    for i in range(pods):
        gpus = rng.choice([1, 1, 1, 2, 4])
        milli = rng.choice([250, 460, 500, 1000]) if gpus == 1 else 1000
        lines.append(f"p{i},{rng.choice([2000, 6000, 12000])},"
                     f"{rng.choice([8192, 16384, 32768])},{gpus},{milli},,"
                     f"LS,Running,{i},{i + rng.randint(5, 60)},{i}\n")
    trace = tmp_path / "pods.csv"
    trace.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,"
                     "qos,pod_phase,creation_time,deletion_time,"
                     "scheduled_time\n" + "".join(lines))
    return f"openb:{nodes}", f"openb:{trace}"


@pytest.mark.parametrize("policy", sim.POLICIES)
@pytest.mark.parametrize("mode", ["replay", "fill"])
def test_index_agrees_when_cpu_and_memory_run_out(tmp_path, policy, mode):
    cluster, workload = openb_like(tmp_path)
    assert_index_matches_scan(cluster, workload, policy, mode)


def test_a_host_without_cpu_is_left_out_however_well_it_packs():
    full, roomy = (sim._host(name, [(2, 4)], cpu=4000, memory=1024)
                   for name in ("full", "roomy"))
    full.regions[0].used = 2  # the better packing, but no CPU left
    full.cpu_used = 3000
    index = sim.HostIndex([full, roomy], sim.Policy(
        "best-fit", sim.packing.DEFAULT_MIX, random.Random(1)))
    request = sim.Request(0, 1, 1, cpu=2000, memory=512)
    assert index.choose(request)[0] is roomy
    sim._apply((roomy, {"roomy/c0/r0": 1}), request, +1, index)
    assert roomy.cpu_used == 2000 and roomy.memory_used == 512
    small = sim.Request(0, 1, 1, cpu=1000)
    assert index.choose(small)[0] is full
