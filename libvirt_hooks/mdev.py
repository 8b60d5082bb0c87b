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

"""The hook's writes to sysfs: create and remove mdev instances.

libvirt never creates the mdev a domain names: the hook creates it at
``prepare begin`` on the parent where the domain's card is now, and at
``release end`` removes only the ones it created. The writes themselves
are ``accel_inventory.sysfs_write``'s, which the agent shares when it
makes a released mdev new.
"""

from accel_inventory.sysfs_write import MdevError, write
from accel_inventory.sysfs_write import create_mdev as create
from accel_inventory.sysfs_write import remove_mdev as remove

__all__ = ["MdevError", "create", "remove", "write"]
