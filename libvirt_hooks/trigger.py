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

"""The hook's side of attaching what Nova does not manage.

The agent's allocation sync leaves one empty marker file per consumer it
assigned functions in ``<cache_path>.assigned/``. At ``started begin`` the
hook calls ``on_started``: a domain without a marker costs one stat; one
with a marker gets a detached worker (``python -m libvirt_hooks.attach
UUID``: new session, stdin, stdout and stderr on /dev/null, so libvirt
does not wait for it). A Nova domain without one whose flavor asks for
one of our classes gets a worker that first waits for the sync to assign
it functions (``--await-assignment``). The hook itself never calls
libvirt, which would deadlock.

Standard library only: the hook imports this at every domain start.
"""

import os
import re
import sys

from libvirt_hooks import common

UUID_CHARS = frozenset("0123456789abcdefABCDEF-")
# Nova writes the flavor's extra specs into the domain's metadata
# (<nova:extraSpec name="resources1:CUSTOM_ACCEL_FPGA">1</nova:extraSpec>),
# and every class this project publishes is CUSTOM_ACCEL_*. Matched as
# the attribute of an element only: from a '<', over the element's name
# and its quoted attributes. Text (the server's name a tenant chose, in
# <nova:name>) cannot hold a '<', so it never matches.
ACCEL_REQUEST = re.compile(
    rb"""<[\w.:-]+(?:\s+[\w.:-]+\s*=\s*(?:"[^"]*"|'[^']*'))*?"""
    rb"""\s+name\s*=\s*["']resources\d*:CUSTOM_ACCEL_""")
AWAIT_ASSIGNMENT = "--await-assignment"
# When the hook launched the worker (the domain had just started, so after
# nova changed its allocations): a sync that read allocations since then
# read the new ones. The worker's own start is later by its imports, and a
# sync in between would be one it waited past.
LAUNCHED_AT = "NOVA_ACCEL_LAUNCHED_AT"


def domain_uuid(xml: bytes) -> str | None:
    """The domain's ``<uuid>`` (libvirt writes it before any device or
    metadata); None when there is none that looks like a UUID."""
    start = xml.find(b"<uuid>")
    end = xml.find(b"</uuid>", start)
    if start < 0 or end < 0:
        return None
    text = xml[start + len(b"<uuid>"):end].strip().decode("ascii", "replace")
    if len(text) != 36 or not set(text) <= UUID_CHARS:
        return None
    return text.lower()


def assigned_consumer(xml: bytes, config_file: str | None) -> str | None:
    """The domain's UUID when the sync assigned it functions; None
    otherwise, after one stat."""
    consumer = domain_uuid(xml)
    if consumer is None or not os.path.exists(
            common.marker_path(common.cache_path(config_file), consumer)):
        return None
    return consumer


def holds_assignment(op: str, subop: str, xml: bytes,
                     config_file: str | None) -> bool:
    """Whether the functions the sync assigned the domain send it to the
    full path: at ``release end`` (its claim is marked stopped), and at
    ``prepare begin`` of a Nova domain whose flavor asks for our classes
    (they must still be on the host). Any other domain costs one search
    of its XML at prepare, one stat at release."""
    if (op, subop) == ("prepare", "begin"):
        if not ACCEL_REQUEST.search(xml):
            return False
    elif (op, subop) != ("release", "end"):
        return False
    return assigned_consumer(xml, config_file) is not None


def on_started(xml: bytes, config_file: str | None) -> int:
    """``started begin``: launch the worker for an assigned domain, or for
    a Nova domain whose flavor asks for one of our classes but that the
    sync has not assigned yet (Nova starts a new server seconds after
    placement allocates it; the sync runs every ``[agent] interval``)."""
    consumer = assigned_consumer(xml, config_file)
    if consumer is not None:
        launch(consumer, config_file)
    elif ACCEL_REQUEST.search(xml) and domain_uuid(xml) is not None:
        launch(domain_uuid(xml), config_file, AWAIT_ASSIGNMENT)
    return 0


def launch(consumer: str, config_file: str | None, *flags: str) -> None:
    """Start the worker detached from the hook and from libvirt."""
    import subprocess

    import time

    env = dict(os.environ, **{LAUNCHED_AT: repr(time.time())})
    if config_file:
        env["NOVA_ACCEL_CONFIG"] = config_file
    subprocess.Popen([sys.executable, "-m", "libvirt_hooks.attach", *flags,
                      consumer],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True,
                     close_fds=True, cwd="/", env=env)
