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

"""Which configuration file nova-accel reads, and its options read
without oslo.config.

libvirt runs the hook at every domain start, and importing oslo.config
(80 ms here) costs more than all the rest of the hook's work on a large
host. So the hook, its attach worker and ``accel-domain`` read their
options here: the same file and the same ``OS_<GROUP>__<OPTION>``
environment variables as every other part of nova-accel, with
oslo.config's precedence (environment, then file, then default) and its
rules for the types used. The options themselves are declared with help
text in ``accel_inventory.conf`` and ``libvirt_hooks.conf``, for the
sample config; a test holds ``OPTIONS`` to those declarations, so the two
cannot drift apart. ``accel_inventory.conf`` words its one-line errors
with this module's, so every command says a bad value the same way.

Only the one file is read (``config_file``): the file whose owner the
hook checks before it trusts it. Standard library only: the hook's fast
path imports this module, and the hook depends on the inventory, never
the reverse.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from accel_inventory import safe_io


DEFAULT_CONFIG = "/etc/nova-accel/nova-accel.conf"


def config_file() -> str | None:
    """The file every command of nova-accel reads: ``NOVA_ACCEL_CONFIG``
    (even when missing: it is then reported, not silently replaced by
    the defaults, which may name another cache), else the default file
    when it exists."""
    named = os.environ.get("NOVA_ACCEL_CONFIG")
    if named:
        return named
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


class SettingsError(Exception):
    """The configuration cannot be read; the message says which option."""


# (group, option) -> (type, default, minimum)
OPTIONS: dict[tuple[str, str], tuple[type, object, float | None]] = {
    ("inventory", "sysfs_root"): (str, "/sys", None),
    ("inventory", "cache_path"):
        (str, "/var/lib/nova-accel/inventory.json", None),
    ("inventory", "lock_timeout"): (float, 30.0, 0.0),
    ("inventory", "profiles_dir"): (str, "/etc/nova-accel/profiles.d", None),
    ("inventory", "mdev_types"): (dict, {}, None),
    ("libvirt_hooks", "strict_identity"): (bool, False, None),
    ("libvirt_hooks", "timeout"): (float, 10.0, 0.5),
    ("libvirt_hooks", "log_file"): (str, None, None),
    ("libvirt_hooks", "bridge_prefix"): (str, "accbr-", None),
    ("libvirt_hooks", "libvirt_uri"): (str, "qemu:///system", None),
    ("libvirt_hooks", "attach_timeout"): (float, 60.0, 1.0),
    ("libvirt_hooks", "assignment_wait"): (float, 300.0, 1.0),
    ("libvirt_hooks", "unplug_timeout"): (float, 30.0, 1.0),
    ("libvirt_hooks", "max_xml_bytes"): (int, 1024 * 1024, 4096),
}

TRUE_VALUES = ("true", "1", "on", "yes")
FALSE_VALUES = ("false", "0", "off", "no")


def env_name(group: str, name: str) -> str:
    return f"OS_{group.upper()}__{name.upper()}"


def _bool(text: str) -> bool:
    if text.lower() in TRUE_VALUES:
        return True
    if text.lower() in FALSE_VALUES:
        return False
    raise ValueError(f"{text!r} is not one of {TRUE_VALUES + FALSE_VALUES}")


def _dict(text: str) -> dict[str, str]:
    """``key=value,key=value``, as oslo.config's Dict type with the ``=``
    separator reads it (the keys, vendor:product, hold a ``:``)."""
    pairs: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"{pair!r} is not KEY=VALUE")
        pairs[key.strip()] = value.strip()
    return pairs


CONVERTERS = {str: str, int: int, float: float, bool: _bool, dict: _dict}


EXPECTED = {str: "a string", int: "an integer", float: "a number",
            bool: "one of " + ", ".join(TRUE_VALUES + FALSE_VALUES),
            dict: "KEY=VALUE pairs separated by commas"}


def expected(kind: type, minimum: float | None = None,
             maximum: float | None = None) -> str:
    """What a value of an option of ``kind`` must be, for an operator."""
    text = EXPECTED[kind]
    if minimum is not None:
        text += f" of at least {minimum}"
    if maximum is not None:
        text += (" and" if minimum is not None else " of") + \
            f" at most {maximum}"
    return text


def bad_value(group: str, name: str, text: str, where: str | None,
              wanted: str) -> str:
    """The one line that names a bad option value, where it was set and
    what is expected; the hook's and the CLIs' wording."""
    origin = f" (set in {where})" if where else ""
    return f"[{group}] {name} = {text!r}{origin}: expected {wanted}"


def origin(group: str, name: str, config_file: str | None) -> str | None:
    """Where the value of ``[group] name`` comes from: its environment
    variable when set, else the file."""
    variable = env_name(group, name)
    return variable if variable in os.environ else config_file


def convert(group: str, name: str, text: str,
            where: str | None = None) -> object:
    """``text`` as the value of option ``[group] name`` set in ``where``."""
    kind, _default, minimum = OPTIONS[(group, name)]
    try:
        value = CONVERTERS[kind](text.strip())
        if minimum is None or value >= minimum:
            return value
    except ValueError:
        pass
    raise SettingsError(bad_value(group, name, text, where,
                                  expected(kind, minimum)))


def raw_values(config_file: str | None) -> dict[tuple[str, str], str]:
    """The text of every known option that the environment or the file
    sets, the environment first."""
    # Here, not at the top: every domain start imports this module for
    # the timer, and most never read the file (2 ms of the fast path).
    import configparser

    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    if config_file is not None:
        try:
            parser.read_string(safe_io.read_config(config_file),
                               config_file)
        except (OSError, UnicodeDecodeError, configparser.Error) as exc:
            raise SettingsError(f"cannot read {config_file}: {exc}") from None
    found = {}
    for group, name in OPTIONS:
        text = os.environ.get(env_name(group, name))
        if text is None:
            text = parser.get(group, name, fallback=None)
        if text is not None:
            found[(group, name)] = text
    return found


def load(config_file: str | None) -> SimpleNamespace:
    """Every option, as ``settings.<group>.<option>`` (the shape of an
    oslo.config ConfigOpts, so the hook's code reads either)."""
    raw = raw_values(config_file)
    groups: dict[str, SimpleNamespace] = {}
    for (group, name), (kind, default, _minimum) in OPTIONS.items():
        if (group, name) in raw:
            value = convert(group, name, raw[(group, name)],
                            origin(group, name, config_file))
        else:
            value = dict(default) if kind is dict else default
        setattr(groups.setdefault(group, SimpleNamespace()), name, value)
    return SimpleNamespace(**groups)
