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

"""The planner's plans run by ``accel-defrag plan --execute`` through
real nova (API, conductor, scheduler with our filter and weigher, two
computes on nova's fake driver) against real placement: the servers
migrate where the plan says, cold or live as their cards' kinds say,
and the regions it promised are whole free after. Nova's own migration
code moves the allocations; the real libvirt driver's cold migration is
issue 29's (tests/e2e).
"""

import io
import json

import fixtures
from nova import context as nova_context

from accel_defrag import cli
from accel_defrag import execute
from accel_defrag import nova as nova_api
from accel_defrag import planner
from accel_defrag import reader
from accel_inventory import placement
from tests.common.scheduler_base import HOST, OTHER_HOST, RC, REGION_SIZE
from tests.common.scheduler_base import SchedulerTestBase


def admin_context(env, **kwargs):
    """Nova's functional API takes who calls from headers our
    keystoneauth admin_token plugin does not send: the caller is the
    admin, as the [nova] options of an operator's workstation make it."""
    return nova_context.RequestContext("admin", "admin", is_admin=True,
                                       roles=["admin", "member", "reader"],
                                       **kwargs)


class DefragTestBase(SchedulerTestBase):
    kind = "pci"

    def setUp(self):
        super().setUp()
        # Nova 34 still uses noload(), which SQLAlchemy 2.1 deprecates, and
        # nova's WarningsFixture makes that an error on confirming a
        # migration (as tests/e2e finds on a real driver's paths).
        self.useFixture(fixtures.WarningsFilter([{
            "action": "ignore", "message": r"The noload\(\) option"}]))
        self.useFixture(fixtures.MonkeyPatch(
            "nova.api.auth.NovaKeystoneContext._create_context",
            admin_context))
        for host in (HOST, OTHER_HOST):
            self._start_compute(host)
        self.regions = {
            host: self.publish_card(host, serial=serial, regions=2,
                                    kind=self.kind)
            for serial, host in enumerate((HOST, OTHER_HOST), 1)}
        directory = self.useFixture(fixtures.TempDir()).path
        self.config, _conf = self.accel_config(directory, HOST,
                                               f"{directory}/inv.json")
        with open(self.config, "a") as f:
            f.write(f"[nova]\nauth_type = admin_token\n"
                    f"endpoint = {self.api_fixture.base_url}\n"
                    f"token = admin\n")

    def fragment(self):
        """compute1: a region with one server of 1 function, one with a
        server of 2; compute2: a region with a server of 2, one whole."""
        small = [self.boot_on(HOST, 1) for _ in range(3)]
        pair = self.boot_on(HOST, 2)
        for server in small[1:]:
            self._delete_server(server)
        other = self.boot_on(OTHER_HOST, 2)
        return small[0], pair, other

    def boot_on(self, host, functions):
        server = self._create_server(flavor_id=self.flavor(
            functions=functions), networks="none", host=host)
        assert server["OS-EXT-SRV-ATTR:host"] == host
        return server

    def defrag(self, *argv):
        out = io.StringIO()
        rc = cli.main(["--config-file", self.config, "--workers", "1",
                       *argv], out=out)
        return rc, out.getvalue()

    def placement_client(self):
        _path, conf = self.accel_config(
            self.useFixture(fixtures.TempDir()).path, HOST, "/nonexistent")
        return placement.Client(placement.load_adapter(conf))

    def whole_free(self):
        usage = self.usage_by_region(
            [r for regions in self.regions.values() for r in regions])
        return {rp for rp, used in usage.items() if used == 0}


