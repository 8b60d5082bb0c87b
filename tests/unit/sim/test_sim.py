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

"""The simulator: scenarios, metrics by hand, parsing, determinism."""

import io
import json
import math
import random

import pytest

from nova_accel_weigher import packing, sim


def run(*argv):
    out = io.StringIO()
    assert sim.main(list(argv) + ["--json"], out=out) == 0
    return json.loads(out.getvalue())["policies"]


def test_meeting_scenario_packs_with_our_scores_and_not_with_spread():
    policies = run("--cluster", "meeting", "--workload", "meeting")
    assert set(policies) == set(sim.POLICIES)
    for name in ("best-fit", "fragmentation"):
        assert policies[name]["region_rejection_rate"] == 0.0
        assert policies[name]["function_rejection_rate"] == 0.0
    # Spreading puts 1, 2 and 1 in three regions: no two whole are left.
    assert policies["spread"]["region_rejection_rate"] == 1.0


def test_meeting_lands_one_two_one_in_one_region():
    hosts = sim.build_cluster("meeting")
    chooser = sim.Policy("best-fit", sim.packing.DEFAULT_MIX, None)
    landed = []
    for request in sim.build_workload("meeting", 1, 4):
        host, demand = chooser.choose(hosts, request)
        sim._apply((host, demand), request, +1)
        landed.append(sorted(demand))
    assert landed[0] == landed[1] == landed[2]
    assert len(landed[3]) == 2 and landed[0][0] not in landed[3]


def test_metrics_on_a_hand_computed_host():
    host = sim._host("h", [(3, 4)])
    for region, used in zip(host.regions, (1, 2, 0), strict=True):
        region.used = used
    # 3 used functions fit in one region: 2 would be free, 1 is.
    assert sim.compaction_bound([host]) == 2
    assert sim.whole_free([host]) == 1
    assert sim.fragmentation([host]) == 3 + 2


def test_csv_workload_and_whole_regions(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("arrival,duration,functions,whole_region\n"
                    "0,10,4,1\n1,10,4,1\n2,10,4,1\n3,10,1,0\n")
    policies = run("--cluster", "homogeneous:1:3x4", "--workload",
                   f"csv:{path}", "--policies", "best-fit")
    assert policies["best-fit"]["region_rejection_rate"] == 0.0
    assert policies["best-fit"]["function_rejection_rate"] == 1.0


def test_same_seed_same_result_other_seed_other_workload():
    args = ("--cluster", "homogeneous:20:3x4", "--workload", "poisson:500",
            "--policies", "random,best-fit")
    assert run(*args, "--seed", "3") == run(*args, "--seed", "3")
    assert (sim.build_workload("poisson:50", 1, 4)
            != sim.build_workload("poisson:50", 2, 4))


def test_openb_mapping(tmp_path):
    nodes = tmp_path / "nodes.csv"
    nodes.write_text("sn,cpu_milli,memory_mib,gpu,model\n"
                     "n0,64000,262144,2,P100\nn1,64000,262144,0,\n")
    pods = tmp_path / "pods.csv"
    pods.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,"
                    "qos,pod_phase,creation_time,deletion_time,"
                    "scheduled_time\n"
                    "p0,1,1,1,460,,LS,Running,0,100,0\n"
                    "p1,1,1,0,0,,LS,Running,0,100,0\n"
                    "p2,1,1,2,1000,V100M16|T4,LS,Running,5,50,5\n")
    [host] = sim.build_cluster(f"openb:{nodes}")
    assert (host.cpu, host.memory, host.model) == (64000, 262144, "P100")
    assert [r.capacity for r in host.regions] == [4, 4]
    [milli] = sim.build_cluster(f"openb-milli:{nodes}")
    assert [r.capacity for r in milli.regions] == [1000, 1000]
    spec = frozenset({"V100M16", "T4"})
    # A CPU-only task takes CPU and memory that GPU tasks may need.
    assert sim.build_workload(f"openb:{pods}", 1, 4) == [
        sim.Request(0, 100, 2, cpu=1, memory=1),
        sim.Request(0, 100, 0, cpu=1, memory=1),
        sim.Request(5, 45, 4, whole_regions=2, cpu=1, memory=1,
                    gpu_spec=spec)]
    assert sim.build_workload(f"openb:{pods}", 1, 1000)[0].functions == 460
    # A task asking for other GPU models has no room on a P100 host.
    wanted = sim.build_workload(f"openb:{pods}", 1, 4)[2]
    assert not host.has_room(wanted)
    assert host.has_room(sim.Request(0, 1, 4, whole_regions=2, gpu_spec=(
        frozenset({"P100"}))))


def test_plot_is_written(tmp_path):
    target = tmp_path / "plot.png"
    assert sim.main(["--cluster", "homogeneous:5:2x4", "--workload",
                     "poisson:100", "--plot", str(target)],
                    out=io.StringIO()) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fill_order_tunes_the_trace_as_the_paper_does():
    trace = [sim.Request(0, 1, 1), sim.Request(0, 1, 2),
             sim.Request(0, 1, 4, whole_regions=2),
             sim.Request(0, 1, 0, cpu=5)]  # 11 functions
    order = sim.fill_order(trace, 30, seed=3)
    # The whole trace first, shuffled, then draws from it up to the target.
    assert sorted(order[:4], key=lambda r: (r.functions, r.cpu)) == sorted(
        trace, key=lambda r: (r.functions, r.cpu))
    assert order[:4] != trace or sim.fill_order(trace, 30, 4)[:4] != trace
    asked = sum(r.asked for r in order)
    assert asked <= 30 < asked + 8
    assert all(r in trace for r in order[4:])
    # A trace asking more than the target loses requests at random.
    less = sim.fill_order(trace, 5, seed=3)
    assert sum(r.asked for r in less) <= 5
    assert set(map(id, less)) <= set(map(id, trace))
    assert sim.fill_order([sim.Request(0, 1, 0)], 10, seed=1) == [
        sim.Request(0, 1, 0)]


