"""``accel-inventory scan`` and ``show --sample`` on FakeSysfs trees."""

import io
import json

from accel_inventory import cache
from accel_inventory import claims
from accel_inventory import cli
from accel_inventory import model
from accel_inventory import sample
from cache_helpers import assert_valid_cache
from cache_helpers import every_cache_is_valid  # noqa: F401 (autouse)

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