class TestColdPlanExecuted(DefragTestBase):

    def test_the_plan_is_executed_and_frees_what_it_said(self):
        single, pair, other = self.fragment()
        [single_region] = self.regions_of(single)
        before = self.whole_free()

        rc, out = self.defrag("plan", "--free", "1", "--class", RC,
                              "--size", str(REGION_SIZE), "--format",
                              "json", "--execute", "--poll-interval", "0.1")

        assert rc == 0, out
        plan = json.loads(out)
        [move] = plan["moves"]
        # One move each would free a region; the one moving the fewest
        # functions wins: the single function, cold (a pci card), into
        # compute2's partly used region, never its whole one.
        assert (move["server"], move["from"], move["to"], move["how"]) == (
            single["id"], HOST, OTHER_HOST, "cold")
        [expected] = [r["to"]["uuid"] for r in move["regions"]]
        server = self.api.get_server(single["id"])
        assert server["status"] == "ACTIVE"
        assert server["OS-EXT-SRV-ATTR:host"] == OTHER_HOST
        assert self.regions_of(server) == {expected: 1}
        assert expected == next(iter(self.regions_of(other)))
        assert self.whole_free() == before | {single_region}
        assert [r["uuid"] for r in plan["freed"]] == [single_region]
        # The others did not move.
        for untouched in (pair, other):
            assert self.api.get_server(untouched["id"])[
                "OS-EXT-SRV-ATTR:host"] == untouched["OS-EXT-SRV-ATTR:host"]

    def test_the_most_within_two_moves(self):
        single, pair, other = self.fragment()
        rc, out = self.defrag("plan", "--free", "4", "--max-moves", "2",
                              "--class", RC, "--size", str(REGION_SIZE),
                              "--format", "json", "--execute",
                              "--poll-interval", "0.1")
        assert rc == 0, out
        plan = json.loads(out)
        # Once the single function fills compute2's hole, no host has
        # room for another move that frees a region: one move, and the
        # plan says why the others were left out.
        assert len(plan["moves"]) == 1 and len(plan["freed"]) == 1
        assert any("no room" in why for why in plan["left_out"].values())
        freed = {r["uuid"] for r in plan["freed"]}
        assert freed <= self.whole_free()
        for move in plan["moves"]:
            server = self.api.get_server(move["server"])
            assert server["OS-EXT-SRV-ATTR:host"] == move["to"]
            assert set(self.regions_of(server)) == {
                r["to"]["uuid"] for r in move["regions"]}
        assert plan["after"]["whole_free_regions"] == \
            plan["before"]["whole_free_regions"] + 1

    def test_a_move_the_scheduler_lands_badly_is_reverted_and_stops(self):
        single, pair, other = self.fragment()
        client = self.placement_client()
        cluster = reader.read(client, workers=1)
        plan = planner.plan(cluster, planner.Target(RC, REGION_SIZE, 1))
        [move] = plan.moves
        # Meanwhile another server fills the hole the plan counted on:
        # the migration can only land in compute2's whole region.
        self.boot_on(OTHER_HOST, 2)
        nova = nova_api.Nova(nova_api.load_adapter(
            cli._load_conf(cli.build_parser().parse_args(
                ["--config-file", self.config, "fragmentation"]))))
        said = []

        outcome = execute.execute(plan, cluster, nova, client, timeout=60,
                                  say=said.append, interval=0.1)

        assert outcome.failed == move and outcome.done == []
        assert "reverted, the server is back on compute1" in outcome.reason
        server = self.api.get_server(single["id"])
        assert server["status"] == "ACTIVE"
        assert server["OS-EXT-SRV-ATTR:host"] == HOST
        assert self.regions_of(server) == {move.regions[0][0]: 1}
        assert any(line.startswith("stopped: 0 of 1") for line in said)


class TestLivePlanExecuted(DefragTestBase):
    """vGPU cards (the mdev kind): nova live-migrates their servers."""

    kind = "mdev"

    def test_a_live_move(self):
        single, pair, other = self.fragment()
        [single_region] = self.regions_of(single)
        rc, out = self.defrag("plan", "--free", "1", "--class", RC,
                              "--size", str(REGION_SIZE), "--execute",
                              "--poll-interval", "0.1")
        assert rc == 0, out
        assert "live: every function it holds is of a kind nova can " \
               "live-migrate" in out
        assert f"--os-compute-api-version 2.30 server migrate " \
               f"--live-migration --host {OTHER_HOST} --wait " \
               f"{single['id']}" in out
        server = self.api.get_server(single["id"])
        assert server["OS-EXT-SRV-ATTR:host"] == OTHER_HOST
        assert server["status"] == "ACTIVE"
        assert single_region in self.whole_free()
