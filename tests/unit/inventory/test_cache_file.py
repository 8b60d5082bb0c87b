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

"""The JSON cache: schema, atomic saves, recovery, the writers' lock."""

import dataclasses
import json
import logging
import re
import multiprocessing
import os
import stat
import threading

import pytest

from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import model
from tests.common.cache_helpers import assert_valid_cache
from tests.common.cache_helpers import every_cache_is_valid  # noqa: F401 (autouse)
from tests.common.cache_helpers import make_inventory

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "inventory.json")


@pytest.fixture
def broken(tmp_path):
    """A cache path whose files tests corrupt on purpose."""
    (tmp_path / "broken").mkdir()
    return str(tmp_path / "broken" / "inventory.json")


def claimed(inv, consumer, *fids, running=False):
    return claims.record_claim(inv, model.Claim(
        consumer=consumer, functions=list(fids), source="hook",
        running=running, boot_id="boot-a" if running else None))


# -- schema ----------------------------------------------------------------

def test_schema_is_shipped_as_package_data():
    assert os.path.isfile(cache.SCHEMA_FILE)
    with open(cache.SCHEMA_FILE) as f:
        schema = json.load(f)
    assert schema["properties"]["version"] == {"const": model.CACHE_VERSION}


def test_schema_accepts_what_the_model_writes():
    inv = claimed(make_inventory(), "vm-1", "dsn-0000000000000000/r0/f1")
    assert cache.schema_errors(model.to_dict(inv)) == []


def test_schema_knows_every_model_field():
    # A field added to model.py must be added to the schema too, or saves
    # of documents that use it would fail.
    schema = json.load(open(cache.SCHEMA_FILE))
    defs = schema["$defs"]
    for cls, props in [(model.Inventory, schema["properties"]),
                       (model.Card, defs["card"]["properties"]),
                       (model.Region, defs["region"]["properties"]),
                       (model.Function, defs["function"]["properties"]),
                       (model.Claim, defs["claim"]["properties"]),
                       (model.Cleaning, defs["cleaning"]["properties"])]:
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(props) == fields, cls.__name__


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d.update(version=2), "version"),
    (lambda d: d["cards"][0].update(kind="fpga"), "cards/0/kind"),
    (lambda d: d["cards"][0].update(status="gone"), "cards/0/status"),
    (lambda d: d["cards"][0].update(identity_source="bdf"),
     "cards/0/identity_source"),
    (lambda d: d["cards"][0].update(vendor_id="0x1172"),
     "cards/0/vendor_id"),
    (lambda d: d["cards"][0]["regions"][0].update(resource_class="VGPU"),
     "cards/0/regions/0/resource_class"),
    (lambda d: d["cards"][0]["regions"][0]["functions"][0].pop("address"),
     "cards/0/regions/0/functions/0"),
    (lambda d: d["cards"][0].update(colour="red"), "cards/0"),
    (lambda d: d["claims"].update(vm={"consumer": "vm"}), "claims/vm"),
])
def test_schema_rejects(mutate, where):
    document = model.to_dict(make_inventory())
    mutate(document)
    errors = cache.schema_errors(document)
    assert errors and errors[0].startswith(where + ":"), errors


def test_schema_accepts_pci_resource_classes_of_nova():
    inv = make_inventory()
    inv.cards[0].regions[0].resource_class = "CUSTOM_PCI_10DE_1EB8"
    assert cache.schema_errors(model.to_dict(inv)) == []


# -- save and load ------------------------------------------------------------

def test_load_without_cache_is_none(path):
    assert cache.load(path) is None


def test_round_trip(path):
    inv = claimed(make_inventory(), "vm-1", "dsn-0000000000000001/r1/f3",
                  running=True)
    cache.save(path, inv)
    assert cache.load(path) == inv
    assert cache.load(path, validate=True) == inv
    assert_valid_cache(path)


def test_save_writes_private_files_and_a_good_copy(path):
    cache.save(path, make_inventory())
    for name in (path, cache.good_copy_path(path)):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600
    with open(path, "rb") as a, open(cache.good_copy_path(path), "rb") as b:
        assert a.read() == b.read()
    assert os.stat(path).st_ino != os.stat(cache.good_copy_path(path)).st_ino
    assert sorted(os.listdir(os.path.dirname(path))) == [
        "inventory.json", "inventory.json.good"]


def test_save_creates_the_directory(tmp_path):
    path = str(tmp_path / "var" / "lib" / "nova-accel" / "inventory.json")
    cache.save(path, make_inventory())
    assert cache.load(path) == make_inventory()


