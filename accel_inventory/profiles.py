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

"""Operator profiles: how a device, matched on vendor:product, is modelled.

A profile names the placement resource class of the regions its devices
give (always ``CUSTOM_ACCEL_...``), may name their kind (else what sysfs
shows decides it), may group functions into regions of a fixed size (the
12 VFs of one PF as 3 regions of 4), may say that the devices below one
board's own PCIe switch are one card, may list serial numbers that every
unit reports (a stick in boot mode) and so are no identity, and says what
a released function needs before anyone else is given it
(``on_release``, see ``release``). Profiles match per device: each PF of
a card takes its own. Built-in profiles ship in the package; ``*.json``
files in ``[inventory] profiles_dir`` override them by name.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass

from accel_inventory import kinds, release, safe_io
from accel_inventory.contract import RESOURCE_CLASS

LOG = logging.getLogger(__name__)
BUILTIN_DIR = os.path.join(os.path.dirname(__file__), "profiles")
MAX_PROFILE_BYTES = 64 * 1024
ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
# What one card is: the functions of one PCI slot, or every function below
# the card's own PCIe switch (a board of several endpoints).
GROUP_SLOT = "slot"
GROUP_SWITCH = "switch"
GROUPS = (GROUP_SLOT, GROUP_SWITCH)


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    name: str
    match: tuple[str, ...]
    resource_class: str
    # None: the kind sysfs shows (an mdev parent, an accelerator by class).
    kind: str | None = None
    functions_per_region: int | None = None
    on_release: release.OnRelease = release.DEFAULT
    group: str = GROUP_SLOT
    placeholder_serials: tuple[str, ...] = ()


def _strings(document: dict, key: str, source: str) -> tuple[str, ...]:
    value = document.get(key, [])
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise ProfileError(f"{source}: {key} must be a list of non-empty "
                           f"strings")
    return tuple(v.strip() for v in value)


def parse(document: dict, source: str) -> Profile:
    if not isinstance(document, dict):
        raise ProfileError(f"{source}: not a JSON object")
    try:
        kind = document.get("kind")
        profile = Profile(
            name=str(document["name"]),
            match=tuple(str(m).lower() for m in document["match"]),
            kind=None if kind is None else str(kind),
            resource_class=str(document["resource_class"]),
            functions_per_region=document.get("functions_per_region"),
            on_release=release.parse(document.get("on_release"), source),
            group=str(document.get("group", GROUP_SLOT)),
            placeholder_serials=_strings(document, "placeholder_serials",
                                         source))
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"{source}: missing or bad field {exc}") from None
    except ValueError as exc:
        raise ProfileError(str(exc)) from None
    if not RESOURCE_CLASS.match(profile.resource_class):
        raise ProfileError(f"{source}: resource_class "
                           f"{profile.resource_class!r} must match "
                           f"{RESOURCE_CLASS.pattern}")
    if profile.kind is not None and profile.kind not in kinds.names():
        raise ProfileError(f"{source}: kind {profile.kind!r} is not one of "
                           f"{', '.join(kinds.names())}")
    bad = [m for m in profile.match if not ID.match(m)]
    if bad:
        raise ProfileError(f"{source}: match entries {bad} are not "
                           f"vendor:product hex ids")
    if profile.group not in GROUPS:
        raise ProfileError(f"{source}: group {profile.group!r} is not one "
                           f"of {', '.join(GROUPS)}")
    fpr = profile.functions_per_region
    if fpr is not None and (not isinstance(fpr, int) or fpr < 1):
        raise ProfileError(f"{source}: functions_per_region must be a "
                           f"positive integer")
    return profile


def _load_dir(directory: str, *, owned: bool = True) -> dict[str, Profile]:
    """The profiles in ``directory``: each ``*.json`` in it, read relative
    to the directory (never through a link, bounded). ``owned``: they
    must be ours or root's and writable by nobody else (the operator's:
    a profile's on_release command runs as root; the built-in ones are
    as trusted as the package)."""
    found = {}
    try:
        fd = os.open(os.path.realpath(directory),
                     os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        LOG.warning("Ignoring the profiles in %s: %s", directory,
                    exc.strerror or exc)
        return found
    try:
        names = sorted(n for n in os.listdir(fd) if n.endswith(".json"))
        for name in names:
            path = os.path.join(directory, name)
            try:
                profile = parse(json.loads(safe_io.read(
                    name, MAX_PROFILE_BYTES, dir_fd=fd, owned=owned,
                    private=owned)), path)
            except (OSError, ValueError, RecursionError) as exc:
                LOG.warning("Ignoring profile %s: %s", path, exc)
                continue
            found[profile.name] = profile
    finally:
        os.close(fd)
    return found


def load_profiles(operator_dir: str | None = None) -> list[Profile]:
    """Built-in profiles, overridden by name by the operator's."""
    profiles = _load_dir(BUILTIN_DIR, owned=False)
    if operator_dir and os.path.isdir(operator_dir):
        profiles.update(_load_dir(operator_dir))
    elif operator_dir and os.path.exists(operator_dir):
        LOG.warning("[inventory] profiles_dir %s is not a directory; only "
                    "the built-in profiles are used", operator_dir)
    return list(profiles.values())


def release_policies(profiles: list[Profile]) -> release.Policies:
    """What each card's profile says its released functions need."""
    return release.policies({p.name: p.on_release for p in profiles})


def match(profiles: list[Profile], vendor: str, product: str
          ) -> Profile | None:
    key = f"{vendor}:{product}".lower()
    for profile in reversed(profiles):
        if key in profile.match:
            return profile
    return None

