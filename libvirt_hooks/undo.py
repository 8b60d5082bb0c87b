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

"""What one ``prepare begin`` did to the host, undone when it fails.

``prepare begin`` changes the host before the domain starts: it creates
mdevs (a vGPU is an mdev of one of its card's types: the hook never
changes what types a card offers, only makes instances of them) and
records the domain's claim. When anything raises after one of these (a
refusal, a full disk, the hook's own timeout, a bug), the start is
refused, so whatever the call did must go again: otherwise a refused
start leaves an mdev behind, or a claim that says a domain that never
ran holds its functions.

Every step that changes the host pushes its undo here *before* it acts,
so that nothing raised between the change and its bookkeeping escapes
it; an undo is therefore written to be harmless when its step never
happened (remove an mdev if it exists; put a claim back only if the
cache still holds the one this call wrote). ``Undo`` is a context: on
any exception it runs the undos newest first, each with its own failure
logged, within a fresh ``[libvirt_hooks] timeout``, and lets the
exception go on to become the refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from libvirt_hooks import common


class Undo:
    """The undo list of one call; see the module's docstring."""

    def __init__(self, budget: float, log: logging.Logger, domain: str):
        self.budget = budget
        self.log = log
        self.domain = domain
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, undo: Callable[[], object]) -> None:
        """Register ``undo`` (which undoes ``what``, in words) before the
        step it undoes is taken."""
        self._steps.append((what, undo))

    def unwind(self) -> list[str]:
        """Run every undo, newest first; return what could not be undone,
        one line each (each also logged at ERROR)."""
        failed = []
        common.grant(self.budget)
        steps, self._steps = self._steps[::-1], []
        for position, (what, undo) in enumerate(steps):
            try:
                undo()
            except common.HookTimeout:
                failed += [f"{left}: no time left ([libvirt_hooks] timeout)"
                           for left, _undo in steps[position:]]
                break
            except Exception as exc:  # each undo on its own
                failed.append(f"{what}: {exc}")
            else:
                self.log.info("domain %s: undone: %s", self.domain, what)
        for line in failed:
            self.log.error("domain %s: the refused start could not undo "
                           "%s; undo it by hand", self.domain, line)
        return failed

    def __enter__(self) -> Undo:
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        if exc_type is not None:
            self.unwind()
        self._steps = []
        return False
