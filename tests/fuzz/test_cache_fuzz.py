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

"""Whatever bytes sit where the cache should be, load never crashes.

It returns the file's inventory, falls back to the last good copy, or
raises CacheError; with ``validate=True`` what it returns passes the
schema.
"""

import json
import os
import tempfile

from hypothesis import given
from hypothesis import strategies as st

from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import model
from tests.common.cache_helpers import make_inventory

from tests.common.hypothesis_profiles import examples

GOOD = claims.record_claim(
    make_inventory(cards=1, regions=1, functions=2),
    model.Claim(consumer="vm-1", functions=["dsn-0000000000000000/r0/f1"],
                source="hook", running=True, boot_id="b",
                created_mdevs=["m"], attach={"k": "v"}))
GOOD_DOC = model.to_dict(GOOD)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def paths_of(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths_of(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths_of(value, prefix + (i,))


ALL_PATHS = [p for p in paths_of(GOOD_DOC) if p]


@st.composite
def mutated_documents(draw):
    """The good document with one value somewhere replaced by anything."""
    document = json.loads(json.dumps(GOOD_DOC))
    where = draw(st.sampled_from(ALL_PATHS))
    node = document
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = draw(json_values)
    return json.dumps(document).encode()


def check(raw, validate):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inventory.json")
        cache.save(path, GOOD)
        with open(path, "wb") as f:
            f.write(raw)
        try:
            inv = cache.load(path, validate=validate)
        except cache.CacheError:
            raise AssertionError("the good copy was usable") from None
        if validate:
            assert cache.schema_errors(model.to_dict(inv)) == []
        os.unlink(cache.good_copy_path(path))
        try:
            cache.load(path, validate=validate)
        except cache.CacheError:
            pass


FUZZ = examples(150)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(raw):
    check(raw, validate=False)


@FUZZ
@given(json_values.map(lambda v: json.dumps(v).encode()))
def test_random_json(raw):
    check(raw, validate=True)


@FUZZ
@given(mutated_documents(), st.booleans())
def test_one_value_changed(raw, validate):
    check(raw, validate)


def test_deeply_nested_json():
    check(b"[" * 100000 + b"]" * 100000, validate=False)
