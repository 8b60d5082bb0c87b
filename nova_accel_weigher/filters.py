"""AccelTopologyFilter: choose the region nova will claim.

Nova claims ``allocation_candidates[0]`` of the host it picks, and only a
filter can change that list. This filter scores each candidate with the
shared packing function against region usage from placement, drops those
that touch a degraded region or no longer fit, and puts the best first, so
that requests fill partly used regions and whole regions stay free. It
never fails a request because of its own trouble: without usage it keeps
placement's order.

The score's NUMA term gets no instance NUMA node (``numa_node=None``). A
RequestSpec carries only the guest's own cells (and none at all unless the
flavor or image asks for NUMA placement); which host cell the guest gets
is decided after the filters, by ``numa_fit_instance_to_host`` when nova
consumes the chosen host and again in the compute's claim. Predicting it
here would repeat that fit on every host (NUMATopologyFilter's cost once
more) for the last tie-breaker of the score, and could still disagree with
the compute.
"""

import logging
from operator import itemgetter

import nova.conf
from nova import utils as nova_utils
from nova.scheduler import filters
from nova.scheduler import utils as scheduler_utils

from nova_accel_weigher import conf as accel_conf
from nova_accel_weigher import packing, usage

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


_UNSEEN = object()


def _amount(resources, classes) -> int:
    """Functions one allocation takes of the request's region classes."""
    total = 0
    for rc in classes:
        n = resources.get(rc)
        if n:
            total += n
    return total


class _Pass:
    """What one filter pass (one instance being scheduled) works out once
    and reuses on every host: the options, the request's region classes,
    placement's usage, each region's state and each score, so that scoring
    a host costs the same however many hosts placement answered for."""

    def __init__(self, key: str):
        opts = CONF.accel_packing
        self.key = key
        self.resource_classes = list(opts.resource_classes)
        self.policy = opts.policy
        self.mix = packing.parse_mix(opts.request_mix)
        # None until the first host with candidates says which classes.
        self.classes: tuple[str, ...] | None = None
        self.regions: dict[str, packing.RegionUsage] | None = None
        self.fills: dict[str, float] = {}
        # Per region provider, the number of its state (see ask).
        self.states: dict[str, int] = {}
        self.scores: dict[tuple, packing.Score | None] = {}

    def ask(self, source: usage.UsageSource, candidates) -> None:
        """Learn the request's region classes and ask ``source`` for their
        usage, once. Every allocation candidate answers all of the
        request's groups, so any one names every class the request asks
        for."""
        is_accel = packing.accel_class_test(self.resource_classes)
        self.classes = tuple(sorted(
            {rc for alloc in candidates[0]["allocations"].values()
             for rc in alloc["resources"] if is_accel(rc)}))
        if not self.classes:
            return
        regions = source(self.key, self.classes)
        if regions is None:
            return
        self.regions = dict(regions)
        self.fills = fills = packing.card_fill(self.regions)
        # A small number per distinct state of a region (what a score
        # depends on of it), so that a candidate's shape is a short tuple
        # of ints, cheap to hash. One sweep here costs less than a lookup
        # per candidate.
        ids: dict[tuple, int] = {}
        self.states = {
            rp: ids.setdefault((r.capacity, r.used, r.numa_node, r.degraded,
                                fills[r.card]), len(ids))
            for rp, r in self.regions.items()}

    def _demand(self, candidate) -> dict[str, int]:
        demand = {}
        for rp, alloc in candidate["allocations"].items():
            if rp in self.states:
                amount = _amount(alloc["resources"], self.classes)
                if amount:
                    demand[rp] = amount
        return demand

    def rank(self, candidates) -> list[tuple[int, packing.Score]]:
        """``packing.rank`` of one host's candidates against all usage.
        Each score is remembered by all it depends on (the amounts and the
        regions' states, not which regions they are): across a thousand
        hosts the same few shapes recur, and each is scored once per pass.
        Providers that are not known regions count for nothing in a score,
        so they are left out of its shape."""
        classes, states, scores = self.classes, self.states, self.scores
        # Most requests ask for one class: one lookup, no call.
        single = classes[0] if len(classes) == 1 else None
        scored = []
        for index, candidate in enumerate(candidates):
            shape = []
            for rp, alloc in candidate["allocations"].items():
                state = states.get(rp)
                if state is not None:
                    amount = (alloc["resources"].get(single, 0) if single
                              else _amount(alloc["resources"], classes))
                    if amount:
                        shape.append(state)
                        shape.append(amount)
            shape = tuple(shape)
            score = scores.get(shape, _UNSEEN)
            if score is _UNSEEN:
                score = scores[shape] = packing.score(
                    self._demand(candidate), self.regions,
                    policy=self.policy, mix=self.mix, fill_by_card=self.fills)
            if score is not None:
                scored.append((index, score))
        # Stable, as packing.rank: equal scores keep placement's order.
        scored.sort(key=itemgetter(1), reverse=True)
        return scored


class AccelTopologyFilter(filters.BaseHostFilter):
    """One instance serves every request: nova 2026.2 schedules concurrent
    requests in native threads through the same filter object, so what a
    pass works out lives in a local ``_Pass``, never on ``self``."""

    RUN_ON_REBUILD = False

    # Injectable so the simulator, the demo and tests can give usage
    # without placement.
    usage_source: usage.UsageSource | None = None

    def _usage(self):
        if self.usage_source is None:
            self.usage_source = usage.PlacementUsage(
                _placement_adapter, CONF.accel_packing.usage_timeout)
        return self.usage_source

    def filter_all(self, filter_obj_list, spec_obj):
        # nova calls this once per pass over the hosts, and runs a pass per
        # instance of a multi-create: usage is asked again each time, since
        # the previous instance's claim changed it.
        if not self.RUN_ON_REBUILD and scheduler_utils.request_is_rebuild(
                spec_obj):
            yield from filter_obj_list
            return
        this = _Pass(request_key(spec_obj))
        for host_state in filter_obj_list:
            if self._guarded(host_state, spec_obj, this):
                yield host_state

    def host_passes(self, host_state, spec_obj):
        # Called alone (not through filter_all), a host is a pass of its own.
        return self._guarded(host_state, spec_obj,
                             _Pass(request_key(spec_obj)))

    def _guarded(self, host_state, spec_obj, this):
        try:
            return self._host_passes(host_state, this)
        except Exception:  # nothing may raise into nova
            LOG.exception("AccelTopologyFilter failed on host %s; keeping "
                          "placement's order", host_state.host)
            return True

    def _host_passes(self, host_state, this):
        key = this.key
        setattr(host_state, SCORE_ATTR, (key, None))
        candidates = host_state.allocation_candidates
        if not candidates:
            return True
        if this.classes is None:
            this.ask(self._usage(), candidates)
        if this.regions is None:
            return True  # no accelerators, or no usage: placement's order
        ranked = this.rank(candidates)
        # What nova's CandidateFilterMixin does, without formatting every
        # candidate for a debug line: keep the acceptable ones, best first.
        host_state.allocation_candidates = [candidates[i] for i, _ in ranked]
        if not ranked:
            LOG.debug("AccelTopologyFilter: no candidate of host %s fits "
                      "a healthy region", host_state.host)
            return False
        setattr(host_state, SCORE_ATTR, (key, ranked[0][1]))
        return True
