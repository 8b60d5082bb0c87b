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

"""Our flavor extra specs, for nova's API to validate.

nova-api loads validators from the ``nova.api.extra_spec_validators``
entry point (``nova.api.validation.extra_specs.validators``); installed
beside nova-api, this one makes ``openstack flavor set --property
nova_accel:numa_affinity_policy=...`` refuse a value the scheduler and
the hook would not understand (and, as for nova's own namespaces, any
unknown ``nova_accel:`` key), instead of the scheduler warning later.
"""

from nova.api.validation.extra_specs import base

from accel_inventory.contract import NUMA_AFFINITY_SPEC, NUMA_POLICIES

EXTRA_SPEC_VALIDATORS = [
    base.ExtraSpecValidator(
        name=NUMA_AFFINITY_SPEC,
        description=(
            "The NUMA affinity policy of the accelerators nova-accel "
            "publishes (the instance's CUSTOM_ACCEL_* resources), for an "
            "instance with a NUMA topology (pinned CPUs, hw:numa_nodes, "
            "hugepages). If ``required``, only regions on one of the host "
            "NUMA nodes the instance's CPUs and memory are on; if "
            "``socket``, on a node of the same socket as one of them; if "
            "``preferred``, regions there first, any others when none is "
            "free. The scheduler's AccelTopologyFilter chooses so, and the "
            "libvirt hook refuses (required, socket) or logs (preferred) a "
            "start whose devices are elsewhere. Modelled on "
            "hw:pci_numa_affinity_policy, which covers devices nova's PCI "
            "tracker manages only."),
        value={
            "type": str,
            "description": "The accelerators' NUMA affinity policy",
            "enum": list(NUMA_POLICIES),
        },
    ),
]


def register():
    return EXTRA_SPEC_VALIDATORS
