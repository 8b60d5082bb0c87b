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

"""PostgreSQL and placement over HTTP for the placement integration tests.

One PostgreSQL cluster and one placement server per session (both real,
both torn down at the end); each test gets its own compute node provider
and cache, so tests do not see each other's providers.
"""

import uuid

import pytest

from tests.integration.placement import pg_placement


@pytest.fixture(scope="session")
def placement_endpoint():
    with pg_placement.postgres() as db_url:
        with pg_placement.placement_server(db_url) as endpoint:
            yield endpoint


@pytest.fixture
def hostname():
    return f"compute-{uuid.uuid4().hex[:8]}"
