"""Options of the inventory: where the host is read and where the cache is.

The hook reads the same ``[inventory]`` group, so one config file serves the
agent, the CLI and the hook. Every option can also be set through
oslo.config's environment source as ``OS_INVENTORY__<OPTION>``.
"""

from oslo_config import cfg

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
               help="Directory of operator profiles (*.yaml or *.json) that "
                    "override how a card, matched on vendor:product, is "
                    "split into regions and which resource class it gets."),
    cfg.DictOpt("mdev_types", default={},
                help="mdev type to expose per parent vendor:product, e.g. "
                     "10de:1eb8:nvidia-222. Without an entry the first "
                     "supported type of the parent is used."),
    cfg.BoolOpt("use_udev", default=True,
                help="Read udev properties through pyudev where the live host "
                     "has them. Ignored when sysfs_root is not /sys."),
    cfg.BoolOpt("use_usb_descriptors", default=True,
                help="Read USB string descriptors (serial number) through "
                     "pyusb when sysfs lacks them."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    # A new group object per ConfigOpts: register_group keeps a shallow
    # copy, so overrides set on one ConfigOpts would leak into every other
    # built from the same module-level group.
    group = cfg.OptGroup(inventory_group.name, title=inventory_group.title,
                         help=inventory_group.help)
    conf.register_group(group)
    conf.register_opts(inventory_opts, group=group)


def list_opts():
    return [(inventory_group, inventory_opts)]


def load(argv=None, default_config_files=None) -> cfg.ConfigOpts:
    """A fresh ConfigOpts with our options, parsed from argv and files."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(args=list(argv or []), project="nova-accel",
         default_config_files=default_config_files)
    return conf
