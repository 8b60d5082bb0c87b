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

"""What the hook's trigger, its full path and the attach worker share:
exit codes, the fast reader of their options, and where the sync's
markers are.

Standard library only: the hook imports this at every domain start.
"""

import os

INSTALL_PATH = "/etc/libvirt/hooks/qemu.d/nova-accel"
EXIT_REFUSED = 1
EXIT_USAGE = 2
# accel_inventory.cache names it (a test checks they agree): the hook's
# fast path cannot import the inventory package.
ASSIGNED_SUFFIX = ".assigned"


def fast_options(config: str | None) -> dict[tuple[str, str], str]:
    """Every option's text (environment, then file, then default) for the
    fast path, read once, where a file that cannot be read gives the
    defaults: the full path reports it, and a domain without accelerators
    never waits on it."""
    from accel_inventory import settings

    try:
        found = settings.raw_values(config)
    except settings.SettingsError:
        found = settings.raw_values(None)  # the environment alone
    return {key: found.get(key, default)
            for key, (_kind, default, _min) in settings.OPTIONS.items()}


def cache_path(config: str | None) -> str:
    """``[inventory] cache_path`` as oslo.config would read it, without
    loading oslo.config."""
    return fast_options(config)[("inventory", "cache_path")]


def marker_path(cache: str, consumer: str) -> str:
    """The sync's marker of a consumer it assigned functions."""
    return os.path.join(cache + ASSIGNED_SUFFIX, consumer)
