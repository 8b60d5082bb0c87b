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
in one line; a refusal is also the one line libvirt shows the operator,
whatever raised (a bug too: the start is refused, never let through).
What ``prepare begin`` did before it failed is undone (``undo``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from types import SimpleNamespace

from accel_inventory import (cache, claim_sync, claims, kinds, model, safe_io,
                             settings)
from accel_inventory.kinds.base import BUS_USB, DEVICE_MDEV, DEVICE_USB
from accel_inventory.inventory import current_boot_id
from libvirt_hooks import domain as domain_xml
from libvirt_hooks import (affinity, bridge, common, guard, hostview, mdev,
                           resolve, vgpu)
from libvirt_hooks import trust, undo
from libvirt_hooks.common import EXIT_REFUSED, HookTimeout

LOG = logging.getLogger("nova-accel-hook")
SYSLOG_ADDRESS = "/dev/log"


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


class LogFile(logging.StreamHandler):
    """The hook's log file, opened by ``safe_io`` (appended to, never
    through a link, never a FIFO) and closed with the handler."""

    def __init__(self, path: str):
        super().__init__(os.fdopen(safe_io.open_append(path), "a",
                                   encoding="utf-8",
                                   errors="backslashreplace"))

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()


def _handler(conf: SimpleNamespace) -> tuple[logging.Handler, str | None]:
    """The log file, else syslog, else nothing; and why the log file
    could not be used, to be said where the log goes instead."""
    problem = None
    if conf.libvirt_hooks.log_file:
        try:
            return LogFile(conf.libvirt_hooks.log_file), None
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


def run(name: str, op: str, subop: str, xml: bytes,
        config_file: str | None, stdout, stderr) -> int:
    """The full path, within the timer ``hook.main`` started before it
    opened anything (``common.start_timer``)."""
    try:
        conf = load_conf(config_file)
    except settings.SettingsError as exc:
        stderr.write(f"nova-accel: domain {name}: cannot read configuration: "
                     f"{exc}\n")
        return EXIT_REFUSED
    timeout = conf.libvirt_hooks.timeout
    common.limit(timeout)
    # Before anything acts on the configuration (the log file is opened
    # as root): see trust.py.
    untrusted = trust.refusal(config_file, conf.inventory.cache_path,
                              others=trust.hook_paths(conf))
    if untrusted:
        stderr.write(f"nova-accel: domain {name}: {untrusted}\n")
        return EXIT_REFUSED
    setup_logging(conf)
    try:
        return _decide(conf, name, op, subop, xml, stdout, stderr)
    except HookTimeout:
        return _refuse(stderr, name, f"the hook did not finish within "
                       f"{timeout} s ([libvirt_hooks] timeout); the start "
                       f"is refused to be safe")
    except (cache.CacheError, claims.ClaimError, mdev.MdevError) as exc:
        return _refuse(stderr, name, f"{exc}")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _refuse(stderr, name, f"cannot use{where}: "
                       f"{exc.strerror or exc}")
    except Exception as exc:  # a bug: fail closed, in one line
        LOG.exception("domain %s: the hook failed", name)
        return _refuse(stderr, name, f"the hook failed "
                       f"({type(exc).__name__}: {exc}); the start is "
                       f"refused to be safe")


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
                     if profile.kind is not None
                     and kinds.get(profile.kind).function_bus == BUS_USB
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
    try:
        refusal = _near_enough(conf, dom, inv, verdict)
    except domain_xml.DomainXMLError as exc:
        return _refuse(stderr, name, str(exc))
    if refusal:
        return _refuse(stderr, name, refusal)
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


def _near_enough(conf, dom: domain_xml.Domain, inv: model.Inventory,
                 verdict: guard.Verdict) -> str | None:
    """NUMA affinity (see affinity.py): the domain's placement claim takes
    the free functions near its guest, then every function it is given
    must be near under ``required`` and ``socket`` (the refusal, one
    line) and is said once under ``preferred``."""
    sysfs_root = conf.inventory.sysfs_root
    near = affinity.of_domain(dom, sysfs_root)
    if near is None:
        return None
    if near.note:
        LOG.warning("domain %s: %s", dom.name, near.note)
    claim = inv.claims.get(dom.uuid)
    if claim is not None and claim.source == claim_sync.CLAIM_SOURCE:
        moved = affinity.keep_near(conf.inventory.cache_path,
                                   conf.inventory.lock_timeout, dom.uuid,
                                   near, sysfs_root)
        if moved is not None:
            LOG.info("domain %s: now holds %s, near its guest's NUMA "
                     "node(s) %s", dom.name,
                     ", ".join(moved.claims[dom.uuid].functions),
                     ",".join(str(n) for n in sorted(near.guest_nodes)))
            inv, claim = moved, moved.claims[dom.uuid]
    given = list(dict.fromkeys(verdict.functions + (
        claim.functions if claim is not None
        and claim.source == claim_sync.CLAIM_SOURCE else [])))
    refusal, warning = affinity.judgement(
        near, affinity.far_functions(inv, given, near, sysfs_root))
    if warning:
        LOG.warning("domain %s: %s", dom.name, warning)
    return refusal


@dataclass
class _Made:
    """What ``prepare`` made for the domain, to record in its claim or
    undo: mdevs (by UUID), vGPU types written (VF -> type ID), and the
    addresses of the placement claim's functions whose mdevs it made."""

    mdevs: list[str] = field(default_factory=list)
    vgpus: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.mdevs or self.vgpus)


