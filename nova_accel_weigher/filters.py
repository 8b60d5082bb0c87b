"""AccelTopologyFilter: choose the region nova will claim.

Nova claims ``allocation_candidates[0]`` of the host it picks, and only a
filter can change that list. This filter scores each candidate with the
shared packing function against region usage from placement, drops those
that touch a degraded region or no longer fit, and puts the best first, so
that requests fill partly used regions and whole regions stay free. It
never fails a request because of its own trouble: without usage it keeps
placement's order.
"""

import logging

import nova.conf
from nova import utils as nova_utils
from nova.scheduler import filters

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


class AccelTopologyFilter(filters.CandidateFilterMixin,
                          filters.BaseHostFilter):
    RUN_ON_REBUILD = False

    # Injectable so the simulator, the demo and tests can give usage
    # without placement.
    usage_source: usage.UsageSource | None = None

    def _usage(self):
        if self.usage_source is None:
            self.usage_source = usage.PlacementUsage(
                _placement_adapter, CONF.accel_packing.usage_timeout)
        return self.usage_source

    def host_passes(self, host_state, spec_obj):
        try:
            return self._host_passes(host_state, spec_obj)
        except Exception:  # nothing may raise into nova
            LOG.exception("AccelTopologyFilter failed on host %s; keeping "
                          "placement's order", host_state.host)
            return True

    def _host_passes(self, host_state, spec_obj):
        key = request_key(spec_obj)
        setattr(host_state, SCORE_ATTR, (key, None))
        opts = CONF.accel_packing
        candidates = host_state.allocation_candidates or []
        demands = [packing.region_demand(c, opts.resource_classes)
                   for c in candidates]
        if not any(demands):
            return True
        classes = {rc for c in candidates
                   for alloc in c["allocations"].values()
                   for rc in alloc["resources"]
                   if packing.is_accel_class(rc, opts.resource_classes)}
        regions = self._usage()(key, classes)
        if regions is None:
            return True
        ranked = packing.rank(demands, regions, policy=opts.policy,
                              mix=packing.parse_mix(opts.request_mix))
        order = {id(candidates[i]): position
                 for position, (i, _) in enumerate(ranked)}
        kept = self.filter_candidates(host_state,
                                      lambda c: id(c) in order)
        kept.sort(key=lambda c: order[id(c)])
        if not kept:
            LOG.debug("AccelTopologyFilter: no candidate of host %s fits "
                      "a healthy region", host_state.host)
            return False
        setattr(host_state, SCORE_ATTR, (key, ranked[0][1]))
        return True
