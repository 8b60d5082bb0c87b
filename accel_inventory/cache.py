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

"""The JSON cache: the one place the inventory is read from and written to.

Every writer (the scanner, the libvirt hook, the CLI, the agent) takes the
same lock, ``<cache>.lock``, so that a claim recorded by the hook is never
overwritten by a rescan that loaded the cache a moment earlier. Readers
take no lock: a save writes a temporary file and renames it over the cache,
so a reader sees the old document or the new one, never half of either.

After each save a second copy, ``<cache>.good``, is written the same way.
It is a separate file (not a hard link) so that a cache truncated or edited
in place still leaves an intact copy to fall back to.

Every file beside the cache is this module's to name and write:
``<cache>.lock``, ``<cache>.good``, the agent's ``<cache>.placement.json``
(what the last publisher learnt of placement) and ``<cache>.assigned/``
(one empty file per consumer the sync assigned functions, which the hook
stats at every domain start; the hook spells its name itself, see
``libvirt_hooks.common``). Others call the functions here. Each is
opened through ``safe_io`` (never through a link, never a FIFO, bounded),
and the markers folder only ever loses names that are UUIDs.

A save writes both temporary files (``<cache>.tmp.<pid>.<thread>`` and
``<cache>.good.tmp.<pid>.<thread>``) before it renames either, so a full
disk leaves both files as they were. A writer killed mid-save leaves its
temporaries behind; whoever takes the lock next removes those of writers
that are no longer running.

The libvirt hook loads the cache at every domain start, so loading does not
import jsonschema (which alone costs more than the rest of the load): a
load runs a cheap structural check, and full schema validation runs on
every save and on ``load(path, validate=True)``. The hook's own claim
writes (``update(..., validate=False)``) change only the claims of a
document that was loaded; they run the load-time check, so nothing the
next load rejects is written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from accel_inventory import claims, kinds
from accel_inventory import model
from accel_inventory import safe_io
from accel_inventory.contract import UUID

LOG = logging.getLogger(__name__)

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "schemas",
                           "cache.schema.json")
GOOD_SUFFIX = ".good"
LOCK_SUFFIX = ".lock"
STATE_SUFFIX = ".placement.json"
ASSIGNED_SUFFIX = ".assigned"
DEFAULT_LOCK_TIMEOUT = 30.0
# Far above any host's cache (10,000 functions take about 3 MB): a bound,
# so that a file that never ends is refused rather than read.
MAX_CACHE_BYTES = 64 * 1024 * 1024
MAX_SCHEMA_BYTES = 1024 * 1024
TEMPORARY = re.compile(r"\.tmp\.(\d+)\.(\d+)$")


class CacheError(Exception):
    """The cache cannot be read, written or locked; the message says why."""


class CacheInvalid(CacheError):
    """A document does not match the schema or breaks a claim invariant."""


class LockTimeout(CacheError):
    """Another writer held the cache lock for longer than we would wait."""


def good_copy_path(path: str) -> str:
    return path + GOOD_SUFFIX


def lock_path(path: str) -> str:
    return path + LOCK_SUFFIX


def state_path(path: str) -> str:
    return path + STATE_SUFFIX


def markers_path(path: str) -> str:
    return path + ASSIGNED_SUFFIX


def own_paths(path: str) -> list[str]:
    """The cache and every file beside it that this module names: what a
    command that trusts the cache must trust."""
    return [path, good_copy_path(path), lock_path(path), state_path(path),
            markers_path(path)]


@functools.lru_cache(maxsize=2)
def _validator(card_kinds: tuple[str, ...]) -> Any:
    # Imported here: the hook's loads must not pay for jsonschema.
    import jsonschema

    schema = json.loads(safe_io.read(SCHEMA_FILE, MAX_SCHEMA_BYTES,
                                     owned=False, follow=True))
    # A card's kind is one the registry holds, which the file cannot list.
    schema["$defs"]["card"]["properties"]["kind"] = {"enum": list(card_kinds)}
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(_inline_refs(schema, schema.get("$defs", {})))


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with each local ``$ref`` replaced by what it names.

    jsonschema resolves a reference at every use; a cache of 500 functions
    takes 2.3 times as long to validate with them (the schema has no
    recursive definitions, so inlining terminates).
    """
    if isinstance(node, dict):
        if set(node) == {"$ref"} and node["$ref"].startswith("#/$defs/"):
            return _inline_refs(defs[node["$ref"][len("#/$defs/"):]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()
                if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def schema_errors(document: Any) -> list[str]:
    """Every way ``document`` breaks the cache schema, one line each."""
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: "
            f"{e.message}"
            for e in _validator(kinds.names()).iter_errors(document)]


def validate_document(document: Any) -> None:
    """Raise CacheInvalid unless ``document`` is a valid cache document."""
    errors = schema_errors(document)
    if errors:
        raise CacheInvalid("cache document does not match the schema: "
                           + "; ".join(errors[:5])
                           + (f" (and {len(errors) - 5} more)"
                              if len(errors) > 5 else ""))


def _check_structure(document: Any) -> None:
    """The cheap check a load always runs; the schema check is on save.

    It catches what a truncated or foreign file looks like (not an object,
    another version, keys of the wrong type); the dataclass constructors
    in ``model.from_dict`` then catch missing and unknown fields.
    """
    if not isinstance(document, dict):
        raise CacheInvalid("the document is not a JSON object")
    if document.get("version") != model.CACHE_VERSION:
        raise CacheInvalid(f"version {document.get('version')!r} is not the "
                           f"supported version {model.CACHE_VERSION}")
    if not isinstance(document.get("hostname"), str):
        raise CacheInvalid("hostname is missing or not a string")
    cards = document.get("cards")
    if not (isinstance(cards, list)
            and all(isinstance(c, dict) for c in cards)):
        raise CacheInvalid("cards is missing or not a list of objects")
    found = document.get("claims")
    if not (isinstance(found, dict)
            and all(isinstance(c, dict) for c in found.values())):
        raise CacheInvalid("claims is missing or not an object of objects")
    cleaning = document.get("cleaning", {})
    if not (isinstance(cleaning, dict)
            and all(isinstance(c, dict) for c in cleaning.values())):
        raise CacheInvalid("cleaning is not an object of objects")


def _read(path: str, validate: bool) -> model.Inventory:
    """Parse one file; raise OSError or CacheInvalid naming what is wrong."""
    raw = safe_io.read(path, MAX_CACHE_BYTES)
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CacheInvalid(f"not valid JSON ({len(raw)} bytes, truncated "
                           f"or overwritten?): {e}") from None
    _check_structure(document)
    if validate:
        validate_document(document)
    try:
        inventory = model.from_dict(document)
        problems = claims.inconsistencies(inventory)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        # Values of the wrong type (the cheap check does not look inside
        # cards and claims) surface here.
        raise CacheInvalid(f"does not match the data model: "
                           f"{type(e).__name__}: {e}") from None
    if problems:
        raise CacheInvalid("claims disagree with the functions: "
                           + "; ".join(problems[:5]))
    return inventory


def check_path(path: str) -> None:
    """Raise CacheError when ``path`` can never hold the cache (it is a
    directory, or a file stands where one of its directories should be):
    moving it aside and rescanning, what an unusable cache calls for,
    cannot help then; the option must change."""
    fix = "set [inventory] cache_path (or --cache) to a file's path"
    if os.path.isdir(path):
        raise CacheError(f"inventory cache {path} is a directory, not a "
                         f"file; {fix}, e.g. "
                         f"{os.path.join(path, 'inventory.json')}")
    above = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise CacheError(f"inventory cache {path} cannot be created: "
                         f"{above} is a file, not a directory; {fix}")


def load(path: str, *, validate: bool = False) -> model.Inventory | None:
    """The cached inventory, or None when there is no cache yet.

    A cache that cannot be used (unreadable, truncated, not JSON, failing
    the structural check, or the schema with ``validate=True``) is logged
    at ERROR with what to do, and the last good copy is returned instead.
    CacheError is raised when neither file is usable: silently starting
    from nothing would forget every claim.
    """
    check_path(path)
    good = good_copy_path(path)
    try:
        return _read(path, validate)
    except FileNotFoundError:
        if not os.path.exists(good):
            return None
        problem = "is missing"
    except (OSError, CacheInvalid) as e:
        problem = f"is unusable: {e}"
    try:
        inventory = _read(good, validate)
    except FileNotFoundError:
        raise CacheError(
            f"inventory cache {path} {problem}, and there is no last good "
            f"copy {good}. Move the file aside and run 'accel-inventory "
            f"scan' to rebuild it; claims recorded in it are lost and "
            f"will be recorded again at the next domain start.") from None
    except (OSError, CacheInvalid) as e:
        raise CacheError(
            f"inventory cache {path} {problem}, and its last good copy "
            f"{good} is unusable too: {e}. Move both aside and run "
            f"'accel-inventory scan' to rebuild the cache.") from None
    LOG.error("Inventory cache %s %s. Using the last good copy %s "
              "(scanned at %s); the next save rewrites the cache. If this "
              "repeats, check the disk and who else writes %s.",
              path, problem, good, inventory.scanned_at, path)
    return inventory


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: str, data: bytes, mode: int) -> str:
    """``data`` written and fsynced to a new temporary file of ``mode``
    (whatever the umask) beside ``path``; its name."""
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC
                 | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _rename_all(files: list[tuple[str, bytes]], mode: int) -> None:
    """Write every ``(path, data)`` to its temporary file, then rename
    each over its path: a write that fails (a full disk) changes none of
    them. Temporaries are removed on any failure."""
    written: list[tuple[str, str]] = []
    try:
        for path, data in files:
            written.append((_temporary(path, data, mode), path))
        for tmp, path in written:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _path in written:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it:
    a reader sees the old file or the new one. The one such routine of
    the project.

    The caller fsyncs the directory once its renames are done (``save``
    does so after both of its own).
    """
    _rename_all([(path, data)], mode)


def encode(inventory: model.Inventory, validate: bool = True) -> bytes:
    """The cache document of ``inventory``, validated, as bytes.

    Raises CacheInvalid naming the offending fields: a document the next
    load would reject must never reach the disk. ``validate=False`` runs
    only the check every load runs, for writers on a hot path (the libvirt
    hook at each domain start) that change claims of a loaded document;
    the full schema check costs about 0.15 s on a 500-function host.
    """
    document = model.to_dict(inventory)
    if validate:
        validate_document(document)
    else:
        _check_structure(document)
    problems = claims.inconsistencies(inventory)
    if problems:
        raise CacheInvalid("claims disagree with the functions: "
                           + "; ".join(problems[:5]))
    # Compact: an indent sends json to its pure-Python encoder, six times
    # slower on a large host; people read the cache with 'show'.
    return (json.dumps(document, sort_keys=True, separators=(",", ":"))
            + "\n").encode()


def save(path: str, inventory: model.Inventory,
         validate: bool = True) -> None:
    """Validate and write the cache and its last good copy atomically.

    Callers that read before writing hold ``locked(path)`` around both
    (``update`` does); a save alone does not lock.
    """
    check_path(path)
    data = encode(inventory, validate)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        _rename_all([(path, data), (good_copy_path(path), data)], 0o600)
        _fsync_dir(directory)
    except OSError as e:
        raise CacheError(f"cannot write the inventory cache {path}: "
                         f"{e.strerror or e}") from e


# Locks this process holds, so that a writer that already holds the lock
# (refresh called inside update, say) does not wait for itself: flock locks
# belong to an open file, and a second open of the same file would block.
_held: dict[str, tuple[int, int]] = {}
_held_guard = threading.Lock()


def _holder_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return os.pread(fd, 32, 0).decode().strip() or "unknown"
    return "unknown"


@contextlib.contextmanager
def locked(path: str,
           timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the writers' lock of the cache at ``path`` (``<path>.lock``).

    Waits at most ``timeout`` seconds, then raises LockTimeout naming the
    process that holds it. Re-entrant within one thread of one process.
    """
    check_path(path)
    name = lock_path(os.path.abspath(path))
    key = f"{name}:{os.getpid()}:{threading.get_ident()}"
    with _held_guard:
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                fd, depth = _held[key]
                _held[key] = (fd, depth - 1)
        return

    try:
        os.makedirs(os.path.dirname(name), mode=0o700, exist_ok=True)
        fd = safe_io.open_lock(name)
    except OSError as e:
        raise CacheError(f"cannot open the cache lock {name}: "
                         f"{e.strerror or e}") from e
    try:
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise CacheError(f"cannot lock {name}: "
                                     f"{e.strerror or e}") from e
            if time.monotonic() >= deadline:
                raise LockTimeout(
                    f"the inventory cache lock {name} is still held by "
                    f"process {_holder_pid(fd)} after {timeout:g} s; "
                    f"retry, or find out why that process is stuck")
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as e:
            raise CacheError(f"cannot write to the cache lock {name}: "
                             f"{e.strerror or e}") from e
        remove_stale_temporaries(path)
        with _held_guard:
            _held[key] = (fd, 1)
        try:
            yield
        finally:
            with _held_guard:
                del _held[key]
            with contextlib.suppress(OSError):  # the pid is only a hint
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporary files beside the cache at ``path`` (of the
    cache, its last good copy and the placement state) whose writer is no
    longer running; return their names. Called by the lock's holder:
    every writer of the cache holds the lock while it saves, so nobody is
    writing those. A failure is logged: it only leaves a file behind."""
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    ours = (base, base + GOOD_SUFFIX, base + STATE_SUFFIX)
    removed = []
    try:
        fd = safe_io.open_dir(directory, private=False)
    except OSError as e:
        LOG.warning("Cannot look for stale temporary files of the cache in "
                    "%s: %s", directory, e.strerror or e)
        return removed
    try:
        for name in os.listdir(fd):
            found = TEMPORARY.search(name)
            if (found is None or name[:found.start()] not in ours
                    or _running(int(found.group(1)))):
                continue
            try:
                os.unlink(name, dir_fd=fd)
                removed.append(name)
            except OSError as e:
                LOG.warning("Cannot remove the stale temporary file %s: %s",
                            os.path.join(directory, name), e.strerror or e)
    finally:
        os.close(fd)
    if removed:
        LOG.info("Removed temporary files of writers that were killed "
                 "while saving: %s", ", ".join(sorted(removed)))
    return removed


def update(path: str,
           fn: Callable[[model.Inventory], model.Inventory],
           timeout: float = DEFAULT_LOCK_TIMEOUT,
           validate: bool = True) -> model.Inventory:
    """Lock, load, apply ``fn`` and save; return what was saved.

    Raises CacheError when there is no cache yet: a change to the claims
    of a host that was never scanned has nothing to apply to.
    """
    with locked(path, timeout):
        inventory = load(path)
        if inventory is None:
            raise CacheError(f"there is no inventory cache at {path} yet; "
                             f"run 'accel-inventory scan' first")
        updated = fn(inventory)
        if not isinstance(updated, model.Inventory):
            raise TypeError(f"{fn!r} returned {type(updated).__name__}, "
                            f"not an Inventory")
        save(path, updated, validate)
        return updated


# -- the agent's files beside the cache

def read_state(path: str) -> Any:
    """The placement state saved beside the cache at ``path``; None when
    there is none. Raises CacheError when it cannot be read or parsed."""
    try:
        return json.loads(safe_io.read(state_path(path), MAX_CACHE_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as e:
        raise CacheError(f"{state_path(path)}: {e}") from e


def write_state(path: str, document: Any) -> None:
    """Save ``document`` as the placement state beside the cache at
    ``path``; raises CacheError when it cannot be written."""
    try:
        write_atomically(state_path(path), json.dumps(document).encode())
    except OSError as e:
        raise CacheError(f"cannot write {state_path(path)}: "
                         f"{e.strerror or e}") from e


def set_markers(path: str, consumers: set[str],
                stamp: float | None = None) -> None:
    """Make the markers beside the cache at ``path`` name ``consumers``
    (UUIDs; anything else is never a marker's name) and no other, each
    with the modification time ``stamp`` (now when None); raises
    CacheError when the folder cannot be changed. Only names that are
    UUIDs are ever removed from it, and none through a link."""
    directory = markers_path(path)
    wanted = {c for c in consumers if UUID.match(c)}
    try:
        fd = safe_io.open_dir(directory, create=True)
        try:
            present = set(os.listdir(fd))
            for consumer in sorted(wanted - present):
                safe_io.create_in(fd, consumer)
            for consumer in sorted(wanted):
                os.utime(consumer, None if stamp is None else (stamp, stamp),
                         dir_fd=fd, follow_symlinks=False)
            for name in sorted(present - wanted):
                if UUID.match(name):
                    os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise CacheError(f"cannot update the assignment markers in "
                         f"{directory}: {e.strerror or e}") from e


@contextlib.contextmanager
def markers_locked(path: str) -> Iterator[None]:
    """Hold the markers folder's own lock: the hook's attach worker and an
    operator's ``accel-domain attach`` for one domain would otherwise both
    find a device missing and add it twice. Apart from the cache's lock,
    which its claim writes take inside this one."""
    directory = markers_path(path)
    try:
        fd = safe_io.open_dir(directory, create=True)
    except OSError as e:
        raise CacheError(f"cannot open the assignment markers {directory}: "
                         f"{e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
