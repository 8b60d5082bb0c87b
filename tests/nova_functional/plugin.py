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

"""A pytest plugin for running nova's own functional tests, stock or with
nova-accel forced into every scheduler they start.

With NOVA_ACCEL_FORCE=1, every nova HostManager (one per scheduler
service a test starts) gets AccelTopologyFilter appended to its enabled
filters and AccelPackingWeigher to its weighers, whatever the test
configures, as README's "Install in a real cloud" adds them to nova's
defaults; importing the filter's module wraps nova's two scheduler
functions as nova's loader does in production. Without it the tests run
as nova ships them. Either way two things of nova's test base that do
not fit a pytest run against the installed wheel are set right, as in
tests/common/nova_base.py: ``TestCase._clear_attrs``, which deletes
public attributes that pytest still reads after a test, is made a no-op
(it only frees memory), and ``[wsgi] api_paste_config`` points where the
wheel installs api-paste.ini (<prefix>/etc/nova, not beside
site-packages).
"""

import os
import sys

from nova import test as nova_test
from nova.scheduler import host_manager
from nova.tests.fixtures import conf as conf_fixture

FORCE_ENV = "NOVA_ACCEL_FORCE"
FILTER = "AccelTopologyFilter"


def _force_accel():
    from nova_accel_weigher import filters, weighers

    real_init = host_manager.HostManager.__init__

    def __init__(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.filter_cls_map.setdefault(FILTER, filters.AccelTopologyFilter)
        if not any(type(f).__name__ == FILTER for f in self.enabled_filters):
            self.enabled_filters = [
                *self.enabled_filters, *self._choose_host_filters([FILTER])]
        if not any(isinstance(w, weighers.AccelPackingWeigher)
                   for w in self.weighers):
            self.weighers = [*self.weighers, weighers.AccelPackingWeigher()]

    host_manager.HostManager.__init__ = __init__


def _paste_config_from_the_wheel():
    real_setup = conf_fixture.ConfFixture.setUp
    path = os.path.join(sys.prefix, "etc", "nova", "api-paste.ini")

    def setUp(self):
        real_setup(self)
        self.conf.set_default("api_paste_config", path, group="wsgi")

    conf_fixture.ConfFixture.setUp = setUp


def pytest_configure(config):
    nova_test.TestCase._clear_attrs = lambda self: None
    _paste_config_from_the_wheel()
    if os.environ.get(FORCE_ENV) == "1":
        _force_accel()
