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

"""Live migration of a server holding functions the attach worker
plugged, which nova knows nothing of.

Each card kind says how a server holding its functions moves (the kind's
``move``, published as the ``CUSTOM_ACCEL_MOVE_<CAP>`` trait). ``live``
functions keep no state the server needs on the host side (an
IP-over-PCIe node reached over the network, a USB stick, an mdev the
worker plugged): they are unplugged before the migration starts, the
guest told as at any hot-unplug, the way nova unplugs SR-IOV ports; the
destination's worker plugs the destination's own once the migration
ended (the hook launches it when the incoming domain starts, and it waits
for the migration to end). Any other kind (``cold``: an FPGA region with
its loaded AFU, a whole GPU with its memory; ``none``) fails the
migration at nova's pre-checks, in one line, before anything moved.

``nova_accel_compute.driver`` calls these from nova's libvirt driver;
``live_refusal`` is pure, the rest acts on the cache and libvirt.
"""

from __future__ import annotations

import time

import libvirt

from accel_inventory import (cache, claim_sync, claims, contract, kinds, model,
                             settings)
from libvirt_hooks import attach, decide, trigger

UNPLUG_POLL = 1.0
# What each capability short of live means for the server, and what to do.
NOT_LIVE = {contract.MOVE_COLD: "move cold only",
            contract.MOVE_NONE: "never move"}


class MoveError(Exception):
    """A live migration cannot go on; the message says why and what to
    do."""


def live_refusal(inv: model.Inventory, consumer: str) -> str | None:
    """Why the server ``consumer`` cannot be live-migrated off this host,
    or None: the functions its placement claim holds whose kind does not
    move live. What to do comes before the functions: nova keeps 255
    characters of the reason."""
    claim = inv.claims.get(consumer)
    if claim is None or claim.source != claim_sync.CLAIM_SOURCE:
        return None
    index = inv.function_index()
    stuck: dict[tuple[str, str], list[str]] = {}
    for fid in claim.functions:
        if fid in index:
            card = index[fid][0]
            move = kinds.of(card).move
            if move != contract.MOVE_LIVE:
                stuck.setdefault((card.kind, move), []).append(fid)
    if not stuck:
        return None
    why = "; ".join(f"its {kind} functions {NOT_LIVE[move]}"
                    for kind, move in stuck)
    advice = (f"cold-migrate it instead ('openstack server migrate "
              f"{consumer}')"
              if {move for _kind, move in stuck} == {contract.MOVE_COLD}
              else "it cannot be moved while it holds them")
    return (f"cannot be live-migrated: {why} (a live migration would lose "
            f"their state); {advice}: "
            + ", ".join(fid for fids in stuck.values() for fid in fids))


def refusal(config_file: str | None, consumer: str) -> str | None:
    """``live_refusal`` on this host's cache; None on a host without one.
    A configuration or cache that cannot be read refuses too: what the
    server holds is then unknown."""
    try:
        conf = decide.load_conf(config_file)
        inv = cache.load(conf.inventory.cache_path)
    except (settings.SettingsError, cache.CacheError) as exc:
        return (f"is not live-migrated: nova-accel cannot tell what it "
                f"holds ({exc}); fix that, then migrate it again")
    return live_refusal(inv, consumer) if inv is not None else None


def unplug(conn, config_file: str | None, consumer: str, *,
           clock=time.monotonic, sleep=time.sleep) -> list[str]:
    """Unplug, live, what the worker plugged into the running domain of
    ``consumer`` and wait, up to ``[libvirt_hooks] unplug_timeout``, until
    its guest released all of it; the outcome, one line per function.

    Raises MoveError naming what the guest still holds (or what could not
    be resolved) when the time is up.
    """
    try:
        conf = decide.load_conf(config_file)
    except settings.SettingsError as exc:
        raise MoveError(f"server {consumer} is not live-migrated: cannot "
                        f"read nova-accel's configuration: {exc}") from None
    deadline = clock() + conf.libvirt_hooks.unplug_timeout
    while True:
        try:
            document = attach.detach_claim(conn, conf, consumer)
        except LookupError:
            return []  # nothing of ours is plugged into it
        except (libvirt.libvirtError, cache.CacheError,
                claims.ClaimError) as exc:
            raise MoveError(f"server {consumer} is not live-migrated: "
                            f"unplugging its devices failed: {exc}") from None
        left = {fid: outcome for fid, outcome in document["devices"].items()
                if outcome.get("held") or outcome["state"] == "failed"}
        if not left:
            return attach.outcome_lines(document)
        if clock() >= deadline:
            raise MoveError(
                f"server {consumer} is not live-migrated: its guest did not "
                f"release {', '.join(sorted(left))} within "
                f"{conf.libvirt_hooks.unplug_timeout} s ([libvirt_hooks] "
                f"unplug_timeout): "
                + "; ".join(line for line in attach.outcome_lines(document)
                            if line.split(":", 1)[0] in left)
                + f"; they are plugged again; see 'accel-domain status "
                  f"{document['domain']}'")
        sleep(UNPLUG_POLL)


def plug_again(config_file: str | None, consumer: str) -> None:
    """After a failed or rolled back live migration: the worker plugs the
    server's functions into its domain here again, once the sync gives
    them back if a move took them over meanwhile."""
    trigger.launch(consumer, config_file, trigger.AWAIT_ASSIGNMENT)
