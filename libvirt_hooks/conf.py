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

"""Options of the libvirt hook.

The hook also reads the ``[inventory]`` group (``sysfs_root``,
``cache_path``, ``lock_timeout``) from the same file, so the agent, the CLI
and the hook always agree on where the host and its cache are.
"""

from oslo_config import cfg

hooks_group = cfg.OptGroup(
    "libvirt_hooks", title="libvirt qemu hook",
    help="What the hook checks and prepares when libvirt starts a domain.")

hooks_opts = [
    cfg.BoolOpt("strict_identity", default=False,
                help="Refuse a start whose device (PCI or USB hostdev, "
                     "mdev, node interface) now is a free function of the "
                     "same type as the one the domain was given, but of "
                     "another card (a re-enumerated host). By default such "
                     "a start is allowed and logged."),
    cfg.FloatOpt("timeout", default=10.0, min=0.5,
                 help="Seconds the hook may spend on one call. libvirt has "
                      "no timeout of its own; past this the hook fails "
                      "closed for accelerator domains."),
    cfg.StrOpt("log_file",
               help="Log one line per decision to this file. Without it the "
                    "hook logs to syslog (facility daemon)."),
    cfg.StrOpt("bridge_prefix", default="accbr-",
               help="Prefix of the Linux bridges through which domains reach "
                    "IP-over-PCIe nodes. An interface on such a bridge marks "
                    "a domain as an accelerator domain."),
    cfg.StrOpt("libvirt_uri", default="qemu:///system",
               help="libvirt connection of the attach worker, which hot-plugs "
                    "the devices Nova does not manage into a domain after "
                    "it starts; 'accel-domain' takes its own --connect."),
    cfg.FloatOpt("attach_timeout", default=60.0, min=1.0,
                 help="Seconds the attach worker waits for a started domain "
                      "to come up before it gives up (and logs what to "
                      "run by hand)."),
    cfg.FloatOpt("assignment_wait", default=300.0, min=1.0,
                 help="Seconds the attach worker of a Nova domain whose "
                      "flavor asks for one of our resource classes, but "
                      "that the agent's allocation sync has not assigned "
                      "functions yet, waits for that assignment (the sync "
                      "runs every [agent] interval seconds)."),
    cfg.FloatOpt("unplug_timeout", default=30.0, min=1.0,
                 help="Seconds nova-accel's compute driver waits, before "
                      "a live migration, for the guest to release the "
                      "devices the attach worker plugged (a PCI device "
                      "leaves when the guest answers the hot-unplug); "
                      "past it the migration is rolled back and they are "
                      "plugged again."),
    cfg.IntOpt("max_xml_bytes", default=1024 * 1024, min=4096,
               help="Largest domain XML the hook parses. A larger document "
                    "is refused for accelerator domains."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    group = cfg.OptGroup(hooks_group.name, title=hooks_group.title,
                         help=hooks_group.help)
    conf.register_group(group)
    conf.register_opts(hooks_opts, group=group)


def list_opts():
    return [(hooks_group, hooks_opts)]
