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

"""Builders and checks shared by the cache, claims and CLI tests.

Inventories here are built directly from the model (no scanner) so that
the cache and claim logic is tested on its own; the CLI tests use the
scanner's FakeSysfs for real trees.
"""

import json
import pathlib

import pytest

from accel_inventory import cache
from accel_inventory import model


def make_card(serial: int, regions: int = 2, functions: int = 4,
              status: str = model.STATUS_OK) -> model.Card:
    card_id = f"dsn-{serial:016x}"
    bus = 0x10 + serial
    card = model.Card(
        id=card_id, kind="pci", vendor_id="1172", product_id="5052",
        serial=f"{serial:016x}", identity_source="dsn",
        address=f"0000:{bus:02x}:00.0", numa_node=serial % 2, status=status)
    for r in range(regions):
        region = model.Region(
            id=model.region_id(card_id, r), index=r,
            resource_class="CUSTOM_ACCEL_PCI_1172_5052",
            address=f"0000:{bus:02x}:00.{r}")
        for f in range(functions):
            region.functions.append(model.Function(
                id=model.function_id(card_id, r, f),
                address=f"0000:{bus:02x}:{1 + f // 8:02x}.{f % 8}",
                attrs={"vf_index": f}))
        card.regions.append(region)
    return card


def make_inventory(cards: int = 2, regions: int = 2,
                   functions: int = 4) -> model.Inventory:
    return model.Inventory(
        hostname="compute-1", scanned_at=1700000000.0,
        cards=[make_card(i, regions, functions) for i in range(cards)])


def assert_valid_cache(path) -> dict:
    """The document at ``path`` passes the shipped JSON schema."""
    document = json.loads(pathlib.Path(path).read_text())
    assert cache.schema_errors(document) == []
    return document


@pytest.fixture(autouse=True)
def every_cache_is_valid(tmp_path):
    """After each test, every cache left in tmp_path matches the schema.

    A cache is what ``cache.save`` wrote: a file with a ``.good`` copy
    beside it; both are checked. Files a test corrupts on purpose live
    under a ``broken`` folder and are skipped.
    """
    yield
    for good in tmp_path.rglob("*" + cache.GOOD_SUFFIX):
        if "broken" in good.parts:
            continue
        assert_valid_cache(good)
        main = good.with_name(good.name[:-len(cache.GOOD_SUFFIX)])
        if main.exists():
            assert_valid_cache(main)
