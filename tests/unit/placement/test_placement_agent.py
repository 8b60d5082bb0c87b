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

"""The agent's loop and the [placement]/[agent] options, without a server."""

import logging
import threading

import pytest

from accel_inventory import agent
from accel_inventory import conf as inventory_conf
from accel_inventory import placement


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Events:
    """Device events: returns scripted events, advancing the clock."""

    def __init__(self, clock, script=()):
        self.clock, self.script, self.timeouts = clock, list(script), []

    def poll(self, timeout=None):
        self.timeouts.append(timeout)
        self.clock.now += timeout
        return self.script.pop(0) if self.script else None


def test_periodic_ticks_when_due_and_waits_at_most_until_then():
    clock = Clock()
    inner = Events(clock)
    source = agent.Periodic(inner, interval=60, clock=clock)
    assert source.poll(1.0) is None and inner.timeouts == [1.0]
    clock.now = 159.5
    assert source.poll(1.0) is None and inner.timeouts[-1] == 0.5
    assert source.poll(1.0) == agent.TICK
    assert source.due == clock.now + 60


def test_periodic_passes_device_events_through():
    clock = Clock()
    source = agent.Periodic(Events(clock, ["add pci"]), interval=60,
                            clock=clock)
    assert source.poll(1.0) == "add pci"


def test_quiet_waits_until_stopped():
    stop = threading.Event()
    stop.set()
    assert agent.Quiet(stop).poll(30) is None  # returns at once


def conf_with(tmp_path, **agent_opts):
    path = tmp_path / "a.conf"
    lines = ["[inventory]", f"cache_path = {tmp_path / 'inventory.json'}",
             "[agent]"] + [f"{k} = {v}" for k, v in agent_opts.items()]
    lines += ["[placement]", "auth_type = admin_token",
              "endpoint = http://127.0.0.1:9/placement", "token = admin"]
    path.write_text("\n".join(lines) + "\n")
    conf = inventory_conf.load(["--config-file", str(path)])
    inventory_conf.register_placement_opts(conf)
    return conf


def test_a_failing_round_is_logged_and_the_agent_goes_on(tmp_path, mocker,
                                                         caplog):
    conf = conf_with(tmp_path, interval=10, debounce=0)
    clock = Clock()
    stop = threading.Event()
    outcomes = [placement.PlacementUnavailable("cannot reach placement"),
                placement.PlacementError("placement answered 400"), None]

    def round_(conf_, publisher, rescan=True, exporter=None):
        outcome = outcomes.pop(0)
        if not outcomes:
            stop.set()
        if outcome is not None:
            raise outcome

    run_round = mocker.patch.object(agent, "run_round", side_effect=round_)
    caplog.set_level(logging.ERROR, logger="accel_inventory.agent")
    publisher = placement.Publisher(placement.Client(adapter=None))
    rounds = agent.run(conf, stop, publisher=publisher,
                       events=Events(clock), clock=clock)
    assert rounds == 3 and run_round.call_count == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "cannot reach placement. The cache is unchanged; retrying in 10 s.",
        "Round failed: placement answered 400. Retrying in 10 s."]
    # The rounds after the first came from the timer, 10 s apart.
    assert clock.now >= 120


def test_placement_options_are_nova_style(tmp_path):
    conf = conf_with(tmp_path)
    assert conf.placement.service_type == "placement"
    assert conf.placement.valid_interfaces == ["internal", "public"]
    assert conf.agent.interval == 60 and conf.agent.max_attempts == 4
    adapter = placement.load_adapter(conf)
    assert adapter.service_type == "placement"
    groups = {getattr(g, "name", g): opts
              for g, opts in inventory_conf.list_opts()}
    names = {o.dest for o in groups["placement"]}
    assert {"auth_type", "auth_url", "username", "endpoint_override",
            "region_name", "cafile", "timeout", "service_type"} <= names
    assert {o.dest for o in groups["agent"]} == {
        "compute_node", "interval", "watch_devices", "debounce",
        "max_attempts", "metrics_path", "metrics_port", "metrics_address",
        "task_mix"}


def test_incomplete_placement_options_are_a_clear_error(tmp_path):
    path = tmp_path / "a.conf"
    path.write_text("[placement]\nauth_type = password\n")
    conf = inventory_conf.load(["--config-file", str(path)])
    inventory_conf.register_placement_opts(conf)
    with pytest.raises(placement.PlacementError,
                       match=r"\[placement\] options are incomplete"):
        placement.load_adapter(conf)
