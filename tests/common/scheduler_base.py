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

"""The scheduler's base in nova's functional framework: nova's scheduler
with the filter and the weigher loaded (or stock nova), real placement
behind it, and cards published under the compute nodes. The scheduler's
functional tests (tests/functional) and the end-to-end tests (tests/e2e)
build on it."""

import threading
from urllib.parse import urlsplit

import fixtures
from keystoneauth1 import loading as ks_loading
from keystoneauth1 import session as ks_session
from nova import conf as nova_conf
from nova.scheduler import manager as scheduler_manager
from nova.scheduler import utils as scheduler_utils
from nova.scheduler.client import report

from accel_inventory import model
from accel_inventory import placement
from accel_inventory import provider_tree
from nova_accel_weigher import conf as accel_conf
from nova_accel_weigher import filters
from tests.common.nova_base import NovaAccelTestCase
from tests.common.placement_builders import make_card

CONF = nova_conf.CONF
accel_conf.register_opts(CONF)
HOST = "compute1"
OTHER_HOST = "compute2"
REGION_SIZE = 4
RC = make_card(1).regions[0].resource_class
WHOLE_REGION = f"CUSTOM_ACCEL_REGION_SIZE_{REGION_SIZE}"

ACCEL_FILTER = "nova_accel_weigher.filters.AccelTopologyFilter"
ACCEL_WEIGHER = "nova_accel_weigher.weighers.AccelPackingWeigher"


def accel_scheduler_flags(test, before=()):
    """Our filter (after nova's default ones and ``before``) and weigher
    (beside nova's) in the scheduler, as README's nova.conf says; set
    before the scheduler starts, which is when it loads them."""
    test.flags(
        available_filters=["nova.scheduler.filters.all_filters",
                           ACCEL_FILTER],
        enabled_filters=[*CONF.filter_scheduler.enabled_filters, *before,
                         "AccelTopologyFilter"],
        weight_classes=["nova.scheduler.weights.all_weighers",
                        ACCEL_WEIGHER],
        group="filter_scheduler")


