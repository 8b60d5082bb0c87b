"""Attach what Nova does not manage: a claim's functions into its domain.

Nova's libvirt driver adds no device for the resource classes this
project publishes (USB sticks, IP-over-PCIe nodes, PCI regions). The
agent's allocation sync records which instance (= domain UUID) holds which
functions, and leaves one empty marker file per such consumer in
``<cache_path>.assigned/``.

At ``started begin`` the hook calls ``on_started``: a domain without a
marker costs one stat; one with a marker gets a detached worker (``python
-m libvirt_hooks.attach UUID``: new session, stdin, stdout and stderr on
/dev/null, so libvirt does not wait for it). A Nova domain without one
whose flavor asks for one of our classes gets a worker that first waits
for the sync to assign it functions (``--await-assignment``). The hook
itself never calls libvirt, which would deadlock. The worker waits for
the domain to be up, resolves where each function is now, builds its
device (``devices``) and hot-plugs it live only (the persistent
definition never names an address that may change), then records the
outcome in the claim (``claim.attach``).
A failure is logged and recorded with its reason; nothing is retried.

The hook imports this module on its fast path: only the standard library
is imported at module level; the worker's imports are in its functions.
"""

from __future__ import annotations

import os
import re
import sys
import time

# Must match accel_inventory.agent.ASSIGNED_SUFFIX (a test checks): the
# hook cannot import the agent's module, which loads oslo and placement.
ASSIGNED_SUFFIX = ".assigned"
UUID_CHARS = frozenset("0123456789abcdefABCDEF-")
WAIT_STEP = 0.1
ASSIGNMENT_POLL = 1.0
# Nova writes the flavor's extra specs into the domain's metadata
# (<nova:extraSpec name="resources1:CUSTOM_ACCEL_FPGA">1</nova:extraSpec>),
# and every class this project publishes is CUSTOM_ACCEL_*.
ACCEL_REQUEST = re.compile(rb"""name=["']resources\d*:CUSTOM_ACCEL_""")
AWAIT_ASSIGNMENT = "--await-assignment"


def domain_uuid(xml: bytes) -> str | None:
    """The domain's ``<uuid>`` (libvirt writes it before any device or
    metadata); None when there is none that looks like a UUID."""
    start = xml.find(b"<uuid>")
    end = xml.find(b"</uuid>", start)
    if start < 0 or end < 0:
        return None
    text = xml[start + len(b"<uuid>"):end].strip().decode("ascii", "replace")
    if len(text) != 36 or not set(text) <= UUID_CHARS:
        return None
    return text.lower()


def cache_path(config_file: str | None) -> str:
    """``[inventory] cache_path`` as oslo.config would read it, without
    loading oslo.config (the hook's own fast reader)."""
    from libvirt_hooks import hook

    return hook.fast_options(config_file)[("inventory", "cache_path")]


def marker_path(cache: str, consumer: str) -> str:
    return os.path.join(cache + ASSIGNED_SUFFIX, consumer)


def assigned_consumer(xml: bytes, config_file: str | None) -> str | None:
    """The domain's UUID when the sync assigned it functions; None
    otherwise, after one stat."""
    consumer = domain_uuid(xml)
    if consumer is None or not os.path.exists(
            marker_path(cache_path(config_file), consumer)):
        return None
    return consumer


def on_started(xml: bytes, config_file: str | None) -> int:
    """``started begin``: launch the worker for an assigned domain, or for
    a Nova domain whose flavor asks for one of our classes but that the
    sync has not assigned yet (Nova starts a new server seconds after
    placement allocates it; the sync runs every ``[agent] interval``)."""
    consumer = assigned_consumer(xml, config_file)
    if consumer is not None:
        launch(consumer, config_file)
    elif ACCEL_REQUEST.search(xml) and domain_uuid(xml) is not None:
        launch(domain_uuid(xml), config_file, AWAIT_ASSIGNMENT)
    return 0


def launch(consumer: str, config_file: str | None, *flags: str) -> None:
    """Start the worker detached from the hook and from libvirt."""
    import subprocess

    env = dict(os.environ)
    if config_file:
        env["NOVA_ACCEL_CONFIG"] = config_file
    subprocess.Popen([sys.executable, "-m", "libvirt_hooks.attach", *flags,
                      consumer],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True,
                     close_fds=True, cwd="/", env=env)


