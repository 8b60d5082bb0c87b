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

"""The only code of accel-defrag that speaks to nova's compute API:
migrate a server (live or cold, to a named host), confirm or revert a
cold one, read a server, find an aggregate's UUID by its name and a
compute node's service host. A keystoneauth1 adapter from ``[nova]``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from accel_inventory import placement
from accel_defrag.report import COLD_MICROVERSION, LIVE_MICROVERSION

# Reads: the aggregate's uuid (2.41), the hypervisor's service (2.53).
READ_MICROVERSION = "2.53"


class NovaError(Exception):
    """Nova refused or failed a request, or cannot be reached."""


def load_adapter(conf):
    """The adapter of ``[nova]``, built as placement's is."""
    try:
        return placement.load_adapter(conf, "nova")
    except placement.PlacementError as e:
        raise NovaError(str(e)) from None


class Nova:
    def __init__(self, adapter, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.adapter = adapter
        self.sleep = sleep
        self.clock = clock

    def call(self, method: str, url: str, body: Any = None,
             microversion: str = READ_MICROVERSION, ok=(200, 202)):
        from keystoneauth1 import exceptions as ks_exc

        kwargs: dict[str, Any] = {"raise_exc": False,
                                  "microversion": microversion,
                                  "headers": {"Accept": "application/json"}}
        if body is not None:
            kwargs["json"] = body
        try:
            response = self.adapter.request(url, method, **kwargs)
        except ks_exc.ClientException as e:
            raise NovaError(f"cannot reach nova for {method} {url} (are the "
                            f"[nova] options right?): {e}") from e
        if response.status_code not in ok:
            detail = " ".join(response.text[:300].split())
            raise NovaError(f"nova answered {response.status_code} to "
                            f"{method} {url}: {detail}")
        return response.json() if response.content else {}

    def server(self, uuid: str) -> dict[str, Any]:
        return self.call("GET", f"/servers/{uuid}")["server"]

    def _action(self, uuid: str, body: dict, microversion: str) -> None:
        self.call("POST", f"/servers/{uuid}/action", body, microversion,
                  ok=(202, 204))

    def live_migrate(self, uuid: str, host: str) -> None:
        """From 2.30 nova's scheduler checks the host it is given."""
        self._action(uuid, {"os-migrateLive": {
            "host": host, "block_migration": "auto"}}, LIVE_MICROVERSION)

    def cold_migrate(self, uuid: str, host: str) -> None:
        self._action(uuid, {"migrate": {"host": host}}, COLD_MICROVERSION)

    def confirm(self, uuid: str) -> None:
        self._action(uuid, {"confirmResize": None}, READ_MICROVERSION)

    def revert(self, uuid: str) -> None:
        self._action(uuid, {"revertResize": None}, READ_MICROVERSION)

    def wait(self, uuid: str, done: Callable[[dict], bool], timeout: float,
             interval: float = 2.0) -> dict[str, Any]:
        """Poll the server until ``done`` says so or its task ends in
        ERROR; raises NovaError past ``timeout`` seconds."""
        deadline = self.clock() + timeout
        while True:
            server = self.server(uuid)
            if done(server) or server.get("status") == "ERROR":
                return server
            if self.clock() >= deadline:
                raise NovaError(
                    f"server {uuid} is still {server.get('status')} (task "
                    f"{server.get('OS-EXT-STS:task_state')}) after "
                    f"{timeout:g} s")
            self.sleep(interval)

    def aggregate_uuid(self, name: str) -> str:
        found = [a for a in self.call("GET", "/os-aggregates")["aggregates"]
                 if a["name"] == name]
        if not found:
            raise NovaError(f"nova has no aggregate named {name!r}")
        return found[0]["uuid"]

    def service_host(self, node: str) -> str:
        """The compute service host of hypervisor ``node`` (what --host
        takes); ``node`` itself when nova lists none (they are the same
        for libvirt)."""
        listed = self.call("GET", f"/os-hypervisors/detail?"
                                  f"hypervisor_hostname_pattern="
                                  f"{quote(node)}", ok=(200, 404))
        for hypervisor in listed.get("hypervisors", []):
            if hypervisor.get("hypervisor_hostname") == node:
                return hypervisor.get("service", {}).get("host", node)
        return node
