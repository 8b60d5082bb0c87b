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

"""The hypothesis profiles of the fuzz tests.

``ci`` (the default) keeps the whole hypothesis fuzz set within about a
minute of the default test run; ``long`` is what ``tox -e fuzz`` runs
(``HYPOTHESIS_PROFILE=long``), forty times the examples. Importing this
module loads the profile named by ``HYPOTHESIS_PROFILE``. A test whose
examples cost more or less than most asks for its own share with
``examples(n)``: ``n`` examples under ``ci``, scaled alike under ``long``.
"""

import os

from hypothesis import HealthCheck
from hypothesis import settings

CI_EXAMPLES = 100
COMMON = {"deadline": None, "print_blob": True,
          "suppress_health_check": [HealthCheck.too_slow,
                                    HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=CI_EXAMPLES, **COMMON)
settings.register_profile("long", max_examples=40 * CI_EXAMPLES, **COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(n: int) -> settings:
    """The settings of a fuzz test worth ``n`` examples under ``ci``."""
    scale = settings.default.max_examples / CI_EXAMPLES
    return settings(max_examples=max(1, round(n * scale)))
