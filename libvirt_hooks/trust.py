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

"""Whether the hook may trust what its configuration names.

The hook runs as root at every domain start. Its configuration says which
sysfs tree is the host, where the cache, the profiles and the log are;
the cache says which functions each domain may hold. Before it acts on
any of them (before it even opens its log) the hook checks them and every
directory above them with ``accel_inventory.trust`` and refuses
accelerator domains in one line naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable

from accel_inventory import cache
from accel_inventory.trust import Node, problems, summary, untrusted

__all__ = ["Node", "problems", "refusal", "hook_paths"]


def hook_paths(conf) -> list[str | None]:
    """What the hook, its worker and ``accel-domain`` read or write
    besides the configuration and the cache (None: not set)."""
    return [conf.libvirt_hooks.log_file, conf.inventory.profiles_dir,
            conf.inventory.sysfs_root]


def refusal(config_file: str | None, cache_path: str,
            owner_uid: int | None = None,
            others: Iterable[str | None] = ()) -> str | None:
    """The reason to refuse, or None when the configuration file, the
    cache and every file beside it, ``others`` (``hook_paths``) and
    their directories are all trusted.

    ``owner_uid`` defaults to the user the hook runs as.
    """
    found = untrusted([config_file, *cache.own_paths(cache_path), *others],
                      owner_uid)
    if not found:
        return None
    return ("refusing to trust the hook's configuration or cache: "
            + summary(found)
            + "; make them and their directories owned by the user "
              "libvirtd runs hooks as and writable by it alone")
