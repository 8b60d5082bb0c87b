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

"""The hosts a user's server-group hint puts first.

A member of a soft-affinity or soft-anti-affinity group asks nova to
gather or spread it with the group; the user's hint wins over packing
across hosts. AccelPackingWeigher therefore weighs such a request only
among the hosts that nova's own hint weigher, with its own multiplier
(per aggregate too), puts first, and packing still chooses the region
inside each host. Nova's weigher objects are asked, not imitated, so
their arithmetic stays nova's.
"""

import logging
from collections.abc import Sequence

from nova import weights as nova_weights
from nova.scheduler.weights import affinity

LOG = logging.getLogger(__name__)

# Stateless: ``_weigh_object`` reads only the host and the request, and
# nova's ``weigh_objects`` (which keeps bounds on the object) is not used.
_HINT_WEIGHERS = {
    "soft-affinity": affinity.ServerGroupSoftAffinityWeigher(),
    "soft-anti-affinity": affinity.ServerGroupSoftAntiAffinityWeigher(),
}


def _soft_policy(spec_obj) -> str | None:
    try:
        group = spec_obj.instance_group
    except Exception:  # an unset field raises; a request without a group
        return None
    return getattr(group, "policy", None) if group else None


def leaders(host_states: Sequence, spec_obj) -> list[bool] | None:
    """Per host, whether nova's hint weigher for the request's soft
    server-group policy gives it the highest weight (as nova adds it:
    normalised over the hosts, times its multiplier); None when the
    request is in no soft-affinity or soft-anti-affinity group."""
    weigher = _HINT_WEIGHERS.get(_soft_policy(spec_obj))
    if weigher is None:
        return None
    raw = [weigher._weigh_object(host, spec_obj) for host in host_states]
    values = [weigher.weight_multiplier(host) * weight
              for host, weight in zip(host_states,
                                      nova_weights.normalize(raw),
                                      strict=True)]
    top = max(values, default=0.0)
    return [value == top for value in values]
