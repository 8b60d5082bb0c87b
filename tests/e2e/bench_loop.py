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

"""Measurements of the whole loop (not tests: ``tests/bench/bench_e2e.py``
runs this file and reports; nothing here asserts a time).

- ACTIVE to attached: a server asking one IP-over-PCIe node, from nova
  saying ACTIVE to the worker's record of the node's interface on its
  bridge, with the agent's sync round run at once (its interval adds up
  to ``[agent] interval`` on a real host).
- Boot of a server without accelerators, POST to ACTIVE, with our hook
  installed and with it moved out of libvirt's hook folder, in pairs
  whose order alternates, so that both see the same machine.
"""

import json
import os
import shutil
import statistics
import time

from tests.e2e.e2e_base import NodeServerBase

RUNS = int(os.environ.get("NOVA_ACCEL_BENCH_RUNS", "5"))
OUT = os.environ.get("NOVA_ACCEL_BENCH_OUT")


def report(name, seconds):
    line = {"name": name, "runs": len(seconds),
            "median_s": statistics.median(seconds),
            "min_s": min(seconds), "max_s": max(seconds)}
    print(json.dumps(line))
    if OUT:
        with open(OUT, "a") as f:
            f.write(json.dumps(line) + "\n")


class BenchLoop(NodeServerBase):

    def test_active_to_attached(self):
        seconds = []
        for _ in range(RUNS):
            server, elapsed = self.boot_node_server()
            seconds.append(elapsed)
            self._delete_server(server)
            self.agent_round()
        report("active_to_attached", seconds)

    def test_boot_with_and_without_the_hook(self):
        from tests.e2e import conftest

        hook = conftest.libvirt_it.HOOK_PATH
        aside = os.path.join(str(self.state), "hook-aside")
        flavor = self._create_flavor(name="plain", memory_mb=64, vcpu=1,
                                     disk=1, ephemeral=0)
        timings = {"with": [], "without": []}
        try:
            for run in range(RUNS):
                # Each mode goes first in every other pair: the first boot
                # after a delete pays for what the delete left to do.
                for mode in (("with", "without") if run % 2 else
                             ("without", "with")):
                    if mode == "without":
                        shutil.move(hook, aside)
                    start = time.monotonic()
                    server = self.boot(flavor)
                    timings[mode].append(time.monotonic() - start)
                    if mode == "without":
                        shutil.move(aside, hook)
                    self._delete_server(server)
        finally:
            if os.path.exists(aside):
                shutil.move(aside, hook)
        report("boot_plain_with_hook", timings["with"])
        report("boot_plain_without_hook", timings["without"])
