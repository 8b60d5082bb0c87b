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

"""``accel-inventory`` on a cache: show, status, ack, forget, exit codes."""

import io
import json

import pytest

from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import cli
from accel_inventory import inventory
from accel_inventory import model
from tests.common.cache_helpers import every_cache_is_valid  # noqa: F401 (autouse)
from tests.common.cache_helpers import make_inventory

F0 = "dsn-0000000000000000/r0/f0"
F1 = "dsn-0000000000000000/r0/f1"
F5 = "dsn-0000000000000001/r1/f1"


def run(*argv):
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch):
    for name in ("SYSFS_ROOT", "CACHE_PATH", "HOSTNAME", "LOCK_TIMEOUT"):
        monkeypatch.delenv(f"OS_INVENTORY__{name}", raising=False)


@pytest.fixture
def path(tmp_path):
    """A cache of three cards: one moved, one lost and claimed, claims."""
    inv = make_inventory(cards=3)
    moved, lost = inv.cards[1], inv.cards[2]
    moved.status = model.STATUS_MOVED
    moved.previous_addresses = ["0000:05:00.0"]
    lost.status = model.STATUS_LOST
    boot = inventory.current_boot_id()
    inv = claims.record_claim(inv, model.Claim(
        consumer="vm-1", functions=[F0, F1], source="hook", running=True,
        boot_id=boot, domain_name="instance-0001"))
    inv = claims.record_claim(inv, model.Claim(
        consumer="vm-2", functions=[F5], source="hook", running=True,
        boot_id="a-previous-boot"))
    inv = claims.record_claim(inv, model.Claim(
        consumer="vm-3", functions=["dsn-0000000000000002/r0/f0"],
        source="placement"))
    p = str(tmp_path / "inventory.json")
    cache.save(p, inv)
    return p


def test_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("scan", "show", "status", "ack", "forget", "watch"):
        assert command in text
    assert "Exit codes" in text


@pytest.mark.parametrize("argv", [
    [], ["frobnicate"], ["show", "--format", "xml"], ["ack"],
    ["scan", "--bogus"], ["watch", "--debounce", "soon"],
])
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    # One line, pointing at the help (argparse printed the usage first).
    assert err.count("\n") == 1 and err.startswith("accel-inventory")
    assert "error: " in err and "--help'" in err


def test_show_json_is_the_cache_document(path):
    code, out = run("show", "--cache", path, "--format", "json")
    assert code == 0
    document = json.loads(out)
    assert cache.schema_errors(document) == []
    assert model.from_dict(document) == cache.load(path)
    card = document["cards"][0]
    for key in ("id", "kind", "vendor_id", "product_id", "serial",
                "identity_source", "address", "previous_addresses",
                "numa_node", "status", "regions"):
        assert key in card
    function = card["regions"][0]["functions"][0]
    assert function == {"id": F0, "address": "0000:10:01.0",
                        "claimed_by": "vm-1", "attrs": {"vf_index": 0}}


