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

"""AccelTopologyFilter: choose the region nova will claim.

Nova claims ``allocation_candidates[0]`` of the host it picks, and only a
filter can change that list. This filter scores each candidate with the
shared packing function against region usage from placement, drops those
that touch a degraded region or no longer fit, and puts the best first, so
that requests fill partly used regions and whole regions stay free. It
never fails a request because of its own trouble: without usage it keeps
placement's order.

A request with a NUMA topology (pinned CPUs, ``hw:numa_nodes``,
hugepages) is scored with its ``packing.NumaAsk``: the regions' NUMA
nodes (their traits) break ties towards the node already in use, and
under its flavor's ``nova_accel:numa_affinity_policy`` the host cells nova
will give the guest are predicted with nova's own fit (``cells``, once
per host): ``required`` and ``socket`` drop the candidates whose regions
are elsewhere, ``preferred`` ranks by nearness before packing. Requests
without a NUMA topology are scored as before, at the same cost.

Usage comes from the request itself. Nova's scheduler drops placement's
``provider_summaries`` before the filters run; importing this module (which
nova's loader does when ``available_filters`` names the filter) wraps two
nova functions so that the summaries of each request's own
allocation-candidates call, and the claims of its earlier instances, ride
on its RequestSpec (see ``install``). The filter then makes no placement
call at all. Where the wrap does not hold (another nova, another
scheduler), it asks placement itself, once per instance scheduled, and
says why once.
"""

import functools
import inspect
import logging
import threading

import nova.conf
from nova import utils as nova_utils
from nova.scheduler import filters
from nova.scheduler import manager as scheduler_manager
from nova.scheduler import utils as scheduler_utils

from nova_accel_weigher import conf as accel_conf
from nova_accel_weigher import cells, packing, rooms, usage

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
accel_conf.register_opts(CONF)

# Where the filter leaves the best score for the weigher, with the request
# it belongs to (HostState objects outlive a request).
SCORE_ATTR = "accel_packing_score"


def request_key(spec_obj) -> str:
    return str(getattr(spec_obj, "instance_uuid", None) or id(spec_obj))


def _placement_adapter():
    return nova_utils.get_ksa_adapter("placement")


class _Pass:
    """What one filter pass (one instance being scheduled) works out once
    and reuses on every host: the options, the request's region classes,
    the regions' states and each shape's score (usage.RegionStates,
    usage.ShapeRanker), so that scoring a host costs the same however many
    hosts placement answered for.

    With the request's provider summaries (``request``), a host's regions
    are read from them when the host reaches the filter, tree by tree: a
    pass costs what the hosts that reach it hold, not what placement
    answered. Without them, ``ask`` gets every region at once from a
    usage source. ``numa`` is the request's NUMA side (None for a request
    without a NUMA topology)."""

    def __init__(self, key: str, request: usage.RequestPlacement | None,
                 spec_obj=None):
        opts = CONF.accel_packing
        self.key = key
        self.spec_obj = spec_obj
        self.numa = (cells.numa_request(spec_obj) if spec_obj is not None
                     else None)
        # Guest cells fitted in this pass when there are no summaries to
        # keep them with.
        self._cells: dict = {}
        # What a host carries for the weigher until it has a score.
        self.unscored = (key, None)
        self.request = request
        self.resource_classes = list(opts.resource_classes)
        self.policy = opts.policy
        self.mix = packing.parse_mix(opts.request_mix)
        # host-fragmentation reads whole hosts from the request's
        # summaries; without them it scores regions (fragmentation).
        self.rooms: rooms.HostRooms | None = None
        if self.policy == packing.POLICY_HOST_FRAGMENTATION:
            self.policy = packing.POLICY_FRAGMENTATION
            mix = rooms.mix_from(opts)
            if request is not None and mix is not None:
                self.rooms = rooms.for_request(
                    request, self.resource_classes, mix,
                    numa_nodes=self.numa is not None)
        # None until the first host with candidates says which classes and
        # usage is there (None after: no accelerators, or no usage).
        self.classes: tuple[str, ...] | None = None
        self.ranker: usage.ShapeRanker | None = None
        self._claimed: dict[str, dict[str, int]] = {}
        self._trees_read: set[str] = set()

    def ask(self, source, candidates) -> None:
        """Learn the request's region classes, and without summaries ask
        ``source()`` for their usage, once. Every allocation candidate
        answers all of the request's groups, so any one names every class
        the request asks for."""
        is_accel = packing.accel_class_test(self.resource_classes)
        self.classes = tuple(sorted(
            {rc for alloc in candidates[0]["allocations"].values()
             for rc in alloc["resources"] if is_accel(rc)}))
        if not self.classes or self.rooms is not None:
            return
        states = usage.RegionStates()
        if self.request is not None:
            # The summaries predate this request's claims: what its
            # earlier instances took is added back.
            self._claimed = usage.claimed_amounts(self.request.claimed,
                                                  self.classes)
        else:
            regions = source()(self.key, self.classes)
            if regions is None:
                return
            states.admit(regions)
        self.ranker = usage.ShapeRanker(states, self.classes, self.policy,
                                        self.mix)

    def numa_ask(self, host_state, candidates) -> packing.NumaAsk | None:
        """What the request asks of this host's regions for NUMA; None
        without a NUMA topology."""
        if self.numa is None:
            return None
        return cells.numa_ask(self.numa, host_state, self.spec_obj,
                              candidates, self.request, self._cells)

    def read_trees(self, candidates) -> None:
        """With summaries: read the regions of the provider trees this
        host's candidates draw from (its own, and any sharing provider's),
        each tree once per pass."""
        request = self.request
        if request is None:
            return
        for rp in candidates[0]["allocations"]:
            root = request.root_of(rp)
            if root is not None and root not in self._trees_read:
                self._trees_read.add(root)
                self.ranker.states.read_tree(
                    request.summaries, request.tree(root), self.classes,
                    self._claimed)