class SchedulerTestBase(NovaAccelTestCase):
    # False runs stock nova: its default filters and weighers only.
    with_accel = True

    def setUp(self):
        if self.with_accel:
            accel_scheduler_flags(self)
        super().setUp()
        # Placement's endpoint is known only now. The admin_token plugin is
        # what a deployment could put in [placement] too; its options are
        # registered by keystoneauth when it loads the plugin, so register
        # them first to be able to set them.
        CONF.register_opts(ks_loading.get_auth_plugin_conf_options(
            "admin_token"), group="placement")
        self.point_placement_at(self.placement.fixture.endpoint)
        self.flavors = {}

    def point_placement_at(self, endpoint):
        self.flags(auth_type="admin_token", endpoint=endpoint,
                   token=self.placement.fixture.token, group="placement")

    # -- hardware and flavors

    def publish_card(self, host, serial=1, regions=3, sizes=(), kind="pci"):
        """Publish one card of ``regions`` x 4 functions (or of regions of
        ``sizes`` functions) of ``kind`` under ``host``; returns its
        region providers in region order."""
        card = make_card(serial, regions=regions, functions=REGION_SIZE,
                         sizes=sizes, kind=kind)
        adapter = ks_loading.load_adapter_from_conf_options(
            CONF, "placement",
            session=ks_loading.load_session_from_conf_options(
                CONF, "placement"),
            auth=ks_loading.load_auth_from_conf_options(CONF, "placement"))
        publisher = placement.Publisher(placement.Client(adapter))
        published = publisher.publish(model.Inventory(hostname=host,
                                                      cards=[card]))
        assert not published.failed and not published.skipped
        return [provider_tree.provider_uuid(host, r.id) for r in card.regions]

    def flavor(self, functions=0, whole_regions=0):
        """A small flavor asking ``functions`` functions from one region,
        or ``whole_regions`` whole regions, each in its own group."""
        key = (functions, whole_regions)
        if key not in self.flavors:
            if functions:
                spec = {f"resources1:{RC}": str(functions)}
            else:
                spec = {"group_policy": "isolate"}
                for group in range(1, whole_regions + 1):
                    spec[f"resources{group}:{RC}"] = str(REGION_SIZE)
                    spec[f"trait{group}:{WHOLE_REGION}"] = "required"
            self.flavors[key] = self._create_flavor(
                name=f"accel-{functions}-{whole_regions}", memory_mb=256,
                vcpu=1, disk=1, ephemeral=0, extra_spec=spec)
        return self.flavors[key]

    # -- servers and where they landed

    def boot(self, **flavor):
        return self._create_server(flavor_id=self.flavor(**flavor),
                                   networks="none")

    def regions_of(self, server):
        """The region providers ``server`` holds functions of, with how
        many."""
        allocations = self._get_allocations_by_server_uuid(server["id"])
        return {rp: alloc["resources"][RC]
                for rp, alloc in allocations.items()
                if RC in alloc["resources"]}

    def record_candidates(self):
        """Every list of allocation candidates placement gives nova's
        scheduler, as given (the real call, only watched)."""
        given = []
        real = report.SchedulerReportClient.get_allocation_candidates

        def watched(client, context, resources):
            answer = real(client, context, resources)
            given.append(answer[0])
            return answer

        self.useFixture(fixtures.MonkeyPatch(
            "nova.scheduler.client.report.SchedulerReportClient."
            "get_allocation_candidates", watched))
        return given

    def first_region_for(self, host, candidates):
        """The region of ``host``'s first candidate: stock nova's claim."""
        root = self._get_provider_uuid_by_host(host)
        first = next(c for c in candidates if root in c["allocations"])
        [region] = [rp for rp, alloc in first["allocations"].items()
                    if RC in alloc["resources"]]
        return region

    def watch_scheduler_calls(self):
        """Every HTTP call made while nova's scheduler serves a request,
        as (method, path without query), one list per select_destinations
        call (placement is the only service it talks to)."""
        by_request = []
        local = threading.local()
        real_select = scheduler_manager.SchedulerManager.select_destinations
        real_request = ks_session.Session.request

        def select(manager, *args, **kwargs):
            local.calls = []
            by_request.append(local.calls)
            try:
                return real_select(manager, *args, **kwargs)
            finally:
                local.calls = None

        def request(session, url, method, *args, **kwargs):
            calls = getattr(local, "calls", None)
            if calls is not None:
                path = urlsplit(url).path
                calls.append((method, path[path.index("/", 1):]
                              if path.startswith("/placement") else path))
            return real_request(session, url, method, *args, **kwargs)

        self.useFixture(fixtures.MonkeyPatch(
            "nova.scheduler.manager.SchedulerManager.select_destinations",
            select))
        self.useFixture(fixtures.MonkeyPatch(
            "keystoneauth1.session.Session.request", request))
        return by_request

    def stock_calls(self, *servers):
        """What stock nova asks placement for one request: its candidates,
        then per server a claim (nova reads the consumer's allocations
        first, in case it is a move)."""
        return [("GET", "/allocation_candidates"),
                *((method, f"/allocations/{s['id']}")
                  for s in servers for method in ("GET", "PUT"))]

    def without_the_wrap(self):
        """nova's own functions back in place, as in a nova the wrap does
        not fit: the filter falls back to its own usage call."""
        for name, wrapped in (
                ("nova.scheduler.manager.SchedulerManager."
                 "_get_all_host_states",
                 scheduler_manager.SchedulerManager._get_all_host_states),
                ("nova.scheduler.utils.claim_resources",
                 scheduler_utils.claim_resources)):
            self.useFixture(fixtures.MonkeyPatch(
                name, getattr(wrapped, filters._WRAPPED)))
        # Each test's own "logged once".
        self.useFixture(fixtures.MonkeyPatch(
            "nova_accel_weigher.filters._warned", set()))

    def multi_create(self, count, **flavor):
        body = self._build_server(flavor_id=self.flavor(**flavor),
                                  networks="none")
        body["min_count"] = count
        self.api.post_server({"server": body})
        servers = self.api.get_servers(detail=False)
        assert len(servers) == count
        return [self._wait_for_state_change(server, "ACTIVE")
                for server in servers]

    def held(self, servers):
        """Functions held per region by ``servers`` together."""
        held = {}
        for server in servers:
            for rp, amount in self.regions_of(server).items():
                held[rp] = held.get(rp, 0) + amount
        return held

    def usage_by_region(self, regions):
        return {rp: self.placement.get(
            f"/resource_providers/{rp}/usages").body["usages"].get(RC, 0)
            for rp in regions}
