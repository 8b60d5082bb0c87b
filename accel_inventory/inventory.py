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

"""Keep the cache in step with the host: rescan, acknowledge, forget,
clear what an operator cleaned.

``refresh`` is the one place a scan reaches the cache: it scans, then
under the writers' lock loads the cache, reconciles and saves, so a claim
the hook records meanwhile is never overwritten, and the hook never
waits for sysfs to be read. ``ack``, ``forget`` and ``clear`` are pure;
the CLI applies them with ``cache.update``.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import time

from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import model
from accel_inventory import release
from accel_inventory import safe_io

LOG = logging.getLogger(__name__)

LIVE_SYSFS = "/sys"
BOOT_ID_BYTES = 64  # a UUID and its newline


class InventoryError(Exception):
    """A change to the inventory is refused; the message says why."""


def current_boot_id(proc_root: str = "/proc") -> str:
    """The kernel's id of this boot; a claim running in another is not."""
    path = os.path.join(proc_root, "sys", "kernel", "random", "boot_id")
    try:
        boot_id = safe_io.read(path, BOOT_ID_BYTES, truncate=True).decode(
            "ascii", "replace").strip()
    except OSError as e:
        raise InventoryError(f"cannot read the boot id from {path}: "
                             f"{e.strerror or e}") from e
    if not boot_id:
        raise InventoryError(f"{path} is empty")
    return boot_id


def hostname_of(conf) -> str:
    return conf.inventory.hostname or socket.gethostname()


def _scan(conf):
    # Imported here: the libvirt hook imports this module for
    # current_boot_id and must not pay for the scanner's imports.
    from accel_inventory import profiles
    from accel_inventory import sysfs
    from accel_inventory import udev
    from accel_inventory import usb

    opts = conf.inventory
    live = os.path.realpath(opts.sysfs_root) == LIVE_SYSFS
    return sysfs.scan_cards(
        opts.sysfs_root,
        profiles=profiles.load_profiles(opts.profiles_dir),
        mdev_types=opts.mdev_types, vgpu_types=opts.vgpu_types,
        udev_properties=(udev.device_properties
                         if opts.use_udev and live else None),
        usb_serial_reader=(usb.read_serial
                           if opts.use_usb_descriptors and live else None))


def check_sysfs_root(root: str) -> None:
    """Refuse a sysfs root that is not a sysfs tree (missing, mistyped,
    a container without /sys): a scan of it finds no card, so every card
    of the cache would be marked lost and published degraded."""
    if not os.path.isdir(os.path.join(root, "bus", "pci")):
        raise InventoryError(f"[inventory] sysfs_root {root} has no "
                             f"bus/pci: not a sysfs tree; nothing "
                             f"scanned and the cache is unchanged")


def check_trusted(conf, config_files: list[str]) -> None:
    """Raise InventoryError when someone other than root and the user we
    run as can change a path the command relies on (``trust``): the
    configuration files, the cache and every file beside it, the
    profiles, the sysfs tree. Root writes the cache and the markers,
    unlinks names in them, and publishes what the profiles and sysfs
    say."""
    from accel_inventory import trust

    opts = conf.inventory
    found = trust.untrusted([*config_files, *cache.own_paths(opts.cache_path),
                             opts.profiles_dir, opts.sysfs_root])
    if found:
        raise InventoryError(
            f"refusing to trust the configuration, the cache, the profiles "
            f"or the sysfs tree: {trust.summary(found)}; make them and "
            f"their directories owned by root (or the user that runs "
            f"accel-inventory) and writable by it alone")


def refresh(conf) -> tuple[model.Inventory, list]:
    """Scan the host, reconcile with the cache and save; return both.

    ``changes`` are ``identity.Change`` records, one per card whose status
    is not ``ok``. A rescan never loses a claim: the claims of the cache
    are carried over whole, and ``claimed_by`` is set from them.
    """
    from accel_inventory import identity

    path = conf.inventory.cache_path
    check_sysfs_root(conf.inventory.sysfs_root)
    # sysfs first, without the lock: a slow attribute (a VPD read can
    # take seconds) must not hold up the hook's claim writes, which take
    # the same lock at every domain start.
    result = _scan(conf)
    for warning in result.warnings:
        LOG.warning("Scan of %s: %s", conf.inventory.sysfs_root, warning)
    with cache.locked(path, conf.inventory.lock_timeout):
        previous = cache.load(path)
        inventory, changes = identity.reconcile(previous, result.cards,
                                                hostname_of(conf))
        inventory = keep_claims(previous, inventory)
        inventory.scanned_at = time.time()
        cache.save(path, inventory)
    return inventory, changes