class AccelTopologyFilter(filters.BaseHostFilter):
    """One instance serves every request: nova 2026.2 schedules concurrent
    requests in native threads through the same filter object, so what a
    pass works out lives in a local ``_Pass`` (and what a request knows,
    on its RequestSpec), never on ``self``."""

    RUN_ON_REBUILD = False

    # Injectable so the simulator, the demo and tests can give usage
    # without placement. When set it is the only source: the request's
    # summaries are not read.
    usage_source: usage.UsageSource | None = None

    def _fallback(self) -> usage.UsageSource:
        if self.usage_source is not None:
            return self.usage_source
        global _placement_usage
        _warn_once(_hook_problem or (
            "this request reached the filter without the provider "
            "summaries of nova's allocation-candidates call (nova's "
            "scheduler did not hand them over through "
            "SchedulerManager._get_all_host_states)"))
        # One client for every request, as nova's own report client; two
        # threads racing here build two, which is harmless.
        if _placement_usage is None:
            _placement_usage = usage.PlacementUsage(
                _placement_adapter, CONF.accel_packing.usage_timeout)
        return _placement_usage

    def _pass(self, spec_obj) -> _Pass:
        request = (usage.request_placement(spec_obj)
                   if self.usage_source is None else None)
        return _Pass(request_key(spec_obj), request, spec_obj)

    def filter_all(self, filter_obj_list, spec_obj):
        # nova calls this once per pass over the hosts, and runs a pass per
        # instance of a multi-create: each pass adds the claims made so far
        # (or, falling back, asks placement again).
        if not self.RUN_ON_REBUILD and scheduler_utils.request_is_rebuild(
                spec_obj):
            return filter_obj_list
        this = self._pass(spec_obj)
        # A list, not a generator: nova makes one of it at once anyway.
        return [host_state for host_state in filter_obj_list
                if self._passes(host_state, this)]

    def host_passes(self, host_state, spec_obj):
        # Called alone (not through filter_all), a host is a pass of its own.
        return self._passes(host_state, self._pass(spec_obj))

    def _passes(self, host_state, this):
        try:
            setattr(host_state, SCORE_ATTR, this.unscored)
            candidates = host_state.allocation_candidates
            if not candidates:
                return True
            if this.classes is None:
                this.ask(self._fallback, candidates)
            if not this.classes:
                return True  # no accelerators: placement's order
            if this.rooms is not None:
                try:
                    ranked = this.rooms.rank(
                        candidates, this.numa_ask(host_state, candidates))
                except rooms.UnreadableSummaries:  # said once, by rooms
                    this.rooms = None  # the next hosts: placement's order
                    return True
            elif this.ranker is None:
                return True  # no usage: placement's order
            else:
                this.read_trees(candidates)
                ranked = this.ranker.rank(
                    candidates, this.numa_ask(host_state, candidates))
            # What nova's CandidateFilterMixin does, without formatting
            # every candidate for a debug line: keep the acceptable ones,
            # best first.
            host_state.allocation_candidates = [candidates[i]
                                                for i, _ in ranked]
            if not ranked:
                LOG.debug("AccelTopologyFilter: no candidate of host %s "
                          "fits a healthy region%s", host_state.host,
                          " near the guest's NUMA cells"
                          if this.numa and this.numa.policy else "")
                return False
            setattr(host_state, SCORE_ATTR, (this.key, ranked[0][1]))
            return True
        except Exception:  # nothing may raise into nova
            LOG.exception("AccelTopologyFilter failed on host %s; keeping "
                          "placement's order", host_state.host)
            return True