def _prepare(conf, dom: domain_xml.Domain, verdict: guard.Verdict,
             boot_id: str, stderr) -> int:
    """Bridges hold their node's interface of now, VFs their vGPU type,
    missing mdevs exist, and the claim says what the domain holds. Each
    step that changes the host registers its undo in one ``undo.Undo``:
    on any failure what was done is undone and the start is refused (by
    ``run``)."""
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
    made = _Made()
    with undo.Undo(conf.libvirt_hooks.timeout, LOG, name) as steps:
        _make(sysfs_root, name, verdict, made, steps)
        if verdict.functions or made:
            _record(conf, dom, verdict.functions, made, boot_id, steps)
    return 0


def _make(sysfs_root: str, name: str, verdict: guard.Verdict,
          made: _Made, steps: undo.Undo | None = None) -> None:
    """Write the vGPU types and create the mdevs ``verdict`` plans,
    adding each to ``made`` as it is done (so a failure half-way leaves
    ``made`` saying what to undo), and to ``steps`` before it is done
    when given (the hook's timer may interrupt between the two)."""
    for want in verdict.set_vgpus:
        if steps is not None:
            # Clears only the type this call wrote: the guard plans one
            # only for a VF that holds none.
            steps.push(f"vGPU type {want.type_id} written to {want.vf}",
                       lambda vf=want.vf, type_id=want.type_id:
                       vgpu.clear_type(sysfs_root, vf, type_id))
        vgpu.set_type(sysfs_root, want.vf, want.type_id)
        made.vgpus[want.vf] = want.type_id
        LOG.info("domain %s: VF %s holds vGPU type %s%s for %s", name,
                 want.vf, want.type_id,
                 f" ({want.name})" if want.name else "", want.function_id)
    for want in verdict.create_mdevs:
        if steps is not None:
            # Missing when the guard looked: the undo removes it whether
            # the write went through or not.
            steps.push(f"mdev {want.uuid} created on {want.parent}",
                       lambda uuid=want.uuid: mdev.remove(sysfs_root, uuid))
        mdev.create(sysfs_root, want.parent, want.mdev_type, want.uuid)
        made.mdevs.append(want.uuid)
        if want.function_id is not None:
            made.addresses[want.function_id] = want.uuid
        LOG.info("domain %s: created mdev %s of type %s on %s", name,
                 want.uuid, want.mdev_type, want.parent)


def make_for_claim(conf, dom: domain_xml.Domain, inv: model.Inventory,
                   withheld: Collection[str] = ()) -> list[str]:
    """For the attach worker: make what the domain's placement claim
    needs before its devices are plugged (the sync assigned them after
    ``prepare begin``): its mdevs and its VFs' vGPU types, recorded in
    the claim so that ``release end`` undoes them; nothing for the
    functions ``withheld`` (not plugged: NUMA affinity refuses them).
    Returns why it could not (nothing is left made then)."""
    host = hostview.read(conf.inventory.sysfs_root, dom, inv)
    verdict = guard.plan_for_claim(dom, inv, host, policy(conf, dom),
                                   withheld)
    if verdict.refusals:
        return verdict.refusals
    made = _Made()
    try:
        _make(conf.inventory.sysfs_root, dom.name, verdict, made)
        if made:
            cache.update(conf.inventory.cache_path,
                         lambda current: _with_made(current, dom.uuid, made),
                         conf.inventory.lock_timeout, validate=False)
    except (mdev.MdevError, cache.CacheError) as exc:
        _undo(conf, dom, made)
        return [str(exc)]
    return []


def _with_made(inv: model.Inventory, consumer: str,
               made: _Made) -> model.Inventory:
    """``inv`` whose claim of ``consumer`` also lists what ``made``
    says."""
    new = model.clone(_with_addresses(inv, made.addresses))
    claim = new.claims[consumer]
    claim.created_mdevs += [u for u in made.mdevs
                            if u not in claim.created_mdevs]
    claim.set_vgpus.update(made.vgpus)
    return new


