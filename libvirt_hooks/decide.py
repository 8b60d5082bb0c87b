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

"""The hook's full path: configuration, the guard, the cache, the answer.

Only domains whose XML names a hostdev, an mdev or an interface that may
reach an accelerator get here. Every decision is logged
in one line; a refusal is also the one line libvirt shows the operator.
"""

from __future__ import annotations

import logging
import signal
from types import SimpleNamespace

from accel_inventory import cache, claims, kinds, model
from accel_inventory.kinds.base import BUS_USB, DEVICE_MDEV, DEVICE_USB
from accel_inventory.inventory import current_boot_id
from libvirt_hooks import domain as domain_xml
from libvirt_hooks import bridge, guard, hostview, mdev, resolve, settings
from libvirt_hooks import trust
from libvirt_hooks.common import EXIT_REFUSED

LOG = logging.getLogger("nova-accel-hook")
SYSLOG_ADDRESS = "/dev/log"


class HookTimeout(Exception):
    pass


def load_conf(config_file: str | None) -> SimpleNamespace:
    """The options of the hook, the attach worker and accel-domain; raises
    settings.SettingsError naming a bad one."""
    return settings.load(config_file)


def syslog_reachable(address: str) -> bool:
    """Whether a syslog daemon listens at ``address``. Python 3.11's
    SysLogHandler no longer fails when it is missing, but at every emit,
    printing a traceback to stderr (which libvirt shows as the hook's
    error), so the socket is probed first."""
    import socket

    for sock_type in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_UNIX, sock_type) as sock:
            try:
                sock.connect(address)
                return True
            except OSError:
                continue
    return False


def _handler(conf: SimpleNamespace) -> tuple[logging.Handler, str | None]:
    """The log file, else syslog, else nothing; and why the log file
    could not be used, to be said where the log goes instead."""
    problem = None
    if conf.libvirt_hooks.log_file:
        try:
            return logging.FileHandler(conf.libvirt_hooks.log_file), None
        except OSError as exc:
            problem = (f"cannot open [libvirt_hooks] log_file "
                       f"{conf.libvirt_hooks.log_file}: "
                       f"{exc.strerror or exc}; logging to syslog")
    if syslog_reachable(SYSLOG_ADDRESS):
        # Imported only for syslog: the hook runs at every domain start.
        from logging.handlers import SysLogHandler

        return SysLogHandler(address=SYSLOG_ADDRESS,
                             facility=SysLogHandler.LOG_DAEMON), problem
    return logging.NullHandler(), problem


