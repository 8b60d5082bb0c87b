"""A server without accelerators through nova's real libvirt driver."""

from e2e_base import LibvirtE2ETestCase


class TestBoot(LibvirtE2ETestCase):

    def test_server_boots_to_active_with_a_running_domain(self):
        flavor = self.accel_flavor("plain", {})
        server = self.boot(flavor)
        assert server["status"] == "ACTIVE"
        assert self.domstate(server) == "running"
        # Nova's domain, with its metadata, as the hook saw it.
        assert self.dumpxml(server).find("metadata") is not None
