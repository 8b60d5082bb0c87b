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

"""Operator profiles: how a card, matched on vendor:product, is modelled.

A profile names the placement resource class of the card's regions
(always ``CUSTOM_ACCEL_...``), its kind, and may group functions into
regions of a fixed size (the 12 VFs of one PF as 3 regions of 4), and says
what a released function needs before anyone else is given it
(``on_release``, see ``release``). Built-in profiles ship in the package;
``*.json`` files in ``[inventory] profiles_dir`` override them by name.
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


class ProfileError(ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    name: str
    match: tuple[str, ...]
    kind: str
    resource_class: str
    functions_per_region: int | None = None
    on_release: release.OnRelease = release.DEFAULT


def parse(document: dict, source: str) -> Profile:
    try:
        profile = Profile(
            name=str(document["name"]),
            match=tuple(str(m).lower() for m in document["match"]),
            kind=str(document.get("kind", kinds.DEFAULT)),
            resource_class=str(document["resource_class"]),
            functions_per_region=document.get("functions_per_region"),
            on_release=release.parse(document.get("on_release"), source))
    except (KeyError, TypeError) as exc:
        raise ProfileError(f"{source}: missing or bad field {exc}") from None
    except ValueError as exc:
        raise ProfileError(str(exc)) from None
    if not RESOURCE_CLASS.match(profile.resource_class):
        raise ProfileError(f"{source}: resource_class "
                           f"{profile.resource_class!r} must match "
                           f"{RESOURCE_CLASS.pattern}")
    if profile.kind not in kinds.names():
        raise ProfileError(f"{source}: kind {profile.kind!r} is not one of "
                           f"{', '.join(kinds.names())}")
    bad = [m for m in profile.match if not ID.match(m)]
    if bad:
        raise ProfileError(f"{source}: match entries {bad} are not "
                           f"vendor:product hex ids")
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

