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

"""Whether a path may be trusted: nobody but root and the user we run as
can change it, or rename it through a directory above it.

The hook, its attach worker, the agent and both CLIs run as root on
paths the configuration names: the configuration itself, the cache and
the files beside it, the log file, the profiles, the sysfs tree. Whoever
can rewrite one of them (or swap it, through a writable directory) can
make root wave a wrong device through, append to any file, or unlink
what is not ours. So before acting on them every command checks that
each file and each directory that names it is owned by the user it runs
as or root and writable by nobody else (``problems``, pure, on stat
results; ``untrusted``, the edge that stats the paths), and refuses in
one line naming what is wrong otherwise. ``safe_io`` then opens each
file so that what was checked is what is read.

Standard library only.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

ROOT_UID = 0


@dataclass(frozen=True)
class Node:
    """One file or directory a trusted path depends on.

    ``holds`` is True for the file itself and the directory that directly
    contains it; False for the directories above.
    """

    path: str
    uid: int
    mode: int
    holds: bool


def problems(nodes: Iterable[Node], owner_uid: int) -> list[str]:
    """Why each of ``nodes`` cannot be trusted, one line each.

    A node must be owned by ``owner_uid`` or root (who can change anything
    anyway) and not be writable by its group or others. A directory above
    the one holding the file may be writable by others if it is sticky
    (``/tmp``): nobody can then rename or remove the owner's entries in
    it. Symbolic links have no permissions of their
    own; their directory and their target are checked instead.
    """
    found = []
    for node in nodes:
        if stat.S_ISLNK(node.mode):
            continue
        if node.uid not in (owner_uid, ROOT_UID):
            found.append(f"{node.path} is owned by uid {node.uid}, not "
                         f"{owner_uid}")
            continue
        writable = node.mode & (stat.S_IWGRP | stat.S_IWOTH)
        sticky_above = (not node.holds and stat.S_ISDIR(node.mode)
                        and node.mode & stat.S_ISVTX)
        if writable and not sticky_above:
            found.append(f"{node.path} is writable by its group or others "
                         f"(mode {stat.S_IMODE(node.mode):04o})")
    return found


def _chain(path: str) -> list[str]:
    """``path`` and every directory above it, up to ``/``."""
    chain = [path]
    while True:
        parent = os.path.dirname(chain[-1])
        if parent == chain[-1]:
            return chain
        chain.append(parent)


def nodes_of(path: str) -> list[Node]:
    """The nodes ``path`` depends on, as written and as resolved.

    A missing file is left out (whoever creates it needs its directory,
    which is checked), as is one below a file (it cannot be created).
    """
    nodes: dict[str, Node] = {}
    written = os.path.abspath(path)
    for chain in (_chain(written), _chain(os.path.realpath(written))):
        for depth, name in enumerate(chain):
            if name in nodes:
                continue
            try:
                st = os.lstat(name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            nodes[name] = Node(name, st.st_uid, st.st_mode, holds=depth < 2)
    return list(nodes.values())


def untrusted(paths: Iterable[str | None],
              owner_uid: int | None = None) -> list[str]:
    """Why each of ``paths`` (None: not configured) and the directories
    above it cannot be trusted, one line each, without repeats.
    ``owner_uid`` defaults to the user we run as."""
    uid = os.geteuid() if owner_uid is None else owner_uid
    found: list[str] = []
    for path in paths:
        for line in problems(nodes_of(path), uid) if path else ():
            if line not in found:
                found.append(line)
    return found


def summary(found: list[str]) -> str:
    """``found`` (from ``untrusted``) in one line: the first three."""
    return ("; ".join(found[:3])
            + (f" (and {len(found) - 3} more)" if len(found) > 3 else ""))
