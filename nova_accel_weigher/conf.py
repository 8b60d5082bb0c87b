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

DEFAULT_WEIGHT_MULTIPLIER = 10.0

# What the weigher does with a request that asks no accelerator.
PREFER_PLAIN_HOSTS = "prefer-plain-hosts"
STRANDING = "stranding"
IGNORE = "ignore"
PLAIN_REQUESTS = (
    (PREFER_PLAIN_HOSTS,
     "hosts without accelerators first, nova's weighers deciding among "
     "them; where only hosts with accelerators can take the server, the "
     "one where its CPU and memory strand the least accelerator capacity "
     "(as PCIWeigher keeps plain servers off PCI hosts)"),
    (STRANDING,
     "every host by the accelerator capacity the server's CPU and memory "
     "would strand there (hosts without accelerators strand nothing and "
     "tie with hosts where it strands nothing; nova's weighers decide "
     "among those)"),
    (IGNORE, "no weight: nova's weighers alone place such servers"),
)

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
    cfg.StrOpt("policy", default=packing.POLICY_HOST_FRAGMENTATION,
               choices=packing.POLICIES,
               help="host-fragmentation (the default, the winner in "
                    "BENCHMARKS.rst): FGD's fragmentation over the whole "
                    "host (all its regions, its CPU and memory left, as "
                    "the request's provider summaries give them) against "
                    "task_mix, plus the accelerator capacity its CPU can "
                    "no longer feed; the weigher names the host that "
                    "grows it least for every request, requests without "
                    "accelerators too. Without the request's summaries "
                    "(see the scheduling guide) the filter falls back to "
                    "fragmentation. "
                    "fragmentation: choose the region placement that "
                    "least grows the free capacity request_mix cannot "
                    "use (FGD-like, one candidate's regions only), ties "
                    "by best fit. "
                    "best-fit: fill partially used regions first, leave the "
                    "least free, prefer the fuller card, then the "
                    "instance's NUMA node."),
    cfg.DictOpt("request_mix", default={},
                help="Expected request mix for the fragmentation policy "
                     "(and host-fragmentation without task_mix): "
                     "functions-per-request (or regionN for a whole region "
                     "of N functions) to relative weight, e.g. "
                     "1:0.4,2:0.2,region4:0.4. Empty (the default): the "
                     "cloud's own, 1 function 0.4, 2 functions 0.2 and a "
                     "whole region of every region size the request's "
                     "provider summaries hold, 0.4 shared between the "
                     "sizes."),
    cfg.ListOpt("task_mix", default=[],
                help="Expected mix of requests for host-fragmentation, "
                     "requests without accelerators included, as "
                     "WEIGHT:SHAPE[:VCPU[:MEMORY_MB[:CLASS|CLASS]]] "
                     "entries: SHAPE is N (N functions of one region), "
                     "regionN (a whole region of N functions), KxregionN "
                     "(K whole regions) or 0 (no accelerator); VCPU and "
                     "MEMORY_MB what it asks of the host (in placement's "
                     "units); the classes, the accelerator resource "
                     "classes it may use (any when left out). Weights are "
                     "relative. Write it from the flavors' demand: the "
                     "CPU asked per function by the accelerator kinds "
                     "says how much of a host's accelerator capacity its "
                     "CPU can still feed. Empty: request_mix's shapes, "
                     "without CPU or memory. Example: "
                     "0.5:2:4:8192,0.3:1xregion4:8:16384,0.2:0:2:4096"),
    cfg.StrOpt("plain_requests", default=PREFER_PLAIN_HOSTS,
               choices=PLAIN_REQUESTS,
               help="What AccelPackingWeigher does, under "
                    "host-fragmentation, with a request that asks no "
                    "accelerator. Under the region policies such "
                    "requests get no weight from it."),
    cfg.FloatOpt("weight_multiplier", default=DEFAULT_WEIGHT_MULTIPLIER,
                 help="Multiplier of AccelPackingWeigher. Nova normalises "
                      "every weigher's weights to [0, 1] and adds them "
                      "times their multipliers; its RAM and CPU weighers "
                      "(1.0 each by default; disk, I/O and the others "
                      "when hosts differ in them) spread. Under "
                      "host-fragmentation the weigher gives 1 to every "
                      "host whose best candidate scores best and 0 to "
                      "the others (the same to all where scores do not "
                      "differ: nova's weighers then decide), so it "
                      "decides whenever this exceeds what the other "
                      "weighers can add between two hosts: the sum of "
                      "their multipliers times their normalised "
                      "difference (the default 10 exceeds nova's 6 of "
                      "RAM, CPU, disk, I/O, hypervisor version and PCI; "
                      "BuildFailureWeigher and CrossCellWeigher, 1000000, "
                      "keep deciding, as does any weigher raised above "
                      "it). For a request in a soft-affinity or "
                      "soft-anti-affinity server group it weighs only "
                      "among the hosts nova's hint weighers put first. "
                      "Under the region policies it gives the best "
                      "candidate's score, so packing decides only between "
                      "hosts whose scores differ enough; requests without "
                      "accelerators weigh the same everywhere there. "
                      "Positive packs; negative spreads. Overridable per "
                      "aggregate by the metadata key "
                      "accel_packing_weight_multiplier."),
    cfg.FloatOpt("usage_timeout", default=2.0, min=0.1,
                 help="Seconds the filter waits for placement's whole "
                      "answer to its own usage call (a deadline, not a "
                      "bound on each read), which it makes only when a "
                      "request carries no provider summaries of nova's "
                      "(see the scheduling guide). Past it the filter "
                      "keeps placement's order and logs once."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(accel_packing_group)
    conf.register_opts(accel_packing_opts, group=accel_packing_group)


def list_opts():
    return [(accel_packing_group, accel_packing_opts)]