def _undo(conf, dom: domain_xml.Domain, made: _Made) -> _Made:
    """Remove the mdevs and clear the vGPU types that ``made`` lists
    (a start that failed after making them, a domain that stopped);
    return what could not be undone, which is logged with what to run."""
    sysfs_root = conf.inventory.sysfs_root
    kept = _Made()
    for uuid in made.mdevs:
        try:
            if mdev.remove(sysfs_root, uuid):
                LOG.info("domain %s: removed mdev %s, which the hook had "
                         "created", dom.name, uuid)
        except mdev.MdevError as exc:
            kept.mdevs.append(uuid)
            LOG.error("domain %s: %s; remove it by hand ('echo 1 > "
                      "/sys/bus/mdev/devices/%s/remove')", dom.name, exc,
                      uuid)
    for vf, type_id in made.vgpus.items():
        try:
            if vgpu.clear_type(sysfs_root, vf, type_id):
                LOG.info("domain %s: VF %s no longer holds vGPU type %s, "
                         "which the hook had set", dom.name, vf, type_id)
        except mdev.MdevError as exc:
            kept.vgpus[vf] = type_id
            LOG.error("domain %s: %s; clear it by hand ('echo 0 > "
                      "/sys/bus/pci/devices/%s/nvidia/current_vgpu_type')",
                      dom.name, exc, vf)
    return kept


def _claim_for(current: model.Inventory, dom: domain_xml.Domain,
               functions: list[str], made: _Made,
               boot_id: str) -> model.Claim:
    """The domain's claim once it starts with ``functions``.

    mdevs the hook made, and vGPU types it wrote, at an earlier start
    that the domain still uses stay the hook's to undo. A claim the
    allocation sync made (devices Nova does not put in the XML, attached
    after the start) keeps its source, its attach record and the
    functions the XML does not name.
    """
    previous = current.claims.get(dom.uuid)
    claim = model.Claim(consumer=dom.uuid, functions=list(functions),
                        source="hook", running=True, boot_id=boot_id,
                        domain_name=dom.name)
    if previous is not None and previous.source != "hook":
        claim.source, claim.attach = previous.source, previous.attach
        claim.functions += [fid for fid in previous.functions
                            if fid not in functions]
    index = current.function_index()
    addresses = {index[fid][2].address for fid in claim.functions
                 if fid in index}
    uses = addresses | {ref.address for ref in dom.refs(DEVICE_MDEV)}
    claim.created_mdevs = [
        uuid for uuid in (previous.created_mdevs if previous else [])
        if uuid in uses and uuid not in made.mdevs] + made.mdevs
    claim.set_vgpus = {
        vf: type_id for vf, type_id in
        (previous.set_vgpus if previous else {}).items()
        if vf in addresses} | made.vgpus
    return claim


def _with_addresses(inv: model.Inventory,
                    addresses: dict[str, str]) -> model.Inventory:
    """``inv`` whose placement-claimed mdev functions name the mdevs made
    for them, so that a rescan keeps their ids (by UUID)."""
    if not addresses:
        return inv
    new = model.clone(inv)
    for fid, (_card, _region, function) in new.function_index().items():
        if fid in addresses:
            function.address = addresses[fid]
    return new


def _record(conf, dom: domain_xml.Domain, functions: list[str],
            made: _Made, boot_id: str, steps: undo.Undo) -> None:
    write: list[tuple[model.Inventory, model.Inventory]] = []

    def record(current: model.Inventory) -> model.Inventory:
        placed = _with_addresses(current, made.addresses)
        recorded = claims.record_claim(placed, _claim_for(
            placed, dom, functions, made, boot_id))
        write.append((current, recorded))
        return recorded

    def restore(current: model.Inventory) -> model.Inventory:
        return claims.undo_write(current, *write[-1])

    # Registered before the write: a timeout between the cache's rename
    # and the return would otherwise leave the claim recorded.
    steps.push(f"the claim of {dom.uuid} on "
               f"{', '.join(functions) or 'its placement claim'}",
               lambda: write and cache.update(
                   conf.inventory.cache_path, restore,
                   conf.inventory.lock_timeout, validate=False))
    cache.update(conf.inventory.cache_path, record,
                 conf.inventory.lock_timeout, validate=False)
    LOG.info("domain %s (%s) starts holding %s", dom.name, dom.uuid,
             ", ".join(functions) or "its placement claim's functions")


def _release(conf, dom: domain_xml.Domain) -> int:
    """Undo what the hook made for the domain (its mdevs, the vGPU types
    it wrote) and mark its claim stopped (it keeps its functions until
    its allocation goes)."""
    cache_path = conf.inventory.cache_path
    inv = cache.load(cache_path)
    if inv is None or dom.uuid not in inv.claims:
        return 0
    claim = inv.claims[dom.uuid]
    kept = _undo(conf, dom, _Made(mdevs=list(claim.created_mdevs),
                                  vgpus=dict(claim.set_vgpus)))

    def stopped(current):
        new = claims.mark_stopped(current, dom.uuid)
        if dom.uuid in new.claims:
            new.claims[dom.uuid].created_mdevs = kept.mdevs
            new.claims[dom.uuid].set_vgpus = kept.vgpus
        return new

    cache.update(cache_path, stopped, conf.inventory.lock_timeout,
                 validate=False)
    LOG.info("domain %s (%s) stopped; its claim is kept until its "
             "allocation goes", dom.name, dom.uuid)
    return 0
