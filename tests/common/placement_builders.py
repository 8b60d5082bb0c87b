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

"""Inventories built from the model directly, for the pure placement code.

The publisher's tests against real placement build hosts with the
scanner's FakeSysfs; the pure functions only need the data.
"""

from accel_inventory import model

HOST = "compute-1"
ROOT = "4f1d1b5e-5bd2-4b3a-9f7e-1f9e0c3a2d10"


def make_card(serial: int, regions: int = 2, functions: int = 4, *,
              kind: str = "pci", numa_node: int | None = 0,
              status: str = model.STATUS_OK,
              sizes: tuple[int, ...] = ()) -> model.Card:
    """A card of ``regions`` regions of ``functions`` functions, or of one
    region per entry of ``sizes`` with that many functions."""
    card_id = f"dsn-{serial:016x}"
    card = model.Card(
        id=card_id, kind=kind, vendor_id="1172", product_id="5052",
        serial=f"{serial:016x}", identity_source="dsn",
        address=f"0000:{0x10 + serial:02x}:00.0", numa_node=numa_node,
        status=status)
    for r, size in enumerate(sizes or (functions,) * regions):
        region = model.Region(
            id=model.region_id(card_id, r), index=r,
            resource_class="CUSTOM_ACCEL_PCI_1172_5052",
            address=f"0000:{0x10 + serial:02x}:00.{r}")
        region.functions = [
            model.Function(id=model.function_id(card_id, r, f),
                           address=f"0000:{0x40 + serial:02x}:{r:02x}.{f}")
            for f in range(size)]
        card.regions.append(region)
    return card


def make_inventory(cards: int = 2, regions: int = 2,
                   functions: int = 4) -> model.Inventory:
    return model.Inventory(
        hostname=HOST,
        cards=[make_card(i, regions, functions) for i in range(cards)])
