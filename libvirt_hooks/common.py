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
exit codes, the fast reader of their options, where the sync's markers
are, and the timer that bounds a call.

Standard library only: the hook imports this at every domain start.
"""

import os
import signal
import time

INSTALL_PATH = "/etc/libvirt/hooks/qemu.d/nova-accel"
# All the fast path may load of the inventory package: its file opener and
# its settings reader, standard library only (the tests and the packaging
# check hold the hook to it).
FAST_PATH_INVENTORY = ("accel_inventory", "accel_inventory.safe_io",
                       "accel_inventory.settings")
EXIT_REFUSED = 1
EXIT_USAGE = 2
# accel_inventory.cache names it (a test checks they agree): the hook's
# fast path cannot import the inventory package.
ASSIGNED_SUFFIX = ".assigned"
# accel_inventory.cache's bound on the cache (a test checks they agree).
MAX_CACHE_BYTES = 64 * 1024 * 1024


class HookTimeout(BaseException):
    """The call ran past ``[libvirt_hooks] timeout``. A BaseException, as
    KeyboardInterrupt is, so that no ``except Exception`` on the way
    swallows it."""


_started: float | None = None


def _on_alarm(signum, frame):
    raise HookTimeout()


def start_timer() -> object:
    """Start bounding this call, before anything is opened: at the
    timeout the environment sets (``OS_LIBVIRT_HOOKS__TIMEOUT``) or the
    default, until the configuration says more (``limit``). Returns what
    ``stop_timer`` restores."""
    global _started
    from accel_inventory import settings

    try:
        seconds = float(settings.convert(
            "libvirt_hooks", "timeout",
            os.environ[settings.env_name("libvirt_hooks", "timeout")]))
    except (KeyError, settings.SettingsError):
        seconds = settings.OPTIONS[("libvirt_hooks", "timeout")][1]
    _started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return previous


def limit(seconds: float) -> None:
    """Let the whole call take ``seconds`` from ``start_timer`` (or from
    now, when the timer was never started); raises HookTimeout when that
    is past already."""
    global _started
    if _started is None:
        _started = time.monotonic()
        signal.signal(signal.SIGALRM, _on_alarm)
    left = seconds - (time.monotonic() - _started)
    if left <= 0:
        raise HookTimeout()
    signal.setitimer(signal.ITIMER_REAL, left)


def grant(seconds: float) -> None:
    """``seconds`` more from now, whatever is left: for undoing what a
    call that ran out of time did."""
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def stop_timer(previous: object) -> None:
    global _started
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
    _started = None


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
