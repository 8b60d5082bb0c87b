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

"""The agent's figures for Prometheus, after every round.

Per card and region: capacity, functions used, free and reserved,
whether it is whole free, whether it is degraded; per host and resource
class: whole free regions by size, fragmented functions (free functions
outside whole free regions), the largest request of one region still
placeable; per host FGD's fragmentation (``fragmentation
.host_fragmentation``, the measure the scheduler and the simulator use)
against ``[agent] task_mix``. Written in node_exporter's textfile format
to ``[agent] metrics_path`` and served over HTTP on ``[agent]
metrics_port`` when set; both off by default.

``snapshot`` is pure (the inventory and the allocations placement holds
on its regions in, the figures out); ``Exporter`` is the edge that
writes the file and serves the port through prometheus_client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from accel_inventory import fragmentation, model, provider_tree

LOG = logging.getLogger(__name__)

PREFIX = "nova_accel_"


@dataclass(frozen=True)
class RegionRow:
    card: model.Card
    region: model.Region
    fill: fragmentation.RegionFill

    @property
    def reserved(self) -> int:
        return max(self.fill.size - self.fill.used - self.fill.free, 0)


@dataclass(frozen=True)
class Snapshot:
    """One round's figures of one host; ``ok`` False for a round that
    failed (then only the round's own series are exported: figures
    placement could not confirm are not shown as current)."""

    host: str
    timestamp: float
    ok: bool = True
    regions: tuple[RegionRow, ...] = ()
    classes: Mapping[str, fragmentation.ClassFigures] = field(
        default_factory=dict)
    fragmentation: float = 0.0


def region_fill(card: model.Card, region: model.Region,
                allocations: Mapping[str, Mapping[str, int]]
                ) -> fragmentation.RegionFill:
    """``region`` as published (its inventory's total and reserved) with
    the functions placement's ``allocations`` on it take."""
    inventory = provider_tree.region_inventories(card, region).get(
        region.resource_class, {"total": 0, "reserved": 0})
    used = sum(int(by_rc.get(region.resource_class, 0))
               for by_rc in allocations.values())
    return fragmentation.RegionFill(
        resource_class=region.resource_class, size=region.size,
        capacity=max(inventory["total"] - inventory["reserved"], 0),
        used=used, degraded=card.degraded)


def snapshot(inv: model.Inventory,
             allocations: Mapping[str, Mapping[str, Mapping[str, int]]],
             mix: fragmentation.TaskMix, *, cpu: int = 0, memory: int = 0,
             timestamp: float) -> Snapshot:
    """The figures of ``inv``'s regions given ``allocations`` (region
    provider UUID to consumer to class to amount, as
    ``Publisher.read_allocations`` gives them); a region placement did
    not answer for (its card was not published) is left out. ``cpu`` and
    ``memory`` are the host's VCPU and MEMORY_MB left, which FGD's
    measure needs only for a mix that asks for them."""
    rows = []
    for card in inv.cards:
        for region in card.regions:
            rp = provider_tree.provider_uuid(inv.hostname, region.id)
            if rp in allocations:
                rows.append(RegionRow(card, region, region_fill(
                    card, region, allocations[rp])))
    fills = [row.fill for row in rows]
    return Snapshot(
        host=inv.hostname, timestamp=timestamp, regions=tuple(rows),
        classes=fragmentation.class_figures(fills),
        fragmentation=fragmentation.host_fragmentation(
            fragmentation.room_of(fills, cpu, memory), mix))


def families(snap: Snapshot) -> list:
    """The Prometheus metric families of ``snap``."""
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name, doc, labels):
        return GaugeMetricFamily(PREFIX + name, doc, labels=labels)

    host = [snap.host]
    ok = gauge("agent_round_success",
               "1 when the agent's last round published the host and read "
               "its allocations; 0 when it failed (see the agent's log)",
               ["host"])
    ok.add_metric(host, 1.0 if snap.ok else 0.0)
    when = gauge("agent_round_timestamp_seconds",
                 "When the agent's last round ended (Unix time)", ["host"])
    when.add_metric(host, snap.timestamp)
    out = [ok, when]
    if not snap.ok:
        return out

    card_labels = ["host", "card", "kind"]
    card_capacity = gauge("card_capacity_functions",
                          "Functions the card has", card_labels)
    card_functions = gauge("card_functions",
                           "The card's functions by state (used, free, "
                           "reserved: they add up to its capacity)",
                           card_labels + ["state"])
    card_whole = gauge("card_whole_free",
                       "1 when every region of the card is whole free",
                       card_labels)
    card_degraded = gauge("card_degraded",
                          "1 when the card is lost or ambiguous: nothing "
                          "new lands on it", card_labels)
    region_labels = ["host", "card", "region", "resource_class", "size"]
    capacity = gauge("region_capacity_functions",
                     "Functions the region has (its size)", region_labels)
    functions = gauge("region_functions",
                      "The region's functions by state (used, free, "
                      "reserved: they add up to its capacity)",
                      region_labels + ["state"])
    whole = gauge("region_whole_free",
                  "1 when a request for the whole region can have it now",
                  region_labels)
    degraded = gauge("region_degraded",
                     "1 when the region's card is degraded", region_labels)
    cards: dict[str, list[RegionRow]] = {}
    for row in snap.regions:
        labels = [snap.host, row.card.id, row.region.id,
                  row.region.resource_class, str(row.fill.size)]
        capacity.add_metric(labels, row.fill.size)
        for state, value in (("used", row.fill.used),
                             ("free", row.fill.free),
                             ("reserved", row.reserved)):
            functions.add_metric(labels + [state], value)
        whole.add_metric(labels, 1.0 if row.fill.whole_free else 0.0)
        degraded.add_metric(labels, 1.0 if row.fill.degraded else 0.0)
        cards.setdefault(row.card.id, []).append(row)
    for card_id, rows in cards.items():
        labels = [snap.host, card_id, rows[0].card.kind]
        card_capacity.add_metric(labels, sum(r.fill.size for r in rows))
        for state, value in (
                ("used", sum(r.fill.used for r in rows)),
                ("free", sum(r.fill.free for r in rows)),
                ("reserved", sum(r.reserved for r in rows))):
            card_functions.add_metric(labels + [state], value)
        card_whole.add_metric(labels, 1.0 if all(
            r.fill.whole_free for r in rows) else 0.0)
        card_degraded.add_metric(labels, 1.0 if rows[0].card.degraded
                                 else 0.0)

    host_whole = gauge("host_whole_free_regions",
                       "Whole free regions of the host by resource class "
                       "and size", ["host", "resource_class", "size"])
    fragmented = gauge("host_fragmented_functions",
                       "Free functions outside whole free regions",
                       ["host", "resource_class"])
    largest = gauge("host_largest_request_functions",
                    "The most functions one region of the class can still "
                    "give (the largest request of one group placeable)",
                    ["host", "resource_class"])
    for rc, figures in snap.classes.items():
        sizes = sorted({r.fill.size for r in snap.regions
                        if r.region.resource_class == rc})
        for size in sizes:
            host_whole.add_metric([snap.host, rc, str(size)],
                                  figures.whole_free.get(size, 0))
        fragmented.add_metric([snap.host, rc], figures.fragmented)
        largest.add_metric([snap.host, rc], figures.largest)
    fgd = gauge("host_fragmentation_functions",
                "FGD's fragmentation of the host: the free functions the "
                "task mix ([agent] task_mix) can expect not to use, as the "
                "scheduler's host-fragmentation policy measures it",
                ["host"])
    fgd.add_metric(host, snap.fragmentation)
    return out + [card_capacity, card_functions, card_whole, card_degraded,
                  capacity, functions, whole, degraded, host_whole,
                  fragmented, largest, fgd]