# ------------------------------------------------------------ the worker

def host_now(sysfs_root: str, card, function):
    """What sysfs has now for ``function`` of ``card`` (``devices.HostNow``),
    read through the hook's own readers: only that device's files."""
    from libvirt_hooks import devices, hostview

    if function.address is None:
        return devices.HostNow()
    if card.kind == "pci":
        return devices.HostNow(pci=hostview.pci_identity(sysfs_root,
                                                         function.address))
    if card.kind == "usb":
        return devices.HostNow(usb=next(
            (usb for usb in hostview.usb_devices(sysfs_root)
             if usb.name == function.address), None))
    if card.kind == "mdev":
        return devices.HostNow(mdev=hostview.mdev_now(sysfs_root,
                                                      function.address))
    return devices.HostNow()


def placement_claim(conf, consumer: str):
    """The inventory and ``consumer``'s placement claim in it; raises
    LookupError when it has none (its devices are then in its XML, or it
    holds nothing)."""
    from accel_inventory import cache, placement

    inv = cache.load(conf.inventory.cache_path)
    claim = inv.claims.get(consumer) if inv is not None else None
    if claim is None or claim.source != placement.CLAIM_SOURCE:
        raise LookupError(f"{consumer} holds no functions assigned by "
                          f"placement in {conf.inventory.cache_path}; "
                          f"nothing to attach or detach")
    return inv, claim


def resolve(conf, inv, fid: str):
    """The device that gives function ``fid`` to a domain now, and its
    ``devices.device_key``. Raises devices.DeviceError saying why not."""
    from libvirt_hooks import devices

    index = inv.function_index()
    if fid not in index:
        raise devices.DeviceError(f"{fid} is no longer in the inventory; "
                                  f"rescan with 'accel-inventory scan'")
    card, _region, function = index[fid]
    element = devices.element_for(
        card, function, host_now(conf.inventory.sysfs_root, card, function),
        conf.libvirt_hooks.bridge_prefix)
    return element, devices.device_key(element)


def claim_refusals(conf, inv, consumer: str) -> list[str]:
    """Why functions that ``consumer``'s placement claim holds cannot be
    given to it now. The hook refuses its start for these: nothing is
    given in their place, and nova records the reason."""
    from accel_inventory import placement
    from libvirt_hooks import devices

    claim = inv.claims.get(consumer)
    if claim is None or claim.source != placement.CLAIM_SOURCE:
        return []
    refusals = []
    for fid in claim.functions:
        try:
            resolve(conf, inv, fid)
        except devices.DeviceError as exc:
            refusals.append(f"{fid}: {exc}")
    return refusals


def node_interface(conf, inv, fid: str) -> tuple[str | None, str | None]:
    """Where IP-over-PCIe node ``fid`` is (its BDF) and its host-side
    interface now."""
    from libvirt_hooks import hostview

    address = inv.function_index()[fid][2].address
    interface = (hostview.node_interface(conf.inventory.sysfs_root, address)
                 if address else None)
    return address, interface


def _live(conf, dom):
    from libvirt_hooks import devices
    from libvirt_hooks import domain as domain_xml

    live = domain_xml.parse(dom.XMLDesc(0).encode(),
                            conf.libvirt_hooks.max_xml_bytes)
    return live, devices.devices_by_key(live.tree)


def _record(conf, consumer: str, name: str, results: dict,
            holds: bool) -> dict:
    """Store the outcome per function in ``claim.attach``; the claim runs
    (``holds``) while its domain holds at least one of its devices."""
    from accel_inventory import cache, claims
    from accel_inventory.inventory import current_boot_id

    boot_id = current_boot_id()
    document = {"domain": name, "at": time.time(), "boot_id": boot_id,
                "devices": results}
    cache.update(conf.inventory.cache_path,
                 lambda current: claims.record_attach(
                     current, consumer, document, running=holds,
                     boot_id=boot_id),
                 conf.inventory.lock_timeout, validate=False)
    return document


