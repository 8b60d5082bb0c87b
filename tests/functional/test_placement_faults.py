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

"""Placement failing under the publisher, the allocation sync and the
scheduler filter: every fault is survived, nothing allocated is lost.

Placement's real WSGI app (SQLite in memory, from its own fixture) is
served over HTTP on loopback behind ``Faults``, a middleware that fails
chosen requests the ways a real deployment does: a concurrent writer
bumps the provider's generation first (placement itself answers 409), a
proxy answers 5xx before or after placement applied the request, the
answer comes later than the client waits or a byte at a time, a proxy
answers a page that is not JSON, JSON of another shape or a redirect to
somewhere else (which must never be followed), or placement goes away
(connections refused until it comes back).
"""

import copy
import dataclasses
import json
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from wsgiref import simple_server

import pytest
import webob
from placement import deploy
from placement.tests.functional.fixtures import placement as placement_fx

from accel_inventory import agent, cache, claims, model, placement
from tests.common.placement_builders import make_card, make_inventory
from tests.common.placement_host import Host, card_uuid, region_uuid

ROOT = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT = 0.5          # what the clients wait for one answer ([placement])
HANG = TIMEOUT + 0.2   # how long a hung answer takes
ELSEWHERE = "/elsewhere"  # where a redirect points: never to be requested
ADMIN = {"X-Auth-Token": "admin", "Content-Type": "application/json",
         "OpenStack-API-Version": "placement 1.36"}


@dataclass
class Fault:
    """Fail the next ``times`` requests matching ``method`` and the
    ``path`` pattern (searched in path and query).

    ``kind``: ``conflict`` (another client changes the provider first),
    ``error`` (``status`` from a proxy), ``timeout`` (no answer within the
    client's timeout), ``drip`` (placement's answer, a byte at a time:
    each read well within the timeout, the whole far past it), ``garbage``
    (a proxy's page that is not JSON), ``shape`` (JSON that is not
    placement's), ``redirect`` (to another path, which must never be
    requested) or ``refuse`` (placement goes down: this request is
    answered, every later connection is refused). With ``after``, error
    and timeout let placement apply the request first: the change is made
    but its answer is lost.
    """

    kind: str
    method: str
    path: str
    after: bool = False
    status: int = 503
    times: int = 1


class Faults:
    """WSGI middleware around placement's app that injects ``Fault``s."""

    def __init__(self, app, go_down):
        self.app, self.go_down = app, go_down
        self.pending: list[Fault] = []
        self.injected: list[str] = []

    def direct(self, method, path, body=None):
        """A request to placement itself, past the faults."""
        request = webob.Request.blank(path, method=method, headers=ADMIN)
        if body is not None:
            request.body = json.dumps(body).encode()
        response = request.get_response(self.app)
        return response.json if response.body else None

    def _bump(self, path):
        rp = path.split("/")[2]
        url = f"/resource_providers/{rp}/aggregates"
        current = self.direct("GET", url)
        self.direct("PUT", url, {
            "aggregates": current["aggregates"] + [str(uuid.uuid4())],
            "resource_provider_generation":
                current["resource_provider_generation"]})

    def _match(self, method, target):
        for fault in self.pending:
            if (fault.times and fault.method == method
                    and re.search(fault.path, target)):
                fault.times -= 1
                return fault
        return None

    def __call__(self, environ, start_response):
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        query = environ.get("QUERY_STRING")
        target = f"{path}?{query}" if query else path
        if path.startswith(ELSEWHERE):
            self.injected.append(f"followed the redirect to {target}")
        fault = self._match(method, target)
        if fault is None:
            return self.app(environ, start_response)
        self.injected.append(f"{fault.kind} {method} {target}")
        if fault.kind == "conflict":
            self._bump(path)
            return self.app(environ, start_response)
        if fault.kind == "refuse":
            self.go_down()
            return self.app(environ, start_response)
        if fault.kind == "drip":
            answer = []
            body = b"".join(self.app(environ, lambda status, headers,
                                     exc_info=None: answer.append(
                                         (status, headers))))
            start_response(*answer[0])
            return _drip(body)
        if fault.kind == "redirect":
            start_response("302 Found", [(
                "Location",
                f"http://{environ['HTTP_HOST']}{ELSEWHERE}{path}")])
            return [b""]
        if fault.kind in ("garbage", "shape"):
            start_response("200 OK", [("Content-Type", "application/json")])
            return [b"<html>a proxy's page</html>" if fault.kind == "garbage"
                    else json.dumps({"resource_providers": "none",
                                     "allocations": [],
                                     "provider_summaries": {
                                         str(uuid.uuid4()): "none"}}
                                    ).encode()]
        if fault.after:
            answer = []
            body = b"".join(self.app(environ, lambda status, headers,
                                     exc_info=None: answer.append(
                                         (status, headers))))
        if fault.kind == "timeout":
            time.sleep(HANG)  # the client has given up by now
            if fault.after:
                start_response(*answer[0])
                return [body]
        start_response(f"{fault.status} Injected",
                       [("Content-Type", "application/json")])
        return [json.dumps({"errors": [{
            "status": fault.status, "title": "Injected",
            "detail": f"injected {fault.kind}"}]}).encode()]


