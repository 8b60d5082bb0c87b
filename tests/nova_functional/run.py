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

"""Nova's own functional tests, stock and with nova-accel forced in.

Runs the tests listed in tests/nova_functional/tests.txt twice at once,
in two pytest processes (one per core): as nova ships them, and with
AccelTopologyFilter and AccelPackingWeigher forced into every scheduler
(plugin.py). A test that fails only with the plugin is run again once
each way, so that one of nova's timing-sensitive tests that failed by
chance does not fail CI; a test that still passes stock and fails with
the plugin fails the run. Tests that fail either way are nova's own
trouble in this environment: reported, not held against the plugin.

Run: ``python -m tests.nova_functional.run [--list FILE] [--keep DIR]``
(``tox -e nova-functional``). Prints the counts, the time of each run
and every test that passed only without the plugin; exit code 1 if there
is one, or if a run did not run what the list names.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIST = os.path.join(HERE, "tests.txt")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


def read_list(path: str) -> list[str]:
    with open(path) as f:
        return [line.strip() for line in f
                if line.strip() and not line.lstrip().startswith("#")]


def start(targets: list[str], forced: bool, junit: str, log: str):
    env = dict(os.environ, NOVA_ACCEL_FORCE="1" if forced else "0")
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "-p", "tests.nova_functional.plugin", "-o",
             "junit_family=xunit1", f"--junitxml={junit}", "--pyargs",
             *targets], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT)


def outcomes(junit: str) -> dict[str, str]:
    """Per test (module.Class::name), passed, failed or skipped."""
    results = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        test = f"{case.get('classname')}::{case.get('name')}"
        if case.find("skipped") is not None:
            results[test] = SKIPPED
        elif (case.find("failure") is not None
              or case.find("error") is not None):
            results[test] = FAILED
        else:
            results[test] = PASSED
    return results


def node_id(test: str) -> str:
    """A pytest node id for ``module.Class::name``."""
    dotted, name = test.split("::")
    module, cls = dotted.rsplit(".", 1)
    return f"{importlib.util.find_spec(module).origin}::{cls}::{name}"


def run_both(targets: list[str], workdir: str, label: str
             ) -> tuple[dict[str, str], dict[str, str], dict[str, float]]:
    """Both runs of ``targets`` at once: the outcomes stock, with the
    plugin, and each run's time."""
    runs, started = {}, time.monotonic()
    for forced in (False, True):
        name = f"{label}-{'accel' if forced else 'stock'}"
        runs[forced] = (start(targets, forced, f"{workdir}/{name}.xml",
                              f"{workdir}/{name}.log"),
                        f"{workdir}/{name}.xml", f"{workdir}/{name}.log")
    results, seconds = {}, {}
    for forced, (process, junit, log) in runs.items():
        process.wait()
        seconds[forced] = time.monotonic() - started
        if process.returncode not in (0, 1) or not os.path.exists(junit):
            with open(log) as f:
                tail = f.read()[-3000:]
            way = "with" if forced else "without"
            sys.exit(f"nova-functional: pytest {way} the plugin ended with "
                     f"exit code {process.returncode} before reporting; its "
                     f"log ends:\n{tail}")
        results[forced] = outcomes(junit)
    return results[False], results[True], seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.nova_functional.run",
        description="Run nova's own functional tests stock and with "
                    "nova-accel forced into every scheduler; fail on a "
                    "test that passes only without it.")
    parser.add_argument("--list", default=LIST,
                        help="the tests to run, one module (or "
                             "module::Class) a line (default: %(default)s)")
    parser.add_argument("--keep", metavar="DIR",
                        help="write the runs' logs and JUnit XML here "
                             "instead of a temporary directory")
    args = parser.parse_args(argv)
    targets = read_list(args.list)
    workdir = args.keep or tempfile.mkdtemp(prefix="nova-functional-")
    os.makedirs(workdir, exist_ok=True)
    stock, accel, seconds = run_both(targets, workdir, "first")
    for label, results in (("stock", stock), ("with nova-accel", accel)):
        counts = {o: sum(1 for r in results.values() if r == o)
                  for o in (PASSED, FAILED, SKIPPED)}
        print(f"nova-functional: {label}: {len(results)} tests, "
              f"{counts[PASSED]} passed, {counts[FAILED]} failed, "
              f"{counts[SKIPPED]} skipped, "
              f"{seconds[label != 'stock']:.0f} s")
    missing = set(stock) ^ set(accel)
    if not stock or missing:
        print(f"nova-functional: the two runs did not run the same tests "
              f"({len(missing)} differ); logs in {workdir}")
        return 1
    both = sorted(t for t in stock if stock[t] == accel[t] == FAILED)
    if both:
        print(f"nova-functional: {len(both)} fail with and without the "
              f"plugin (nova's own trouble here, not counted): "
              + ", ".join(both))
    suspects = sorted(t for t in stock
                      if stock[t] == PASSED and accel[t] == FAILED)
    if suspects:
        print(f"nova-functional: {len(suspects)} failed only with the "
              f"plugin; running them again each way")
        again_stock, again_accel, _ = run_both(
            [node_id(t) for t in suspects], workdir, "again")
        suspects = [t for t in suspects
                    if again_stock.get(t) == PASSED
                    and again_accel.get(t) != PASSED]
    for test in suspects:
        print(f"nova-functional: FAILS ONLY WITH NOVA-ACCEL: {test}")
    print(f"nova-functional: {len(suspects)} tests fail only with the "
          f"plugin; logs and JUnit XML in {workdir}")
    return 1 if suspects else 0


if __name__ == "__main__":
    sys.exit(main())
