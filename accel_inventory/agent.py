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

"""``accel-inventory agent`` and ``publish``: keep placement and the cache in
step with the host.

A round is: rescan the host into the cache (the agent only), publish the
cache to placement, then read the allocations on our region providers and
record in the cache which consumer holds which functions; a function its
consumer let go is cleaned before anyone else is given it, or held
(reserved in placement) for an operator (``release``). The agent runs a
round at start, every ``[agent] interval`` seconds, and after each burst of
device events, reusing the inventory watch's debounce (``monitor.watch``)
with a timer added to its event source.

When placement cannot be reached the round stops before touching the
cache, so nothing recorded is lost; the agent logs one line and tries
again at the next round.

After each round the agent's figures (``metrics``) go to ``[agent]
metrics_path`` and, while the agent runs, to ``[agent] metrics_port``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accel_inventory import cache
from accel_inventory import fragmentation
from accel_inventory import inventory
from accel_inventory import metrics
from accel_inventory import model
from accel_inventory import monitor
from accel_inventory import placement
from accel_inventory import claim_sync
from accel_inventory import release

LOG = logging.getLogger(__name__)

TICK = "periodic round"


def publisher_from_conf(conf) -> placement.Publisher:
    """A Publisher speaking to the placement named in ``[placement]``."""
    return placement.Publisher(
        placement.Client(placement.load_adapter(conf)),
        compute_node=conf.agent.compute_node,
        max_attempts=conf.agent.max_attempts)


def load_state(cache_path: str, publisher: placement.Publisher) -> None:
    """Let ``publisher`` start from what an earlier run remembered beside
    the cache. A missing or unreadable state only means a dearer first
    publish."""
    try:
        state = cache.read_state(cache_path)
    except cache.CacheError as e:
        LOG.info("Ignoring the placement state (%s); the first publish "
                 "reads every provider", e)
        return
    if state is not None and not publisher.import_state(state):
        LOG.info("Ignoring the malformed placement state %s",
                 cache.state_path(cache_path))


def save_state(cache_path: str, publisher: placement.Publisher) -> None:
    """Save what ``publisher`` knows beside the cache; failures only
    logged."""
    try:
        cache.write_state(cache_path, publisher.export_state())
    except cache.CacheError as e:
        LOG.warning("%s; the next publish reads every provider again", e)


@dataclass
class RoundReport:
    publish: placement.PublishReport
    sync: claim_sync.SyncResult
    requests: int


def departed(inv: model.Inventory, allocations: dict) -> set[str]:
    """The consumers of the sync's claims in ``inv`` that no longer hold
    any of our regions, when a consumer without a claim arrived: whether
    one of them moved (a migration's consumer took over its allocation)
    or was deleted is placement's to say (``holding_allocations``)."""
    present = {c for per in allocations.values() for c in per}
    if not present - set(inv.claims):
        return set()
    return {c for c, claim in inv.claims.items()
            if claim.source == claim_sync.CLAIM_SOURCE and c not in present}


def sync_allocations(conf, publisher: placement.Publisher,
                     published: model.Inventory,
                     boot_id: str | None,
                     allocations: dict | None = None,
                     read_at: float | None = None
                     ) -> claim_sync.SyncResult:
    """Record placement's allocations on our regions in the cache
    (``allocations``, read at ``read_at``; read here when not given), and
    clean what their consumers let go before anyone else is given it.
    Markers carry the time of the reading they follow: a worker that must
    attach what allocations of after its domain's start say waits for a
    marker newer than that start.

    The allocations are read without the cache lock (placement may be
    slow); the assignment is computed under it, on the cache as it is
    then, so a claim the hook recorded meanwhile is not overwritten. A
    function released by a consumer that ran with it waits in the cache
    (``release``) while the agent cleans it, without the lock (a reset
    takes up to a second); what came clean is then free, and the
    assignment runs again so that it is given out in this same round.
    """
    from accel_inventory import profiles

    if allocations is None:
        read_at = time.time()
        allocations = publisher.read_allocations(published)
    policy_of = profiles.release_policies(
        profiles.load_profiles(conf.inventory.profiles_dir))
    elsewhere = publisher.holding_allocations(
        departed(published, allocations))
    results: list[claim_sync.SyncResult] = []

    def apply(inv: model.Inventory,
              outcomes: dict[str, str | None] | None = None
              ) -> model.Inventory:
        if outcomes:
            inv = release.settle(inv, outcomes)
        result = claim_sync.assign(
            inv, claim_sync.holdings(inv, allocations), boot_id, policy_of,
            elsewhere)
        results.append(result)
        return result.inventory

    path, timeout = conf.inventory.cache_path, conf.inventory.lock_timeout
    synced = cache.update(path, apply, timeout)
    outcomes = release.clean(conf.inventory.sysfs_root, synced, policy_of)
    if outcomes:
        cache.update(path, lambda inv: apply(inv, outcomes), timeout)
    result = dataclasses.replace(
        results[-1],
        changed=sorted({c for r in results for c in r.changed}),
        released=sorted({f for r in results for f in r.released}),
        notes=list(dict.fromkeys(n for r in results for n in r.notes)))
    write_assigned_markers(conf.inventory.cache_path, result.inventory,
                           read_at)
    for note in result.notes:
        LOG.info("Allocation sync: %s", note)
    for problem in result.problems:
        LOG.warning("Allocation sync: %s", problem)
    return result


def write_assigned_markers(cache_path: str, inv: model.Inventory,
                           read_at: float | None = None) -> None:
    """Leave one marker beside the cache per consumer with a placement
    claim in ``inv``, and no other: the hook stats it at every domain
    start, so that a domain with nothing to attach costs one stat and no
    parse of the cache. Each marker's time is ``read_at``, when the
    allocations it follows were read. Failures are logged: they only cost
    the attach at the next domain start."""
    wanted = set()
    for claim in inv.claims.values():
        if claim.source != claim_sync.CLAIM_SOURCE:
            continue
        try:
            wanted.add(str(uuid.UUID(claim.consumer)))
        except ValueError:
            LOG.warning("Consumer %r is not a UUID, so no domain can be "
                        "it; its devices are not attached at start",
                        claim.consumer)
    try:
        cache.set_markers(cache_path, wanted, read_at)
    except cache.CacheError as e:
        LOG.warning("%s; domains that start meanwhile get their devices "
                    "only from 'accel-domain attach DOMAIN'", e)


def exporter_from_conf(conf) -> tuple[metrics.Exporter | None,
                                      fragmentation.TaskMix]:
    """The figures' exporter ``[agent]`` asks for (None: neither a file
    nor a port) and the task mix FGD's figure is measured against.
    Raises ConfigError for a task mix that does not parse."""
    from accel_inventory import conf as inventory_conf

    try:
        mix = fragmentation.parse_task_mix(conf.agent.task_mix)
    except ValueError as e:
        raise inventory_conf.ConfigError(f"[agent] task_mix: {e}") from None
    if not (conf.agent.metrics_path or conf.agent.metrics_port):
        return None, mix
    why = (metrics.untrusted_textfile(conf.agent.metrics_path)
           if conf.agent.metrics_path else None)
    if why:
        raise inventory_conf.ConfigError(
            f"[agent] metrics_path: refusing to write there: {why}")
    return metrics.Exporter(conf.agent.metrics_path or None), mix


def export_figures(exporter: metrics.Exporter,
                   mix: fragmentation.TaskMix,
                   publisher: placement.Publisher, inv: model.Inventory,
                   allocations: dict) -> None:
    """The round's figures to ``exporter``; the host's CPU and memory left
    are read (two requests) only for a mix that asks for them."""
    cpu = memory = 0
    if fragmentation.needs_host_room(mix):
        cpu, memory = publisher.root_room()
    exporter.publish(metrics.snapshot(inv, allocations, mix, cpu=cpu,
                                      memory=memory, timestamp=time.time()))


def run_round(conf, publisher: placement.Publisher, *,
              rescan: bool = True,
              exporter: tuple[metrics.Exporter | None,
                              fragmentation.TaskMix] | None = None
              ) -> RoundReport:
    """One round: (rescan,) publish, sync, and the figures to
    ``exporter`` (``exporter_from_conf``'s pair) when given. Raises
    PlacementError, and InventoryError when a path it relies on is not
    trusted (checked at every round: the agent runs for months)."""
    from accel_inventory import conf as inventory_conf

    inventory.check_trusted(conf, inventory_conf.config_files(conf))
    start = publisher.client.requests
    if rescan:
        inv, _changes = inventory.refresh(conf)
    else:
        path = conf.inventory.cache_path
        inv = cache.load(path)
        if inv is None:
            raise cache.CacheError(f"there is no inventory cache at {path} "
                                   f"yet; run 'accel-inventory scan' first")
    report = publisher.publish(inv)
    read_at = time.time()
    allocations = publisher.read_allocations(inv)
    sync = sync_allocations(conf, publisher, inv,
                            inventory.current_boot_id(), allocations,
                            read_at)
    if sync.inventory.cleaning.keys() != inv.cleaning.keys():
        # A function released or cleaned in this round: placement reserves
        # (or offers again) it now, not a round later.
        again = publisher.publish(sync.inventory)
        for name in ("created", "updated", "removed", "kept"):
            getattr(report, name).extend(
                x for x in getattr(again, name)
                if x not in getattr(report, name))
        report.failed.update(again.failed)
        report.skipped.update(again.skipped)
    if exporter is not None and exporter[0] is not None:
        export_figures(exporter[0], exporter[1], publisher, inv,
                       allocations)
    requests = publisher.client.requests - start
    level = logging.INFO if report.changed or sync.changed else logging.DEBUG
    LOG.log(level, "Published %s: %d created, %d updated, %d removed, %d "
            "kept for their allocations; claims of %s recorded; %d "
            "placement requests", inv.hostname, len(report.created),
            len(report.updated), len(report.removed), len(report.kept),
            ", ".join(sync.changed) or "nobody", requests)
    return RoundReport(report, sync, requests)


class Periodic:
    """An event source that also yields ``TICK`` every ``interval`` s.

    Wraps the device event source so that ``monitor.watch`` runs rounds on
    a timer as well as on device events, with one loop and one debounce.
    """

    def __init__(self, inner: monitor.EventSource, interval: float,
                 clock: Callable[[], float] = time.monotonic):
        self.inner = inner
        self.interval = interval
        self.clock = clock
        self.due = clock() + interval

    def poll(self, timeout: float | None = None) -> Any:
        now = self.clock()
        if now >= self.due:
            self.due = now + self.interval
            return TICK
        wait = self.due - now
        return self.inner.poll(wait if timeout is None
                               else min(timeout, wait))


class Quiet:
    """No device events: waits out the timeout, or until stopped."""

    def __init__(self, stop: threading.Event):
        self.stop = stop

    def poll(self, timeout: float | None = None) -> None:
        self.stop.wait(timeout)
        return None


def device_events(conf, stop: threading.Event) -> monitor.EventSource:
    if not conf.agent.watch_devices:
        return Quiet(stop)
    try:
        return monitor.udev_source()
    except (OSError, ImportError) as e:
        LOG.warning("Cannot watch device events (%s); rescanning every %d "
                    "s only", e, conf.agent.interval)
        return Quiet(stop)


def run(conf, stop: threading.Event, *,
        publisher: placement.Publisher | None = None,
        events: monitor.EventSource | None = None,
        clock: Callable[[], float] = time.monotonic) -> int:
    """Run rounds until ``stop`` is set; returns the number of rounds.

    A round that fails because of placement or the cache is logged and
    retried at the next round; the agent keeps running.
    """
    if publisher is None:
        publisher = publisher_from_conf(conf)
        load_state(conf.inventory.cache_path, publisher)
    interval = conf.agent.interval
    exporter = exporter_from_conf(conf)
    figures = exporter[0]
    if figures is not None and conf.agent.metrics_port:
        try:
            figures.serve(conf.agent.metrics_port,
                          conf.agent.metrics_address)
        except OSError as e:
            LOG.error("Cannot serve the metrics on %s:%d ([agent] "
                      "metrics_address, metrics_port): %s; the agent "
                      "goes on without", conf.agent.metrics_address,
                      conf.agent.metrics_port, e.strerror or e)

    def one_round() -> None:
        try:
            run_round(conf, publisher, exporter=exporter)
            return
        except placement.PlacementUnavailable as e:
            LOG.error("%s. The cache is unchanged; retrying in %d s.",
                      e, interval)
        except (placement.PlacementError, cache.CacheError,
                inventory.InventoryError) as e:
            LOG.error("Round failed: %s. Retrying in %d s.", e, interval)
        finally:
            save_state(conf.inventory.cache_path, publisher)
        if figures is not None:
            figures.failed(inventory.hostname_of(conf))

    source = Periodic(events if events is not None
                      else device_events(conf, stop), interval, clock)
    try:
        return monitor.watch(source, one_round, stop,
                             debounce=conf.agent.debounce, clock=clock)
    finally:
        if figures is not None:
            figures.close()


def _one_round(conf, *, rescan: bool) -> RoundReport:
    """A round by a publisher that starts from, and leaves, saved state."""
    exporter = exporter_from_conf(conf)
    publisher = publisher_from_conf(conf)
    load_state(conf.inventory.cache_path, publisher)
    try:
        return run_round(conf, publisher, rescan=rescan, exporter=exporter)
    except (placement.PlacementError, cache.CacheError,
            inventory.InventoryError):
        if exporter[0] is not None:
            exporter[0].failed(inventory.hostname_of(conf))
        raise
    finally:
        save_state(conf.inventory.cache_path, publisher)


def publish_command(conf, out) -> int:
    """``accel-inventory publish``: the cache to placement, then a sync.

    Returns 1 when placement refused some providers (one line each on
    stderr); raises PlacementError when it refused or failed the whole
    publish (the CLI prints one line and exits 1).
    """
    from accel_inventory import conf as inventory_conf

    inventory_conf.register_placement_opts(conf)
    report = _one_round(conf, rescan=False)
    print(f"published: {len(report.publish.created)} created, "
          f"{len(report.publish.updated)} updated, "
          f"{len(report.publish.removed)} removed, "
          f"{len(report.publish.kept)} kept for their allocations; "
          f"claims changed: {len(report.sync.changed)}; "
          f"requests to placement: {report.requests}", file=out)
    problems = [f"skipped {source_id}: invalid names {names}"
                for source_id, names in report.publish.skipped.items()]
    problems += [f"failed {source_id}: {reason}"
                 for source_id, reason in report.publish.failed.items()]
    for line in problems:
        print(f"accel-inventory: error: {line}", file=sys.stderr)
    return 1 if problems else 0


def agent_command(conf, *, once: bool = False,
                  events: monitor.EventSource | None = None) -> int:
    """``accel-inventory agent``: rounds until SIGTERM or SIGINT.

    With ``once``, a single round whose failure is the command's (exit 1).
    """
    import signal

    from accel_inventory import conf as inventory_conf

    inventory_conf.register_placement_opts(conf)
    if once:
        _one_round(conf, rescan=True)
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    run(conf, stop, events=events)
    return 0
