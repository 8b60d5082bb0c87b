"""The host index chooses exactly what a look at every host chooses."""

import io
import random

import pytest

from nova_accel_weigher import sim


@pytest.mark.parametrize("policy", sim.POLICIES)
@pytest.mark.parametrize("cluster,workload,mode", [
    ("mixed:12", "poisson:1500", "replay"),
    ("homogeneous:25:3x4", "poisson:1500", "replay"),
    ("mixed:10", "poisson:600", "fill"),
])
def test_index_gives_the_same_run_as_looking_at_every_host(
        policy, cluster, workload, mode):
    requests = sim.build_workload(workload, 1, 4)
    indexed = sim.simulate(cluster, requests, policy, mode, 1.3, 1,
                           indexed=True)
    scanned = sim.simulate(cluster, requests, policy, mode, 1.3, 1,
                           indexed=False)
    assert indexed.metrics == scanned.metrics
    assert indexed.timeline == scanned.timeline
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
            old_scan, old_index = held.pop(0)
            sim._apply(old_scan, -1)
            sim._apply(old_index, -1, index)
        by_scan = scan.choose(scan_hosts, request)
        by_index = index.choose(request)
        if by_scan is None:
            assert by_index is None
            continue
        assert by_index[0].name == by_scan[0].name
        assert by_index[1] == by_scan[1]
        sim._apply(by_scan, +1)
        sim._apply(by_index, +1, index)
        held.append((by_scan, by_index))


def test_equal_host_states_share_one_score_but_keep_host_order():
    hosts = sim.build_cluster("homogeneous:4:3x4")
    index = sim.HostIndex(hosts, sim.Policy(
        "fragmentation", sim.packing.DEFAULT_MIX, random.Random(1)))
    calls = []
    real = index.policy.best_scored
    index.policy.best_scored = lambda h, r: calls.append(h) or real(h, r)
    host, demand = index.choose(sim.Request(0, 1, 1))
    # Four empty hosts are one state: scored once, the first host wins.
    assert len(calls) == 1 and host is hosts[0]
    sim._apply((host, demand), +1, index)
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
