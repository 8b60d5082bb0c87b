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

"""accel-defrag's options: ``[placement]`` (the agent's, which the view
and the planner read) and ``[nova]``, keystoneauth1's session, auth and
adapter options for nova's compute API, which ``plan --execute`` and
``--aggregate NAME`` use, registered the way nova registers its own
clients' groups."""

from oslo_config import cfg

from accel_inventory import conf as inventory_conf

NOVA_GROUP = "nova"
NOVA_SERVICE_TYPE = "compute"

nova_group = cfg.OptGroup(
    NOVA_GROUP, title="Nova's compute API",
    help="Where accel-defrag reaches nova's compute API: to run a plan's "
         "migrations (plan --execute) and to find an aggregate by name. "
         "keystoneauth1's options, as in nova's own [neutron] or "
         "[cinder] groups.")


def register_opts(conf: cfg.ConfigOpts) -> None:
    """[placement] (with [agent]) and [nova] on ``conf``."""
    from keystoneauth1 import loading as ks
    inventory_conf.register_placement_opts(conf)
    conf.register_group(cfg.OptGroup(NOVA_GROUP, title=nova_group.title,
                                     help=nova_group.help))
    ks.register_session_conf_options(conf, NOVA_GROUP)
    ks.register_auth_conf_options(conf, NOVA_GROUP)
    ks.register_adapter_conf_options(conf, NOVA_GROUP,
                                     include_deprecated=False)
    conf.set_default("service_type", NOVA_SERVICE_TYPE, group=NOVA_GROUP)


def list_opts():
    return [(nova_group, inventory_conf.keystoneauth_opts(
        {"service_type": NOVA_SERVICE_TYPE}))]
