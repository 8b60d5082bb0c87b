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

"""Configuration: the sample file is current; files and env both work."""

import configparser
import importlib.metadata
import pathlib

from oslo_config import generator

from accel_inventory import conf

ROOT = pathlib.Path(__file__).resolve().parents[3]
GENERATOR_CONF = ROOT / "etc" / "oslo-config-generator.conf"
SAMPLE = ROOT / "etc" / "nova-accel.conf.sample"


def our_namespaces():
    """The oslo.config.opts entry points nova-accel's metadata declares."""
    dist = importlib.metadata.distribution("nova-accel")
    return sorted(ep.name for ep in dist.entry_points
                  if ep.group == "oslo.config.opts")


def test_generator_config_lists_every_namespace_we_declare():
    parser = configparser.ConfigParser(strict=False)
    with open(GENERATOR_CONF) as f:
        lines = [line for line in f if not line.startswith("namespace")]
    with open(GENERATOR_CONF) as f:
        listed = sorted(line.split("=", 1)[1].strip() for line in f
                        if line.startswith("namespace"))
    parser.read_string("".join(lines))
    assert parser["DEFAULT"]["output_file"] == "etc/nova-accel.conf.sample"
    assert listed == our_namespaces()


def test_sample_config_is_up_to_date(tmp_path):
    # Regenerate with: oslo-config-generator --config-file
    # etc/oslo-config-generator.conf
    fresh = tmp_path / "nova-accel.conf.sample"
    generator.main(["--config-file", str(GENERATOR_CONF),
                    "--output-file", str(fresh)])
    assert SAMPLE.read_text() == fresh.read_text(), (
        "etc/nova-accel.conf.sample is out of date: run oslo-config-generator "
        "--config-file etc/oslo-config-generator.conf and commit it")


def test_sample_documents_the_inventory_options():
    section = SAMPLE.read_text().split("\n[inventory]\n", 1)[1]
    section = section.split("\n[", 1)[0]
    for opt in conf.inventory_opts:
        assert f"\n#{opt.dest} =" in section, opt.dest


def test_options_from_a_config_file(tmp_path):
    path = tmp_path / "nova-accel.conf"
    path.write_text("[inventory]\nsysfs_root = /srv/fake-sys\n"
                    "cache_path = /srv/inventory.json\nlock_timeout = 2.5\n"
                    "mdev_types = 10de:1eb8=nvidia-222\n")
    c = conf.load(["--config-file", str(path)])
    assert c.inventory.sysfs_root == "/srv/fake-sys"
    assert c.inventory.cache_path == "/srv/inventory.json"
    assert c.inventory.lock_timeout == 2.5
    assert c.inventory.mdev_types == {"10de:1eb8": "nvidia-222"}


def test_options_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "nova-accel.conf"
    path.write_text("[inventory]\nsysfs_root = /from-file\n"
                    "cache_path = /file/inventory.json\n")
    monkeypatch.setenv("OS_INVENTORY__SYSFS_ROOT", "/from-env")
    monkeypatch.setenv("OS_INVENTORY__HOSTNAME", "compute-7")
    monkeypatch.setenv("OS_INVENTORY__USE_UDEV", "false")
    c = conf.load(["--config-file", str(path)])
    assert c.inventory.sysfs_root == "/from-env"
    assert c.inventory.hostname == "compute-7"
    assert c.inventory.use_udev is False
    assert c.inventory.cache_path == "/file/inventory.json"


def test_defaults_without_any_source(monkeypatch):
    for name in ("SYSFS_ROOT", "CACHE_PATH", "HOSTNAME"):
        monkeypatch.delenv(f"OS_INVENTORY__{name}", raising=False)
    c = conf.load([], default_config_files=[])
    assert c.inventory.sysfs_root == "/sys"
    assert c.inventory.cache_path == "/var/lib/nova-accel/inventory.json"
    assert c.inventory.hostname is None


def test_overrides_stay_in_their_own_config_object():
    first = conf.load([], default_config_files=[])
    first.set_override("cache_path", "/elsewhere.json", group="inventory")
    second = conf.load([], default_config_files=[])
    assert second.inventory.cache_path == "/var/lib/nova-accel/inventory.json"


def test_every_command_reads_the_file_nova_accel_config_names(
        tmp_path, monkeypatch, capsys):
    # accel-inventory used oslo.config's own search and ignored the
    # variable, so it and the hook could read different caches.
    from accel_inventory import cli
    from libvirt_hooks import decide, hook

    config = tmp_path / "elsewhere.conf"
    config.write_text(f"[inventory]\ncache_path = {tmp_path / 'mine.json'}\n")
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(config))
    monkeypatch.delenv("OS_INVENTORY__CACHE_PATH", raising=False)
    assert conf.load([]).inventory.cache_path == str(tmp_path / "mine.json")
    assert decide.load_conf(hook.config_file()).inventory.cache_path == \
        str(tmp_path / "mine.json")
    assert cli.main(["status"]) == 1
    assert f"no inventory cache at {tmp_path / 'mine.json'}" in \
        capsys.readouterr().err
    # --config-file names the file instead, as for accel-domain.
    other = tmp_path / "other.conf"
    other.write_text(f"[inventory]\ncache_path = {tmp_path / 'o.json'}\n")
    assert conf.load(["--config-file", str(other)]).inventory.cache_path \
        == str(tmp_path / "o.json")


def test_profiles_dir_reads_every_kind_of_file_its_help_names(tmp_path):
    # The help promised *.yaml profiles; only *.json were ever read.
    import re

    from accel_inventory import profiles

    opt = next(o for o in conf.inventory_opts if o.name == "profiles_dir")
    patterns = re.findall(r"\*\.(\w+)", opt.help)
    assert patterns
    for n, suffix in enumerate(patterns):
        (tmp_path / f"p{n}.{suffix}").write_text(
            f'{{"name": "p{n}", "match": ["abcd:000{n}"], '
            f'"resource_class": "CUSTOM_ACCEL_P{n}"}}')
    names = {p.name for p in profiles.load_profiles(str(tmp_path))}
    # (The sample carries the same help: test_sample_config_is_up_to_date.)
    assert {f"p{n}" for n in range(len(patterns))} <= names
