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

"""Rescan when the kernel reports a device change (``accel-inventory watch``).

A card insertion or a firmware load comes as a burst of uevents (a Movidius
stick leaves and comes back under another product id; an SR-IOV PF adds
its VFs one by one). Rescanning at every event would scan the same burst
many times and might catch it half-way, so events are debounced: a rescan
runs once no event has come for ``debounce`` seconds, and at the latest
``max_delay`` seconds after the first event of a burst.

The event source is anything with pyudev's ``Monitor.poll(timeout)``
(returns an event, or None when ``timeout`` passes), so tests drive the
loop with scripted events and a fake clock.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

LOG = logging.getLogger(__name__)

SUBSYSTEMS = ("pci", "usb", "mdev", "net")


class EventSource(Protocol):
    def poll(self, timeout: float | None = None) -> Any: ...


class Stop(Protocol):
    def is_set(self) -> bool: ...


def udev_source(subsystems=SUBSYSTEMS, udev_run_dir="/run/udev"):
    """A started pyudev monitor of ``subsystems``.

    Without a udev daemon (containers, minimal hosts) udev relays nothing,
    so the kernel's own uevents are read instead; they carry no udev
    properties, which the rescan does not need.
    """
    import pyudev

    source = "udev" if os.path.isdir(udev_run_dir) else "kernel"
    if source == "kernel":
        LOG.info("No udev daemon (%s is missing): watching the kernel's "
                 "uevents directly", udev_run_dir)
    monitor = pyudev.Monitor.from_netlink(pyudev.Context(), source=source)
    for subsystem in subsystems:
        monitor.filter_by(subsystem)
    monitor.start()
    return monitor


def describe(event: Any) -> str:
    """``add pci /devices/...`` for a pyudev device, ``repr`` otherwise."""
    action = getattr(event, "action", None)
    subsystem = getattr(event, "subsystem", None)
    path = getattr(event, "device_path", None)
    if action is None and subsystem is None:
        return repr(event)
    return f"{action} {subsystem} {path}"


def watch(source: EventSource, rescan: Callable[[], None], stop: Stop, *,
          debounce: float = 2.0, max_delay: float = 30.0,
          clock: Callable[[], float] = time.monotonic,
          poll_interval: float = 1.0) -> int:
    """Rescan once, then after each burst of events, until ``stop`` is set.

    A failing rescan is logged and retried at the next burst; the watch
    goes on. Returns the number of rescans run.
    """
    rescans = 0

    def run(reason: str) -> None:
        nonlocal rescans
        rescans += 1
        LOG.info("Rescanning: %s", reason)
        try:
            rescan()
        except Exception:
            LOG.exception("Rescan failed; the cache keeps its last state. "
                          "Retrying at the next device event.")

    run("watch started")
    first = deadline = None
    count = 0
    while not stop.is_set():
        now = clock()
        if deadline is not None and now >= deadline:
            run(f"{count} device event(s)")
            first = deadline = None
            count = 0
            continue
        timeout = (poll_interval if deadline is None
                   else min(poll_interval, deadline - now))
        event = source.poll(timeout)
        if event is None:
            continue
        now = clock()
        LOG.debug("Device event: %s", describe(event))
        count += 1
        if first is None:
            first = now
        deadline = min(now + debounce, first + max_delay)
    return rescans
