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

"""mdev function ids across any sequence of instance creations and
removals: each instance keeps its id, and its claim, for as long as it
exists. Each step changes a FakeSysfs GPU the way writing ``create`` or
``remove`` does, then runs the real scan, reconcile and keep_claims."""

import tempfile

from hypothesis import given
from hypothesis import strategies as st

from accel_inventory import claims, identity, inventory, model, profiles
from accel_inventory import sample, sysfs

from tests.common.hypothesis_profiles import examples

PROFILES = profiles.load_profiles()
GPU_BDF = "0000:86:00.0"
TYPE = "nvidia-222"
SLOTS = 4

# A step: create an instance with this UUID, or remove the n-th existing.
steps = st.lists(st.one_of(st.uuids().map(lambda u: ("create", str(u))),
                           st.integers(0, SLOTS - 1).map(
                               lambda n: ("remove", n))),
                 max_size=10)


def rescan(fs, previous):
    scanned = sysfs.scan_cards(fs.root, profiles=PROFILES).cards
    inv, _ = identity.reconcile(previous, scanned, "h")
    return inventory.keep_claims(previous, inv)


def ids_by_uuid(inv):
    return {f.address: f.id for f in inv.cards[0].functions() if f.address}


@examples(60)
@given(steps)
def test_an_instance_keeps_its_function_id_and_claim_while_it_exists(plan):
    with tempfile.TemporaryDirectory() as tmp:
        fs = sample.FakeSysfs(tmp)
        fs.add_pci(GPU_BDF, *sample.SAMPLE_GPU, klass="0x030000", dsn=0x6)
        fs.add_mdev_parent(GPU_BDF, {TYPE: SLOTS})
        inv = rescan(fs, None)
        for action, arg in plan:
            existing = sorted(ids_by_uuid(inv))
            if action == "create" and len(existing) < SLOTS \
                    and arg not in existing:
                fs.create_mdev(GPU_BDF, arg, TYPE)
            elif action == "remove" and existing:
                gone = existing[arg % len(existing)]
                fs.remove_mdev(gone)
                inv = claims.release_claim(inv, gone)
            before = ids_by_uuid(inv)
            inv = rescan(fs, inv)
            after = ids_by_uuid(inv)
            assert {u: after[u] for u in before if u in after} == {
                u: before[u] for u in before if u in after}
            # Every instance is claimed by a consumer named after it, from
            # the rescan that first saw it on.
            for uuid in set(after) - set(before):
                inv = claims.record_claim(
                    inv, model.Claim(uuid, [after[uuid]], "hook"))
            functions = inv.cards[0].functions()
            assert len({f.id for f in functions}) == len(functions) == SLOTS
            assert {f.address: f.claimed_by for f in functions
                    if f.address} == {u: u for u in after}
            assert claims.inconsistencies(inv) == []
