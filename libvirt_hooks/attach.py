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

"""The attach worker: a claim's functions into its running domain.

Nova's libvirt driver adds no device for the resource classes this
project publishes (USB sticks, IP-over-PCIe nodes, PCI regions). The
agent's allocation sync records which instance (= domain UUID) holds
which functions; the hook's trigger (``trigger``) starts this worker,
detached, once such a domain has started. The worker waits for the
domain to be up, resolves where each function is now (``resolve``),
builds its device (``devices``) and hot-plugs it live only (the
persistent definition never names an address that may change), then
records the outcome in the claim (``claim.attach``). A failure is logged
and recorded with its reason; nothing is retried. For a guest the live
XML puts on host NUMA nodes, the claim first takes, in each region it
holds, the free functions on the guest's nodes, and a function still
elsewhere is not attached under a ``required`` or ``socket`` affinity
policy (``affinity``).

``python -m libvirt_hooks.attach [--await-assignment] UUID``
"""

from __future__ import annotations

import logging
import os
import sys
import syslog
import time

import libvirt

from accel_inventory import cache, claims, numa, settings
from accel_inventory.inventory import current_boot_id
from libvirt_hooks import affinity, bridge, common, decide, devices, trust
from libvirt_hooks import domain as domain_xml
from libvirt_hooks import xmlgen
from libvirt_hooks.resolve import node_interface, placement_claim, resolve
from libvirt_hooks.trigger import AWAIT_ASSIGNMENT, LAUNCHED_AT

WAIT_STEP = 0.1
ASSIGNMENT_POLL = 1.0


def _live(conf, dom):
    live = domain_xml.parse(dom.XMLDesc(0).encode(),
                            conf.libvirt_hooks.max_xml_bytes)
    return live, devices.devices_by_key(live.tree)


def _record(conf, consumer: str, live: domain_xml.Domain, results: dict,
            holds: bool) -> dict:
    """Store the outcome per function in ``claim.attach``, with the nova
    flavor the domain runs with; the claim runs (``holds``) while its
    domain holds at least one of its devices."""
    boot_id = current_boot_id()
    document = {"domain": live.name, "at": time.time(), "boot_id": boot_id,
                "devices": results}
    flavor = domain_xml.nova_flavor(live.tree)
    if flavor is not None:
        document["flavor"] = flavor
    cache.update(conf.inventory.cache_path,
                 lambda current: claims.record_attach(
                     current, consumer, document, running=holds,
                     boot_id=boot_id),
                 conf.inventory.lock_timeout, validate=False)
    return document


def attach_claim(conn, conf, consumer: str, *, ensure_bridge=None) -> dict:
    """Hot-plug, live only, every function ``consumer``'s placement claim
    holds that its running domain lacks; record and return the outcome
    (``claim.attach``).

    ``ensure_bridge(bridge, interface)`` makes a node's bridge hold its
    current interface (``bridge.ensure_node_bridge`` by default).
    Raises LookupError when the consumer holds no placement claim.
    """
    with cache.markers_locked(conf.inventory.cache_path):
        return _attach(conn, conf, consumer, ensure_bridge)


def _attach(conn, conf, consumer: str, ensure_bridge) -> dict:
    ensure_bridge = ensure_bridge or bridge.ensure_node_bridge
    inv, claim = placement_claim(conf, consumer)
    dom = conn.lookupByUUIDString(consumer)
    live, present = _live(conf, dom)
    refused = _far_refused(conf, consumer, live)
    if refused is not None:
        inv, claim = placement_claim(conf, consumer)
    # mdevs and vGPU types the functions need, made now when the sync
    # assigned them after the start; none for those NUMA refuses (an
    # mdev made for nothing would take the GPU's room until release).
    unmade = decide.make_for_claim(conf, live, inv, withheld=refused or ())
    inv, claim = placement_claim(conf, consumer)
    results = {}
    for fid in claim.functions:
        outcome = {}
        if refused and fid in refused:
            outcome.update(state="failed", reason=refused[fid])
            results[fid] = outcome
            continue
        if unmade:
            results[fid] = {"state": "failed", "reason": "; ".join(unmade)}
            continue
        try:
            element, key = resolve(conf, inv, fid)
            outcome["device"] = devices.describe(key)
            if key[0] == "bridge":
                address, interface = node_interface(conf, inv, fid)
                if interface is None:
                    raise devices.DeviceError(
                        f"node {fid} at {address} has no host-side "
                        f"interface now; load the card's driver, then "
                        f"'accel-domain attach {live.name}'")
                done = ensure_bridge(key[1], interface)
                if done:
                    outcome["bridge"] = "; ".join(done)
            if key in present:
                outcome["state"] = "present"
            else:
                dom.attachDeviceFlags(xmlgen.to_string(element),
                                      libvirt.VIR_DOMAIN_AFFECT_LIVE)
                outcome["state"] = "attached"
        except (devices.DeviceError, bridge.BridgeError,
                libvirt.libvirtError) as exc:
            outcome.update(state="failed", reason=str(exc))
        results[fid] = outcome
    holds = any(o["state"] in ("attached", "present")
                for o in results.values())
    return _record(conf, consumer, live, results, holds)


