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

"""accel-sim's defragmentation during a replay (--defrag-every,
--defrag-moves): the planner's moves applied to the simulated cloud."""

import io
import json
import math

import pytest

from nova_accel_weigher import sim


def fragmented():
    """Two hosts of two regions of 4: host a with a server of 1 in each
    region, host b with 3 used in its first region."""
    hosts = [sim._host("a", [(2, 4)]), sim._host("b", [(2, 4)])]
    held, servers = {}, {}
    for key, (host, region, amount) in enumerate(
            [(hosts[0], 0, 1), (hosts[0], 1, 1), (hosts[1], 0, 3)]):
        request = sim.Request(0, math.inf, amount)
        placed = (host, {host.regions[region].name: amount})
        sim._apply(placed, request, +1)
        held[key], servers[key] = placed, (key, request)
    return hosts, held, servers


def used(hosts):
    return {r.name: r.used for h in hosts for r in h.regions}


def test_a_step_moves_what_the_planner_says_and_keeps_every_function():
    hosts, held, servers = fragmented()
    total = sum(used(hosts).values())

    made = sim.defrag_step(hosts, held, servers, size=4, wanted=1, moves=1)

    assert made == (1, 1)
    # One of a's servers went into b's hole (its tightest), never into
    # b's whole region; a's region it left is whole free.
    assert used(hosts) in (
        {"a/c0/r0": 0, "a/c0/r1": 1, "b/c0/r0": 4, "b/c0/r1": 0},
        {"a/c0/r0": 1, "a/c0/r1": 0, "b/c0/r0": 4, "b/c0/r1": 0})
    assert sum(used(hosts).values()) == total
    moved = [k for k, (host, _) in held.items() if host.name == "b"]
    assert len(moved) == 2 and all(
        held[k][1] == {"b/c0/r0": servers[k][1].functions} for k in moved)


def test_no_step_beyond_its_moves_or_its_want():
    hosts, held, servers = fragmented()
    before = used(hosts)
    assert sim.defrag_step(hosts, held, servers, 4, wanted=1,
                           moves=0) == (0, 0)
    assert used(hosts) == before


def run(*argv):
    out = io.StringIO()
    assert sim.main(list(argv), out=out) == 0
    return out.getvalue()


def test_the_replay_reports_migrations_and_accepts_more_regions():
    args = ["--cluster", "homogeneous:6:3x4", "--workload", "poisson:1500",
            "--policies", "stock-nova,host-fragmentation", "--json"]
    without = json.loads(run(*args))["policies"]
    with_ = json.loads(run(*args, "--defrag-every", "10", "--defrag-moves",
                           "2"))["policies"]
    for policy in ("stock-nova", "host-fragmentation"):
        assert without[policy]["migrations"] == 0
        assert with_[policy]["migrations"] > 0
        assert 0 < with_[policy]["migrated_share"] < 1
        assert 0 < with_[policy]["freed_regions"] <= \
            with_[policy]["migrations"] * 3
        assert with_[policy]["requests"] == without[policy]["requests"]
    # On this cloud the moves pay: more whole-region requests accepted.
    assert with_["host-fragmentation"]["region_accepted"] > \
        without["host-fragmentation"]["region_accepted"]
    table = run(*args[:-1], "--defrag-every", "10", "--defrag-moves", "2")
    assert "migrations" in table.splitlines()[0]


def test_defrag_options_go_together(capsys):
    with pytest.raises(SystemExit) as stopped:
        sim.main(["--defrag-every", "10"])
    assert stopped.value.code == 2
    assert "--defrag-every and --defrag-moves go together" in \
        capsys.readouterr().err


def test_the_same_replay_gives_the_same_moves():
    """Servers are named to the planner by the order they were placed,
    not by where they sit in memory: fresh copies of the requests replay
    the same."""
    requests = sim.build_workload("poisson:1500", 1, 4)
    runs = [sim.simulate("homogeneous:6:3x4", [
        sim.Request(r.arrival, r.duration, r.functions, r.whole_regions)
        for r in requests], "host-fragmentation", "replay", 1.3, 1,
        defrag_every=10, defrag_moves=2).metrics for _ in range(3)]
    assert runs[0]["migrations"] > 0
    assert runs[0] == runs[1] == runs[2]
