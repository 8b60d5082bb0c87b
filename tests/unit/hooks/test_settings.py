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

"""The hook's option reader agrees with oslo.config, which declares the
options (with their help) for every other part of nova-accel."""

import pytest
from oslo_config import cfg
from oslo_config import types

from accel_inventory import conf as inventory_conf
from accel_inventory import settings
from libvirt_hooks import conf as hooks_conf

TYPES = {types.String: str, types.Integer: int, types.Float: float,
         types.Boolean: bool, types.Dict: dict}

# A value for every option that is not its default, as a file holds it.
FILE_VALUES = {
    "sysfs_root": "/srv/sys", "cache_path": "/srv/inv.json",
    "lock_timeout": "2.5", "profiles_dir": "/srv/profiles",
    "mdev_types": "10de:1eb8= nvidia-222 , 8086:3e92=i915-GVTg_V5_4",
    "strict_identity": "Yes", "timeout": "3", "log_file": "/srv/hook.log",
    "bridge_prefix": "nodebr-", "libvirt_uri": "qemu+ssh://h/system",
    "attach_timeout": "7", "assignment_wait": "20",
    "max_xml_bytes": "65536", "unplug_timeout": "12.5",
}


def declared():
    opts = {}
    for group, group_opts in (inventory_conf.list_opts()
                              + hooks_conf.list_opts()):
        name = group if isinstance(group, str) else group.name
        for opt in group_opts:
            opts[(name, opt.dest)] = opt
    return opts


def oslo_load(config_file):
    conf = cfg.ConfigOpts()
    inventory_conf.register_opts(conf)
    hooks_conf.register_opts(conf)
    conf(args=[], default_config_files=[config_file])
    return conf


def test_every_option_is_declared_alike():
    opts = declared()
    for (group, name), (kind, default, minimum) in settings.OPTIONS.items():
        opt = opts[(group, name)]
        assert (TYPES[type(opt.type)], opt.default) == (kind, default), name
        assert getattr(opt.type, "min", None) == minimum, name


def test_the_reader_knows_every_hook_option():
    hook_opts = {key for key in declared() if key[0] == "libvirt_hooks"}
    assert hook_opts <= set(settings.OPTIONS)


def test_values_and_precedence_match_oslo_config(tmp_path, monkeypatch):
    for group, name in settings.OPTIONS:
        monkeypatch.delenv(settings.env_name(group, name), raising=False)
    config = tmp_path / "nova-accel.conf"
    by_group: dict[str, list[str]] = {}
    for group, name in settings.OPTIONS:
        by_group.setdefault(group, []).append(
            f"{name} = {FILE_VALUES[name]}")
    config.write_text("".join(f"[{group}]\n" + "\n".join(lines) + "\n"
                              for group, lines in by_group.items()))
    monkeypatch.setenv("OS_LIBVIRT_HOOKS__TIMEOUT", "4.5")
    monkeypatch.setenv("OS_INVENTORY__SYSFS_ROOT", "/from/env")
    ours, theirs = settings.load(str(config)), oslo_load(str(config))
    for group, name in settings.OPTIONS:
        assert getattr(getattr(ours, group), name) == \
            getattr(getattr(theirs, group), name), (group, name)
    assert ours.libvirt_hooks.timeout == 4.5
    assert ours.inventory.mdev_types == {"10de:1eb8": "nvidia-222",
                                         "8086:3e92": "i915-GVTg_V5_4"}


def test_defaults_without_a_file(monkeypatch):
    for group, name in settings.OPTIONS:
        monkeypatch.delenv(settings.env_name(group, name), raising=False)
    ours = settings.load(None)
    for (group, name), (_kind, default, _min) in settings.OPTIONS.items():
        assert getattr(getattr(ours, group), name) == default
    ours.inventory.mdev_types["x"] = "y"
    assert settings.load(None).inventory.mdev_types == {}


@pytest.mark.parametrize("group, name, text", [
    ("libvirt_hooks", "strict_identity", "maybe"),
    ("libvirt_hooks", "timeout", "0.1"),
    ("libvirt_hooks", "max_xml_bytes", "lots"),
    ("inventory", "mdev_types", "10de"),
])
def test_a_bad_value_is_refused_by_both(tmp_path, group, name, text):
    config = tmp_path / "nova-accel.conf"
    config.write_text(f"[{group}]\n{name} = {text}\n")
    with pytest.raises(settings.SettingsError, match=f"{name}"):
        settings.load(str(config))
    with pytest.raises((ValueError, cfg.Error)):
        getattr(getattr(oslo_load(str(config)), group), name)


def test_a_file_that_is_no_ini_is_refused(tmp_path):
    config = tmp_path / "nova-accel.conf"
    config.write_text("no section header\n")
    with pytest.raises(settings.SettingsError, match=str(config)):
        settings.load(str(config))