def untrusted_textfile(path: str) -> str | None:
    """Why root may not replace the textfile ``path``, in one line, or
    None: it writes a temporary beside it and renames it over, so a
    folder others can write would let them choose what root overwrites."""
    from accel_inventory import trust

    found = trust.untrusted([path])
    if not found:
        return None
    return (f"{trust.summary(found)}; make its folder owned by root and "
            f"writable by it alone")


class Exporter:
    """Holds the last round's snapshot for prometheus_client: writes it
    to ``path`` (atomically, as node_exporter's textfile collector wants)
    at every ``publish`` and serves it on ``port`` once ``serve`` is
    called. Rounds and scrapes run in different threads: the snapshot is
    replaced whole, never changed."""

    def __init__(self, path: str | None = None):
        from prometheus_client import CollectorRegistry

        self.path = path
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self._server = None

    def collect(self):
        with self._lock:
            snap = self._snapshot
        return families(snap) if snap is not None else []

    def publish(self, snap: Snapshot) -> None:
        """Make ``snap`` current and write the textfile; a failure to
        write, or a folder that became writable by others since the
        agent started, is logged (the figures are only figures)."""
        with self._lock:
            self._snapshot = snap
        if not self.path:
            return
        from prometheus_client import write_to_textfile

        # Checked at every round, as the cache's paths are.
        why = untrusted_textfile(self.path)
        if why:
            LOG.warning("Not writing the metrics to %s ([agent] "
                        "metrics_path): %s", self.path, why)
            return
        try:
            write_to_textfile(self.path, self.registry)
        except OSError as e:
            LOG.warning("Cannot write the metrics to %s ([agent] "
                        "metrics_path): %s", self.path,
                        e.strerror or e)

    def failed(self, host: str) -> None:
        """A round failed: only the round's series, success 0."""
        self.publish(Snapshot(host=host, timestamp=time.time(), ok=False))

    def serve(self, port: int, address: str) -> None:
        from prometheus_client import start_http_server

        self._server, _thread = start_http_server(port, address,
                                                  self.registry)
        LOG.info("Serving the metrics on %s:%d", address, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
