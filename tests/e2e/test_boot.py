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

"""A server without accelerators through nova's real libvirt driver."""

from tests.e2e.e2e_base import LibvirtE2ETestCase


class TestBoot(LibvirtE2ETestCase):

    def test_server_boots_to_active_with_a_running_domain(self):
        flavor = self.accel_flavor("plain", {})
        server = self.boot(flavor)
        assert server["status"] == "ACTIVE"
        assert self.domstate(server) == "running"
        # Nova's domain, with its metadata, as the hook saw it.
        assert self.dumpxml(server).find("metadata") is not None
