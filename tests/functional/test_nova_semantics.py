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

"""Where accelerators are not at stake, nova's scheduling stays nova's.

Each scenario runs twice in nova's functional framework (real scheduler,
real placement, the fake driver), once with the filter and the weigher
enabled as README's "Install in a real cloud" says and once without, in a
child process each time so that both start from the same state; the
hosts the servers land on must be the same. The scenarios are built so
that stock nova's answer is not trivial (it spreads plain servers, and a
group's members spread or gather by their policy), which is asserted too:
a comparison that any weigher would pass proves nothing.
"""

import collections

import pytest

from tests.common.nova_child import record, run_child
from tests.common.scheduler_base import RC, SchedulerTestBase

HOSTS = ("compute1", "compute2", "compute3", "compute4")


class Scenarios(SchedulerTestBase):
    """Each test records the hosts its servers landed on, in boot order
    (tests.common.nova_child); run by the tests below in a child
    process, not collected here."""

    __test__ = False

    def setUp(self):
        super().setUp()
        # Server groups with a policy field, servers with networks='none'.
        self.api.microversion = "2.64"

    def plain_flavor(self):
        return self._create_flavor(name="plain", memory_mb=256, vcpu=1,
                                   disk=1, ephemeral=0)

    def start(self, count, cards=False):
        for serial, host in enumerate(HOSTS[:count], 1):
            self._start_compute(host)
            if cards:
                self.publish_card(host, serial=serial)

    def settled(self, server):
        """``server`` once ACTIVE and the computes' periodic update has
        run, as when boots are a minute apart: without it the scheduler
        sees the host still busy with the build (nova's IoOpsWeigher, -1.0,
        then outweighs the soft-affinity weigher)."""
        server = self._wait_for_state_change(server, "ACTIVE")
        self._run_periodics()
        return server

    def boot_plain(self, flavor_id):
        return self.settled(self.api.post_server({"server": self._build_server(
            flavor_id=flavor_id, networks="none")}))

    def boot_into(self, group_id, flavor_id):
        body = self._build_server(flavor_id=flavor_id, networks="none")
        return self.settled(self.api.post_server({
            "server": body, "os:scheduler_hints": {"group": group_id}}))

    def group_of(self, policy, count, flavor_id):
        group = self.api.post_server_groups({"name": policy,
                                             "policy": policy})
        return [self.boot_into(group["id"], flavor_id)
                for _ in range(count)]

    def keep(self, scenario, servers):
        record({"accel": self.with_accel, "scenario": scenario,
                "hosts": [s["OS-EXT-SRV-ATTR:host"] for s in servers]})

    def test_plain_servers_on_plain_hosts(self):
        self.start(4)
        flavor = self.plain_flavor()
        self.keep("plain", [self.boot_plain(flavor) for _ in range(8)])

    def test_soft_anti_affinity_plain(self):
        self.start(3)
        self.keep("soft-anti-affinity plain", self.group_of(
            "soft-anti-affinity", 3, self.plain_flavor()))

    def test_soft_affinity_plain(self):
        self.start(3)
        self.keep("soft-affinity plain", self.group_of(
            "soft-affinity", 3, self.plain_flavor()))

    def test_soft_anti_affinity_accel(self):
        self.start(3, cards=True)
        self.keep("soft-anti-affinity accel", self.group_of(
            "soft-anti-affinity", 3, self.flavor(functions=1)))

    def test_soft_affinity_accel(self):
        self.start(3, cards=True)
        self.keep("soft-affinity accel", self.group_of(
            "soft-affinity", 3, self.flavor(functions=1)))

    def test_plain_servers_beside_accel_servers(self):
        # Two hosts with a card each; one server with a function, then
        # plain servers: stock nova spreads the plain ones by RAM and CPU.
        self.start(2, cards=True)
        servers = [self.settled(self.boot(functions=1))]
        flavor = self.plain_flavor()
        servers += [self.boot_plain(flavor) for _ in range(3)]
        self.keep("plain beside accel", servers)


class StockScenarios(Scenarios):
    with_accel = False


class AccelScenarios(Scenarios):
    with_accel = True


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    """Per scenario, the hosts of stock nova's run and of ours."""
    runs = run_child(tmp_path_factory.mktemp("semantics") / "runs.jsonl",
                     __name__, ["StockScenarios", "AccelScenarios"])
    by_scenario = collections.defaultdict(dict)
    for run in runs:
        by_scenario[run["scenario"]][run["accel"]] = run["hosts"]
    return by_scenario


def test_plain_servers_land_where_stock_nova_puts_them(landed):
    stock, ours = landed["plain"][False], landed["plain"][True]
    assert sorted(collections.Counter(stock).values()) == [2, 2, 2, 2]
    assert ours == stock


@pytest.mark.parametrize("requests", ["plain", "accel"])
def test_soft_anti_affinity_spreads_as_in_stock_nova(landed, requests):
    runs = landed[f"soft-anti-affinity {requests}"]
    assert len(set(runs[False])) == 3
    assert runs[True] == runs[False]


@pytest.mark.parametrize("requests", ["plain", "accel"])
def test_soft_affinity_gathers_as_in_stock_nova(landed, requests):
    runs = landed[f"soft-affinity {requests}"]
    assert len(set(runs[False])) == 1
    assert runs[True] == runs[False]


def test_plain_servers_beside_accel_servers_land_as_in_stock_nova(landed):
    runs = landed["plain beside accel"]
    assert len(set(runs[False][1:])) == 2
    assert runs[True] == runs[False]


class TestRegionSizesTheMixDoesNotName(SchedulerTestBase):
    """One card of regions of 8, 2 and 4 functions: a request for two
    takes the 2-function region whatever order placement lists them in
    (placement is told to shuffle its candidates for every request)."""

    def test_two_functions_take_the_two_function_region_every_time(self):
        self._start_compute("compute1")
        regions = self.publish_card("compute1", sizes=(8, 2, 4))
        self.placement.fixture.conf_fixture.config(
            randomize_allocation_candidates=True, group="placement")
        given = self.record_candidates()
        landed = []
        for _ in range(8):
            server = self.boot(functions=2)
            landed.append(self.regions_of(server))
            self._delete_server(server)
            self._wait_until_deleted(server)
        assert landed == [{regions[1]: 2}] * 8
        # Placement did list them in other orders (else this proves
        # nothing about the order).
        firsts = {self.first_region_for("compute1", candidates)
                  for candidates in given}
        assert len(firsts) > 1
        assert all(RC in self.placement.get(
            f"/resource_providers/{rp}/inventories").body["inventories"]
            for rp in regions)
