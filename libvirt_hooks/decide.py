"""The hook's full path: configuration, the guard, the cache, the answer.

Only domains whose XML names a hostdev get here. Every decision is logged
in one line; a refusal is also the one line libvirt shows the operator.
"""

from __future__ import annotations

import logging
import logging.handlers
import signal

from oslo_config import cfg

from accel_inventory import cache, claims, model
from accel_inventory import conf as inventory_conf
from accel_inventory.inventory import current_boot_id
from libvirt_hooks import conf as hooks_conf
from libvirt_hooks import domain as domain_xml
from libvirt_hooks import guard, hostview, trust
from libvirt_hooks.hook import EXIT_REFUSED

LOG = logging.getLogger("nova-accel-hook")


class HookTimeout(Exception):
    pass


def load_conf(config_file: str | None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    inventory_conf.register_opts(conf)
    hooks_conf.register_opts(conf)
    conf(args=[], project="nova-accel", default_config_files=(
        [config_file] if config_file else []))
    return conf


def _setup_logging(conf: cfg.ConfigOpts) -> None:
    for old in list(LOG.handlers):
        LOG.removeHandler(old)
        old.close()
    if conf.libvirt_hooks.log_file:
        handler = logging.FileHandler(conf.libvirt_hooks.log_file)
    else:
        try:
            handler = logging.handlers.SysLogHandler(
                address="/dev/log",
                facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        except OSError:
            handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter(
        "%(asctime)s nova-accel-hook %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)


def _on_alarm(signum, frame):
    raise HookTimeout()


def run(name: str, op: str, subop: str, xml: bytes,
        config_file: str | None, stdout, stderr) -> int:
    try:
        conf = load_conf(config_file)
    except cfg.Error as exc:
        stderr.write(f"nova-accel: domain {name}: cannot read configuration: "
                     f"{exc}\n")
        return EXIT_REFUSED
    # Before anything acts on the configuration (the log file is opened
    # as root): see trust.py.
    untrusted = trust.refusal(config_file, conf.inventory.cache_path)
    if untrusted:
        stderr.write(f"nova-accel: domain {name}: {untrusted}\n")
        return EXIT_REFUSED
    _setup_logging(conf)
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
    LOG.error("domain %s refused: %s", name, reason)
    stderr.write(f"nova-accel: domain {name}: {reason}\n")
    return EXIT_REFUSED


def _decide(conf, name, op, subop, xml, stdout, stderr) -> int:
    try:
        dom = domain_xml.parse(xml, conf.libvirt_hooks.max_xml_bytes)
    except domain_xml.DomainXMLError as exc:
        return _refuse(stderr, name, str(exc))
    cache_path = conf.inventory.cache_path
    if op == "release":
        return _release(cache_path, dom, conf.inventory.lock_timeout)
    inv = cache.load(cache_path)
    if inv is None:
        LOG.info("domain %s: no inventory cache at %s; nothing to check",
                 name, cache_path)
        return 0
    live = {ref.address: hostview.pci_identity(conf.inventory.sysfs_root,
                                               ref.address)
            for ref in dom.devices if ref.kind == "pci"}
    boot_id = current_boot_id()
    verdict = guard.check(dom, inv, live, boot_id,
                          conf.libvirt_hooks.strict_identity)
    for note in verdict.notes:
        LOG.info("domain %s: %s", name, note)
    if op in ("migrate", "restore"):
        rewritten = domain_xml.rewrite_pci(dom, verdict.moved)
        if rewritten is not None:
            LOG.info("domain %s: %s begin: hostdevs moved to %s", name, op,
                     verdict.moved)
            stdout.write(rewritten.decode())
        return 0
    if not verdict.allowed:
        return _refuse(stderr, name, "; ".join(verdict.refusals))
    if verdict.functions:
        claim = model.Claim(consumer=dom.uuid, functions=verdict.functions,
                            source="hook", running=True, boot_id=boot_id,
                            domain_name=dom.name)
        try:
            cache.update(cache_path,
                         lambda current: claims.record_claim(current, claim),
                         conf.inventory.lock_timeout, validate=False)
        except claims.ClaimError as exc:
            return _refuse(stderr, name, str(exc))
        LOG.info("domain %s (%s) starts holding %s", name, dom.uuid,
                 ", ".join(verdict.functions))
    return 0


def _release(cache_path: str, dom: domain_xml.Domain, timeout: float) -> int:
    inv = cache.load(cache_path)
    if inv is None or dom.uuid not in inv.claims:
        return 0
    cache.update(cache_path,
                 lambda current: claims.mark_stopped(current, dom.uuid),
                 timeout, validate=False)
    LOG.info("domain %s (%s) stopped; its claim is kept until its "
             "allocation goes", dom.name, dom.uuid)
    return 0
