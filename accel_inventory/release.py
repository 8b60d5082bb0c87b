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

"""No tenant gets another's leftovers: what a released function needs
before anyone else is given it, and getting that done.

A function a server used keeps what the server left in it: an FPGA
region's loaded AFU, a VF's queues and registers, a vGPU's memory. So
when the allocation sync releases a function that a domain ran with, the
function enters ``Inventory.cleaning`` instead of going free: the sync
assigns it to nobody, the hook and the attach worker give it to nobody,
and placement reserves it (``provider_tree``). The agent then cleans it,
as its card's profile says (``on_release``):

``reset`` (the default)
    The card kind's own way, where the device offers one: a PCI function
    (or an IP-over-PCIe node's) is reset through sysfs ``reset`` (the
    kernel has that file only for a function it can reset: FLR, a PM or
    a bus reset); an mdev is removed and created again under the same
    UUID. Where there is no way (a USB stick, a function without
    ``reset``), or it fails, the function is held.
``{"command": [...], "timeout": 60}``
    A command run without a shell (an FPGA's AFU unloaded with the
    vendor's tool); ``{address}``, ``{region}``, ``{function}`` and
    ``{card}`` in its arguments are the function's. Exit 0 cleans; any
    other outcome holds it.
``hold``
    An operator cleans it: the function is held until ``accel-inventory
    clear`` says it is done (nova's ``one_time_use`` PCI devices and
    Kubernetes DRA's device taints do the same).
``none``
    The device keeps nothing of a tenant: released functions are free at
    once.

A held function is reserved in placement and listed by ``accel-inventory
status`` with the reason. The decisions are pure; ``clean`` is the edge
that writes sysfs and runs commands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from accel_inventory import kinds, model, sysfs_write
from accel_inventory.kinds.base import (DEVICE_INTERFACE, DEVICE_MDEV,
                                        DEVICE_PCI)

LOG = logging.getLogger(__name__)

RESET = "reset"
HOLD = "hold"
NONE = "none"
COMMAND = "command"
NAMED = (RESET, HOLD, NONE)
DEFAULT_COMMAND_TIMEOUT = 60.0
PLACEHOLDERS = ("address", "region", "function", "card")


@dataclass(frozen=True)
class OnRelease:
    """What a profile says a released function of its cards needs."""

    how: str = RESET
    command: tuple[str, ...] = ()
    timeout: float = DEFAULT_COMMAND_TIMEOUT


DEFAULT = OnRelease()
Policies = Callable[[model.Card], OnRelease]


def parse(value: object, source: str) -> OnRelease:
    """A profile's ``on_release`` (absent: ``reset``); ValueError naming
    ``source`` when it is none of the forms above."""
    if value is None:
        return DEFAULT
    if value in NAMED:
        return OnRelease(str(value))
    if isinstance(value, dict) and set(value) <= {"command", "timeout"}:
        command, timeout = value.get("command"), value.get(
            "timeout", DEFAULT_COMMAND_TIMEOUT)
        if (isinstance(command, list) and command
                and all(isinstance(a, str) and a for a in command)
                and isinstance(timeout, (int, float))
                and not isinstance(timeout, bool) and timeout > 0):
            try:
                [a.format(**{k: "" for k in PLACEHOLDERS}) for a in command]
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"{source}: on_release command {command} "
                                 f"has a placeholder other than "
                                 f"{', '.join(PLACEHOLDERS)}: {exc}") from None
            return OnRelease(COMMAND, tuple(command), float(timeout))
    raise ValueError(f"{source}: on_release must be one of "
                     f"{', '.join(NAMED)}, or {{\"command\": [program, "
                     f"args...], \"timeout\": seconds}}, not {value!r}")


def policies(by_profile: Mapping[str, OnRelease]) -> Policies:
    """The policy of a card: its profile's ``on_release``, else
    ``reset``."""
    return lambda card: by_profile.get(card.profile or "", DEFAULT)


# Every card the default's: what a caller that knows no profile gets.
BY_DEFAULT = policies({})


def needs_cleaning(card: model.Card, policy_of: Policies) -> bool:
    return policy_of(card).how != NONE


def mark(inv: model.Inventory, released: Mapping[str, str],
         policy_of: Policies, now: float | None = None) -> model.Inventory:
    """``inv`` with each of ``released`` (function id -> the consumer
    that ran with it) waiting to be cleaned: ``pending``, or ``held``
    when its profile says an operator cleans it. A function already
    waiting keeps its entry."""
    index = inv.function_index()
    when = time.time() if now is None else now
    new = model.clone(inv)
    for fid, consumer in released.items():
        if fid in new.cleaning or fid not in index:
            continue
        card = index[fid][0]
        policy = policy_of(card)
        if policy.how == NONE:
            continue
        held = policy.how == HOLD
        new.cleaning[fid] = model.Cleaning(
            function=fid, after=consumer, since=when,
            state=model.CLEANING_HELD if held else model.CLEANING_PENDING,
            reason=(f"its profile {card.profile} says an operator cleans "
                    f"it (on_release: hold)" if held else None))
    return new


def settle(inv: model.Inventory,
           outcomes: Mapping[str, str | None]) -> model.Inventory:
    """``inv`` after ``clean``: a function that came clean (None) is free,
    one that did not is held with the reason. Entries changed meanwhile
    (an operator cleared one) are left as they are."""
    new = model.clone(inv)
    for fid, reason in outcomes.items():
        entry = new.cleaning.get(fid)
        if entry is None or entry.state != model.CLEANING_PENDING:
            continue
        if reason is None:
            del new.cleaning[fid]
        else:
            entry.state, entry.reason = model.CLEANING_HELD, reason
    return new


def under(inv: model.Inventory, target: str) -> list[model.Cleaning]:
    """The entries of the function ``target``, or of every function of
    the region or card ``target``."""
    return [entry for fid, entry in sorted(inv.cleaning.items())
            if fid == target or fid.startswith(target + "/")]


# -- the edge: sysfs writes and commands ------------------------------------

def _command(policy: OnRelease, card: model.Card, region: model.Region,
             function: model.Function, run: Callable[..., object]
             ) -> str | None:
    # Imported here: the hook imports this module (through the cache's
    # claims) and never runs a command.
    import subprocess

    values = {"address": function.address or "", "region": region.id,
              "function": function.id, "card": card.id}
    argv = [arg.format(**values) for arg in policy.command]
    try:
        done = run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                   text=True, timeout=policy.timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"'{' '.join(argv)}' did not finish within {policy.timeout:g} s"
    except OSError as exc:
        return f"'{argv[0]}' cannot be run: {exc.strerror or exc}"
    if done.returncode != 0:
        said = " ".join((done.stderr or done.stdout or "").split())[-200:]
        return (f"'{' '.join(argv)}' exited {done.returncode}"
                + (f": {said}" if said else ""))
    return None


def _reset(sysfs_root: str, card: model.Card, region: model.Region,
           function: model.Function) -> str | None:
    device = kinds.of(card).device
    if device == DEVICE_MDEV:
        if function.address is None:
            return None  # never made: nothing of anyone's in it
        mdev_type = (function.attrs.get("mdev_type")
                     or region.attrs.get("mdev_type"))
        parent = region.address or card.address
        if not (mdev_type and parent):
            return (f"mdev {function.address}: neither its type nor its "
                    f"parent is known, so it cannot be made again")
        sysfs_write.remove_mdev(sysfs_root, function.address)
        sysfs_write.create_mdev(sysfs_root, parent, mdev_type,
                                function.address)
        return None
    if device in (DEVICE_PCI, DEVICE_INTERFACE):
        if function.address is None:
            return "its device is gone from the host, so it cannot be reset"
        if sysfs_write.reset_function(sysfs_root, function.address):
            return None
        return (f"the kernel offers no reset for {function.address} (no "
                f"{sysfs_write.reset_file(sysfs_root, function.address)})")
    return (f"nothing in sysfs resets a {card.kind} device; give its "
            f"profile an on_release command, or clean it by hand")


def clean(sysfs_root: str, inv: model.Inventory, policy_of: Policies, *,
          run: Callable[..., object] | None = None
          ) -> dict[str, str | None]:
    """Clean every ``pending`` function of ``inv`` as its profile says;
    return, per function, None when it is clean, else why it is not (it
    is then held: ``settle``). ``run`` runs a profile's command
    (``subprocess.run``)."""
    if run is None:
        import subprocess

        run = subprocess.run
    index = inv.function_index()
    outcomes: dict[str, str | None] = {}
    for fid, entry in sorted(inv.cleaning.items()):
        if entry.state != model.CLEANING_PENDING:
            continue
        if fid not in index:
            outcomes[fid] = "it is no longer in the inventory"
            continue
        card, region, function = index[fid]
        policy = policy_of(card)
        try:
            if policy.how == COMMAND:
                outcomes[fid] = _command(policy, card, region, function, run)
            else:
                outcomes[fid] = _reset(sysfs_root, card, region, function)
        except sysfs_write.MdevError as exc:
            outcomes[fid] = str(exc)
        if outcomes[fid] is None:
            LOG.info("Cleaned %s, released by %s", fid, entry.after)
        else:
            LOG.warning("Holding %s, released by %s, for an operator: %s; "
                        "clean it, then 'accel-inventory clear %s'", fid,
                        entry.after, outcomes[fid], fid)
    return outcomes
