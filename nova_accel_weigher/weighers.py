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

"""AccelPackingWeigher: prefer the host whose best candidate packs best.

AccelTopologyFilter already put each host's best candidate first and left
its score on the host state.

Under ``host-fragmentation`` the weigher scores, on every host, the
candidate nova would claim (the filter's score, or for a request the
filter did not score, the first candidate scored here on the host's room
from the request's provider summaries): how little it grows the host's
fragmentation, best fit breaking ties. Every host with the best score
weighs 1, the others 0 (``packing.decisive_weights``): where the scores
do not differ (hosts without accelerators, identical hosts, ties), every
host weighs the same and nova's own weighers decide, exactly as without
this one; never the host's name. A request that asks no accelerator is
weighed as ``[accel_packing] plain_requests`` says. A member of a
soft-affinity or soft-anti-affinity group is weighed only among the hosts
nova's hint weigher puts first (``hints``): the user's hint wins across
hosts, packing still chooses the region inside each. Without the
request's summaries it weighs as under ``fragmentation``, the filter's
fallback then.

Under the region policies it ranks hosts by the filter's score, so a
request lands on a host whose region is partly used rather than opening a
whole region elsewhere; requests without accelerators weigh 0 everywhere.
A negative multiplier spreads instead.
"""

import logging

import nova.conf
from nova.scheduler import utils
from nova.scheduler import weights

from nova_accel_weigher import conf as accel_conf
from nova_accel_weigher import cells, hints, packing, rooms, usage
from nova_accel_weigher.filters import SCORE_ATTR, request_key

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
accel_conf.register_opts(CONF)

MULTIPLIER_KEY = "accel_packing_weight_multiplier"
# Where weigh_objects leaves each host's multiplier for nova to ask next.
MULTIPLIER_ATTR = "accel_packing_multiplier"


class AccelPackingWeigher(weights.BaseHostWeigher):

    def weight_multiplier(self, host_state):
        multiplier = getattr(host_state, MULTIPLIER_ATTR, None)
        if multiplier is None:
            multiplier = _multiplier(host_state,
                                     CONF.accel_packing.weight_multiplier)
        return multiplier

    def weigh_objects(self, weighed_obj_list, weight_properties):
        # nova's loop, with what is the same for every host (the request's
        # key, the option: an oslo.config read costs 2 us) read once per
        # pass rather than once per host. nova asks weight_multiplier of
        # each host right after this, on the same (per-request) host
        # states: the multiplier is left on them.
        key = request_key(weight_properties)
        opts = CONF.accel_packing
        configured = opts.weight_multiplier
        for weighed in weighed_obj_list:
            setattr(weighed.obj, MULTIPLIER_ATTR,
                    _multiplier(weighed.obj, configured))
        hosts = [weighed.obj for weighed in weighed_obj_list]
        first = _hint_leaders(hosts, weight_properties)
        request = usage.request_placement(weight_properties)
        if opts.policy == packing.POLICY_HOST_FRAGMENTATION:
            mix = rooms.mix_from(opts)
            if request is not None and mix is not None:
                if first is None:
                    return _host_weights(hosts, request, key, opts, mix,
                                         weight_properties)
                # Decided among the hosts the hint puts first only.
                among = iter(_host_weights(
                    [h for h, lead in zip(hosts, first, strict=True)
                     if lead], request, key, opts, mix, weight_properties))
                return [next(among) if lead else 0.0 for lead in first]
        weights = [_weight(host, key) for host in hosts]
        if first is None:
            return weights
        # No host the hint does not put first weighs more than one it does.
        floor = min(w for w, lead in zip(weights, first, strict=True)
                    if lead)
        return [w if lead else min(w, floor)
                for w, lead in zip(weights, first, strict=True)]

    def _weigh_object(self, host_state, weight_properties):
        return _weight(host_state, request_key(weight_properties))


def _multiplier(host_state, configured: float) -> float:
    # Without aggregates nova's lookup would find no override.
    if not host_state.aggregates:
        return configured
    return utils.get_weight_multiplier(host_state, MULTIPLIER_KEY, configured)


def _host_weights(hosts, request: usage.RequestPlacement, key: str, opts,
                  mix: rooms.MixRule, spec_obj) -> list[float]:
    try:
        numa_req = cells.numa_request(spec_obj)
        host_rooms = rooms.for_request(request, opts.resource_classes, mix,
                                       numa_nodes=numa_req is not None)
        scores = []
        # Every candidate answers all of the request's groups: the first
        # says whether it asks accelerators.
        asks_accelerators = None
        for host_state in hosts:
            candidates = host_state.allocation_candidates
            if candidates and asks_accelerators is None:
                asks_accelerators = bool(packing.region_demand(
                    candidates[0], opts.resource_classes))
            owner, score = getattr(host_state, SCORE_ATTR, (None, None))
            if owner != key or score is None:
                score = None
                if candidates:
                    # As the filter scores: a NUMA ask for requests with
                    # accelerators only.
                    numa_ask = (cells.numa_ask(numa_req, host_state,
                                               spec_obj, candidates, request)
                                if numa_req and asks_accelerators else None)
                    ranked = host_rooms.rank(candidates[:1], numa_ask)
                    score = ranked[0][1] if ranked else None
            scores.append(score)
        if asks_accelerators:
            return packing.decisive_weights(scores)
        if opts.plain_requests == accel_conf.IGNORE:
            return [0.0] * len(hosts)
        if opts.plain_requests == accel_conf.PREFER_PLAIN_HOSTS:
            return packing.plain_host_weights(scores, [
                host_rooms.accelerated(host.allocation_candidates) is True
                for host in hosts])
        return packing.decisive_weights(scores)
    except rooms.UnreadableSummaries:  # said once, by rooms
        return [0.0] * len(hosts)
    except Exception:  # nothing may raise into nova
        LOG.exception("AccelPackingWeigher failed; every host weighs 0 for "
                      "this request")
        return [0.0] * len(hosts)


def _hint_leaders(hosts, spec_obj) -> list[bool] | None:
    """``hints.leaders``, None too when the hint puts every host first
    (it then says nothing between them)."""
    try:
        first = hints.leaders(hosts, spec_obj)
    except Exception:  # nothing may raise into nova
        LOG.exception("AccelPackingWeigher could not read the request's "
                      "server group; weighing as without one")
        return None
    return None if first is None or all(first) else first


def _weight(host_state, key: str) -> float:
    owner, score = getattr(host_state, SCORE_ATTR, (None, None))
    if score is None or owner != key:
        return 0.0
    # An int when the filter scored under host-fragmentation.
    return score.value if isinstance(score, packing.Score) else float(score)