def _far_refused(conf, consumer: str, live: domain_xml.Domain
                 ) -> dict[str, str] | None:
    """NUMA affinity for a guest the live XML puts on host nodes: the
    claim takes the free functions near it (saved), and the functions
    still far that its policy refuses, each with why; None when the guest
    is on no node (the claim is then as it was)."""
    sysfs_root = conf.inventory.sysfs_root
    try:
        near = affinity.of_domain(live, sysfs_root)
    except domain_xml.DomainXMLError as exc:
        decide.LOG.warning("domain %s: %s; its devices are attached "
                           "without NUMA affinity", live.name, exc)
        return None
    if near is None:
        return None
    affinity.keep_near(conf.inventory.cache_path,
                       conf.inventory.lock_timeout, consumer, near,
                       sysfs_root)
    inv, claim = placement_claim(conf, consumer)
    far = affinity.far_functions(inv, claim.functions, near, sysfs_root)
    _refusal, warning = affinity.judgement(near, far)
    if warning:
        decide.LOG.warning("domain %s: %s", live.name, warning)
    if not numa.strict(near.policy):
        return {}
    return {fid: f"{where}: {affinity.away(near)}; {affinity.FIX}"
            for fid, where in far.items()}


def detach_claim(conn, conf, consumer: str) -> dict:
    """Unplug, live only, the devices of ``consumer``'s placement claim
    from its running domain; record and return the outcome. The claim
    keeps its functions (it ends with the allocation)."""
    with cache.markers_locked(conf.inventory.cache_path):
        return _detach(conn, conf, consumer)


def _detach(conn, conf, consumer: str) -> dict:
    inv, claim = placement_claim(conf, consumer)
    dom = conn.lookupByUUIDString(consumer)
    live, present = _live(conf, dom)
    results, requested = {}, {}
    for fid in claim.functions:
        outcome = results[fid] = {}
        try:
            _element, key = resolve(conf, inv, fid)
        except devices.DeviceError as exc:
            outcome.update(state="failed", reason=str(exc))
            continue
        outcome["device"] = devices.describe(key)
        if key not in present:
            outcome["state"] = "absent"
            continue
        try:
            dom.detachDeviceFlags(xmlgen.to_string(present[key]),
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE)
            outcome["state"] = "detached"
            requested[fid] = key
        except libvirt.libvirtError as exc:
            outcome.update(state="failed", reason=str(exc), held=True)
    # libvirt returns once it asked; a PCI device leaves when the guest
    # lets it go (ACPI hot-unplug), which a guest may refuse or not do.
    _live_now, still = _live(conf, dom) if requested else (None, {})
    for fid in (f for f, key in requested.items() if key in still):
        results[fid].update(
            state="requested", held=True,
            reason="the guest has not released it yet; 'accel-domain "
                   "status' shows when it is gone")
    holds = any(o.get("held") for o in results.values())
    return _record(conf, consumer, live, results, holds)


def is_up(state: list[int]) -> bool:
    """Whether a device can be plugged into a domain in ``state``
    (``virDomainGetState``'s state and reason): running, or paused (a
    hot-plug then waits for libvirt's start job), but not paused for an
    incoming migration, whose job refuses hot-plug and whose guest gets
    its devices once the migration ended."""
    status, reason = state[0], state[1]
    return status == libvirt.VIR_DOMAIN_RUNNING or (
        status == libvirt.VIR_DOMAIN_PAUSED
        and reason != libvirt.VIR_DOMAIN_PAUSED_MIGRATION)


def wait_until_up(dom, timeout: float, *, clock=time.monotonic,
                  sleep=time.sleep) -> bool:
    """True once the domain is up (``is_up``); False if it was not within
    ``timeout`` s."""
    deadline = clock() + timeout
    while not is_up(dom.state()):
        if clock() >= deadline:
            return False
        sleep(WAIT_STEP)
    return True


def outcome_lines(document: dict) -> list[str]:
    """One line per function of an attach or detach outcome."""
    lines = []
    for fid, outcome in document["devices"].items():
        line = f"{fid}: {outcome['state']}"
        if outcome.get("device"):
            line += f" ({outcome['device']})"
        if outcome.get("bridge"):
            line += f"; {outcome['bridge']}"
        if outcome.get("reason"):
            line += f": {outcome['reason']}"
        lines.append(line)
    return lines


def failed(document: dict) -> bool:
    return any(o["state"] == "failed" for o in document["devices"].values())


def wait_for_assignment(marker: str, dom, timeout: float, *,
                        since: float | None = None, clock=time.monotonic,
                        sleep=time.sleep) -> bool:
    """True once the sync has assigned the domain functions (its marker
    exists) from allocations read at ``since`` or later (the marker's
    time, when given); False when the domain stopped first or ``timeout``
    passed."""
    deadline = clock() + timeout
    while not _marked(marker, since):
        if clock() >= deadline or not dom.isActive():
            return False
        sleep(ASSIGNMENT_POLL)
    return True


