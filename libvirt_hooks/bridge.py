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

"""The Linux bridge through which domains reach an IP-over-PCIe node.

A node's host-side interface is named by enumeration order (``eth4``
today, ``eth5`` after a card is added), so a domain never names it: it
names a bridge whose name derives from the node's stable function id, and
the hook keeps the node's current interface in that bridge.

``plan_node_bridge`` decides, from the links as they are, which ``ip``
commands bring the bridge to that state; ``ensure_node_bridge`` reads the
links from ``/sys/class/net`` and runs the plan. No shell is involved.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from accel_inventory import safe_io

IFNAMSIZ = 15  # the kernel's limit on an interface name, less the NUL
IFF_UP = 0x1
NET_CLASS = "/sys/class/net"
IP_TIMEOUT = 5.0


class BridgeError(Exception):
    """The node's bridge cannot be made right; the message says why."""


def bridge_name(prefix: str, function_id: str) -> str:
    """The bridge of the node ``function_id``: ``prefix`` and a digest of
    the id, at most 15 characters, the same on every call and every host
    boot."""
    room = IFNAMSIZ - len(prefix)
    if room < 6:
        raise ValueError(f"bridge prefix {prefix!r} leaves fewer than 6 of "
                         f"{IFNAMSIZ} characters for the node's digest")
    digest = hashlib.sha256(function_id.encode()).hexdigest()
    return prefix + digest[:room]


@dataclass(frozen=True)
class Link:
    """One network interface as ``/sys/class/net`` shows it."""

    name: str
    up: bool
    master: str | None = None
    is_bridge: bool = False
    # Backed by a device (a PCI function, as a VCA node's interface is);
    # taps and veths that libvirt or an operator add to a bridge are not.
    has_device: bool = False


@dataclass(frozen=True)
class Step:
    action: str
    argv: tuple[str, ...]


def plan_node_bridge(bridge: str, interface: str | None,
                     links: Mapping[str, Link]) -> list[Step]:
    """The ``ip`` commands that make ``bridge`` exist, be up and hold
    ``interface`` (up) as its only device-backed port; [] when it already
    does. ``links`` are the host's interfaces by name.

    A device-backed port other than ``interface`` is the old interface of
    another node (cards were re-enumerated): it is taken out, or a domain
    would reach the wrong node.
    """
    if len(bridge) > IFNAMSIZ:
        raise BridgeError(f"bridge name {bridge!r} is longer than "
                          f"{IFNAMSIZ} characters")
    steps = []
    current = links.get(bridge)
    if current is not None and not current.is_bridge:
        raise BridgeError(f"{bridge} exists and is not a bridge; remove it "
                          f"('ip link delete {bridge}') or change "
                          f"[libvirt_hooks] bridge_prefix")
    if current is None:
        steps.append(Step(f"created bridge {bridge}",
                          ("link", "add", "name", bridge, "type", "bridge")))
    if current is None or not current.up:
        steps.append(Step(f"brought {bridge} up",
                          ("link", "set", "dev", bridge, "up")))
    for port in sorted(links.values(), key=lambda link: link.name):
        if (port.master == bridge and port.has_device
                and port.name != interface):
            steps.append(Step(f"took {port.name} out of {bridge} (not the "
                              f"node's interface now)",
                              ("link", "set", "dev", port.name, "nomaster")))
    if interface is None:
        return steps
    node = links.get(interface)
    if node is None:
        raise BridgeError(f"the node's interface {interface} does not exist; "
                          f"load the card's driver or rescan with "
                          f"'accel-inventory scan'")
    if node.master != bridge:
        steps.append(Step(f"added {interface} to {bridge}",
                          ("link", "set", "dev", interface, "master",
                           bridge)))
    if not node.up:
        steps.append(Step(f"brought {interface} up",
                          ("link", "set", "dev", interface, "up")))
    return steps


def read_links(net_class: str = NET_CLASS) -> dict[str, Link]:
    """Every interface under ``net_class`` with its state, read inside
    the sysfs tree ``net_class`` is in (``<root>/class/net``)."""
    links = {}
    root = os.path.dirname(os.path.dirname(net_class))
    try:
        names = os.listdir(net_class)
    except OSError as exc:
        raise BridgeError(f"cannot list {net_class}: {exc}") from None
    for name in names:
        path = os.path.join(net_class, name)
        try:
            flags = int(safe_io.read_attribute(
                root, os.path.join(path, "flags")).strip(), 16)
        except (OSError, ValueError):
            continue  # vanished while listing, or not an interface
        master = os.path.join(path, "master")
        links[name] = Link(
            name=name, up=bool(flags & IFF_UP),
            master=(os.path.basename(os.path.realpath(master))
                    if os.path.lexists(master) else None),
            is_bridge=os.path.isdir(os.path.join(path, "bridge")),
            has_device=os.path.lexists(os.path.join(path, "device")))
    return links


def run_ip(args: tuple[str, ...]) -> None:
    """Run ``ip`` with ``args``; libvirtd's PATH may lack the sbin
    directories, so they are searched too."""
    # Imported here: most domain starts touch no bridge, and the hook
    # runs at every start.
    import subprocess

    ip = shutil.which("ip", path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if ip is None:
        raise BridgeError("the 'ip' command (iproute2) is not installed")
    try:
        subprocess.run([ip, *args], check=True, capture_output=True,
                       text=True, stdin=subprocess.DEVNULL,
                       timeout=IP_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise BridgeError(f"'ip {' '.join(args)}' failed: "
                          f"{exc.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise BridgeError(f"'ip {' '.join(args)}' did not finish within "
                          f"{IP_TIMEOUT} s") from None


def ensure_node_bridge(bridge: str, interface: str | None,
                       run: Callable[[tuple[str, ...]], None] = run_ip,
                       net_class: str = NET_CLASS) -> list[str]:
    """Make ``bridge`` exist, be up and hold the node's current
    ``interface``; return what was done ([] when nothing was needed).
    Safe to call again, and from concurrent hooks: a step another caller
    did first is not an error the second time round."""
    done: list[str] = []

    def apply() -> None:
        for step in plan_node_bridge(bridge, interface,
                                     read_links(net_class)):
            run(step.argv)
            done.append(step.action)

    try:
        apply()
    except BridgeError:
        # A concurrent hook for another domain of the same node may have
        # made the same change first: plan again from what is now.
        apply()
    return done
