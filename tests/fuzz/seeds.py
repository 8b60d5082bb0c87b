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

"""Seed inputs for the atheris harnesses, in a fresh corpus directory.

libFuzzer grows the first corpus directory it is given; without one it
would start from nothing and, on the XML parser, hardly get past lxml's
first check. A harness run without a corpus argument gets a temporary
directory holding these seeds.
"""

import os
import sys
import tempfile


def with_corpus(argv: list[str], seeds: dict[str, bytes]) -> list[str]:
    """``argv`` with a temporary seed corpus unless it names one."""
    if any(not arg.startswith("-") for arg in argv[1:]):
        return argv
    corpus = tempfile.mkdtemp(prefix="nova-accel-fuzz-")
    for name, data in seeds.items():
        with open(os.path.join(corpus, name), "wb") as f:
            f.write(data)
    sys.stderr.write(f"corpus: {corpus}\n")
    return argv + [corpus]
