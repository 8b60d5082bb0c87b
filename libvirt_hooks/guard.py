"""Decide whether a domain may start with the devices its XML names.

Pure: the inventory, what the host has now at each address the XML names,
and the current boot id come in; a verdict with reasons comes out. The
hook turns a refusal into a non-zero exit with one line for the operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from accel_inventory import claims, model
from libvirt_hooks.domain import Domain


@dataclass(frozen=True)
class PciIdentity:
    """What sysfs says is at a PCI address now."""

    vendor_id: str
    product_id: str
    class_code: str


@dataclass
class Verdict:
    refusals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)
    # index of a PCI hostdev in the XML -> the BDF its function has now
    moved: dict[int, str] = field(default_factory=dict)

    @property
    def allowed(self) -> bool:
        return not self.refusals


PCI_KINDS = ("pci", "ippcie")


def _pci_functions(inv: model.Inventory):
    return {f.address: (card, f) for card in inv.cards
            if card.kind in PCI_KINDS
            for region in card.regions for f in region.functions
            if f.address}


def _fix(domain: Domain) -> str:
    return (f"see 'accel-inventory show', then 'accel-domain repair "
            f"{domain.name}'")


def check(domain: Domain, inv: model.Inventory,
          live: Mapping[str, PciIdentity | None], boot_id: str | None,
          strict_identity: bool) -> Verdict:
    """The verdict on every PCI hostdev of ``domain``.

    A domain that started before holds a claim that lists its functions in
    the order of its hostdevs (libvirt keeps that order), so each hostdev
    is compared with the function it was given, wherever that function is
    now. A hostdev is refused when its address holds nothing, another
    vendor, product or class than the cache says, a function another
    running domain has, or (with ``strict_identity``, or of another type)
    a function that is not the one this domain was given. At a first start
    a hostdev whose address the inventory does not know is not an
    accelerator and is left to libvirt.
    """
    verdict = Verdict()
    by_address = _pci_functions(inv)
    index = inv.function_index()
    refs = [d for d in domain.devices if d.kind == "pci"]
    given = [fid for fid in (inv.claims[domain.uuid].functions
                             if domain.uuid in inv.claims else [])
             if fid in index and index[fid][0].kind in PCI_KINDS]
    paired = len(given) == len(refs)
    for position, ref in enumerate(refs):
        wanted = index[given[position]] if paired else None
        if wanted is not None and wanted[2].address != ref.address:
            verdict.moved[ref.index] = wanted[2].address
        where_now = (f"; its card {wanted[0].id} is now at "
                     f"{wanted[2].address}"
                     if ref.index in verdict.moved else "")
        here = by_address.get(ref.address)
        now = live.get(ref.address)
        if now is None:
            verdict.refusals.append(
                f"hostdev {ref.address}: no PCI device is there now"
                f"{where_now}; {_fix(domain)}")
            continue
        if here is None:
            if wanted is None:
                verdict.notes.append(
                    f"hostdev {ref.address} is not an accelerator the "
                    f"inventory knows; left to libvirt")
            else:
                verdict.refusals.append(
                    f"hostdev {ref.address}: holds {now.vendor_id}:"
                    f"{now.product_id}, a device the inventory does not know"
                    f"{where_now}; {_fix(domain)}")
            continue
        card, function = here
        if (card.vendor_id, card.product_id) != (now.vendor_id,
                                                 now.product_id):
            verdict.refusals.append(
                f"hostdev {ref.address}: holds {now.vendor_id}:"
                f"{now.product_id} now, the inventory says {card.vendor_id}:"
                f"{card.product_id} ({card.id}){where_now}; rescan with "
                f"'accel-inventory scan', then {_fix(domain)}")
            continue
        holder = claims.holder_of(inv, function.id, boot_id)
        if holder is not None and holder.consumer != domain.uuid:
            verdict.refusals.append(
                f"hostdev {ref.address}: function {function.id} is held by "
                f"running domain {holder.domain_name or holder.consumer}"
                f"{where_now}; {_fix(domain)}")
            continue
        if wanted is not None and wanted[2].id != function.id:
            same_type = ((wanted[0].vendor_id, wanted[0].product_id)
                         == (card.vendor_id, card.product_id))
            if strict_identity or not same_type:
                verdict.refusals.append(
                    f"hostdev {ref.address}: holds {function.id} of card "
                    f"{card.id}, not the function this domain was given"
                    f"{where_now}; {_fix(domain)}")
                continue
            verdict.notes.append(
                f"hostdev {ref.address}: re-enumerated host; takes free "
                f"{function.id} of the same type instead of "
                f"{wanted[2].id}")
        verdict.functions.append(function.id)
    return verdict
