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

"""The node bridge: its name, the plan from link states, and the edge
that reads /sys/class/net (a fake tree here) and runs ``ip``."""

import os

import pytest

from libvirt_hooks import bridge
from libvirt_hooks.bridge import Link

BR = "accbr-0123abcd"


def test_bridge_name_is_stable_short_and_per_node():
    name = bridge.bridge_name("accbr-", "vpd-8086-2953-VCA2/r0/f1")
    assert name == bridge.bridge_name("accbr-", "vpd-8086-2953-VCA2/r0/f1")
    assert len(name) == bridge.IFNAMSIZ and name.startswith("accbr-")
    assert name != bridge.bridge_name("accbr-", "vpd-8086-2953-VCA2/r0/f2")
    with pytest.raises(ValueError, match="fewer than 6"):
        bridge.bridge_name("a-very-long-pfx", "x")


def argvs(steps):
    return [" ".join(s.argv) for s in steps]


def test_plan_from_nothing_creates_raises_and_enslaves():
    steps = bridge.plan_node_bridge(BR, "eth5",
                                    {"eth5": Link("eth5", up=False,
                                                  has_device=True)})
    assert argvs(steps) == [
        f"link add name {BR} type bridge", f"link set dev {BR} up",
        f"link set dev eth5 master {BR}", "link set dev eth5 up"]


def test_plan_is_empty_when_the_bridge_is_right():
    links = {BR: Link(BR, up=True, is_bridge=True),
             "eth5": Link("eth5", up=True, master=BR, has_device=True),
             "vnet0": Link("vnet0", up=True, master=BR)}
    assert bridge.plan_node_bridge(BR, "eth5", links) == []


def test_plan_takes_out_another_nodes_interface_but_keeps_taps():
    links = {BR: Link(BR, up=True, is_bridge=True),
             "eth4": Link("eth4", up=True, master=BR, has_device=True),
             "eth5": Link("eth5", up=True, has_device=True),
             "vnet0": Link("vnet0", up=True, master=BR)}
    assert argvs(bridge.plan_node_bridge(BR, "eth5", links)) == [
        "link set dev eth4 nomaster", f"link set dev eth5 master {BR}"]


def test_plan_refuses_a_missing_interface_and_a_non_bridge_name():
    with pytest.raises(bridge.BridgeError, match="eth9 does not exist"):
        bridge.plan_node_bridge(BR, "eth9", {})
    with pytest.raises(bridge.BridgeError, match="is not a bridge"):
        bridge.plan_node_bridge(BR, None, {BR: Link(BR, up=True)})


def fake_link(net_class, name, *, up, master=None, is_bridge=False,
              device=False):
    path = net_class / name
    path.mkdir(parents=True)
    (path / "flags").write_text("0x1003\n" if up else "0x1002\n")
    if is_bridge:
        (path / "bridge").mkdir()
    if master:
        (path / "master").symlink_to(os.path.join("..", master))
    if device:
        (path / "device").symlink_to("/nonexistent/pci-function")


def test_read_links_sees_state_as_the_kernel_shows_it(tmp_path):
    fake_link(tmp_path, BR, up=True, is_bridge=True)
    fake_link(tmp_path, "eth5", up=False, master=BR, device=True)
    links = bridge.read_links(str(tmp_path))
    assert links[BR] == Link(BR, up=True, is_bridge=True)
    assert links["eth5"] == Link("eth5", up=False, master=BR,
                                 has_device=True)


def test_ensure_runs_the_plan_and_reports_it(tmp_path):
    fake_link(tmp_path, "eth5", up=True, device=True)
    ran = []
    done = bridge.ensure_node_bridge(BR, "eth5", run=ran.append,
                                     net_class=str(tmp_path))
    assert ran == [("link", "add", "name", BR, "type", "bridge"),
                   ("link", "set", "dev", BR, "up"),
                   ("link", "set", "dev", "eth5", "master", BR)]
    assert done == [f"created bridge {BR}", f"brought {BR} up",
                    f"added eth5 to {BR}"]


def test_ensure_replans_after_a_concurrent_change(tmp_path):
    """Another hook creates the bridge between our read and our ``ip``."""
    fake_link(tmp_path, "eth5", up=True, device=True)
    ran = []

    def racing(argv):
        if argv[:2] == ("link", "add") and not (tmp_path / BR).exists():
            fake_link(tmp_path, BR, up=True, is_bridge=True)
            raise bridge.BridgeError("RTNETLINK answers: File exists")
        ran.append(argv)

    done = bridge.ensure_node_bridge(BR, "eth5", run=racing,
                                     net_class=str(tmp_path))
    assert ran == [("link", "set", "dev", "eth5", "master", BR)]
    assert done == [f"added eth5 to {BR}"]


def test_ensure_fails_when_ip_keeps_failing(tmp_path):
    fake_link(tmp_path, "eth5", up=True, device=True)

    def broken(argv):
        raise bridge.BridgeError("Operation not permitted")

    with pytest.raises(bridge.BridgeError, match="not permitted"):
        bridge.ensure_node_bridge(BR, "eth5", run=broken,
                                  net_class=str(tmp_path))