def _marked(marker: str, since: float | None) -> bool:
    try:
        stamp = os.stat(marker).st_mtime
    except OSError:
        return False
    return since is None or stamp >= since


def resized(conf, consumer: str, dom) -> bool:
    """Whether the domain runs with another nova flavor than at the last
    attach of its claim: a resize on this host, or its revert. Its claim
    then follows the allocations of before, and the worker waits for a
    sync of the new ones (nova changed them before it started the
    domain)."""
    inv = cache.load(conf.inventory.cache_path)
    claim = inv.claims.get(consumer) if inv is not None else None
    last = claim.attach.get("flavor") if claim is not None else None
    live, _present = _live(conf, dom)
    return last is not None and last != domain_xml.nova_flavor(live.tree)


def launched_at(environ, now: float) -> float:
    """When the hook launched this worker (``trigger.LAUNCHED_AT``), or
    ``now`` when run otherwise or told something that is no past time."""
    try:
        stamp = float(environ.get(LAUNCHED_AT, ""))
    except ValueError:
        return now
    return stamp if 0 < stamp <= now else now


def run_worker(consumer: str, config_file: str | None, *,
               connect=None, await_assignment: bool = False) -> int:
    """The detached worker: wait for the domain (and, with
    ``await_assignment``, for the sync to assign it functions), attach,
    record, log.

    ``connect(uri)`` opens libvirt (``libvirt.open`` by default).
    """
    # The worker's stderr is /dev/null: what stops it before its log is
    # set up goes to syslog.
    try:
        conf = decide.load_conf(config_file)
        # The worker acts as root on what the hook's configuration names,
        # so it trusts it no more than the hook does; not even its log
        # file.
        untrusted = trust.refusal(config_file, conf.inventory.cache_path,
                                  others=trust.hook_paths(conf))
    except settings.SettingsError as exc:
        untrusted = f"cannot read configuration: {exc}"
    if untrusted:
        syslog.syslog(syslog.LOG_ERR, f"nova-accel attach worker: domain "
                      f"{consumer}: nothing attached: {untrusted}")
        return 1
    decide.setup_logging(conf)
    log = decide.LOG
    started = launched_at(os.environ, time.time())
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    uri = conf.libvirt_hooks.libvirt_uri
    try:
        conn = (connect or libvirt.open)(uri)
        dom = conn.lookupByUUIDString(consumer)
        if not wait_until_up(dom, conf.libvirt_hooks.attach_timeout):
            log.error("domain %s did not come up within %s s "
                      "([libvirt_hooks] attach_timeout); nothing attached; "
                      "run 'accel-domain attach %s' once it runs", consumer,
                      conf.libvirt_hooks.attach_timeout, consumer)
            return 1
        wait = conf.libvirt_hooks.assignment_wait
        marker = common.marker_path(conf.inventory.cache_path, consumer)
        since = started if resized(conf, consumer, dom) else None
        if (await_assignment or since is not None) and \
                not wait_for_assignment(marker, dom, wait, since=since):
            log.info("domain %s (%s) asks for accelerators but was not "
                     "assigned any within %s s ([libvirt_hooks] "
                     "assignment_wait) or stopped; nothing attached. Check "
                     "'accel-inventory agent' runs; then 'accel-domain "
                     "attach %s'", dom.name(), consumer, wait, dom.name())
            return 0
        if not dom.isActive():
            # Stopped while the worker waited (nova stops an evacuated
            # server that was stopped, after its rebuild started it): the
            # next start launches another worker.
            log.info("domain %s (%s) stopped before its devices were "
                     "plugged; its next start plugs them", dom.name(),
                     consumer)
            return 0
        document = attach_claim(conn, conf, consumer)
    except (libvirt.libvirtError, LookupError, cache.CacheError,
            claims.ClaimError) as exc:
        log.error("domain %s: attach failed: %s; see 'accel-domain status "
                  "%s'", consumer, exc, consumer)
        return 1
    name, refused = document["domain"], failed(document)
    log.log(logging.ERROR if refused else logging.INFO, "domain %s (%s): %s%s",
            name, consumer, "; ".join(outcome_lines(document)),
            f"; fix the cause, then 'accel-domain attach {name}'"
            if refused else "")
    return 1 if refused else 0


def worker_main(argv: list[str]) -> int:
    """``python -m libvirt_hooks.attach [--await-assignment] UUID``, as
    ``launch`` runs it."""
    *flags, consumer = argv or ["-"]
    if consumer.startswith("-") or set(flags) - {AWAIT_ASSIGNMENT}:
        sys.stderr.write(f"usage: python -m libvirt_hooks.attach "
                         f"[{AWAIT_ASSIGNMENT}] DOMAIN-UUID (started by "
                         f"the hook; by hand: accel-domain attach)\n")
        return 2
    return run_worker(consumer, settings.config_file(),
                      await_assignment=AWAIT_ASSIGNMENT in flags)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
