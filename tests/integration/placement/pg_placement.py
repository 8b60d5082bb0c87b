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

"""A real PostgreSQL server and real placement over HTTP, for tests and the
benchmark.

``postgres()`` installs PostgreSQL with apt-get when its binaries are
missing (CI runs as root on a fresh machine), creates a throwaway cluster
with initdb in a temporary directory (as the ``postgres`` user when we are
root: initdb refuses root), starts it on a free loopback port and removes
it all afterwards. ``placement_server(url)`` runs placement's own WSGI app,
on that database, in a child process serving HTTP on loopback (this file
run as a script), so that the client side of a test or the benchmark goes
through a real socket and a real database; ``options`` sets placement.conf
options there, as an operator's file would.

Run as a script: ``python pg_placement.py DB_URL [OPTIONS_JSON]`` syncs the
schema, serves on a free port of 127.0.0.1 and prints ``PORT <n>`` when
ready; OPTIONS_JSON is ``{"group": {"option": value}}``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

PG_USER = "postgres"
DB_NAME = "placement"


def _pg_bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(found[-1]) if found else None


def install_postgres() -> str:
    """The PostgreSQL bin dir, installing Debian's server if missing."""
    bindir = _pg_bindir()
    if bindir:
        return bindir
    if os.geteuid() != 0:
        raise RuntimeError("PostgreSQL is not installed and we are not root: "
                           "apt-get install postgresql")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends",
                    "postgresql"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    bindir = _pg_bindir()
    if not bindir:
        raise RuntimeError("apt-get installed postgresql but no pg_ctl is "
                           "under /usr/lib/postgresql/*/bin")
    return bindir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_owner_kwargs() -> dict:
    """Run PostgreSQL's tools as ``postgres`` when root, else as us."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(PG_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "env": dict(os.environ, HOME=entry.pw_dir)}


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A running throwaway PostgreSQL; yields a SQLAlchemy URL of an empty
    ``placement`` database on it."""
    import psycopg2

    bindir = install_postgres()
    owner = _as_owner_kwargs()
    # Under /tmp when root: the postgres user must reach the data dir, and
    # a TMPDIR under /root would not let it.
    base = tempfile.mkdtemp(prefix="nova-accel-pg-",
                            dir="/tmp" if owner else None)
    data, sockets = os.path.join(base, "data"), os.path.join(base, "run")
    os.makedirs(sockets)
    if owner:
        for path in (base, sockets):
            os.chown(path, owner["user"], owner["group"])
    port = free_port()
    log = os.path.join(base, "server.log")
    started = False
    try:
        subprocess.run([os.path.join(bindir, "initdb"), "-D", data, "-U",
                        PG_USER, "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, stdout=subprocess.DEVNULL,
                       **owner)
        subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data, "-l",
                        log, "-w", "-t", "60", "-o",
                        f"-p {port} -k {sockets} -c listen_addresses="
                        f"127.0.0.1 -c fsync=off", "start"],
                       check=True, stdout=subprocess.DEVNULL, **owner)
        started = True
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER,
                                dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DB_NAME}")
        conn.close()
        yield (f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{port}/"
               f"{DB_NAME}")
    except subprocess.CalledProcessError:
        if os.path.exists(log):
            with open(log) as f:
                sys.stderr.write(f.read())
        raise
    finally:
        if started:
            subprocess.run([os.path.join(bindir, "pg_ctl"), "-D", data,
                            "-m", "fast", "-w", "stop"],
                           stdout=subprocess.DEVNULL, **owner)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def placement_server(db_url: str, timeout: float = 60.0,
                     options: dict[str, dict] | None = None
                     ) -> Iterator[str]:
    """Placement's WSGI app on ``db_url`` served over HTTP in a child
    process, with ``options`` ({group: {option: value}}) set in its
    configuration; yields its endpoint URL."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                             db_url, json.dumps(options or {})],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        line = proc.stdout.readline()
        if not line.startswith("PORT ") or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"placement did not start: {line!r} "
                               f"{proc.stderr.read()[-2000:]}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/placement"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve(db_url: str, options: dict[str, dict]) -> None:
    import logging
    from wsgiref import simple_server

    from oslo_config import cfg
    from placement import conf as placement_conf
    from placement import db_api
    from placement import deploy
    from placement.db.sqlalchemy import migration

    logging.basicConfig(level=logging.WARNING)
    conf = cfg.ConfigOpts()
    placement_conf.register_opts(conf)
    conf.set_override("connection", db_url, group="placement_database")
    conf.set_override("auth_strategy", "noauth2", group="api")
    for group, values in options.items():
        for name, value in values.items():
            conf.set_override(name, value, group=group)
    conf([], project="placement", default_config_files=[])
    db_api.configure(conf)
    migration.upgrade("head")
    app = deploy.loadapp(conf)

    def under_prefix(environ, start_response):
        # Served under /placement, as behind a real web server.
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/placement"):
            start_response("404 Not Found", [("Content-Type",
                                              "text/plain")])
            return [b"not found\n"]
        environ["SCRIPT_NAME"] = "/placement"
        environ["PATH_INFO"] = path[len("/placement"):] or "/"
        return app(environ, start_response)

    class Quiet(simple_server.WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = simple_server.make_server("127.0.0.1", 0, under_prefix,
                                       handler_class=Quiet)
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