def test_show_tree_draws_host_numa_card_region_function(path):
    code, out = run("show", "--cache", path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("host compute-1 (scanned 2023-11-14 ")
    assert lines[1] == "|-- NUMA node 0"
    assert lines[2].startswith("|   |-- card dsn-0000000000000000 pci "
                               "1172:5052 at 0000:10:00.0 [ok] identity dsn")
    assert lines[3] == ("|   |   |-- region 0 dsn-0000000000000000/r0 "
                        "CUSTOM_ACCEL_PCI_1172_5052 at 0000:10:00.0 "
                        "(2/4 claimed)")
    assert lines[4] == (f"|   |   |   |-- f0 {F0} at 0000:10:01.0 claimed "
                        f"by vm-1 (instance-0001), running")
    assert "|   |   |   `-- f3 dsn-0000000000000000/r0/f3 at 0000:10:01.3 " \
           "free" in lines
    assert any("NUMA node 1" in line for line in lines)
    assert any("[moved]" in line and "was at 0000:05:00.0" in line
               for line in lines)
    assert any(F5 in line and "stale: running in a previous boot" in line
               for line in lines)
    assert any("claimed by vm-3, stopped" in line for line in lines)


def test_status_names_what_needs_an_operator(path):
    code, out = run("status", "--cache", path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "host: compute-1"
    assert lines[2] == "cards: 3 (1 ok, 1 moved, 1 lost)"
    assert lines[3] == "functions: 24, claimed 4"
    assert lines[4] == "claims: 3 (1 running, 1 from a previous boot)"
    assert any(line.startswith("moved: dsn-0000000000000001")
               and "accel-inventory ack dsn-0000000000000001" in line
               for line in lines)
    assert any(line.startswith("lost: dsn-0000000000000002")
               and "claimed by vm-3" in line for line in lines)
    assert any(line.startswith("stale claim: vm-2") for line in lines)


def test_ack_a_moved_card(path):
    code, out = run("ack", "--cache", path, "dsn-0000000000000001")
    assert (code, out) == (0, "acknowledged dsn-0000000000000001: ok "
                              "(was moved)\n")
    card = cache.load(path).card("dsn-0000000000000001")
    assert card.status == model.STATUS_OK
    assert card.previous_addresses == ["0000:05:00.0"]


def test_ack_a_lost_card_is_refused(path, capsys):
    before = cache.load(path)
    assert cli.main(["ack", "--cache", path, "dsn-0000000000000002"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("accel-inventory: error: card "
                          "dsn-0000000000000002 is lost")
    assert err.count("\n") == 1
    assert cache.load(path) == before


def test_forget_refuses_a_claimed_card_then_forgets_it(path, capsys):
    card = "dsn-0000000000000002"
    assert cli.main(["forget", "--cache", path, card]) == 1
    err = capsys.readouterr().err
    assert "still claimed by vm-3" in err and "release" in err
    assert cache.load(path).card(card) is not None
    cache.update(path, lambda inv: claims.release_claim(inv, "vm-3"))
    code, out = run("forget", "--cache", path, card)
    assert (code, out) == (0, f"forgot lost card {card}\n")
    assert cache.load(path).card(card) is None


def test_forget_refuses_a_present_card(path, capsys):
    assert cli.main(["forget", "--cache", path,
                     "dsn-0000000000000000"]) == 1
    assert "is ok, not lost" in capsys.readouterr().err


def test_unknown_card_is_an_operational_error(path, capsys):
    assert cli.main(["ack", "--cache", path, "dsn-nope"]) == 1
    err = capsys.readouterr().err
    assert "no card dsn-nope" in err and "dsn-0000000000000000" in err


def test_missing_cache_says_scan_first(tmp_path, capsys):
    missing = str(tmp_path / "none.json")
    for argv in (["show", "--cache", missing], ["status", "--cache", missing],
                 ["ack", "--cache", missing, "x"]):
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
        assert "run 'accel-inventory scan' first" in err
        assert err.count("\n") == 1


def test_corrupt_cache_without_good_copy_is_one_line(tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    bad = tmp_path / "broken" / "inventory.json"
    bad.write_text("{")
    assert cli.main(["show", "--cache", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err


def test_cache_path_from_config_file_and_env(path, tmp_path, monkeypatch):
    conf_file = tmp_path / "nova-accel.conf"
    conf_file.write_text(f"[inventory]\ncache_path = {path}\n")
    code, out = run("--config-file", str(conf_file), "status")
    assert code == 0 and f"cache: {path} " in out
    monkeypatch.setenv("OS_INVENTORY__CACHE_PATH", path)
    code, out = run("status")
    assert code == 0 and f"cache: {path} " in out
    # The flag wins over both.
    code, out = run("--config-file", str(conf_file), "status", "--cache",
                    str(tmp_path / "other.json"))
    assert code == 1


def test_missing_config_file_is_an_operational_error(tmp_path, capsys):
    assert cli.main(["--config-file", str(tmp_path / "nope.conf"),
                     "status"]) == 1
    assert "configuration" in capsys.readouterr().err


def test_lock_timeout_is_an_operational_error(path, capsys, monkeypatch):
    monkeypatch.setenv("OS_INVENTORY__LOCK_TIMEOUT", "0.1")
    with cache.locked(path):
        # The lock is re-entrant only in this thread; another process
        # would wait. Simulate the other process with a fresh thread.
        import threading
        result = []
        t = threading.Thread(target=lambda: result.append(cli.main(
            ["ack", "--cache", path, "dsn-0000000000000001"])))
        t.start()
        t.join(10)
    assert result == [1]
    assert "still held by process" in capsys.readouterr().err


def change(status, old=None, new=None, message=""):
    # The fields of identity.Change, as the contract names them.
    import types
    return types.SimpleNamespace(card_id="dsn-00000000000000aa",
                                 status=status, old_address=old,
                                 new_address=new, message=message)


@pytest.mark.parametrize("c, line", [
    (change("moved", "0000:3b:00.0", "0000:3c:00.0"),
     "moved dsn-00000000000000aa 0000:3b:00.0 -> 0000:3c:00.0"),
    (change("added", None, "0000:3b:00.0", "new card"),
     "added dsn-00000000000000aa at 0000:3b:00.0: new card"),
    (change("lost", "3-1.2", None), "lost dsn-00000000000000aa was at 3-1.2"),
    (change("ambiguous", None, "0000:05:00.0", "same identity as x"),
     "ambiguous dsn-00000000000000aa at 0000:05:00.0: same identity as x"),
])
def test_change_lines(c, line):
    assert cli.change_line(c) == line


def test_tree_puts_cards_without_numa_node_last():
    inv = make_inventory(cards=3)
    inv.cards[0].numa_node = None
    lines = cli.render_tree(inv, "boot")
    nodes = [line for line in lines if "NUMA node" in line]
    assert nodes == ["|-- NUMA node 0", "|-- NUMA node 1",
                     "`-- NUMA node unknown"]
    empty = model.Inventory(hostname="h")
    assert cli.render_tree(empty, "boot")[1:] == [
        "`-- no accelerators found"]
