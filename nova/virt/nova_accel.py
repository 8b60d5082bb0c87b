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

"""nova-accel's compute driver where nova 34 loads compute drivers from:
the modules of ``nova.virt`` (``compute_driver =
nova_accel.AccelLibvirtDriver``, ``nova_accel_compute.COMPUTE_DRIVER``),
as out-of-tree drivers have shipped a shim there (nova-powervm's
``nova/virt/powervm_ext``). The wheel installs this one module into nova's
package, never an ``__init__.py`` of nova's; the driver is
``nova_accel_compute.driver``."""

from nova_accel_compute.driver import AccelLibvirtDriver

__all__ = ["AccelLibvirtDriver"]
