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
its score on the host state; this weigher ranks hosts by that score, so a
request lands on a host whose region is partly used rather than opening a
whole region elsewhere. Requests without accelerators weigh 0 everywhere.
A negative multiplier spreads instead.
"""

import nova.conf
from nova.scheduler import utils
from nova.scheduler import weights

from nova_accel_weigher import conf as accel_conf
from nova_accel_weigher.filters import SCORE_ATTR, request_key

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
        configured = CONF.accel_packing.weight_multiplier
        weights_ = []
        for weighed in weighed_obj_list:
            host_state = weighed.obj
            setattr(host_state, MULTIPLIER_ATTR,
                    _multiplier(host_state, configured))
            weights_.append(_weight(host_state, key))
        return weights_

    def _weigh_object(self, host_state, weight_properties):
        return _weight(host_state, request_key(weight_properties))


def _multiplier(host_state, configured: float) -> float:
    # Without aggregates nova's lookup would find no override.
    if not host_state.aggregates:
        return configured
    return utils.get_weight_multiplier(host_state, MULTIPLIER_KEY, configured)


def _weight(host_state, key: str) -> float:
    owner, score = getattr(host_state, SCORE_ATTR, (None, None))
    if score is None or owner != key:
        return 0.0
    return score.value
