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

"""``[accel_packing]``: how the filter and the weigher pack requests.

nova-scheduler loads our classes into its own process, so the options are
registered on nova's global configuration when they are imported.
"""

from oslo_config import cfg

from nova_accel_weigher import packing

accel_packing_group = cfg.OptGroup(
    "accel_packing", title="Accelerator packing",
    help="AccelTopologyFilter orders each host's allocation candidates so "
         "that nova claims the one that packs best; AccelPackingWeigher "
         "prefers the host whose best candidate packs best.")

accel_packing_opts = [
    cfg.ListOpt("resource_classes", default=[],
                help="Resource classes whose providers are regions. Empty "
                     "means every class starting with ``CUSTOM_ACCEL_``. "
                     "List nova's own ``CUSTOM_PCI_<vendor>_<product>`` "
                     "classes here "
                     "to pack VF requests across the PFs of nova's PCI "
                     "providers too."),
    cfg.StrOpt("policy", default=packing.POLICY_FRAGMENTATION,
               choices=packing.POLICIES,
               help="fragmentation (the default, the winner in "
                    "BENCHMARKS.rst): choose the placement that least grows "
                    "the free capacity the request mix cannot use "
                    "(FGD-like), ties by best fit. "
                    "best-fit: fill partially used regions first, leave the "
                    "least free, prefer the fuller card, then the "
                    "instance's NUMA node."),
    cfg.DictOpt("request_mix", default={"1": "0.4", "2": "0.2",
                                        "region4": "0.4"},
                help="Expected request mix for the fragmentation policy: "
                     "functions-per-request (or regionN for a whole region "
                     "of N functions) to relative weight."),
    cfg.FloatOpt("weight_multiplier", default=10.0,
                 help="Multiplier of AccelPackingWeigher. Positive packs "
                      "hosts (prefers the host whose region is partly "
                      "used); negative spreads. Nova normalises every "
                      "weigher to [0, 1] before multiplying, and its RAM, "
                      "CPU and disk weighers (1.0 each by default) spread, "
                      "so packing decides between hosts only when this "
                      "exceeds the sum of their multipliers. Requests "
                      "without accelerators, and hosts whose best "
                      "candidates score alike, weigh the same here "
                      "whatever the multiplier. Overridable per aggregate "
                      "by the metadata key accel_packing_weight_multiplier."),
    cfg.FloatOpt("usage_timeout", default=2.0, min=0.1,
                 help="Seconds the filter waits for placement's answer to "
                      "its own usage call, which it makes only when a "
                      "request carries no provider summaries of nova's "
                      "(see the scheduling guide). Past it the filter "
                      "keeps placement's order and logs once."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(accel_packing_group)
    conf.register_opts(accel_packing_opts, group=accel_packing_group)


def list_opts():
    return [(accel_packing_group, accel_packing_opts)]
