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

"""The cache under many writer processes: the suite's slowest tests.

Eight writers saving 400 claims at once under the lock, and a writer
SIGKILLed again and again, for 200 saved claims. test_cache_file kills a
writer twelve times; here the kills go on until 200 writes have gone
through. The writer does nothing but load, change and save, so a kill
lands inside one of those at a random point. After every kill both files
on disk (the cache itself, not only the copy a load falls back to, and
the last good copy) parse and pass the schema, and every claim the writer
reported saved is still there.
"""

import multiprocessing
import os
import random
import signal
import time

from accel_inventory import cache, claims, model
from tests.common.cache_helpers import assert_valid_cache
from tests.common.cache_helpers import every_cache_is_valid  # noqa: F401 (autouse)
from tests.common.cache_helpers import make_inventory

FORK = multiprocessing.get_context("fork")
WRITES = 200
READY = b"ready\n"


def _claim_many(path, worker, count, fids):
    for j in range(count):
        fid = fids[worker * count + j]
        cache.update(path, lambda inv, fid=fid, j=j: claims.record_claim(
            inv, model.Claim(consumer=f"vm-{worker}-{j}", functions=[fid],
                             source="hook")), timeout=120)


def test_concurrent_writers_lose_no_claim(tmp_path):
    path = str(tmp_path / "inventory.json")
    workers, count = 8, 50
    inv = make_inventory(cards=10, regions=5, functions=8)
    fids = sorted(inv.function_index())
    assert len(fids) == workers * count
    cache.save(path, inv)
    procs = [FORK.Process(target=_claim_many, args=(path, w, count, fids))
             for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * workers
    final = cache.load(path, validate=True)
    assert len(final.claims) == workers * count
    for w in range(workers):
        for j in range(count):
            assert claims.functions_of(final, f"vm-{w}-{j}") == [
                fids[w * count + j]]
    assert claims.inconsistencies(final) == []


def claim_until_killed(path, prefix, fids, report):
    """Claim one function after another the way the hook does (claim
    writes skip the schema, which keeps each write short), reporting
    each saved claim on ``report``, after a first line saying it runs."""
    os.write(report, READY)
    for i, fid in enumerate(fids):
        cache.update(path, lambda inv, i=i, fid=fid: claims.record_claim(
            inv, model.Claim(consumer=f"{prefix}-{i}", functions=[fid],
                             source="hook")), timeout=10, validate=False)
        os.write(report, f"{i}\n".encode())


def test_two_hundred_writes_under_sigkill_lose_nothing(tmp_path):
    path = str(tmp_path / "inventory.json")
    inv = make_inventory(cards=1, regions=1, functions=WRITES + 10)
    fids = sorted(inv.function_index())
    cache.save(path, inv)
    # Kill after a few writes on average, however fast this machine writes,
    # so that 200 writes take many kills at many different points.
    started = time.perf_counter()
    for _ in range(5):
        cache.update(path, lambda current: current, timeout=10,
                     validate=False)
    # The window then follows the machine: a kill that met no write (the
    # machine slowed down since the writes were timed) widens it.
    window = 8 * (time.perf_counter() - started) / 5
    rng = random.Random(8)
    saved: set[str] = set()
    kills = 0
    while len(saved) < WRITES:
        assert kills < 1000, f"only {len(saved)} writes in {kills} kills"
        todo = [f for f in fids if f not in saved]
        read, write = os.pipe()
        child = FORK.Process(target=claim_until_killed,
                             args=(path, f"k{kills}", todo, write))
        child.start()
        os.close(write)
        with os.fdopen(read, "rb") as f:
            # The kill's time counts from the writer running, not from the
            # fork: on a loaded machine a fork alone can take longer than
            # eight writes, and the kills would then never meet a write.
            assert f.readline() == READY
            time.sleep(rng.uniform(0.0, window))
            os.kill(child.pid, signal.SIGKILL)
            child.join(10)
            kills += 1
            written = [todo[int(line)] for line in f.read().split()]
        if not written:
            window *= 1.5
        saved.update(written)
        assert_valid_cache(path)
        assert_valid_cache(cache.good_copy_path(path))
        loaded = cache.load(path, validate=True)
        held = {f for c in loaded.claims.values() for f in c.functions}
        assert saved <= held, f"kill {kills}: lost {saved - held}"
        assert claims.inconsistencies(loaded) == []
    assert kills >= 20