def attach_lock(conf):
    """Held while a domain's devices are compared and plugged: the hook's
    worker and an operator's ``accel-domain attach`` for the same domain
    would otherwise both find a device missing and add it twice."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def held():
        directory = conf.inventory.cache_path + ASSIGNED_SUFFIX
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    return held()


def attach_claim(conn, conf, consumer: str, *, ensure_bridge=None) -> dict:
    """Hot-plug, live only, every function ``consumer``'s placement claim
    holds that its running domain lacks; record and return the outcome
    (``claim.attach``).

    ``ensure_bridge(bridge, interface)`` makes a node's bridge hold its
    current interface (``bridge.ensure_node_bridge`` by default).
    Raises LookupError when the consumer holds no placement claim.
    """
    with attach_lock(conf):
        return _attach(conn, conf, consumer, ensure_bridge)


def _attach(conn, conf, consumer: str, ensure_bridge) -> dict:
    import libvirt

    from libvirt_hooks import bridge, devices, xmlgen

    ensure_bridge = ensure_bridge or bridge.ensure_node_bridge
    inv, claim = placement_claim(conf, consumer)
    dom = conn.lookupByUUIDString(consumer)
    live, present = _live(conf, dom)
    results = {}
    for fid in claim.functions:
        outcome = {}
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
    return _record(conf, consumer, live.name, results, holds)


def detach_claim(conn, conf, consumer: str) -> dict:
    """Unplug, live only, the devices of ``consumer``'s placement claim
    from its running domain; record and return the outcome. The claim
    keeps its functions (it ends with the allocation)."""
    with attach_lock(conf):
        return _detach(conn, conf, consumer)


def _detach(conn, conf, consumer: str) -> dict:
    import libvirt

    from libvirt_hooks import devices, xmlgen

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
    return _record(conf, consumer, live.name, results, holds)


def wait_until_up(dom, timeout: float, *, clock=time.monotonic,
                  sleep=time.sleep) -> bool:
    """True once the domain runs (or is paused: a hot-plug then waits for
    libvirt's start job); False if it did not within ``timeout`` s."""
    import libvirt

    up = (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED)
    deadline = clock() + timeout
    while dom.state()[0] not in up:
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
                        clock=time.monotonic, sleep=time.sleep) -> bool:
    """True once the sync has assigned the domain functions (its marker
    exists); False when the domain stopped first or ``timeout`` passed."""
    deadline = clock() + timeout
    while not os.path.exists(marker):
        if clock() >= deadline or not dom.isActive():
            return False
        sleep(ASSIGNMENT_POLL)
    return True


def run_worker(consumer: str, config_file: str | None, *,
               connect=None, await_assignment: bool = False) -> int:
    """The detached worker: wait for the domain (and, with
    ``await_assignment``, for the sync to assign it functions), attach,
    record, log.

    ``connect(uri)`` opens libvirt (``libvirt.open`` by default).
    """
    import logging
    import syslog

    import libvirt

    from accel_inventory import cache, claims
    from libvirt_hooks import decide, settings, trust

    # The worker's stderr is /dev/null: what stops it before its log is
    # set up goes to syslog.
    try:
        conf = decide.load_conf(config_file)
        # The worker acts as root on what the hook's configuration names,
        # so it trusts it no more than the hook does; not even its log
        # file.
        untrusted = trust.refusal(config_file, conf.inventory.cache_path)
    except settings.SettingsError as exc:
        untrusted = f"cannot read configuration: {exc}"
    if untrusted:
        syslog.syslog(syslog.LOG_ERR, f"nova-accel attach worker: domain "
                      f"{consumer}: nothing attached: {untrusted}")
        return 1
    decide.setup_logging(conf)
    log = decide.LOG
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
        if await_assignment and not wait_for_assignment(
                marker_path(conf.inventory.cache_path, consumer), dom, wait):
            log.info("domain %s (%s) asks for accelerators but was not "
                     "assigned any within %s s ([libvirt_hooks] "
                     "assignment_wait) or stopped; nothing attached. Check "
                     "'accel-inventory agent' runs; then 'accel-domain "
                     "attach %s'", dom.name(), consumer, wait, dom.name())
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
    from libvirt_hooks.hook import config_file

    *flags, consumer = argv or ["-"]
    if consumer.startswith("-") or set(flags) - {AWAIT_ASSIGNMENT}:
        sys.stderr.write(f"usage: python -m libvirt_hooks.attach "
                         f"[{AWAIT_ASSIGNMENT}] DOMAIN-UUID (started by "
                         f"the hook; by hand: accel-domain attach)\n")
        return 2
    return run_worker(consumer, config_file(),
                      await_assignment=AWAIT_ASSIGNMENT in flags)


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
