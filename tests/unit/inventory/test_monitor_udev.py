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

"""The hotplug watch: debounced rescans driven by a scripted event source."""

import logging
import os
import subprocess
import threading

import pyudev

from accel_inventory import monitor


class Script:
    """An event source and clock replaying ``(at, event)`` pairs.

    ``poll(timeout)`` returns the next event if it comes within
    ``timeout`` and advances the clock to it; otherwise it advances the
    clock by ``timeout`` and returns None. After the last event, once
    ``tail`` seconds have passed, it sets ``stop``.
    """

    def __init__(self, events, tail=10.0):
        self.events = list(events)
        self.now = 0.0
        self.stop = threading.Event()
        self.end = (self.events[-1][0] if self.events else 0.0) + tail
        self.timeouts = []

    def clock(self):
        return self.now

    def poll(self, timeout=None):
        self.timeouts.append(timeout)
        if self.events and self.events[0][0] <= self.now + timeout:
            at, event = self.events.pop(0)
            self.now = max(self.now, at)
            return event
        self.now += timeout
        if not self.events and self.now >= self.end:
            self.stop.set()
        return None


class Event:
    def __init__(self, action, subsystem, device_path):
        self.action = action
        self.subsystem = subsystem
        self.device_path = device_path


def run(events, **kw):
    script = Script(events)
    times = []
    rescans = monitor.watch(script, lambda: times.append(script.now),
                            script.stop, clock=script.clock, **kw)
    assert rescans == len(times)
    return times, script


def test_rescans_at_start_even_without_events():
    times, _ = run([])
    assert times == [0.0]


def test_a_burst_is_one_rescan_after_the_quiet_period():
    burst = [(5.0, Event("remove", "usb", "/devices/usb3/3-1")),
             (5.5, Event("add", "usb", "/devices/usb3/3-2")),
             (6.0, Event("bind", "usb", "/devices/usb3/3-2"))]
    times, _ = run(burst, debounce=2.0)
    assert times == [0.0, 8.0]


def test_separate_bursts_rescan_separately():
    events = [(1.0, "a"), (1.2, "b"), (10.0, "c")]
    times, _ = run(events, debounce=1.0)
    assert times == [0.0, 2.2, 11.0]


def test_an_endless_burst_still_rescans_by_max_delay():
    events = [(1.0 + 0.5 * i, f"e{i}") for i in range(40)]  # until 20.5
    times, _ = run(events, debounce=1.0, max_delay=5.0)
    assert times[:3] == [0.0, 6.0, 11.5]
    assert times[-1] == 21.5
    gaps = [b - a for a, b in zip(times[1:], times[2:], strict=False)]
    assert max(gaps) <= 5.5


def test_polls_never_wait_past_the_deadline():
    _, script = run([(3.0, "a")], debounce=0.25, poll_interval=1.0)
    assert script.timeouts[:4] == [1.0, 1.0, 1.0, 0.25]


def test_a_failing_rescan_is_logged_and_the_watch_goes_on(caplog):
    script = Script([(1.0, "a"), (5.0, "b")])
    calls = []

    def rescan():
        calls.append(script.now)
        if len(calls) == 2:
            raise OSError("lock held")

    with caplog.at_level(logging.ERROR, logger="accel_inventory.monitor"):
        monitor.watch(script, rescan, script.stop, clock=script.clock,
                      debounce=1.0)
    assert calls == [0.0, 2.0, 6.0]
    assert "Rescan failed" in caplog.text
    assert "lock held" in caplog.text


def test_describe_names_a_udev_event():
    assert monitor.describe(Event("add", "pci", "/devices/pci0000:00")) == (
        "add pci /devices/pci0000:00")
    assert monitor.describe("x") == "'x'"


def test_udev_source_filters_our_subsystems(mocker, tmp_path):
    from_netlink = mocker.patch.object(pyudev.Monitor, "from_netlink")
    mocker.patch.object(pyudev, "Context")
    made = monitor.udev_source(udev_run_dir=str(tmp_path / "absent"))
    assert from_netlink.call_args.kwargs == {"source": "kernel"}
    assert [c.args for c in made.filter_by.call_args_list] == [
        ("pci",), ("usb",), ("mdev",), ("net",)]
    made.start.assert_called_once_with()
    monitor.udev_source(udev_run_dir=str(tmp_path))
    assert from_netlink.call_args.kwargs == {"source": "udev"}


def test_a_real_netlink_monitor_sees_a_new_interface():
    # Root only (as CI runs): a veth pair is the one device this machine
    # can create, and its uevents reach the monitor like a card's would.
    source = monitor.udev_source()
    name = f"nacc{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer",
                    "name", name + "p"], check=True)
    try:
        seen = [monitor.describe(e) for e in iter(lambda: source.poll(1.0),
                                                  None)]
    finally:
        subprocess.run(["ip", "link", "del", name], check=True)
    assert f"add net /devices/virtual/net/{name}" in seen
