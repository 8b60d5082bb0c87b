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

"""Benchmark: the inventory cache of a 500-function host.

Prints (never asserts) medians of: ``cache.load`` (the cheap structural
check the libvirt hook pays at every start), ``load(validate=True)``,
``save`` (schema validation, two fsynced copies, directory fsync),
``update`` recording one claim (lock, load, record, save), and whole
processes that import the cache module and load once, against
``python -c pass``.

Run: ``python -m tests.bench.bench_cache``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import model
from tests.common.cache_helpers import make_inventory

CARDS, REGIONS, FUNCTIONS = 25, 4, 5  # 500 functions
CLAIMED = 100


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def host():
    inv = make_inventory(cards=CARDS, regions=REGIONS, functions=FUNCTIONS)
    for i, fid in enumerate(sorted(inv.function_index())[:CLAIMED]):
        inv = claims.record_claim(inv, model.Claim(
            consumer=f"instance-{i:04d}", functions=[fid], source="hook",
            running=True, boot_id="bench", domain_name=f"instance-{i:04d}"))
    return inv


def process_ms(code, runs=7):
    return median_ms(lambda: subprocess.run(
        [sys.executable, "-c", code], check=True), runs)


def main():
    inv = host()
    functions = len(inv.function_index())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inventory.json")
        cache.save(path, inv)
        free = iter(sorted(inv.function_index())[CLAIMED:])

        def one_claim():
            fid = next(free)
            cache.update(path, lambda i: claims.record_claim(
                i, model.Claim(consumer=f"bench-{fid}", functions=[fid],
                               source="hook")))

        rows = [
            ("load (structural check)", median_ms(lambda: cache.load(path),
                                                  50)),
            ("load(validate=True)",
             median_ms(lambda: cache.load(path, validate=True), 20)),
            ("save", median_ms(lambda: cache.save(path, inv), 20)),
            ("update: record one claim", median_ms(one_claim, 20)),
            ("process: python -c pass", process_ms("pass")),
            ("process: import cache, load",
             process_ms("from accel_inventory import cache; "
                        f"cache.load({path!r})")),
            ("process: import cache, load validated",
             process_ms("from accel_inventory import cache; "
                        f"cache.load({path!r}, validate=True)")),
        ]
        size = os.path.getsize(path)
    print(f"cache of {CARDS} cards, {functions} functions, {CLAIMED} "
          f"claims: {size} bytes")
    for name, ms in rows:
        print(f"{name:40s} {ms:8.2f} ms")


if __name__ == "__main__":
    main()
