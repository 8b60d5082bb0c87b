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

"""What the filter reads from a published tree is what was published: the
publisher's providers, as placement's provider summaries give them to the
scheduler, read by the filter's own reader."""

import dataclasses

from accel_inventory import contract, identity, model, profiles
from accel_inventory import provider_tree
from accel_inventory import sample, sysfs
from nova_accel_weigher import usage

ROOT = "7c1e0000-0000-4000-8000-000000000001"


def summaries_of(specs, used):
    """Placement's provider_summaries of ``specs``: capacity is (total -
    reserved) x ratio; ``used`` by provider UUID."""
    found = {ROOT: {"resources": {"VCPU": {"capacity": 16, "used": 0}},
                    "traits": [], "parent_provider_uuid": None,
                    "root_provider_uuid": ROOT}}
    for spec in specs:
        found[spec.uuid] = {
            "resources": {rc: {"capacity": int((inv["total"]
                                                - inv["reserved"])
                                               * inv["allocation_ratio"]),
                               "used": used.get(spec.uuid, 0)}
                          for rc, inv in spec.inventories.items()},
            "traits": sorted(spec.traits),
            "parent_provider_uuid": spec.parent_uuid,
            "root_provider_uuid": ROOT}
    return found


def test_the_filter_reads_what_the_publisher_wrote(tmp_path):
    root = sample.build_sample_host(str(tmp_path))
    scanned = sysfs.scan_cards(root, profiles=profiles.load_profiles(None))
    inv, _ = identity.reconcile(None, scanned.cards, "compute1")
    # One card degraded (lost), one on NUMA node 1, the others as scanned.
    lost, numa = inv.cards[0], inv.cards[1]
    lost.status = model.STATUS_LOST
    numa.numa_node = 1
    specs = provider_tree.desired_tree(inv, ROOT)
    uuid_of = {spec.source_id: spec.uuid for spec in specs}
    regions = [(card, region) for card in inv.cards
               for region in card.regions if region.size]
    used = {uuid_of[region.id]: 1 for _card, region in regions[::2]}
    classes = {region.resource_class for _card, region in regions}

    read = usage.usage_from_summaries(summaries_of(specs, used), classes)

    expected = {}
    for card, region in regions:
        rp = uuid_of[region.id]
        numa_node = (card.numa_node if card.numa_node is not None
                     and card.numa_node >= 0 else None)
        expected[rp] = (0 if card.degraded else region.size,
                        used.get(rp, 0), uuid_of[card.id], numa_node,
                        card.degraded)
    assert {rp: (r.capacity, r.used, r.card, r.numa_node, r.degraded)
            for rp, r in read.items()} == expected
    assert read[uuid_of[lost.regions[0].id]].degraded
    assert {read[uuid_of[r.id]].numa_node for r in numa.regions
            if r.size} == {1}


def test_a_region_degraded_alone_is_read_degraded(tmp_path):
    root = sample.build_sample_host(str(tmp_path))
    scanned = sysfs.scan_cards(root, profiles=profiles.load_profiles(None))
    inv, _ = identity.reconcile(None, scanned.cards, "compute1")
    specs = provider_tree.desired_tree(inv, ROOT)
    region = next(s for s in specs if s.inventories)
    marked = [dataclasses.replace(region, traits=region.traits
                           | {contract.DEGRADED_TRAIT})
              if s is region else s for s in specs]
    read = usage.usage_from_summaries(summaries_of(marked, {}),
                                      set(region.inventories))
    assert read[region.uuid].degraded
    assert sum(r.degraded for r in read.values()) == 1


def test_numa_traits_read_back():
    for node in (0, 1, 7, 12):
        assert contract.numa_node_of(contract.numa_trait(node)) == node
    for other in (contract.REGION_TRAIT, "CUSTOM_ACCEL_NUMA_",
                  "CUSTOM_ACCEL_NUMA_x", contract.region_size_trait(4)):
        assert contract.numa_node_of(other) is None


def test_the_hooks_trigger_knows_our_classes_by_the_contracts_prefix():
    # The trigger may import only the standard library, so it spells the
    # prefix itself; this keeps the two the same.
    from libvirt_hooks import trigger

    extra_spec = (f'<nova:extraSpec name="resources1:'
                  f'{contract.ACCEL_PREFIX}ANYTHING">1</nova:extraSpec>')
    assert trigger.ACCEL_REQUEST.search(extra_spec.encode())
    assert not trigger.ACCEL_REQUEST.search(
        extra_spec.replace(contract.ACCEL_PREFIX, "CUSTOM_OTHER_").encode())