def _drip(body):
    """``body`` a byte at a time, each within the client's timeout and the
    whole three timeouts long at least."""
    pause = min(TIMEOUT / 3, 3 * TIMEOUT / max(len(body), 1))
    for i in range(len(body)):
        time.sleep(pause)
        yield body[i:i + 1]


class Quiet(simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


class Server:
    """Placement behind ``Faults`` over HTTP on a fixed loopback port,
    which can go down (connections refused) and come back."""

    def __init__(self):
        self.fixture = placement_fx.PlacementFixture(use_intercept=False)
        self.fixture.setUp()
        self.faults = Faults(deploy.loadapp(self.fixture.conf_fixture.conf),
                             self.go_down)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = None
        self.lock = threading.RLock()
        self.come_back()

    def serve(self):
        # One request at a time, as the SQLite connection needs; while
        # down there is no listener to serve.
        while True:
            with self.lock:
                if self.server is not None:
                    self.server.handle_request()
                    continue
            time.sleep(0.01)

    def come_back(self):
        with self.lock:
            if self.server is None:
                self.server = simple_server.make_server(
                    "127.0.0.1", self.port, self.faults, handler_class=Quiet)
                self.server.timeout = 0.05

    def go_down(self):
        """Close the listener: from now on connections are refused. Also
        called by a fault, within a request."""
        with self.lock:
            self.server.server_close()
            self.server = None

    def obey(self, lines, out):
        """Commands from the test, one JSON object a line; one answer
        line each."""
        for line in lines:
            command = json.loads(line)
            answer = None
            if command["do"] == "fault":
                self.faults.pending.append(Fault(**command["fault"]))
            elif command["do"] == "down":
                self.go_down()
            elif command["do"] == "up":
                self.come_back()
            elif command["do"] == "injected":
                answer = self.faults.injected
            out.write(json.dumps(answer) + "\n")
            out.flush()


class FaultyPlacement:
    """The test's handle on ``Server``, which runs in a child process: the
    functional tests run under nova's eventlet patching, where a server
    thread would starve the client that waits for it."""

    def __init__(self):
        # This module as the child's main, imported from the checkout
        # where ``tests`` is a package.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"faulty placement did not start: {line!r}")
        self.endpoint = f"http://127.0.0.1:{int(line.split()[1])}"

    def _command(self, **command):
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def inject(self, fault):
        self._command(do="fault", fault=dataclasses.asdict(fault))

    def go_down(self):
        self._command(do="down")

    def come_back(self):
        self._command(do="up")

    @property
    def injected(self):
        return self._command(do="injected")

    def close(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def service():
    faulty = FaultyPlacement()
    try:
        yield faulty
    finally:
        faulty.close()


@pytest.fixture
def host(service, tmp_path):
    h = Host(service.endpoint, tmp_path)
    h.config_file.write_text(h.config_file.read_text()
                             + f"timeout = {TIMEOUT}\n")
    h.conf = h.load_conf()
    return h


# -- publish and allocation sync ---------------------------------------------

RP = r"^/resource_providers/[0-9a-f-]{36}"
PUBLISH_FAULTS = {
    "409 on an inventory write": Fault("conflict", "PUT", RP +
                                       "/inventories$"),
    "409 on a traits write": Fault("conflict", "PUT", RP + "/traits$"),
    "503 before a create": Fault("error", "POST", r"^/resource_providers$"),
    "500 after a create": Fault("error", "POST", r"^/resource_providers$",
                                after=True, status=500),
    "502 after a traits write": Fault("error", "PUT", RP + "/traits$",
                                      after=True, status=502),
    "timeout on the tree listing": Fault("timeout", "GET", r"in_tree="),
    "timeout after an inventory write": Fault("timeout", "PUT", RP +
                                              "/inventories$", after=True),
    "refused from a traits write on": Fault("refuse", "PUT", RP +
                                            "/traits$"),
    "503 on an allocations read": Fault("error", "GET", RP +
                                        "/allocations$"),
    "timeout on an allocations read": Fault("timeout", "GET", RP +
                                            "/allocations$"),
    "refused from an allocations read on": Fault("refuse", "GET", RP +
                                                 "/allocations$"),
    "drip of the tree listing": Fault("drip", "GET", r"in_tree="),
    "drip of an allocations read": Fault("drip", "GET", RP +
                                         "/allocations$"),
    "not JSON for the tree listing": Fault("garbage", "GET", r"in_tree="),
    "another shape for an allocations read": Fault("shape", "GET", RP +
                                                   "/allocations$"),
    "redirect of the tree listing": Fault("redirect", "GET", r"in_tree="),
}


def resources(host, consumer):
    """What ``consumer`` holds where (generations aside)."""
    return {rp: a["resources"] for rp, a in host.get(
        f"/allocations/{consumer}")["allocations"].items()}


def changed_host(inv):
    """The next scan: card 1 lost (degraded, reserved) and a new card."""
    new = copy.deepcopy(inv)
    new.cards[1].status = model.STATUS_LOST
    new.cards.append(make_card(2, regions=2, functions=4))
    return new


@pytest.mark.parametrize("fault", PUBLISH_FAULTS.values(),
                         ids=PUBLISH_FAULTS.keys())
def test_a_round_survives_the_fault_and_the_next_completes(service, host,
                                                            fault):
    inv = make_inventory(cards=2, regions=2, functions=4)
    cache.save(host.cache_path, inv)
    publisher = host.publisher()
    agent.run_round(host.conf, publisher, rescan=False)
    allocated = {str(uuid.uuid4()): (region_uuid(inv, 0, 0), 2),
                 str(uuid.uuid4()): (region_uuid(inv, 1, 1), 1)}
    for consumer, (rp, amount) in allocated.items():
        host.allocate(consumer, rp, amount)
    placed = {c: resources(host, c) for c in allocated}
    changed = changed_host(inv)
    cache.save(host.cache_path, changed)
    before = pathlib.Path(host.cache_path).read_bytes()

    service.inject(fault)
    try:
        agent.run_round(host.conf, publisher, rescan=False)
        failed = None
    except placement.PlacementError as exc:
        failed = exc
    assert len(service.injected) == 1, service.injected
    if fault.kind == "conflict":
        assert failed is None  # re-read and retried within the round
    else:
        assert isinstance(failed, placement.PlacementUnavailable)
        assert pathlib.Path(host.cache_path).read_bytes() == before
        service.come_back()
        agent.run_round(host.conf, publisher, rescan=False)

    # Placement holds the whole host: a publisher that remembers nothing
    # finds nothing to change.
    assert not host.publisher().publish(changed).changed
    assert placement.DEGRADED_TRAIT in host.traits(card_uuid(changed, 1))
    assert host.inventory(region_uuid(changed, 2, 1))
    # No allocation lost, and each recorded in the cache.
    final = cache.load(host.cache_path, validate=True)
    assert claims.inconsistencies(final) == []
    for consumer, (_rp, amount) in allocated.items():
        assert resources(host, consumer) == placed[consumer]
        assert len(claims.functions_of(final, consumer)) == amount


# -- the scheduler filter ----------------------------------------------------

# None: placement is down when the request comes.
FILTER_FAULTS = {
    "503": Fault("error", "GET", r"^/allocation_candidates\?"),
    "500 after answering": Fault("error", "GET", r"^/allocation_candidates\?",
                                 after=True, status=500),
    "timeout": Fault("timeout", "GET", r"^/allocation_candidates\?"),
    "drip": Fault("drip", "GET", r"^/allocation_candidates\?"),
    "not JSON": Fault("garbage", "GET", r"^/allocation_candidates\?"),
    "another shape": Fault("shape", "GET", r"^/allocation_candidates\?"),
    "redirect": Fault("redirect", "GET", r"^/allocation_candidates\?"),
    "refused": None,
}


@pytest.mark.parametrize("fault", FILTER_FAULTS.values(),
                         ids=FILTER_FAULTS.keys())
def test_the_filter_keeps_placements_order_then_packs_again(service, host,
                                                            fault, caplog):
    # nova only here: running this file as the server must not import it.
    from nova import objects
    from nova.tests.unit.scheduler import fakes

    from nova_accel_weigher import filters, usage

    objects.register_all()
    inv = make_inventory(cards=1, regions=2, functions=4)
    host.publisher().publish(inv)
    busy, free = region_uuid(inv, 0, 0), region_uuid(inv, 0, 1)
    host.allocate(str(uuid.uuid4()), busy, 1)
    rc = inv.cards[0].regions[0].resource_class
    candidates = host.get(f"/allocation_candidates?resources={rc}:1"
                          )["allocation_requests"]
    placement_order = [list(c["allocations"]) for c in candidates]
    # Packing puts the busy region first: placement's order must differ,
    # or keeping it would prove nothing.
    if placement_order[0] == [busy]:
        candidates.reverse()
        placement_order.reverse()
    accel_filter = filters.AccelTopologyFilter()
    adapter = placement.load_adapter(host.conf)
    accel_filter.usage_source = usage.PlacementUsage(lambda: adapter,
                                                     TIMEOUT)

    def schedule():
        state = fakes.FakeHostState("compute-1", "compute-1", {
            "allocation_candidates": [
                {"allocations": c["allocations"], "mappings": {}}
                for c in candidates]})
        passed = accel_filter.host_passes(state, objects.RequestSpec(
            instance_uuid=str(uuid.uuid4())))
        return passed, [list(c["allocations"])
                        for c in state.allocation_candidates]

    if fault is None:
        service.go_down()
    else:
        service.inject(fault)
    assert schedule() == (True, placement_order)
    assert len(service.injected) == (fault is not None), service.injected
    # One warning line, never a traceback into nova's log.
    assert not [r.getMessage() for r in caplog.records if r.exc_info]
    service.come_back()
    passed, order = schedule()
    assert passed and order[0] == [busy] and sorted(map(tuple, order)) == \
        sorted([(busy,), (free,)])


if __name__ == "__main__":
    # The child of FaultyPlacement: serve, and obey the test on stdin.
    child = Server()
    print(f"PORT {child.port}", flush=True)
    threading.Thread(target=child.obey, args=(sys.stdin, sys.stdout),
                     daemon=True).start()
    child.serve()