def test_save_fsyncs_file_then_directory(path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    cache.save(path, make_inventory())
    assert synced == [False, False, True]


def test_failed_save_keeps_the_old_cache(path, monkeypatch):
    old = make_inventory(cards=1)
    cache.save(path, old)

    def fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(cache.CacheError, match="No space left"):
        cache.save(path, make_inventory(cards=3))
    monkeypatch.undo()
    assert cache.load(path) == old
    assert sorted(os.listdir(os.path.dirname(path))) == [
        "inventory.json", "inventory.json.good"]


def test_save_refuses_a_document_that_breaks_the_schema(path):
    cache.save(path, make_inventory(cards=1))
    bad = make_inventory(cards=2)
    bad.cards[1].status = "gone"
    with pytest.raises(cache.CacheInvalid, match="cards/1/status"):
        cache.save(path, bad)
    assert cache.load(path) == make_inventory(cards=1)


def test_save_refuses_claims_that_disagree(path):
    inv = make_inventory()
    inv.cards[0].regions[0].functions[0].claimed_by = "vm-ghost"
    with pytest.raises(cache.CacheInvalid, match="vm-ghost"):
        cache.save(path, inv)
    assert cache.load(path) is None


# -- recovery ---------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    pytest.param(lambda raw: raw[:len(raw) // 2], id="truncated"),
    pytest.param(lambda raw: b"", id="empty"),
    pytest.param(lambda raw: b"\x00" * 4096, id="zeroed"),
    pytest.param(lambda raw: b"[1, 2, 3]", id="not-an-object"),
    pytest.param(lambda raw: re.sub(rb'"version":\s*1', b'"version":7', raw),
                 id="other-version"),
    pytest.param(lambda raw: raw.replace(b'"regions"', b'"regionz"'),
                 id="renamed-field"),
    pytest.param(lambda raw: re.sub(rb'"claimed_by":\s*"vm-1"',
                                    b'"claimed_by":"vm-2"', raw),
                 id="claims-disagree"),
])
def test_corrupt_cache_falls_back_to_the_good_copy(broken, damage, caplog):
    good = claimed(make_inventory(), "vm-1", "dsn-0000000000000000/r0/f0")
    cache.save(broken, good)
    with open(broken, "rb") as f:
        raw = f.read()
    with open(broken, "wb") as f:
        f.write(damage(raw))
    with caplog.at_level(logging.ERROR, logger="accel_inventory.cache"):
        assert cache.load(broken) == good
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert broken in record.getMessage()
    assert cache.good_copy_path(broken) in record.getMessage()


def test_schema_invalid_cache_is_caught_when_validating(broken, caplog):
    good = make_inventory()
    cache.save(broken, good)
    document = model.to_dict(good)
    document["cards"][0]["kind"] = "fpga"
    with open(broken, "w") as f:
        json.dump(document, f)
    assert cache.load(broken).cards[0].kind == "fpga"  # cheap check only
    with caplog.at_level(logging.ERROR, logger="accel_inventory.cache"):
        assert cache.load(broken, validate=True) == good
    assert "cards/0/kind" in caplog.text


def test_missing_cache_with_a_good_copy_uses_it(broken, caplog):
    cache.save(broken, make_inventory())
    os.unlink(broken)
    with caplog.at_level(logging.ERROR, logger="accel_inventory.cache"):
        assert cache.load(broken) == make_inventory()
    assert "is missing" in caplog.text


def test_next_save_repairs_a_corrupt_cache(broken):
    cache.save(broken, make_inventory(cards=1))
    with open(broken, "w") as f:
        f.write('{"version": 1, "hostn')
    cache.update(broken, lambda inv: claimed(
        inv, "vm-9", "dsn-0000000000000000/r1/f1"))
    assert_valid_cache(broken)
    assert claims.functions_of(cache.load(broken), "vm-9") == [
        "dsn-0000000000000000/r1/f1"]


def test_corrupt_cache_without_good_copy_is_an_error(broken):
    with open(broken, "w") as f:
        f.write("{")
    with pytest.raises(cache.CacheError) as e:
        cache.load(broken)
    assert broken in str(e.value)
    assert "no last good copy" in str(e.value)
    assert "accel-inventory scan" in str(e.value)


def test_both_copies_corrupt_is_an_error(broken):
    cache.save(broken, make_inventory())
    for name in (broken, cache.good_copy_path(broken)):
        with open(name, "w") as f:
            f.write("{")
    with pytest.raises(cache.CacheError, match="unusable too"):
        cache.load(broken)


