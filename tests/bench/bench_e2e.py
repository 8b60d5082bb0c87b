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

"""The whole loop's figures (issue 12): ACTIVE to attached, and a plain
server's boot with our hook installed against without it.

Runs ``tests/e2e/bench_loop.py`` under nova's functional framework with
the real libvirt driver on the real libvirtd, as ``tox -e e2e`` does (so
as root, and it installs and starts what the e2e tests do), then prints
medians. Measures and reports; asserts nothing about time.

    python -m tests.bench.bench_e2e [--runs N]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(os.path.dirname(HERE), "e2e", "bench_loop.py")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="servers booted per figure (default 5)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "figures.jsonl")
        env = dict(os.environ, NOVA_ACCEL_BENCH_OUT=out,
                   NOVA_ACCEL_BENCH_RUNS=str(args.runs))
        run = subprocess.run([sys.executable, "-m", "pytest", "-q",
                              "-p", "no:cacheprovider", E2E], env=env,
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stdout[-4000:] + run.stderr[-2000:])
            return run.returncode
        with open(out) as f:
            figures = {line["name"]: line for line in map(json.loads, f)}
    for name, label in (
            ("active_to_attached", "ACTIVE to node attached"),
            ("boot_plain_with_hook", "plain boot, hook installed"),
            ("boot_plain_without_hook", "plain boot, no hook")):
        fig = figures[name]
        print(f"{label:30s} median {fig['median_s']:6.2f} s  "
              f"(min {fig['min_s']:.2f}, max {fig['max_s']:.2f}, "
              f"n={fig['runs']})")
    ratio = (figures["boot_plain_with_hook"]["median_s"]
             / figures["boot_plain_without_hook"]["median_s"])
    print(f"plain boot with / without the hook: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
