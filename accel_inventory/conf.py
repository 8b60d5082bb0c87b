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

"""Options of the inventory: where the host is read and where the cache is.

The hook reads the same ``[inventory]`` group, so one config file serves the
agent, the CLI and the hook. Every option can also be set through
oslo.config's environment source as ``OS_INVENTORY__<OPTION>``.
"""

import os

from oslo_config import cfg
from oslo_config import types

from accel_inventory import safe_io, settings

inventory_group = cfg.OptGroup(
    "inventory", title="Accelerator inventory",
    help="How the host's accelerators are scanned and where the result "
         "is cached.")

inventory_opts = [
    cfg.StrOpt("sysfs_root", default="/sys",
               help="Root of the sysfs tree to scan. Only tests and the "
                    "bundled sample host point this elsewhere."),
    cfg.StrOpt("cache_path", default="/var/lib/nova-accel/inventory.json",
               help="JSON cache of the host's topology and of the claims on "
                    "it. Written atomically under a lock shared by the "
                    "agent, the CLI and the libvirt hook; keep it on local "
                    "disk, owned and writable by root only."),
    cfg.FloatOpt("lock_timeout", default=30.0, min=0.0,
                 help="Seconds a writer of the cache (scan, CLI, hook, "
                      "agent) waits for the lock before giving up with an "
                      "error naming the process that holds it."),
    cfg.StrOpt("hostname",
               help="Name of this host as nova knows it (the hypervisor "
                    "hostname). Defaults to the system's host name."),
    cfg.StrOpt("profiles_dir", default="/etc/nova-accel/profiles.d",
               help="Directory of operator profiles (``*.json``: name, match "
                    "(a list of vendor:product), resource_class, optional "
                    "kind, functions_per_region, group, "
                    "placeholder_serials and on_release) that override the "
                    "built-in ones of the same name: how a device is split "
                    "into regions, which resource class they get, which "
                    "devices form one card, which serials are no identity, "
                    "and how a function a server released is cleaned before "
                    "the next one gets it (a profile's command runs as "
                    "root: keep the directory and its files root's and "
                    "writable by root alone, or every command refuses "
                    "them)."),
    # '=' between key and type: the key itself holds a ':'.
    cfg.Opt("mdev_types", default={},
            type=types.Dict(key_value_separator="="),
            help="mdev type to expose per GPU vendor:product, e.g. "
                 "10de:1eb8=nvidia-222,8086:3e92=i915-GVTg_V5_4. Without an "
                 "entry the type the GPU's mdevs use is exposed (or its only "
                 "type); a GPU that offers several and uses none is skipped "
                 "with a warning asking for an entry."),
    cfg.Opt("vgpu_types", default={},
            type=types.Dict(key_value_separator="="),
            help="vGPU type to expose per GPU vendor:product for GPUs with "
                 "NVIDIA's vendor-specific VFIO interface (no mdev; each VF "
                 "has nvidia/current_vgpu_type), by ID or name, e.g. "
                 "10de:2235=558 or 10de:2235=NVIDIA A40-2Q. Without an "
                 "entry the type the GPU's vGPUs use is exposed (or its "
                 "only creatable type); else the GPU is skipped with a "
                 "warning asking for an entry."),
    cfg.BoolOpt("use_udev", default=True,
                help="On the live host, ask udev (through pyudev) for the "
                     "serial of a USB device whose sysfs entry has no "
                     "serial file (ID_USB_SERIAL_SHORT, ID_SERIAL_SHORT), "
                     "before reading the device's own descriptor. Never "
                     "used for PCI: udev's ID_PATH holds the PCI address, "
                     "which is not an identity. Ignored when sysfs_root is "
                     "not /sys."),
    cfg.BoolOpt("use_usb_descriptors", default=True,
                help="Read USB string descriptors (serial number) through "
                     "pyusb when sysfs lacks them."),
]


# [placement] and [agent]: where and how the agent publishes (owner
# "placement"). The [placement] group holds keystoneauth1's session, auth
# and adapter options, registered and listed the way nova does its own.
PLACEMENT_GROUP = "placement"
PLACEMENT_SERVICE_TYPE = "placement"
PLACEMENT_INTERFACES = ["internal", "public"]
# Seconds one whole request to placement may take (keystoneauth1's
# timeout, which the agent makes a deadline per request: see
# accel_inventory.placement). keystoneauth1 has none by default, and the
# agent's one loop must never wait for ever.
PLACEMENT_TIMEOUT = 30.0

agent_group = cfg.OptGroup(
    "agent", title="Inventory agent",
    help="The long-running 'accel-inventory agent': rescans the host, "
         "publishes it to placement and records the allocations.")