def test_poisson_rate_scales_arrivals_not_shapes():
    slow = sim.build_workload("poisson:200", 4, 4)
    assert sim.build_workload("poisson:200:1", 4, 4) == slow
    fast = sim.build_workload("poisson:200:50", 4, 4)
    assert fast[-1].arrival < slow[-1].arrival / 20
    assert [r.functions for r in fast] == [r.functions for r in slow]


def test_host_fragmentation_decides_only_above_novas_weighers():
    """Our weigher weighs the best hosts 1; nova's RAM and CPU weighers
    (1.0 each) spread. At multiplier 0 nova's weighers alone choose:
    stock nova's host. At the default ours decides: one of the hosts
    ``decisive_weights`` weighs 1. Between, it depends on how far apart
    nova's weighers put the two."""
    rng = random.Random(3)
    hosts = [sim._host(f"n{i:02d}", [(1, 1000)] * rng.choice((2, 4, 8)),
                       rng.choice((32, 64, 96)) * 1000,
                       rng.choice((128, 256)) * 1024) for i in range(12)]
    mix = sim.task_mix([sim.Request(0, math.inf, 500, cpu=4000),
                        sim.Request(0, math.inf, 1000, 1, cpu=8000),
                        sim.Request(0, math.inf, 0, cpu=8000)])
    by = {m: sim.Policy("host-fragmentation", (), random.Random(1),
                        task_mix=mix, multiplier=m) for m in (0.0, 1.0, 10.0)}
    stock = sim.Policy("stock-nova", (), random.Random(1))
    differ = {1.0: 0, 10.0: 0}
    placed = 0
    for _ in range(200):
        request = sim.Request(0, math.inf, *rng.choice(
            [(500, 0), (300, 0), (1000, 1), (1000, 2), (0, 0)]),
            cpu=rng.choice((2, 4, 8)) * 1000, memory=1024)
        choices = {m: p.choose(hosts, request) for m, p in by.items()}
        if choices[10.0] is None:
            break
        assert choices[0.0][0] is stock.choose(hosts, request)[0]
        feasible = [h for h in hosts
                    if h.has_room(request) and sim.fits(h, request)]
        scores = [by[10.0]._rank_host(h, sim.host_room(h), request,
                                      sim.accel_candidates(h, request))
                  for h in feasible]
        weights = packing.decisive_weights(
            [s[0][1] if s else None for s in scores])
        assert weights[feasible.index(choices[10.0][0])] == 1.0
        for m in differ:
            differ[m] += choices[m][0] is not choices[0.0][0]
        sim._apply(choices[10.0], request, +1)
        placed += 1
    assert placed > 60
    # Ours overrides nova's weighers more often the more it weighs.
    assert 0 < differ[1.0] < differ[10.0]


@pytest.mark.parametrize("policy", ["soft-anti-affinity", "soft-affinity"])
def test_soft_group_members_go_where_novas_hint_weigher_puts_them(policy):
    """Six hosts of one card; one group of three members asking one
    function each, arriving after a server that made one host the best
    to pack. host-fragmentation weighs a member only among the hosts
    nova's hint weigher puts first: anti-affinity spreads the members
    over three hosts, affinity gathers them on the first one's host."""
    requests = [sim.Request(0, math.inf, 1)] + sim.soft_groups(
        [sim.Request(i, math.inf, 1) for i in range(1, 4)], 1.0, 3, policy,
        seed=1)
    assert [r.group for r in requests] == [-1, 0, 0, 0]
    hosts = [sim._host(f"h{i}", [(2, 4)]) for i in range(6)]
    chooser = sim.Policy("host-fragmentation", sim.packing.DEFAULT_MIX,
                         random.Random(1))
    on_host: dict[str, int] = {}
    chooser.group_hosts = lambda group: on_host
    landed = []
    for request in requests:
        host, demand = chooser.choose(hosts, request)
        sim._apply((host, demand), request, +1)
        if request.group >= 0:
            on_host[host.name] = on_host.get(host.name, 0) + 1
            landed.append(host.name)
    if policy == "soft-anti-affinity":
        assert len(set(landed)) == 3
    else:
        assert len(set(landed)) == 1
    # Without the hint every member packs onto the partly used host.
    packed = sim.Policy("host-fragmentation", sim.packing.DEFAULT_MIX,
                        random.Random(1))
    first = requests[0]
    hosts = [sim._host(f"h{i}", [(2, 4)]) for i in range(6)]
    sim._apply(packed.choose(hosts, first), first, +1)
    alone = {packed.choose(hosts, sim.Request(0, math.inf, 1))[0].name
             for _ in range(3)}
    assert len(alone) == 1


def test_hint_leaders_are_the_hosts_novas_weigher_puts_first():
    assert sim.baselines.hint_leaders(
        sim.baselines.hint_weights([1, 0, 0], "soft-anti-affinity")) == [
        False, True, True]
    assert sim.baselines.hint_leaders(
        sim.baselines.hint_weights([1, 2, 0], "soft-affinity")) == [
        False, True, False]
    assert sim.baselines.hint_leaders([0.0, 0.0]) is None
