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

"""Every file beside the cache is named by accel_inventory.cache alone (the
hook's stdlib trigger spells the markers' folder itself, checked equal):
no other module of ours names one, so none writes one behind its back."""

import os
import re

from accel_inventory import cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
SUFFIXES = (cache.GOOD_SUFFIX, cache.LOCK_SUFFIX, cache.STATE_SUFFIX,
            cache.ASSIGNED_SUFFIX)
OWNERS = {os.path.join("accel_inventory", "cache.py"),
          os.path.join("libvirt_hooks", "common.py")}


def test_only_the_owner_names_the_files_beside_the_cache():
    literal = re.compile("|".join(
        r"""["']""" + re.escape(s) + r"""["']""" for s in SUFFIXES))
    naming = []
    for package in ("accel_inventory", "libvirt_hooks",
                    "nova_accel_weigher"):
        for directory, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                path = os.path.relpath(os.path.join(directory, name), ROOT)
                if name.endswith(".py") and path not in OWNERS:
                    with open(os.path.join(ROOT, path)) as f:
                        naming += [f"{path}:{n}" for n, line in
                                   enumerate(f, 1) if literal.search(line)]
    assert naming == []


def test_the_hooks_spelling_of_the_markers_is_the_owners():
    from libvirt_hooks import common

    assert common.marker_path("/c/inv.json", "u") == os.path.join(
        cache.markers_path("/c/inv.json"), "u")
