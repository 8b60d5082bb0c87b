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


class AccelPackingWeigher(weights.BaseHostWeigher):

    def weight_multiplier(self, host_state):
        return utils.get_weight_multiplier(
            host_state, 'accel_packing_weight_multiplier',
            CONF.accel_packing.weight_multiplier)

    def _weigh_object(self, host_state, weight_properties):
        key, score = getattr(host_state, SCORE_ATTR, (None, None))
        if score is None or key != request_key(weight_properties):
            return 0.0
        return score.value