# -- handing nova's provider summaries to the filter
#
# SchedulerManager._get_all_host_states(context, spec_obj,
# provider_summaries) is nova's one call per request that holds both the
# request and the summaries of its allocation-candidates answer (nova
# documents it as a template method for subclasses); claim_resources is
# where nova claims an instance's candidate, between the passes of a
# multi-create. Both wraps only record on the RequestSpec and call nova's
# own function with the same arguments; neither can change what nova does.

_HOST_STATES_ARGS = ["self", "context", "spec_obj", "provider_summaries"]
_CLAIM_ARGS = ("spec_obj", "alloc_req")
_WRAPPED = "__nova_accel_wrapped__"


# Why install did not wrap nova (None: it did), and the fallback's client.
_hook_problem: str | None = None
_placement_usage: usage.PlacementUsage | None = None
_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(reason: str) -> None:
    with _warned_lock:
        if reason in _warned:
            return
        _warned.add(reason)
    LOG.warning("AccelTopologyFilter: %s; it asks placement for region "
                "usage itself, one more call per pass over the hosts.",
                reason)


def _wrap_host_states(real):
    @functools.wraps(real)
    def _get_all_host_states(self, context, spec_obj, provider_summaries):
        try:
            usage.carry(spec_obj, provider_summaries)
        except Exception:  # nothing may raise into nova
            LOG.exception("AccelTopologyFilter could not keep this "
                          "request's provider summaries")
        return real(self, context, spec_obj, provider_summaries)
    setattr(_get_all_host_states, _WRAPPED, real)
    return _get_all_host_states


def _wrap_claim(real):
    signature = inspect.signature(real)

    @functools.wraps(real)
    def claim_resources(*args, **kwargs):
        claimed = real(*args, **kwargs)
        if claimed:
            try:
                bound = signature.bind(*args, **kwargs).arguments
                usage.record_claim(bound["spec_obj"], bound["alloc_req"])
            except Exception:  # nothing may raise into nova
                LOG.exception("AccelTopologyFilter could not record a claim")
        return claimed
    setattr(claim_resources, _WRAPPED, real)
    return claim_resources


def _why_not(host_states, claim) -> str | None:
    """Why nova's functions are not the ones the wraps are made for."""
    args = list(inspect.signature(host_states).parameters)
    if args != _HOST_STATES_ARGS:
        return (f"nova's SchedulerManager._get_all_host_states takes "
                f"({', '.join(args)}), not ({', '.join(_HOST_STATES_ARGS)})")
    args = list(inspect.signature(claim).parameters)
    if not all(a in args for a in _CLAIM_ARGS):
        return (f"nova.scheduler.utils.claim_resources takes "
                f"({', '.join(args)}), without {' and '.join(_CLAIM_ARGS)}")
    return None


def install() -> None:
    """Wrap nova's two functions, once per process (importing this module
    does it). Logs at INFO what was wrapped, or at WARNING why not."""
    global _hook_problem
    manager_cls = scheduler_manager.SchedulerManager
    host_states = manager_cls._get_all_host_states
    claim = scheduler_utils.claim_resources
    if hasattr(host_states, _WRAPPED) and hasattr(claim, _WRAPPED):
        return
    _hook_problem = _why_not(host_states, claim)
    if _hook_problem is not None:
        LOG.warning("AccelTopologyFilter: %s; it will ask placement for "
                    "region usage itself.", _hook_problem)
        return
    manager_cls._get_all_host_states = _wrap_host_states(host_states)
    scheduler_utils.claim_resources = _wrap_claim(claim)
    LOG.info("AccelTopologyFilter: reading region usage from the provider "
             "summaries of nova's own allocation-candidates call (wrapped "
             "nova.scheduler.manager.SchedulerManager._get_all_host_states "
             "to keep them on each request's RequestSpec, and "
             "nova.scheduler.utils.claim_resources to count a "
             "multi-create's earlier instances); no placement call of its "
             "own.")


install()
