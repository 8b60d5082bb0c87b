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

"""The base of our tests in nova's functional framework.

Two things in nova's functional base do not fit a pytest run against an
installed nova wheel; they are set right here, once.
"""

import os
import sys

from nova.tests.functional import integrated_helpers

from accel_inventory import conf as inventory_conf


class NovaAccelMixin:
    """What every nova test base of ours needs, before nova's own in the
    class's bases."""

    def _clear_attrs(self):
        # nova's version deletes public attributes at cleanup, which
        # pytest still reads afterwards.
        pass

    def setUp(self):
        # The wheel puts api-paste.ini under <prefix>/etc/nova; nova's test
        # config looks beside site-packages.
        self.flags(api_paste_config=os.path.join(
            sys.prefix, "etc", "nova", "api-paste.ini"), group="wsgi")
        super().setUp()

    def accel_config(self, directory, hostname, cache_path, hook_lines=""):
        """A nova-accel configuration file in ``directory`` for the agent
        of ``hostname``, speaking to this test's placement; its path and
        the loaded options. ``hook_lines`` go into ``[inventory]`` too
        (``sysfs_root = ...``), and may open ``[libvirt_hooks]``."""
        path = os.path.join(directory, "nova-accel.conf")
        with open(path, "w") as f:
            f.write(f"[placement]\nauth_type = admin_token\n"
                    f"endpoint = {self.placement.fixture.endpoint}\n"
                    f"token = {self.placement.fixture.token}\n"
                    f"[inventory]\nhostname = {hostname}\n"
                    f"cache_path = {cache_path}\n{hook_lines}")
        conf = inventory_conf.load(["--config-file", path])
        inventory_conf.register_placement_opts(conf)
        return path, conf


class NovaAccelTestCase(NovaAccelMixin,
                        integrated_helpers.ProviderUsageBaseTestCase):
    compute_driver = "fake.MediumFakeDriver"
