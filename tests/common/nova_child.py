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

"""Nova functional test cases run in a child process.

Some comparisons need a fresh process: placement's candidate order follows
PYTHONHASHSEED, nova decides at its first import whether eventlet patches
threading, and stock nova and ours are compared on the same scenario, each
in a nova test case of its own. The cases write what they recorded, one
JSON object a line, to the file named by NOVA_ACCEL_RESULT.
"""

import json
import os
import subprocess
import sys

RESULT_ENV = "NOVA_ACCEL_RESULT"
# The checkout, where ``tests`` is a package: the child imports the test
# module from there.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

_CHILD = """
import importlib, sys, unittest
# nova decides at its first import whether eventlet patches threading (not
# with OS_NOVA_DISABLE_EVENTLET_PATCHING=1): its test package first.
import nova.tests.functional
t = importlib.import_module(sys.argv[1])
suite = unittest.TestSuite(
    unittest.defaultTestLoader.loadTestsFromTestCase(getattr(t, name))
    for name in sys.argv[2:])
sys.exit(not unittest.TextTestRunner().run(suite).wasSuccessful())
"""


def record(record_obj) -> None:
    """Append ``record_obj`` to the child's result file."""
    with open(os.environ[RESULT_ENV], "a") as f:
        f.write(json.dumps(record_obj) + "\n")


def run_child(result, module, cases, **env):
    """Run the test ``cases`` (class names) of ``module`` in a child
    process; what they recorded in ``result`` (a path), one object a
    line."""
    env = dict(os.environ, **{RESULT_ENV: str(result)}, **env)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, module, *cases], cwd=ROOT,
        env=env, capture_output=True, text=True, timeout=900)
    assert child.returncode == 0, child.stderr[-3000:]
    with open(result) as f:
        return [json.loads(line) for line in f.read().splitlines()]
