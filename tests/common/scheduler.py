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

"""Scheduler inputs for the filter's and weigher's tests: allocation
candidates, placement's provider summaries for a tree of regions, nova's
fake host states, and a filter pass through nova's own handler. Imports
nova: for the py3 environment's second pytest run only."""

from nova.scheduler import filters as nova_filters
from nova.tests.unit.scheduler import fakes

from accel_inventory import contract
from nova_accel_weigher import filters

RC = "CUSTOM_ACCEL_FPGA"


def candidate(*regions, amount=1):
    return {"allocations": {r: {"resources": {RC: amount}} for r in regions},
            "mappings": {"1": list(regions)}}


def summaries_of(regions, root="root", degraded_cards=()):
    """Placement's provider_summaries for one tree: a root, the cards named
    by ``regions``' RegionUsage.card under it, the regions under those."""
    out = {root: {"resources": {"VCPU": {"capacity": 16, "used": 2}},
                  "traits": [], "parent_provider_uuid": None,
                  "root_provider_uuid": root}}
    for r in regions.values():
        out[r.card] = {
            "resources": {}, "parent_provider_uuid": root,
            "root_provider_uuid": root,
            "traits": [contract.DEGRADED_TRAIT] if r.card in degraded_cards
            else []}
    for rp, r in regions.items():
        traits = ["CUSTOM_ACCEL_REGION"]
        if r.degraded:
            traits.append(contract.DEGRADED_TRAIT)
        if r.numa_node is not None:
            traits.append(contract.numa_trait(r.numa_node))
        out[rp] = {"resources": {RC: {"capacity": r.capacity,
                                      "used": r.used}},
                   "traits": traits, "parent_provider_uuid": r.card,
                   "root_provider_uuid": root}
    return out


def host(name, candidates):
    return fakes.FakeHostState(name, name, {
        "allocation_candidates": list(candidates),
        "aggregates": []})


def run_filter(accel_filter, hosts, spec_obj):
    handler = nova_filters.HostFilterHandler()
    # nova's handler instantiates classes; give it ours, bound to usage.
    accel_filter_class = type("BoundFilter", (filters.AccelTopologyFilter,),
                              {"usage_source": accel_filter.usage_source})
    return list(handler.get_filtered_objects([accel_filter_class()], hosts,
                                             spec_obj))
