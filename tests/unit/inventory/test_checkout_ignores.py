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

"""What tox and the tests write into the checkout stays out of git."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
# Each path a run of tox writes: envs, the PEP 832 .venv redirect file
# tox points at the last env, usedevelop's egg-info, the packaging build,
# Sphinx output of the docs, pytest's and hypothesis' caches, bytecode.
WRITTEN = [".tox/py3/bin/python", ".venv", "nova_accel.egg-info/PKG-INFO",
           "build/lib/accel_inventory/cli.py", "dist/nova_accel.whl",
           "doc/build/html/index.html", "releasenotes/build/html/index.html",
           ".pytest_cache/README.md", ".hypothesis/examples/x",
           "accel_inventory/__pycache__/cli.cpython-311.pyc"]


@pytest.mark.skipif(shutil.which("git") is None
                    or not os.path.isdir(os.path.join(ROOT, ".git")),
                    reason="not a git checkout (an sdist)")
def test_gitignore_covers_what_tox_writes():
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose",
         "--non-matching", *WRITTEN],
        cwd=ROOT, capture_output=True, text=True, check=False)
    unmatched = [line.split("\t", 1)[1] for line in result.stdout.splitlines()
                 if line.startswith("::")]
    assert unmatched == []