def setup_logging(conf: SimpleNamespace) -> None:
    for old in list(LOG.handlers):
        LOG.removeHandler(old)
        old.close()
    handler, problem = _handler(conf)
    # A log target that goes away later (syslog restarted, disk full) must
    # not put logging's traceback into libvirt's error either.
    handler.handleError = lambda record: None
    handler.setFormatter(logging.Formatter(
        "%(asctime)s nova-accel-hook %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    if problem:
        LOG.warning("%s", problem)


def _on_alarm(signum, frame):
    raise HookTimeout()


def run(name: str, op: str, subop: str, xml: bytes,
        config_file: str | None, stdout, stderr) -> int:
    try:
        conf = load_conf(config_file)
    except settings.SettingsError as exc:
        stderr.write(f"nova-accel: domain {name}: cannot read configuration: "
                     f"{exc}\n")
        return EXIT_REFUSED
    # Before anything acts on the configuration (the log file is opened
    # as root): see trust.py.
    untrusted = trust.refusal(config_file, conf.inventory.cache_path)
    if untrusted:
        stderr.write(f"nova-accel: domain {name}: {untrusted}\n")
        return EXIT_REFUSED
    setup_logging(conf)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, conf.libvirt_hooks.timeout)
    try:
        return _decide(conf, name, op, subop, xml, stdout, stderr)
    except HookTimeout:
        return _refuse(stderr, name, f"the hook did not finish within "
                       f"{conf.libvirt_hooks.timeout} s ([libvirt_hooks] "
                       f"timeout); the start is refused to be safe")
    except cache.CacheError as exc:
        return _refuse(stderr, name, f"{exc}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _refuse(stderr, name: str, reason: str) -> int:
    # One line, whatever a parser's message or a domain name holds.
    name, reason = " ".join(name.split()), " ".join(reason.split())
    LOG.error("domain %s refused: %s", name, reason)
    stderr.write(f"nova-accel: domain {name}: {reason}\n")
    return EXIT_REFUSED


def policy(conf: SimpleNamespace, dom: domain_xml.Domain) -> guard.Policy:
    usb_types = {}
    if dom.refs(DEVICE_USB):
        # Only USB needs the profiles: they say which product ids are one
        # stick before and after its firmware loads.
        from accel_inventory import profiles
        usb_types = {ids: profile.name for profile in
                     profiles.load_profiles(conf.inventory.profiles_dir)
                     if kinds.get(profile.kind).function_bus == BUS_USB
                     for ids in profile.match}
    return guard.Policy(
        strict_identity=conf.libvirt_hooks.strict_identity,
        bridge_prefix=conf.libvirt_hooks.bridge_prefix,
        usb_types=usb_types, mdev_types=conf.inventory.mdev_types)


def _decide(conf, name, op, subop, xml, stdout, stderr) -> int:
    try:
        dom = domain_xml.parse(xml, conf.libvirt_hooks.max_xml_bytes)
    except domain_xml.DomainXMLError as exc:
        return _refuse(stderr, name, str(exc))
    cache_path = conf.inventory.cache_path
    if op == "release":
        return _release(conf, dom)
    inv = cache.load(cache_path)
    if inv is None:
        LOG.info("domain %s: no inventory cache at %s; nothing to check",
                 name, cache_path)
        return 0
    boot_id = current_boot_id()
    if op == "migrate":
        return _incoming(conf, dom, inv, boot_id, stderr)
    host = hostview.read(conf.inventory.sysfs_root, dom, inv)
    verdict = guard.check(dom, inv, host, boot_id, policy(conf, dom))
    for note in verdict.notes:
        LOG.info("domain %s: %s", name, note)
    if op == "restore":
        rewritten = domain_xml.rewrite(dom, verdict.pci_moved,
                                       verdict.usb_moved,
                                       verdict.interfaces_moved)
        if rewritten is not None:
            LOG.info("domain %s: %s begin: devices moved: PCI %s, USB %s, "
                     "interfaces %s", name, op, verdict.pci_moved,
                     verdict.usb_moved, verdict.interfaces_moved)
            stdout.write(rewritten.decode())
        return 0
    if not verdict.allowed:
        return _refuse(stderr, name, "; ".join(verdict.refusals))
    gone = resolve.claim_refusals(conf, inv, dom.uuid)
    if gone:
        return _refuse(stderr, name, "placement gave it functions it "
                       "cannot have now: " + "; ".join(gone))
    return _prepare(conf, dom, verdict, boot_id, stderr)


def _incoming(conf, dom: domain_xml.Domain, inv: model.Inventory,
              boot_id: str, stderr) -> int:
    """``migrate begin``, on the destination of a live migration: the XML
    names the devices nova chose on this host (its mdevs, its PCI
    addresses). They are judged by identity against this host's inventory
    alone, since a claim of the domain here is from an earlier stay, and
    nothing is rewritten: a device that is not this server's (another
    running domain's, another device than the inventory says, a node
    bridge of another host) refuses the migration in one line before it
    starts; the rest is nova's and libvirt's. The claim of the earlier
    stay is forgotten, so that the incoming domain's start is a first
    one."""
    here = claims.release_claim(inv, dom.uuid)
    verdict = guard.check(dom, here, hostview.read(
        conf.inventory.sysfs_root, dom, here), boot_id, policy(conf, dom))
    for note in verdict.notes:
        LOG.info("domain %s: %s", dom.name, note)
    if not verdict.allowed:
        return _refuse(stderr, dom.name, "incoming live migration: "
                       + "; ".join(verdict.refusals))
    earlier = inv.claims.get(dom.uuid)
    if earlier is not None and earlier.source == "hook" and \
            not earlier.is_running(boot_id):
        cache.update(conf.inventory.cache_path,
                     lambda current: claims.release_claim(current, dom.uuid),
                     conf.inventory.lock_timeout, validate=False)
        LOG.info("domain %s (%s) arrives by live migration; the claim of "
                 "its earlier stay (%s) is forgotten", dom.name, dom.uuid,
                 ", ".join(earlier.functions))
    return 0


def _prepare(conf, dom: domain_xml.Domain, verdict: guard.Verdict,
             boot_id: str, stderr) -> int:
    """Bridges hold their node's interface of now, missing mdevs exist,
    and the claim says what the domain holds; on any failure the mdevs
    made here are removed again and the start is refused."""
    name, sysfs_root = dom.name, conf.inventory.sysfs_root
    for node in verdict.bridges:
        try:
            actions = bridge.ensure_node_bridge(node.bridge, node.interface)
        except bridge.BridgeError as exc:
            return _refuse(stderr, name, f"bridge {node.bridge} of node "
                           f"{node.function_id}: {exc}")
        for action in actions:
            LOG.info("domain %s: %s (node %s)", name, action,
                     node.function_id)
    created: list[str] = []
    try:
        for want in verdict.create_mdevs:
            mdev.create(sysfs_root, want.parent, want.mdev_type, want.uuid)
            created.append(want.uuid)
            LOG.info("domain %s: created mdev %s of type %s on %s", name,
                     want.uuid, want.mdev_type, want.parent)
        if verdict.functions:
            _record(conf, dom, verdict.functions, created, boot_id)
    except (mdev.MdevError, claims.ClaimError, cache.CacheError) as exc:
        for uuid in created:
            mdev.remove(sysfs_root, uuid)
        return _refuse(stderr, name, str(exc))
    return 0


def _claim_for(current: model.Inventory, dom: domain_xml.Domain,
               functions: list[str], created: list[str],
               boot_id: str) -> model.Claim:
    """The domain's claim once it starts with ``functions``.

    mdevs the hook made at an earlier start that the domain still uses
    stay the hook's to remove. A claim the allocation sync made (devices
    Nova does not put in the XML, attached after the start) keeps its
    source, its attach record and the functions the XML does not name.
    """
    previous = current.claims.get(dom.uuid)
    uses = {ref.address for ref in dom.refs(DEVICE_MDEV)}
    ours = [uuid for uuid in (previous.created_mdevs if previous else [])
            if uuid in uses and uuid not in created] + created
    claim = model.Claim(consumer=dom.uuid, functions=list(functions),
                        source="hook", running=True, boot_id=boot_id,
                        domain_name=dom.name, created_mdevs=ours)
    if previous is not None and previous.source != "hook":
        claim.source, claim.attach = previous.source, previous.attach
        claim.functions += [fid for fid in previous.functions
                            if fid not in functions]
    return claim


def _record(conf, dom: domain_xml.Domain, functions: list[str],
            created: list[str], boot_id: str) -> None:
    cache.update(conf.inventory.cache_path,
                 lambda current: claims.record_claim(
                     current, _claim_for(current, dom, functions, created,
                                         boot_id)),
                 conf.inventory.lock_timeout, validate=False)
    LOG.info("domain %s (%s) starts holding %s", dom.name, dom.uuid,
             ", ".join(functions))


def _release(conf, dom: domain_xml.Domain) -> int:
    """Remove the mdevs the hook created for the domain and mark its claim
    stopped (it keeps its functions until its allocation goes)."""
    cache_path = conf.inventory.cache_path
    inv = cache.load(cache_path)
    if inv is None or dom.uuid not in inv.claims:
        return 0
    kept = []
    for uuid in inv.claims[dom.uuid].created_mdevs:
        try:
            if mdev.remove(conf.inventory.sysfs_root, uuid):
                LOG.info("domain %s: removed mdev %s, which the hook had "
                         "created", dom.name, uuid)
        except mdev.MdevError as exc:
            kept.append(uuid)
            LOG.error("domain %s: %s; remove it by hand ('echo 1 > "
                      "/sys/bus/mdev/devices/%s/remove')", dom.name, exc,
                      uuid)

    def stopped(current):
        new = claims.mark_stopped(current, dom.uuid)
        if dom.uuid in new.claims:
            new.claims[dom.uuid].created_mdevs = kept
        return new

    cache.update(cache_path, stopped, conf.inventory.lock_timeout,
                 validate=False)
    LOG.info("domain %s (%s) stopped; its claim is kept until its "
             "allocation goes", dom.name, dom.uuid)
    return 0
