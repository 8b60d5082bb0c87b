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

"""Mirror the inventory into placement and read back who holds what.

The tree and its diff are ``provider_tree``'s and the allocations' sync
into claims is ``allocations``' (pure, what the unit tests exercise);
here are the HTTP client and the ``Publisher``, the only code that speaks
to placement.

Requests are kept few because the agent runs this every minute on every
compute host: the publisher remembers each provider's generation with the
inventories, traits and (empty) allocations it last saw, and placement
bumps the generation at every change of them, so a publish with nothing
changed costs one listing of the tree. Emptied allocations are the
exception (placement does not bump the generation when allocations are
removed), so a region that held allocations is read again at every sync.

The agent runs one loop: a placement that answers slowly must not stall
it, nor one that answers wrongly end it. So ``[placement] timeout`` is a
deadline for each whole request (connect, headers, body), not for each
read of the socket (``_deadline_adapter``); a redirect is never followed
(keystoneauth would send the token to wherever it points); and every
answer is checked for the shape placement gives it before it is used
(``_answer``), a wrong one failing the round in one line that names the
request.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from accel_inventory import model
from accel_inventory.contract import DEGRADED_TRAIT, OWNER_TRAIT
from accel_inventory.provider_tree import (ProviderSpec, ProviderState, Step,
                                           desired_tree, diff, invalid_names,
                                           normal_inventories, provider_uuid,
                                           retired)

LOG = logging.getLogger(__name__)

# Nova speaks 1.36; 1.37 is only needed to move a provider to a new parent.
MICROVERSION = "1.36"
REPARENT_MICROVERSION = "1.37"


class PlacementError(Exception):
    """Placement refused or failed a request; the message says which."""


class PlacementUnavailable(PlacementError):
    """Placement cannot be reached (down, wrong endpoint, auth failure,
    no whole answer within the deadline, an answer that is not
    placement's)."""


# The shapes of placement's answers that the publisher reads, as ``_misfit``
# checks them: a dict lists the keys it needs, ``[shape]`` a list of
# shapes, ``{str: shape}`` a mapping of any keys to shapes, a type a leaf.
_PROVIDER = {"uuid": str, "name": str, "generation": int}
_PROVIDERS = {"resource_providers": [_PROVIDER]}
_INVENTORIES = {"resource_provider_generation": int,
                "inventories": {str: dict}}
_TRAITS = {"resource_provider_generation": int, "traits": [str]}
_GENERATION = {"generation": int}
_RP_GENERATION = {"resource_provider_generation": int}
_ALLOCATIONS = {"resource_provider_generation": int,
                "allocations": {str: {"resources": {str: int}}}}
_CONSUMER_ALLOCATIONS = {"allocations": {str: {"resources": {str: int}}}}


def _misfit(value: Any, shape: Any, where: str = "") -> str | None:
    """Where ``value`` is not of ``shape``, in words; None when it is."""
    if isinstance(shape, type):
        if isinstance(value, shape) and not (
                shape is int and isinstance(value, bool)):
            return None
        return (f"{where or 'the answer'} is {type(value).__name__}, not "
                f"{shape.__name__}")
    if isinstance(shape, list):
        if not isinstance(value, list):
            return _misfit(value, list, where)
        return next((found for i, item in enumerate(value)
                     if (found := _misfit(item, shape[0], f"{where}[{i}]"))),
                    None)
    if not isinstance(value, dict):
        return _misfit(value, dict, where)
    if set(shape) == {str}:
        return next((found for key, item in value.items()
                     if (found := _misfit(item, shape[str],
                                          f"{where}[{key!r}]"))), None)
    for key, item_shape in shape.items():
        if key not in value:
            return f"{where or 'the answer'} has no {key!r}"
        found = _misfit(value[key], item_shape, f"{where}[{key!r}]")
        if found:
            return found
    return None


def _answer(response, what: str, shape: Any) -> Any:
    """The JSON body of ``response`` to ``what``, once it is of ``shape``;
    PlacementUnavailable in one line naming the request otherwise (a
    proxy's page, another service, a broken placement)."""
    try:
        body = response.json()
    except ValueError:
        raise PlacementUnavailable(
            f"placement's answer {response.status_code} to {what} is not "
            f"JSON ({len(response.content)} bytes: "
            f"{response.text[:80]!r}); is [placement] endpoint placement's?"
            ) from None
    found = _misfit(body, shape)
    if found:
        raise PlacementUnavailable(f"placement's answer {response.status_code}"
                                   f" to {what} is not what placement sends: "
                                   f"{found}")
    return body


class _Conflict(Exception):
    """A provider's generation changed under us: re-read and retry.

    ``names`` says that placement no longer knows a trait or resource
    class we created (its database was reset): create them again.
    """

    def __init__(self, rp_uuid: str, names: bool = False):
        super().__init__(rp_uuid)
        self.uuid = rp_uuid
        self.names = names


_UNKNOWN_NAME = ("No such trait", "Unknown resource class",
                 "No such resource class")


def _unknown_name(response) -> bool:
    return response.status_code == 400 and any(
        text in response.text for text in _UNKNOWN_NAME)


def load_adapter(conf, group: str = "placement"):
    """A keystoneauth1 adapter from the ``[placement]`` group (or another
    client group), as nova builds its own: auth plugin, then session,
    then adapter; each request through it must end within the group's
    ``timeout`` (30 s by default: ``conf.PLACEMENT_TIMEOUT``)."""
    from keystoneauth1 import exceptions as ks_exc
    from keystoneauth1 import loading as ks_loading

    try:
        auth = ks_loading.load_auth_from_conf_options(conf, group)
        session = ks_loading.load_session_from_conf_options(conf, group,
                                                            auth=auth)
        adapter = ks_loading.load_adapter_from_conf_options(
            conf, group, session=session, auth=auth)
    except ks_exc.ClientException as e:
        raise PlacementError(f"the [{group}] options are incomplete: "
                             f"{e}") from e
    from accel_inventory.conf import PLACEMENT_TIMEOUT

    with_deadline(session, session.timeout or PLACEMENT_TIMEOUT)
    return adapter


def with_deadline(session, seconds: float) -> None:
    """Make every request of the keystoneauth1 ``session`` end within
    ``seconds``, all of it: requests' own timeout bounds each read of the
    socket, so a server that drips a byte at a time never times out."""
    if session.timeout is None:
        session.timeout = seconds  # and no read waits longer either
    adapter_class = _deadline_adapter()
    transport = session.session
    for prefix, old in list(transport.adapters.items()):
        transport.mount(prefix, adapter_class(
            seconds, tls_ciphers=getattr(old, "tls_ciphers", None),
            tls_min_version=getattr(old, "tls_min_version", None)))


@functools.lru_cache(maxsize=None)
def _deadline_adapter():
    """keystoneauth1's transport adapter with a deadline per request: a
    timer shuts the socket of the request down when it passes, which ends
    the read it waits in. Built on first use: keystoneauth1 costs 0.1 s
    to import."""
    import requests
    from keystoneauth1 import session as ks_session
    from urllib3 import connectionpool

    # The socket of the connection each thread's request is using now: the
    # pools record the connection when they hand it out, and each
    # connection its socket when it connects (http.client drops its own
    # reference once a response that closes the connection has begun).
    # Their connection classes stay urllib3's, or whatever a test
    # installs in their place.
    in_use: dict[int, Any] = {}

    class Recording:
        def _new_conn(self, *args, **kwargs):
            conn = super()._new_conn(*args, **kwargs)
            connect = conn.connect

            def connect_and_record():
                connect()
                conn.nova_accel_socket = conn.sock

            conn.connect = connect_and_record
            return conn

        def _get_conn(self, *args, **kwargs):
            conn = super()._get_conn(*args, **kwargs)
            in_use[threading.get_ident()] = conn
            return conn

    class HTTPPool(Recording, connectionpool.HTTPConnectionPool):
        pass

    class HTTPSPool(Recording, connectionpool.HTTPSConnectionPool):
        pass

    pools = {"http": HTTPPool, "https": HTTPSPool}

    class DeadlineAdapter(ks_session.TCPKeepAliveAdapter):
        def __init__(self, seconds: float, **kwargs):
            self.seconds = seconds
            super().__init__(**kwargs)

        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

        def proxy_manager_for(self, proxy, **kwargs):
            manager = super().proxy_manager_for(proxy, **kwargs)
            manager.pool_classes_by_scheme = pools
            return manager

        def send(self, request, **kwargs):
            caller, expired = threading.get_ident(), threading.Event()

            def expire():
                expired.set()
                sock = getattr(in_use.get(caller), "nova_accel_socket", None)
                with contextlib.suppress(OSError, AttributeError):
                    sock.shutdown(socket.SHUT_RDWR)

            timer = threading.Timer(self.seconds, expire)
            timer.daemon = True
            timer.start()
            try:
                response = super().send(request, **kwargs)
                if not kwargs.get("stream"):
                    _body = response.content  # within the deadline too
                return response
            except requests.RequestException as exc:
                if expired.is_set():
                    raise requests.exceptions.ReadTimeout(
                        f"no whole answer within {self.seconds:g} s",
                        request=request) from exc
                raise
            finally:
                timer.cancel()
                in_use.pop(caller, None)

    return DeadlineAdapter


class Client:
    """A thin placement client over a keystoneauth1 adapter.

    Counts its requests (the tests and the benchmark read ``requests``) and
    turns every failure to reach placement into PlacementUnavailable.
    """

    def __init__(self, adapter, microversion: str = MICROVERSION):
        self.adapter = adapter
        self.microversion = microversion
        self.requests = 0

    def call(self, method: str, url: str, body: Any = None,
             microversion: str | None = None):
        from keystoneauth1 import exceptions as ks_exc

        self.requests += 1
        # A redirect is answered, never followed: keystoneauth would send
        # the token along to wherever it points.
        kwargs: dict[str, Any] = {
            "raise_exc": False, "redirect": False,
            "microversion": microversion or self.microversion,
            "headers": {"Accept": "application/json"}}
        if body is not None:
            kwargs["json"] = body
        try:
            return self.adapter.request(url, method, **kwargs)
        except ks_exc.ClientException as e:
            raise PlacementUnavailable(
                f"cannot reach placement for {method} {url} (is it up, and "
                f"are the [placement] options right?): {e}") from e


def _error(response, what: str) -> PlacementError:
    detail = ""
    if 300 <= response.status_code < 400:
        detail = (f": a redirect to {response.headers.get('Location')!r}, "
                  f"not followed (it would take the token elsewhere); set "
                  f"[placement] endpoint to placement's own")
    else:
        try:
            errors = response.json().get("errors", [])
            detail = ": " + str(errors[0].get("detail", "")).strip().replace(
                "\n", " ")
        except ValueError:
            detail = f": {response.text[:200]}"
        except (AttributeError, IndexError, TypeError):
            pass  # no placement error document: the status says it
    cls = PlacementUnavailable if response.status_code in (
        401, 403, 500, 502, 503, 504) or 300 <= response.status_code < 400 \
        else PlacementError
    return cls(f"placement answered {response.status_code} to {what}"
               f"{detail}")


def _error_code(response) -> str:
    try:
        return response.json()["errors"][0].get("code", "")
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


@dataclass
class PublishReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)   # unwanted, allocated
    skipped: dict[str, str] = field(default_factory=dict)  # bad names
    failed: dict[str, str] = field(default_factory=dict)   # refused
    attempts: int = 0
    requests: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