agent_opts = [
    cfg.StrOpt("compute_node",
               help="Name of this host's compute node resource provider in "
                    "placement (nova's hypervisor hostname). Defaults to "
                    "[inventory] hostname."),
    cfg.IntOpt("interval", default=60, min=1,
               help="Seconds between two rounds of rescan, publish and "
                    "allocation sync. Device events start a round sooner."),
    cfg.BoolOpt("watch_devices", default=True,
                help="Also start a round after each burst of pci, usb, mdev "
                     "or net device events (udev, or the kernel's uevents "
                     "where no udev daemon runs)."),
    cfg.FloatOpt("debounce", default=2.0, min=0.0,
                 help="Seconds without device events before the round "
                      "they trigger starts."),
    cfg.IntOpt("max_attempts", default=4, min=1,
               help="Publish attempts per round when another client "
                    "changes our providers at the same time (generation "
                    "conflicts); the next round starts over."),
    cfg.StrOpt("metrics_path",
               help="File the agent writes its figures to after every "
                    "round, in node_exporter's textfile format (per card "
                    "and region: capacity, functions used, free and "
                    "reserved, whole free, degraded; per host: whole free "
                    "regions by class and size, fragmented functions, the "
                    "largest request still placeable, FGD's "
                    "fragmentation). Point it into node_exporter's "
                    "--collector.textfile.directory with a .prom name, "
                    "e.g. /var/lib/node_exporter/textfile_collector/"
                    "nova_accel.prom; its folder must be owned by root "
                    "and writable by it alone (the agent refuses to start "
                    "otherwise). Unset: no file."),
    cfg.PortOpt("metrics_port", default=0,
                help="Port on which the agent also serves its figures over "
                     "HTTP for Prometheus to scrape; 0 (the default) "
                     "serves none."),
    cfg.StrOpt("metrics_address", default="0.0.0.0",
               help="Address metrics_port listens on."),
    cfg.ListOpt("task_mix", default=["0.4:1", "0.2:2", "0.4:region4"],
                help="The expected mix of requests the exported FGD "
                     "fragmentation is measured against, written as the "
                     "scheduler's [accel_packing] task_mix "
                     "(WEIGHT:SHAPE[:VCPU[:MEMORY_MB[:CLASS|CLASS]]]); set "
                     "it to the same value so that the figure is the one "
                     "the scheduler packs by. The default is the "
                     "scheduler's default mix (its request_mix)."),
]


def _ks_loading():
    from keystoneauth1 import loading as ks_loading

    return ks_loading


def keystoneauth_opts(defaults: dict, helps: dict | None = None) -> list:
    """keystoneauth1's session, auth and adapter options of one client
    group, as nova lists its own, with ``defaults`` (service_type...) and
    ``helps`` where we make more of an option than keystoneauth1 says."""
    helps = helps or {}
    ks = _ks_loading()
    opts = (ks.get_session_conf_options()
            + ks.get_auth_common_conf_options()
            + ks.get_auth_plugin_conf_options("password")
            + ks.get_auth_plugin_conf_options("v3password")
            + ks.get_auth_plugin_conf_options("admin_token")
            + ks.get_adapter_conf_options(include_deprecated=False))
    unique = {}
    for opt in opts:
        if opt.dest in defaults:
            opt.default = defaults[opt.dest]
        if opt.dest in helps:
            opt.help = helps[opt.dest]
        unique.setdefault(opt.dest, opt)
    return list(unique.values())


def _placement_opts() -> list:
    # What the agent makes of keystoneauth1's per-read timeout.
    return keystoneauth_opts(
        {"service_type": PLACEMENT_SERVICE_TYPE,
         "valid_interfaces": PLACEMENT_INTERFACES,
         "timeout": PLACEMENT_TIMEOUT},
        {"timeout": "Seconds one whole request to placement may take "
                    "(connecting, the headers and the whole body; not each "
                    "read of the socket). Past it the agent's round stops, "
                    "leaving the cache as it was, and the next round "
                    "retries."})


def register_placement_opts(conf: cfg.ConfigOpts) -> None:
    """Register [agent] and [placement] on a (possibly parsed) ConfigOpts.

    Separate from register_opts: keystoneauth1 costs 0.1 s to import, and
    the libvirt hook, which reads [inventory], must not pay for it.
    """
    ks = _ks_loading()
    conf.register_group(cfg.OptGroup(agent_group.name,
                                     title=agent_group.title,
                                     help=agent_group.help))
    conf.register_opts(agent_opts, group=agent_group.name)
    ks.register_session_conf_options(conf, PLACEMENT_GROUP)
    ks.register_auth_conf_options(conf, PLACEMENT_GROUP)
    ks.register_adapter_conf_options(conf, PLACEMENT_GROUP,
                                     include_deprecated=False)
    conf.set_default("service_type", PLACEMENT_SERVICE_TYPE,
                     group=PLACEMENT_GROUP)
    conf.set_default("valid_interfaces", PLACEMENT_INTERFACES,
                     group=PLACEMENT_GROUP)
    conf.set_default("timeout", PLACEMENT_TIMEOUT, group=PLACEMENT_GROUP)