def test_unreadable_cache_is_an_error_not_none(broken):
    os.mkdir(broken)  # a directory where the file should be
    # Not "move the file aside and rescan", which cannot help (14.7).
    with pytest.raises(cache.CacheError, match="is a directory, not a "
                       "file; set \\[inventory\\] cache_path"):
        cache.load(broken)
    for write in (lambda: cache.save(broken, make_inventory(cards=1)),
                  lambda: cache.update(broken, lambda inv: inv)):
        with pytest.raises(cache.CacheError, match="is a directory"):
            write()


def test_readers_never_see_a_partial_write(path):
    small, large = make_inventory(cards=1), make_inventory(cards=12)
    cache.save(path, small)
    stop = threading.Event()
    seen, errors = set(), []

    def read():
        while not stop.is_set():
            try:
                seen.add(len(cache.load(path).cards))
            except Exception as e:  # noqa: BLE001 - collected, asserted
                errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(20):
            cache.save(path, large if i % 2 == 0 else small)
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert seen <= {1, 12}


# -- the lock -----------------------------------------------------------------

def _hold_lock(path, ready, release):
    with cache.locked(path, timeout=5):
        ready.set()
        release.wait(10)


def test_lock_times_out_naming_the_holder(path):
    ready, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_lock, args=(path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(cache.LockTimeout) as e:
            with cache.locked(path, timeout=0.2):
                pass
        assert f"process {holder.pid}" in str(e.value)
        assert cache.lock_path(os.path.abspath(path)) in str(e.value)
    finally:
        release.set()
        holder.join(10)
    with cache.locked(path, timeout=1):
        pass


def test_lock_is_reentrant_in_one_thread(path):
    cache.save(path, make_inventory())
    with cache.locked(path, timeout=1):
        with cache.locked(path, timeout=1):
            pass
        cache.update(path, lambda inv: inv, timeout=1)


def test_lock_excludes_other_threads(path):
    order = []
    inside = threading.Event()

    def other():
        inside.wait(5)
        with cache.locked(path, timeout=5):
            order.append("other")

    t = threading.Thread(target=other)
    t.start()
    with cache.locked(path, timeout=1):
        inside.set()
        t.join(0.2)
        order.append("first")
    t.join(5)
    assert order == ["first", "other"]


def test_readers_need_no_lock(path):
    cache.save(path, make_inventory())
    with cache.locked(path, timeout=1):
        assert cache.load(path) == make_inventory()


# -- update -----------------------------------------------------------------

def test_update_applies_and_returns(path):
    cache.save(path, make_inventory())
    fid = "dsn-0000000000000001/r0/f2"
    new = cache.update(path, lambda inv: claimed(inv, "vm-1", fid))
    assert new == cache.load(path)
    assert new.function_index()[fid][2].claimed_by == "vm-1"


def test_update_without_cache_says_scan_first(path):
    with pytest.raises(cache.CacheError, match="accel-inventory scan"):
        cache.update(path, lambda inv: inv)


def test_update_that_fails_changes_nothing(path):
    cache.save(path, make_inventory())

    def mutate_then_fail(inv):
        inv.cards.clear()
        raise ValueError("boom")

    with pytest.raises(ValueError):
        cache.update(path, mutate_then_fail)
    assert cache.load(path) == make_inventory()
    with pytest.raises(TypeError, match="not an Inventory"):
        cache.update(path, lambda inv: None)
    assert cache.load(path) == make_inventory()


def _claim_until_killed(path, prefix, fids, report):
    for i, fid in enumerate(fids):
        cache.update(path, lambda inv, i=i, fid=fid: claims.record_claim(
            inv, model.Claim(consumer=f"{prefix}-{i}", functions=[fid],
                             source="hook")), timeout=10)
        os.write(report, f"{i}\n".encode())


def test_a_writer_killed_at_any_point_loses_no_saved_claim(path):
    import random
    import signal
    import time

    inv = make_inventory(cards=4, regions=5, functions=10)
    fids = sorted(inv.function_index())
    cache.save(path, inv)
    rng = random.Random(20261124)
    done = set()
    for round_ in range(12):
        todo = [f for f in fids if f not in {
            f for c in cache.load(path).claims.values() for f in c.functions}]
        read, write = os.pipe()
        child = FORK.Process(target=_claim_until_killed,
                             args=(path, f"vm{round_}", todo, write))
        child.start()
        os.close(write)
        time.sleep(rng.uniform(0.0, 0.15))
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        with os.fdopen(read) as f:
            reported = [todo[int(line)] for line in f.read().split()]
        loaded = cache.load(path, validate=True)  # never corrupt
        held = {f for c in loaded.claims.values() for f in c.functions}
        done.update(reported)
        assert done <= held, f"round {round_}: lost {done - held}"
        assert claims.inconsistencies(loaded) == []
    assert done, "the writer never got a save through; slow the kills"


def test_save_without_schema_still_refuses_what_a_load_rejects(path):
    # The hook's claim writes skip the schema (update(validate=False)).
    cache.save(path, make_inventory(cards=1))
    bad = make_inventory(cards=1)
    bad.cards[0].regions[0].functions[0].claimed_by = "vm-ghost"
    with pytest.raises(cache.CacheInvalid, match="vm-ghost"):
        cache.update(path, lambda inv: bad, validate=False)
    other_version = make_inventory(cards=1)
    other_version.version = 2
    with pytest.raises(cache.CacheInvalid, match="version"):
        cache.save(path, other_version, validate=False)
    assert cache.load(path, validate=True) == make_inventory(cards=1)
    fid = "dsn-0000000000000000/r0/f2"
    new = cache.update(path, lambda inv: claimed(inv, "vm-1", fid),
                       validate=False)
    assert cache.load(path, validate=True) == new


# -- root never writes through a link, and cleans up after a killed writer --

UUID_A = "aaaaaaaa-0000-4000-8000-000000000001"
UUID_B = "bbbbbbbb-0000-4000-8000-000000000002"


def test_markers_never_unlink_through_a_link(path, tmp_path):
    """``<cache>.assigned`` made a link to another folder: the sync once
    unlinked every name there that was not an assigned consumer."""
    cache.save(path, make_inventory())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("x")
    (elsewhere / UUID_B).write_text("y")
    os.symlink(elsewhere, cache.markers_path(path))
    with pytest.raises(cache.CacheError, match="symbolic link"):
        cache.set_markers(path, {UUID_A})
    assert sorted(os.listdir(elsewhere)) == sorted(["precious", UUID_B])


def test_markers_only_ever_unlink_uuid_names(path):
    cache.save(path, make_inventory())
    cache.set_markers(path, {UUID_A, UUID_B})
    folder = cache.markers_path(path)
    with open(os.path.join(folder, "README"), "w") as f:
        f.write("not ours")
    cache.set_markers(path, {UUID_B, "../escape", "not-a-uuid"})
    assert sorted(os.listdir(folder)) == ["README", UUID_B]
    assert not os.path.exists(os.path.join(os.path.dirname(path), "escape"))


def test_the_lock_never_truncates_through_a_link(path, tmp_path):
    cache.save(path, make_inventory())
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    os.symlink(victim, cache.lock_path(path))
    with pytest.raises(cache.CacheError, match="cannot open the cache lock"):
        cache.update(path, lambda inv: inv, timeout=1)
    assert victim.read_text() == "root's own file\n"


def dead_pid():
    child = multiprocessing.get_context("fork").Process(target=lambda: None)
    child.start()
    child.join()
    return child.pid


def test_the_lock_holder_removes_the_temporaries_of_killed_writers(path):
    cache.save(path, make_inventory())
    folder = os.path.dirname(path)
    gone, alive = dead_pid(), os.getpid()
    stale = [f"inventory.json.tmp.{gone}.1",
             f"inventory.json.good.tmp.{gone}.1",
             f"inventory.json.placement.json.tmp.{gone}.1"]
    kept = [f"inventory.json.tmp.{alive}.99", "other.json.tmp.1.1"]
    for name in stale + kept:
        with open(os.path.join(folder, name), "w") as f:
            f.write("a full copy of the cache")
    cache.update(path, lambda inv: inv)
    left = set(os.listdir(folder))
    assert not left & set(stale)
    assert set(kept) <= left


def test_a_save_that_fails_at_the_good_copy_changes_neither(path,
                                                            monkeypatch):
    old = make_inventory(cards=1)
    cache.save(path, old)
    before = {name: open(name, "rb").read()
              for name in (path, cache.good_copy_path(path))}
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the last good copy's temporary file
            raise OSError(28, "No space left on device")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(cache.CacheError, match="No space left"):
        cache.save(path, make_inventory(cards=3))
    monkeypatch.undo()
    assert {name: open(name, "rb").read() for name in before} == before
    assert sorted(os.listdir(os.path.dirname(path))) == [
        "inventory.json", "inventory.json.good"]


# (A link to /dev/zero is the hook's test, in a process with a memory
# bound: a regression would read here until the machine runs out.)
@pytest.mark.parametrize("what", ["fifo", "link"])
def test_a_cache_that_is_not_a_file_falls_back_to_the_good_copy(broken, what,
                                                                caplog):
    inv = make_inventory(cards=1)
    cache.save(broken, inv)
    os.unlink(broken)
    if what == "fifo":
        os.mkfifo(broken)
    else:
        os.symlink(cache.good_copy_path(broken), broken)
    with caplog.at_level(logging.ERROR):
        assert cache.load(broken) == inv
    assert "is unusable" in caplog.text
