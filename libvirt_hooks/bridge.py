"""The Linux bridge through which domains reach an IP-over-PCIe node.

A node's host-side interface is named by enumeration order (``eth4``
today, ``eth5`` after a card is added), so a domain never names it: it
names a bridge whose name derives from the node's stable function id, and
the hook keeps the node's current interface in that bridge.
"""

from __future__ import annotations

import hashlib

IFNAMSIZ = 15  # the kernel's limit on an interface name, less the NUL


def bridge_name(prefix: str, function_id: str) -> str:
    """The bridge of the node ``function_id``: ``prefix`` and a digest of
    the id, at most 15 characters, the same on every call and every host
    boot."""
    room = IFNAMSIZ - len(prefix)
    if room < 6:
        raise ValueError(f"bridge prefix {prefix!r} leaves fewer than 6 of "
                         f"{IFNAMSIZ} characters for the node's digest")
    digest = hashlib.sha256(function_id.encode()).hexdigest()
    return prefix + digest[:room]