def register_opts(conf: cfg.ConfigOpts) -> None:
    # A new group object per ConfigOpts: register_group keeps a shallow
    # copy, so overrides set on one ConfigOpts would leak into every other
    # built from the same module-level group.
    group = cfg.OptGroup(inventory_group.name, title=inventory_group.title,
                         help=inventory_group.help)
    conf.register_group(group)
    conf.register_opts(inventory_opts, group=group)


def list_opts():
    return [(inventory_group, inventory_opts),
            (agent_group, agent_opts),
            (PLACEMENT_GROUP, _placement_opts())]


class ConfigError(Exception):
    """An option's value is invalid; the message is the one line to say."""


def _expected(opt_type) -> str | None:
    """What a value of oslo.config type ``opt_type`` must be, in the
    hook's words; None for a type whose own message says it."""
    if isinstance(opt_type, types.Boolean):
        return settings.expected(bool)
    if isinstance(opt_type, types.Dict):
        return settings.expected(dict)
    if isinstance(opt_type, (types.Integer, types.Float)):
        kind = int if isinstance(opt_type, types.Integer) else float
        return settings.expected(kind, opt_type.min, opt_type.max)
    if getattr(opt_type, "choices", None):
        return "one of " + ", ".join(map(str, opt_type.choices))
    return None


def config_files(conf: cfg.ConfigOpts) -> list[str]:
    """The files ``conf`` was read from, in the order oslo.config read
    them (later files override earlier ones)."""
    return list(conf.config_file or []) + sorted(
        os.path.join(d, f) for d in conf.config_dir or [] if os.path.isdir(d)
        for f in os.listdir(d) if f.endswith(".conf"))


def _file_text(conf: cfg.ConfigOpts, group: str, name: str):
    """The last of the files read that sets ``[group] name``, and its
    text there."""
    import configparser

    found = (None, None)
    for path in config_files(conf):
        parser = configparser.RawConfigParser(strict=False,
                                              interpolation=None)
        try:
            parser.read_string(safe_io.read_config(path), path)
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_option(group, name):
            found = (path, parser.get(group, name))
    return found


def check(conf: cfg.ConfigOpts) -> None:
    """Read every registered option of every group once, so that a bad
    value stops the command at its start (oslo.config converts lazily,
    so a command that never reads an option would pass it silently) with
    one line naming it, where it was set and what is expected, instead of
    oslo.config's own message (which prints its LocationInfo internals
    and names the file even for a value from the environment)."""
    groups = [g for g in conf
              if isinstance(conf[g], cfg.ConfigOpts.GroupAttr)]
    for group_name in groups:
        for name in conf[group_name]:
            try:
                getattr(conf[group_name], name)
            except (cfg.Error, ValueError) as exc:
                variable = settings.env_name(group_name, name)
                if variable in os.environ:
                    where, text = variable, os.environ[variable]
                else:
                    where, text = _file_text(conf, group_name, name)
                opt = conf._get_opt_info(name, group_name)["opt"]
                wanted = _expected(opt.type) or \
                    str(exc).rsplit("is not valid: ", 1)[-1]
                raise ConfigError(settings.bad_value(
                    group_name, name, text if text is not None else "",
                    where, wanted)) from None


def load(argv=None, default_config_files=None) -> cfg.ConfigOpts:
    """A fresh ConfigOpts with our options, parsed from argv and files.

    Without ``--config-file`` in ``argv`` the file is the hook's, by the
    hook's rule (``NOVA_ACCEL_CONFIG``, else
    ``/etc/nova-accel/nova-accel.conf``, when it exists), and no
    ``conf.d`` directory, which the hook never reads: every command of
    nova-accel reads the same file, so they all see the same cache.
    """
    if default_config_files is None:
        default_config_files = [path for path in (settings.config_file(),)
                                if path]
    argv = list(argv or [])
    for path in _files_to_read(argv, default_config_files):
        _check_file(path)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(args=argv, project="nova-accel",
         default_config_files=default_config_files, default_config_dirs=[])
    return conf


def _files_to_read(argv: list[str], default_config_files) -> list[str]:
    """The files oslo.config will read for ``argv``: those named by
    ``--config-file`` (else the defaults) and the ``*.conf`` of every
    ``--config-dir``."""
    def named(flag: str) -> list[str]:
        return [argv[i + 1] for i, arg in enumerate(argv[:-1])
                if arg == flag]

    dirs = named("--config-dir")
    return (named("--config-file") or list(default_config_files)) + sorted(
        os.path.join(d, f) for d in dirs if os.path.isdir(d)
        for f in os.listdir(d) if f.endswith(".conf"))


def _check_file(path: str) -> None:
    """Read ``path`` the way every command of nova-accel reads its
    configuration (``safe_io.read_config``) before oslo.config opens it,
    which would follow a link, wait on a FIFO and read without bound. A
    missing file is oslo.config's to report."""
    try:
        safe_io.read_config(path)
    except FileNotFoundError:
        return
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: "
                          f"{exc.strerror or exc}") from None