class Publisher:
    """Publishes one host's inventory and reads its allocations.

    Keep one Publisher for the life of the agent: what it remembers is
    what makes an unchanged publish cost one request.
    """

    def __init__(self, client: Client, *, compute_node: str | None = None,
                 max_attempts: int = 4):
        self.client = client
        self.compute_node = compute_node
        self.max_attempts = max_attempts
        self.root_uuid: str | None = None
        self.root_name: str | None = None  # the provider name it was for
        self._known: dict[str, ProviderState] = {}
        self._exists: set[str] = set()  # traits and classes ensured

    # -- publish

    def publish(self, inventory: model.Inventory) -> PublishReport:
        """Make placement match ``inventory``; retry generation conflicts.

        Raises PlacementUnavailable when placement cannot be reached (the
        cache is untouched; the next publish starts over) and
        PlacementError when it refuses a change.
        """
        start = self.client.requests
        report = PublishReport()
        for attempt in range(1, self.max_attempts + 1):
            report.attempts = attempt
            # What earlier attempts wrote stays reported; what they could
            # not do is decided again.
            report.failed.clear()
            report.skipped.clear()
            try:
                self._publish_once(inventory, report)
                break
            except _Conflict as c:
                LOG.info("Provider %s changed under us (generation "
                         "conflict); re-reading it (attempt %d of %d)",
                         c.uuid, attempt, self.max_attempts)
                self._known.pop(c.uuid, None)
                if c.names:
                    self._exists.clear()
        else:
            raise PlacementError(
                f"gave up publishing after {self.max_attempts} generation "
                f"conflicts; another client keeps changing providers of "
                f"{inventory.hostname}. The next publish tries again.")
        report.requests = self.client.requests - start
        return report

    def _publish_once(self, inventory: model.Inventory,
                      report: PublishReport) -> None:
        self._ensure_trait(OWNER_TRAIT)
        had_providers = bool(self._known)
        root = self._root(inventory)
        actual = self._read_tree(root)
        if not actual and had_providers and inventory.cards:
            # Our providers vanished: the compute node may have been
            # re-created under a new UUID. Look it up again once.
            self.root_uuid = self.root_name = None
            root = self._root(inventory)
            actual = self._read_tree(root)
        specs = desired_tree(inventory, root)
        bad = invalid_names(specs)
        for source_id, names in bad.items():
            LOG.error("Not publishing %s: placement refuses the names %s. "
                      "Fix the resource class in its profile.",
                      source_id, names)
        report.skipped.update(bad)
        skip = {model.card_id_of(s) for s in bad}
        # Providers of a skipped card are neither updated nor removed.
        for spec in specs:
            if model.card_id_of(spec.source_id) in skip:
                actual.pop(spec.uuid, None)
        specs = [s for s in specs
                 if model.card_id_of(s.source_id) not in skip]
        steps = diff(specs, actual)
        # Custom names are created only when a write needs them.
        for step in steps:
            if step.action in ("create", "traits"):
                for name in sorted(step.spec.traits):
                    self._ensure_trait(name)
            if step.action in ("create", "inventories"):
                for name in step.spec.inventories:
                    self._ensure_class(name)
        failed: set[str] = set()
        for step in steps:
            if step.spec is not None and step.spec.parent_uuid in failed:
                failed.add(step.uuid)
                report.failed[step.spec.source_id] = (
                    "not published: its card's provider failed")
                continue
            try:
                self._apply(step, report)
            except PlacementUnavailable:
                raise
            except PlacementError as e:
                # One provider placement refuses (say, a resource class
                # changed while still allocated) must not hold back the
                # others; it is retried at every publish.
                source = step.spec.source_id if step.spec else step.uuid
                LOG.error("Cannot publish %s: %s", source, e)
                report.failed[source] = str(e)
                failed.add(step.uuid)

    def _root(self, inventory: model.Inventory) -> str:
        name = self.compute_node or inventory.hostname
        if self.root_uuid and self.root_name == name:
            return self.root_uuid
        what = f"the lookup of provider {name}"
        response = self.client.call(
            "GET", f"/resource_providers?name={quote(name, safe='')}")
        if response.status_code != 200:
            raise _error(response, what)
        found = _answer(response, what, _PROVIDERS)["resource_providers"]
        if not found:
            raise PlacementError(
                f"no resource provider named {name} in placement: nova-"
                f"compute has not registered this host yet, or [agent] "
                f"compute_node does not match its hypervisor hostname")
        self.root_uuid, self.root_name = found[0]["uuid"], name
        return self.root_uuid

    def _read_tree(self, root: str) -> dict[str, ProviderState]:
        """Our providers under ``root``, each with inventories and traits.

        One listing; providers whose generation we saw last are not read
        again.
        """
        response = self.client.call(
            "GET", f"/resource_providers?in_tree={root}"
                   f"&required={OWNER_TRAIT}")
        if _unknown_name(response):
            raise _Conflict(root, names=True)
        what = f"the listing of the tree of {root}"
        if response.status_code != 200:
            raise _error(response, what)
        listed = _answer(response, what, _PROVIDERS)["resource_providers"]
        fresh = {}
        for rp in listed:
            known = self._known.get(rp["uuid"])
            if known is None or known.generation != rp["generation"]:
                known = self._read_provider(rp)
            fresh[rp["uuid"]] = known
        self._known = fresh
        return dict(fresh)

    def _read_provider(self, rp: Mapping[str, Any]) -> ProviderState:
        base = f"/resource_providers/{rp['uuid']}"
        inv = self.client.call("GET", f"{base}/inventories")
        traits = self.client.call("GET", f"{base}/traits")
        what = f"the read of provider {rp['uuid']}"
        for r in (inv, traits):
            if r.status_code == 404:
                raise _Conflict(rp["uuid"])  # deleted meanwhile
            if r.status_code != 200:
                raise _error(r, what)
        inv_body = _answer(inv, what, _INVENTORIES)
        traits_body = _answer(traits, what, _TRAITS)
        generation = inv_body["resource_provider_generation"]
        if traits_body["resource_provider_generation"] != generation:
            raise _Conflict(rp["uuid"])
        return ProviderState(
            uuid=rp["uuid"], name=rp["name"],
            parent_uuid=rp.get("parent_provider_uuid"),
            generation=generation, inventories=inv_body["inventories"],
            traits=frozenset(traits_body["traits"]))

    def _ensure_trait(self, name: str) -> None:
        self._ensure(f"/traits/{name}", name)

    def _ensure_class(self, name: str) -> None:
        self._ensure(f"/resource_classes/{name}", name)

    def _ensure(self, url: str, name: str) -> None:
        if url in self._exists:
            return
        response = self.client.call("PUT", url)
        if response.status_code not in (201, 204):
            raise _error(response, f"the creation of {name}")
        self._exists.add(url)

    def _apply(self, step: Step, report: PublishReport) -> None:
        spec = step.spec
        if step.action == "create":
            self._create(spec)
            report.created.append(spec.source_id)
        elif step.action in ("move", "traits", "inventories"):
            if step.action == "move":
                self._move(spec)
            elif step.action == "traits":
                self._put_traits(step.uuid, spec.traits)
            else:
                self._put_inventories(step.uuid, spec.inventories)
            if spec.source_id not in report.updated:
                report.updated.append(spec.source_id)
        elif step.action == "remove":
            self._remove(step.uuid, report)

    def _create(self, spec: ProviderSpec) -> None:
        response = self.client.call("POST", "/resource_providers", {
            "uuid": spec.uuid, "name": spec.name,
            "parent_provider_uuid": spec.parent_uuid})
        if response.status_code == 409:
            state = self._adopt(spec)
        elif response.status_code == 200:
            body = _answer(response, f"the creation of provider {spec.name}",
                           _GENERATION)
            state = ProviderState(
                uuid=spec.uuid, name=spec.name, parent_uuid=spec.parent_uuid,
                generation=body["generation"], inventories={},
                traits=frozenset(), allocations={})
        else:
            raise _error(response, f"the creation of provider {spec.name}")
        self._known[spec.uuid] = state
        # Traits first: the ownership trait marks the provider as ours.
        self._put_traits(spec.uuid, spec.traits)
        if spec.inventories:
            self._put_inventories(spec.uuid, spec.inventories)

    def _adopt(self, spec: ProviderSpec) -> ProviderState:
        """Take over a provider an interrupted publish of ours created.

        It has our UUID, name and parent but no traits yet (the ownership
        trait is set right after creation). Anything else with our UUID or
        name belongs to someone else and is left alone.
        """
        response = self.client.call("GET", f"/resource_providers/"
                                           f"{spec.uuid}")
        if response.status_code == 200:
            rp = _answer(response, f"the read of provider {spec.uuid}",
                         _PROVIDER)
            state = self._read_provider(rp)
            if OWNER_TRAIT in state.traits:
                # Another publisher of this host (an overlapping restart)
                # created it meanwhile: start over from a fresh listing.
                raise _Conflict(spec.uuid)
            if (rp["name"] == spec.name
                    and rp.get("parent_provider_uuid") == spec.parent_uuid
                    and not state.traits):
                LOG.info("Completing provider %s left half-created by an "
                         "earlier publish", spec.name)
                return state
        raise PlacementError(
            f"a provider with the UUID {spec.uuid} or the name {spec.name} "
            f"exists but is not ours (no {OWNER_TRAIT} trait); remove it or "
            f"give this host another hostname")

    def _move(self, spec: ProviderSpec) -> None:
        response = self.client.call(
            "PUT", f"/resource_providers/{spec.uuid}",
            {"name": spec.name, "parent_provider_uuid": spec.parent_uuid},
            microversion=REPARENT_MICROVERSION)
        what = f"the update of provider {spec.name}"
        if response.status_code != 200:
            raise _error(response, what)
        known = self._known[spec.uuid]
        known.name, known.parent_uuid = spec.name, spec.parent_uuid
        known.generation = _answer(response, what, _GENERATION)["generation"]

    def _put_traits(self, rp_uuid: str, traits: frozenset[str]) -> None:
        known = self._known[rp_uuid]
        response = self.client.call(
            "PUT", f"/resource_providers/{rp_uuid}/traits",
            {"traits": sorted(traits),
             "resource_provider_generation": known.generation})
        if response.status_code == 409 or _unknown_name(response):
            raise _Conflict(rp_uuid, names=response.status_code == 400)
        what = f"setting the traits of {known.name}"
        if response.status_code != 200:
            raise _error(response, what)
        known.generation = _answer(response, what, _RP_GENERATION)[
            "resource_provider_generation"]
        known.traits = frozenset(traits)

    def _put_inventories(self, rp_uuid: str,
                         inventories: dict[str, dict[str, Any]]) -> None:
        known = self._known[rp_uuid]
        response = self.client.call(
            "PUT", f"/resource_providers/{rp_uuid}/inventories",
            {"inventories": inventories,
             "resource_provider_generation": known.generation})
        if (response.status_code == 409
                and _error_code(response) == "placement.concurrent_update"
                or _unknown_name(response)):
            raise _Conflict(rp_uuid, names=response.status_code == 400)
        if response.status_code != 200:
            raise _error(response, f"setting the inventory of {known.name} "
                                   f"(a resource class still allocated "
                                   f"cannot be removed)")
        known.generation = _answer(
            response, f"setting the inventory of {known.name}",
            _RP_GENERATION)["resource_provider_generation"]
        known.inventories = {rc: dict(v) for rc, v in inventories.items()}

    def _remove(self, rp_uuid: str, report: PublishReport) -> None:
        """Delete a provider we no longer want, unless it is allocated.

        An allocated one is retired instead (all reserved, degraded) and
        removed by a later publish once its consumers are gone. A parent
        whose children were kept is kept too.
        """
        known = self._known[rp_uuid]
        if any(s.parent_uuid == rp_uuid for s in self._known.values()):
            report.kept.append(known.name)
            return
        allocations = self._allocations(rp_uuid)
        if allocations:
            LOG.warning("Provider %s is no longer in the inventory but "
                        "%s still hold allocations on it; keeping it "
                        "reserved until they are gone",
                        known.name, ", ".join(sorted(allocations)))
            inventories, traits = retired(known)
            if known.traits != traits:
                self._ensure_trait(DEGRADED_TRAIT)
                self._put_traits(rp_uuid, traits)
            if (normal_inventories(known.inventories or {})
                    != normal_inventories(inventories)):
                self._put_inventories(rp_uuid, inventories)
            report.kept.append(known.name)
            return
        response = self.client.call("DELETE", f"/resource_providers/"
                                              f"{rp_uuid}")
        if response.status_code == 409:
            # Allocated or given a child since we looked: keep it.
            LOG.warning("Placement refused to delete %s: %s", known.name,
                        response.text[:200])
            report.kept.append(known.name)
            return
        if response.status_code not in (204, 404):
            raise _error(response, f"the removal of provider {known.name}")
        del self._known[rp_uuid]
        report.removed.append(known.name)

    # -- allocations

    def _allocations(self, rp_uuid: str) -> dict[str, dict[str, int]]:
        """``{consumer: {class: amount}}`` on one provider.

        Empty allocations read at the current generation are reused:
        placement bumps the generation whenever an allocation is made.
        """
        known = self._known.get(rp_uuid)
        if known is not None and known.allocations == {}:
            return {}
        response = self.client.call(
            "GET", f"/resource_providers/{rp_uuid}/allocations")
        if response.status_code == 404:
            return {}
        what = f"the allocations of provider {rp_uuid}"
        if response.status_code != 200:
            raise _error(response, what)
        body = _answer(response, what, _ALLOCATIONS)
        allocations = {consumer: dict(a["resources"])
                       for consumer, a in body["allocations"].items()}
        if (known is not None and known.generation
                == body["resource_provider_generation"]):
            known.allocations = allocations
        return allocations

    def holding_allocations(self, consumers) -> set[str]:
        """Those of ``consumers`` that hold allocations anywhere in
        placement: a server nova moved away holds some on its
        destination, a deleted one none."""
        holding = set()
        for consumer in sorted(consumers):
            what = f"the allocations of consumer {consumer}"
            response = self.client.call("GET", f"/allocations/{consumer}")
            if response.status_code != 200:
                raise _error(response, what)
            if _answer(response, what, _CONSUMER_ALLOCATIONS)["allocations"]:
                holding.add(consumer)
        return holding

    # -- memory across processes

    def export_state(self) -> dict[str, Any]:
        """What this publisher remembers, as JSON-able data.

        ``accel-inventory publish`` saves it beside the cache so that the
        next run, too, costs one listing when nothing changed. It is only
        ever a shortcut: every entry is checked against the provider's
        current generation before it is trusted.
        """
        return {
            "root_name": self.root_name, "root_uuid": self.root_uuid,
            "exists": sorted(self._exists),
            "providers": [
                {"uuid": k.uuid, "name": k.name,
                 "parent_uuid": k.parent_uuid, "generation": k.generation,
                 "inventories": k.inventories,
                 "traits": sorted(k.traits) if k.traits is not None
                 else None,
                 "allocations": {} if k.allocations == {} else None}
                for k in self._known.values()]}

    def import_state(self, state: Mapping[str, Any]) -> bool:
        """Take over what an earlier publisher remembered.

        Anything malformed is ignored (returns False), which only costs
        requests. The root is looked up again if the host's name changed.
        """
        try:
            known = {p["uuid"]: ProviderState(
                uuid=p["uuid"], name=p["name"],
                parent_uuid=p["parent_uuid"],
                generation=int(p["generation"]),
                inventories=p["inventories"],
                traits=(frozenset(p["traits"])
                        if p["traits"] is not None else None),
                allocations=p["allocations"])
                for p in state["providers"]
                if p["inventories"] is not None and p["traits"] is not None}
            exists = {str(name) for name in state["exists"]}
            root_uuid, root_name = state["root_uuid"], state["root_name"]
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        self._known, self._exists = known, exists
        self.root_uuid, self.root_name = root_uuid, root_name
        return True

    def root_room(self) -> tuple[int, int]:
        """The compute node's VCPU and MEMORY_MB left (capacity less
        usage), for the agent's figures; call after ``publish``."""
        base = f"/resource_providers/{self.root_uuid}"
        inv = self.client.call("GET", f"{base}/inventories")
        usages = self.client.call("GET", f"{base}/usages")
        for r in (inv, usages):
            if r.status_code != 200:
                raise _error(r, f"the room of provider {self.root_uuid}")
        inventories = inv.json()["inventories"]
        used = usages.json()["usages"]

        def left(rc: str) -> int:
            i = inventories.get(rc)
            if i is None:
                return 0
            capacity = int((i["total"] - i["reserved"])
                           * i["allocation_ratio"])
            return max(capacity - int(used.get(rc, 0)), 0)

        return left("VCPU"), left("MEMORY_MB")

    def read_allocations(self, inventory: model.Inventory
                         ) -> dict[str, dict[str, dict[str, int]]]:
        """Allocations on each of our region providers found in placement.

        Call after ``publish``: it relies on the tree that read.
        """
        regions = {provider_uuid(inventory.hostname, r.id)
                   for c in inventory.cards for r in c.regions}
        return {rp_uuid: self._allocations(rp_uuid)
                for rp_uuid in sorted(regions) if rp_uuid in self._known}
