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

"""``AccelLibvirtDriver``: nova's own libvirt driver, plus what a live
migration of a server holding functions nova-accel's attach worker plugged
needs, at the points where nova does the same for SR-IOV ports:

- ``check_can_live_migrate_source`` (nova's pre-checks, before anything
  moves): a server holding a function whose kind does not move live (an
  FPGA region's loaded AFU, a whole GPU) fails the migration with one
  line naming the functions and what to do;
- ``live_migration`` (before the migration starts): the functions the
  worker plugged are unplugged and the guest told, as at any hot-unplug;
  when the guest does not release them in time, the migration is rolled
  back through nova's own recovery, and nothing moved;
- ``rollback_live_migration_at_source``: after a failed or aborted
  migration, the worker plugs them again.

The destination needs nothing of the driver: the hook launches its worker
when the incoming domain starts, and it plugs the destination's functions
once the migration ended. The decisions and the device work are in
``libvirt_hooks.migration``; this module only adapts them to nova.
"""

from nova import exception
from nova.virt.libvirt import driver as libvirt_driver
from oslo_log import log as logging

from accel_inventory import settings
from libvirt_hooks import migration

LOG = logging.getLogger(__name__)


class AccelLibvirtDriver(libvirt_driver.LibvirtDriver):

    def check_can_live_migrate_source(self, context, instance,
                                      dest_check_data,
                                      block_device_info=None):
        refusal = migration.refusal(settings.config_file(), instance.uuid)
        if refusal:
            # Recorded as this check's instance action event (its
            # traceback ends with the reason), and as the instance's fault
            # when the migration named its host; nova's destination wraps
            # it in its own MigrationPreCheckError either way, so a
            # scheduled migration is refused by every candidate host at
            # once and ends in "No valid host was found".
            LOG.warning("%s", refusal, instance=instance)
            raise exception.MigrationPreCheckError(reason=refusal)
        return super().check_can_live_migrate_source(
            context, instance, dest_check_data, block_device_info)

    def live_migration(self, context, instance, dest, post_method,
                       recover_method, block_migration=False,
                       migrate_data=None):
        try:
            unplugged = migration.unplug(self._host.get_connection(),
                                         settings.config_file(), instance.uuid)
        except migration.MoveError as exc:
            LOG.error("%s", exc, instance=instance)
            recover_method(context, instance, dest, migrate_data)
            return
        for line in unplugged:
            LOG.info("Unplugged before the live migration: %s", line,
                     instance=instance)
        super().live_migration(context, instance, dest, post_method,
                               recover_method, block_migration,
                               migrate_data)

    def rollback_live_migration_at_source(self, context, instance,
                                          migrate_data):
        super().rollback_live_migration_at_source(context, instance,
                                                  migrate_data)
        migration.plug_again(settings.config_file(), instance.uuid)
