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

"""``accel-inventory scan`` and ``show --sample`` on FakeSysfs trees."""

import io
import json

from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import cli
from accel_inventory import model
from accel_inventory import sample
from tests.common.cache_helpers import assert_valid_cache
from tests.common.cache_helpers import every_cache_is_valid  # noqa: F401 (autouse)

DSN = 0x0011223344556677
CARD = f"dsn-{DSN:016x}"


def run(*argv):
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def test_scan_move_scan_prints_moved_and_keeps_claims(tmp_path):
    first, second = tmp_path / "sys1", tmp_path / "sys2"
    sample.FakeSysfs(str(first)).add_pci("0000:3b:00.0", "1172", "5000",
                                         dsn=DSN)
    sample.FakeSysfs(str(second)).add_pci("0000:3c:00.0", "1172", "5000",
                                          dsn=DSN)
    path = str(tmp_path / "inventory.json")
    code, out = run("scan", "--sysfs-root", str(first), "--cache", path)
    assert code == 0
    added = out
    assert added.startswith(f"added {CARD} at 0000:3b:00.0")
    assert len(added.splitlines()) == 1
    assert_valid_cache(path)
    fid = model.function_id(CARD, 0, 0)
    cache.update(path, lambda inv: claims.record_claim(inv, model.Claim(
        consumer="vm-1", functions=[fid], source="hook")))
    # Unchanged host: the card stays "added" until acknowledged.
    code, out = run("scan", "--sysfs-root", str(first), "--cache", path)
    assert code == 0
    assert out.startswith(f"added {CARD} at 0000:3b:00.0: awaiting")
    code, out = run("scan", "--sysfs-root", str(second), "--cache", path)
    assert code == 0
    assert out.startswith(f"moved {CARD} 0000:3b:00.0 -> 0000:3c:00.0")
    inv = cache.load(path, validate=True)
    assert inv.card(CARD).address == "0000:3c:00.0"
    assert claims.functions_of(inv, "vm-1") == [fid]
    assert inv.function_index()[fid][2].claimed_by == "vm-1"
    assert run("ack", "--cache", path, CARD)[0] == 0
    assert cache.load(path).card(CARD).status == model.STATUS_OK


def test_show_sample_works_anywhere(tmp_path):
    code, out = run("show", "--sample")
    assert code == 0
    assert out.startswith("host sample-host ")
    assert "CUSTOM_ACCEL_" in out
    code, out = run("show", "--sample", "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert cache.schema_errors(document) == []
    assert {c["kind"] for c in document["cards"]} == {
        "pci", "mdev", "usb", "ippcie"}


def test_scan_of_a_root_that_is_not_sysfs_keeps_the_cache(tmp_path,
                                                          capsys):
    root = tmp_path / "sys"
    sample.FakeSysfs(str(root)).add_pci("0000:3b:00.0", "1172", "5000",
                                        dsn=DSN)
    path = tmp_path / "inventory.json"
    assert run("scan", "--sysfs-root", str(root), "--cache", str(path))[0] \
        == 0
    before = path.read_bytes()
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    for wrong in (tmp_path / "missing", tmp_path / "empty"):
        assert run("scan", "--sysfs-root", str(wrong), "--cache",
                   str(path)) == (1, "")
        err = capsys.readouterr().err
        assert err == (f"accel-inventory: error: [inventory] sysfs_root "
                       f"{wrong} has no bus/pci: not a sysfs tree; nothing "
                       f"scanned and the cache is unchanged\n")
        assert path.read_bytes() == before


def test_the_agent_goes_on_after_a_round_on_a_root_that_is_not_sysfs(
        tmp_path, caplog):
    import logging
    import threading

    from accel_inventory import agent
    from accel_inventory import conf as inventory_conf
    from accel_inventory import placement

    config = tmp_path / "a.conf"
    config.write_text(f"[inventory]\nsysfs_root = {tmp_path / 'missing'}\n"
                      f"cache_path = {tmp_path / 'inventory.json'}\n")
    conf = inventory_conf.load(["--config-file", str(config)])
    inventory_conf.register_placement_opts(conf)
    stop = threading.Event()

    class OneEvent:
        def poll(self, timeout=None):
            stop.set()
            return "add pci"

    caplog.set_level(logging.ERROR, logger="accel_inventory.agent")
    publisher = placement.Publisher(placement.Client(adapter=None))
    assert agent.run(conf, stop, publisher=publisher, events=OneEvent()) >= 1
    [record] = caplog.records
    assert "has no bus/pci: not a sysfs tree" in record.getMessage()
    assert record.exc_info is None  # one line, no traceback
    assert not (tmp_path / "inventory.json").exists()


def test_watch_and_agent_refuse_a_root_that_is_not_sysfs_at_start(
        tmp_path, capsys):
    for command in ("watch", "agent"):
        assert run(command, "--sysfs-root", str(tmp_path / "missing"),
                   "--cache", str(tmp_path / "inventory.json")) == (1, "")
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not a sysfs tree" in err
    assert not (tmp_path / "inventory.json").exists()