def keep_claims(previous: model.Inventory | None,
                 scanned: model.Inventory) -> model.Inventory:
    """``scanned`` with every claim of ``previous``, claimed_by in step,
    and every function of ``previous`` that waits to be cleaned.

    The claims of the cache are the record; whatever the reconciliation
    did with them, they come through a rescan unchanged.
    """
    kept = model.clone(scanned)
    kept.claims = copy.deepcopy(previous.claims) if previous else {}
    # So are the functions waiting to be cleaned: a rescan cleans nothing.
    kept.cleaning = copy.deepcopy(previous.cleaning) if previous else {}
    return claims.with_claimed_by(kept)


def ack(inv: model.Inventory, card_id: str) -> model.Inventory:
    """Accept a moved or added card: its status becomes ``ok``.

    Acknowledging a card that is already ``ok`` changes nothing. A lost
    or ambiguous card cannot be accepted: it is not where it was, or it
    cannot be told apart from another.
    """
    card = _card(inv, card_id)
    if card.status in model.DEGRADED_STATUSES:
        hint = ("reinsert it and rescan, or 'accel-inventory forget' it "
                "once nothing claims it"
                if card.status == model.STATUS_LOST else
                "give the cards a stronger identity (serial, slot) or "
                "a profile that tells them apart, then rescan")
        raise InventoryError(f"card {card_id} is {card.status} and cannot "
                             f"be acknowledged: {hint}")
    new = model.clone(inv)
    new.card(card_id).status = model.STATUS_OK
    return new


def forget(inv: model.Inventory, card_id: str) -> model.Inventory:
    """Drop a lost card from the inventory.

    Refused for a card that is present (the next scan would add it back)
    and for a card whose functions are claimed (the claims would point at
    nothing; release them first).
    """
    card = _card(inv, card_id)
    if card.status != model.STATUS_LOST:
        raise InventoryError(f"card {card_id} is {card.status}, not lost: "
                             f"only a lost card can be forgotten")
    fids = {f.id for f in card.functions()}
    holders = sorted(
        {c.consumer for c in inv.claims.values() if fids & set(c.functions)}
        | {f.claimed_by for f in card.functions() if f.claimed_by})
    if holders:
        named = ", ".join(
            h + (f" (domain {inv.claims[h].domain_name})"
                 if h in inv.claims and inv.claims[h].domain_name else "")
            for h in holders)
        raise InventoryError(f"card {card_id} is still claimed by {named}; "
                             f"release those claims before forgetting it")
    new = model.clone(inv)
    new.cards = [c for c in new.cards if c.id != card_id]
    for entry in release.under(new, card_id):
        del new.cleaning[entry.function]
    return new


def clear(inv: model.Inventory, target: str
          ) -> tuple[model.Inventory, list[model.Cleaning]]:
    """Let the functions of ``target`` (a function, region or card id)
    that wait to be cleaned go free, once an operator cleaned them; and
    the entries cleared. Refused when none of them waits."""
    cleared = release.under(inv, target)
    if not cleared:
        waiting = ", ".join(sorted(inv.cleaning)) or "none"
        raise InventoryError(f"nothing of {target} waits to be cleaned "
                             f"(waiting: {waiting})")
    new = model.clone(inv)
    for entry in cleared:
        del new.cleaning[entry.function]
    return new, cleared


def _card(inv: model.Inventory, card_id: str) -> model.Card:
    card = inv.card(card_id)
    if card is None:
        known = ", ".join(c.id for c in inv.cards) or "none"
        raise InventoryError(f"no card {card_id} in the inventory of "
                             f"{inv.hostname} (known: {known})")
    return card
