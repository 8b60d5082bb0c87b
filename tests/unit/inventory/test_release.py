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

"""No tenant gets another's leftovers: a function a consumer ran with and
let go is never handed on before it is clean (reset through sysfs, an
mdev made again, the profile's command) or an operator cleared it; it is
reserved in placement meanwhile.

Hardware is the sample host's fake sysfs (``FakeSysfs``): a VF has the
``reset`` attribute the kernel makes for a function it can reset, and
what the agent writes there stays in the file.
"""

import os
import sys

import pytest

from accel_inventory import cache, claim_sync, claims, cli, identity
from accel_inventory import inventory, model, profiles, provider_tree
from accel_inventory import release, sample, sysfs
from tests.common.cache_helpers import every_cache_is_valid  # noqa: F401 (autouse)

BOOT = "boot-1"
A = "aaaaaaaa-0000-4000-8000-000000000001"
B = "bbbbbbbb-0000-4000-8000-000000000002"


@pytest.fixture
def host(tmp_path):
    root = sample.build_sample_host(str(tmp_path / "sys"))
    found = sysfs.scan_cards(root, profiles=profiles.load_profiles(None))
    inv, _ = identity.reconcile(None, found.cards, "compute1")
    return {"root": root, "inv": inv, "fs": sample.FakeSysfs(root)}


def card(inv, kind):
    return next(c for c in inv.cards if c.kind == kind)


def region_uuid(inv, region):
    return provider_tree.provider_uuid(inv.hostname, region.id)


def ran(inv, consumer, functions):
    """``consumer`` holds ``functions`` by a placement claim, and its
    domain ran with them (the hook or the attach worker said so)."""
    return claims.record_claim(inv, model.Claim(
        consumer=consumer, functions=functions, source="placement",
        running=False, boot_id=BOOT))


def held(inv, region, consumers):
    """Placement's holdings on ``region``: consumer -> functions."""
    return {region.id: consumers}


def test_a_released_function_is_not_handed_on_in_the_same_sync(host):
    inv = host["inv"]
    region = card(inv, "pci").regions[0]
    fids = [f.id for f in region.functions]
    inv = ran(inv, A, fids)
    # A was deleted and B allocated the whole region in the same minute:
    # the sync sees both at once.
    result = claim_sync.assign(inv, held(inv, region, {B: 4}), BOOT)
    assert A not in result.inventory.claims
    assert claims.functions_of(result.inventory, B) == []
    assert result.released == fids
    assert {f: e.state for f, e in result.inventory.cleaning.items()} == {
        f: model.CLEANING_PENDING for f in fids}
    assert any("only 0 more are free" in p for p in result.problems)
    # Placement reserves them meanwhile.
    [inventory_] = provider_tree.region_inventories(
        card(inv, "pci"), region, result.inventory.cleaning).values()
    assert inventory_["reserved"] == 4


def test_a_claim_that_never_ran_leaves_nothing_to_clean(host):
    inv = host["inv"]
    region = card(inv, "pci").regions[0]
    fid = region.functions[0].id
    inv = claims.record_claim(inv, model.Claim(
        consumer=A, functions=[fid], source="placement"))
    result = claim_sync.assign(inv, held(inv, region, {B: 1}), BOOT)
    assert result.inventory.cleaning == {}
    assert claims.functions_of(result.inventory, B) == [fid]


def test_reset_cleans_a_vf_through_sysfs_then_it_is_free(host):
    inv = host["inv"]
    pci = card(inv, "pci")
    function = pci.regions[0].functions[0]
    inv = ran(inv, A, [function.id])
    inv = claim_sync.assign(inv, held(inv, pci.regions[0], {}), BOOT
                            ).inventory
    reset = host["fs"].path("bus", "pci", "devices", function.address,
                            "reset")
    assert open(reset).read() == ""
    outcomes = release.clean(host["root"], inv, release.BY_DEFAULT)
    assert outcomes == {function.id: None}
    assert open(reset).read() == "1"
    inv = release.settle(inv, outcomes)
    assert inv.cleaning == {}
    result = claim_sync.assign(inv, held(inv, pci.regions[0], {B: 1}), BOOT)
    assert claims.functions_of(result.inventory, B) == [function.id]


def test_a_function_without_a_reset_is_held_with_the_reason(host):
    inv = host["inv"]
    pci = card(inv, "pci")
    function = pci.regions[0].functions[0]
    reset = host["fs"].path("bus", "pci", "devices", function.address,
                            "reset")
    os.unlink(reset)  # the kernel offers no reset for this one
    inv = ran(inv, A, [function.id])
    inv = claim_sync.assign(inv, held(inv, pci.regions[0], {}), BOOT
                            ).inventory
    inv = release.settle(inv, release.clean(host["root"], inv,
                                            release.BY_DEFAULT))
    entry = inv.cleaning[function.id]
    assert (entry.state, entry.after) == (model.CLEANING_HELD, A)
    assert f"the kernel offers no reset for {function.address}" in \
        entry.reason
    # Nobody gets it, however often the sync runs, until it is cleared.
    for _ in range(2):
        inv = claim_sync.assign(inv, held(inv, pci.regions[0], {B: 4}),
                                BOOT).inventory
    assert function.id not in claims.functions_of(inv, B)
    with pytest.raises(claims.ClaimError, match="is not clean yet"):
        claims.record_claim(inv, model.Claim(consumer=B, functions=[
            function.id], source="hook"))
    inv, cleared = inventory.clear(inv, pci.regions[0].id)
    assert [e.function for e in cleared] == [function.id]
    inv = claim_sync.assign(inv, held(inv, pci.regions[0], {B: 4}),
                            BOOT).inventory
    assert function.id in claims.functions_of(inv, B)


def test_an_mdev_is_removed_and_made_again(host, monkeypatch):
    inv = host["inv"]
    gpu = card(inv, "mdev")
    function = gpu.regions[0].functions[0]
    assert function.address == "4b20d080-1b54-4048-85b3-a6a62d165c01"
    inv = ran(inv, A, [function.id])
    inv = claim_sync.assign(inv, held(inv, gpu.regions[0], {}), BOOT
                            ).inventory
    assert release.clean(host["root"], inv, release.BY_DEFAULT) == {
        function.id: None}
    remove = host["fs"].path("bus", "mdev", "devices", function.address,
                             "remove")
    create = host["fs"].path("class", "mdev_bus", gpu.address,
                             "mdev_supported_types", "nvidia-222", "create")
    assert open(remove).read() == "1"
    assert open(create).read() == function.address


def test_a_usb_stick_is_held_by_default(host):
    inv = host["inv"]
    stick = card(inv, "usb")
    fid = stick.functions()[0].id
    inv = ran(inv, A, [fid])
    inv = claim_sync.assign(inv, held(inv, stick.regions[0], {}), BOOT
                            ).inventory
    inv = release.settle(inv, release.clean(host["root"], inv,
                                            release.BY_DEFAULT))
    assert inv.cleaning[fid].state == model.CLEANING_HELD
    assert "nothing in sysfs resets a usb device" in inv.cleaning[fid].reason


def test_a_vca_node_is_held_for_an_operator_by_its_profile(host):
    inv = host["inv"]
    node = card(inv, "ippcie")
    fid = node.functions()[0].id
    policy_of = profiles.release_policies(profiles.load_profiles(None))
    inv = ran(inv, A, [fid])
    inv = claim_sync.assign(inv, held(inv, node.regions[0], {}), BOOT,
                            policy_of).inventory
    entry = inv.cleaning[fid]
    assert entry.state == model.CLEANING_HELD
    assert "on_release: hold" in entry.reason
    # Nothing for the agent to do: an operator boots the node afresh.
    assert release.clean(host["root"], inv, policy_of) == {}


def test_none_frees_at_once(host):
    inv = host["inv"]
    pci = card(inv, "pci")
    fid = pci.regions[0].functions[0].id
    stateless = release.policies({pci.profile: release.parse("none", "p")})
    inv = ran(inv, A, [fid])
    inv = claim_sync.assign(inv, held(inv, pci.regions[0], {}), BOOT,
                            stateless).inventory
    assert inv.cleaning == {}


@pytest.mark.parametrize("code, held_", [(0, False), (3, True)])
def test_a_profiles_command_unloads_and_says_whether_it_did(host, tmp_path,
                                                            code, held_):
    inv = host["inv"]
    pci = card(inv, "pci")
    function = pci.regions[0].functions[0]
    record = tmp_path / "argv"
    command = release.parse({"command": [
        sys.executable, "-c",
        f"import sys; open({str(record)!r}, 'w').write(' '.join("
        f"sys.argv[1:])); sys.exit({code})",
        "{address}", "{region}", "{function}", "{card}"], "timeout": 30},
        "profile")
    policy_of = release.policies({pci.profile: command})
    inv = ran(inv, A, [function.id])
    inv = claim_sync.assign(inv, held(inv, pci.regions[0], {}), BOOT,
                            policy_of).inventory
    outcomes = release.clean(host["root"], inv, policy_of)
    assert record.read_text() == (f"{function.address} {pci.regions[0].id} "
                                  f"{function.id} {pci.id}")
    assert (outcomes[function.id] is not None) == held_
    if held_:
        assert f"exited {code}" in outcomes[function.id]


def test_a_command_that_hangs_is_stopped_and_the_function_held(host):
    inv = host["inv"]
    pci = card(inv, "pci")
    fid = pci.regions[0].functions[0].id
    policy_of = release.policies({pci.profile: release.parse(
        {"command": [sys.executable, "-c", "import time; time.sleep(60)"],
         "timeout": 0.5}, "p")})
    inv = ran(inv, A, [fid])
    inv = claim_sync.assign(inv, held(inv, pci.regions[0], {}), BOOT,
                            policy_of).inventory
    assert "did not finish within 0.5 s" in release.clean(
        host["root"], inv, policy_of)[fid]


@pytest.mark.parametrize("value", [
    "reboot", 3, [], {"command": []}, {"command": "fpgaconf"},
    {"command": ["x"], "timeout": 0}, {"command": ["x"], "timeout": True},
    {"command": ["x", "{bus}"]}, {"command": ["x"], "retries": 2}])
def test_a_bad_on_release_is_one_line_naming_the_profile(value):
    with pytest.raises(profiles.ProfileError, match="p.json: on_release"):
        profiles.parse({"name": "p", "match": ["1172:5000"],
                        "resource_class": "CUSTOM_ACCEL_FPGA",
                        "on_release": value}, "p.json")


def test_a_rescan_keeps_what_waits_to_be_cleaned(host):
    inv = host["inv"]
    fid = card(inv, "pci").regions[0].functions[0].id
    inv = release.mark(inv, {fid: A}, release.BY_DEFAULT, now=5.0)
    rescanned, _ = identity.reconcile(inv, card_list(host), "compute1")
    assert inventory.keep_claims(inv, rescanned).cleaning == inv.cleaning


def card_list(host):
    return sysfs.scan_cards(host["root"],
                            profiles=profiles.load_profiles(None)).cards


# -- the operator's side: status, show, clear ---------------------------

@pytest.fixture
def cached(host, tmp_path, monkeypatch):
    path = str(tmp_path / "inventory.json")
    inv = host["inv"]
    fids = [f.id for f in card(inv, "pci").regions[1].functions[:2]]
    inv = release.mark(inv, {fids[0]: A}, release.BY_DEFAULT, now=0.0)
    inv = release.settle(inv, {fids[0]: "the kernel offers no reset"})
    inv = release.mark(inv, {fids[1]: A}, release.BY_DEFAULT, now=0.0)
    cache.save(path, inv)
    config = tmp_path / "nova-accel.conf"
    config.write_text(f"[inventory]\nsysfs_root = {host['root']}\n"
                      f"cache_path = {path}\nhostname = compute1\n")
    monkeypatch.setenv("NOVA_ACCEL_CONFIG", str(config))
    return path, fids


def test_status_and_show_name_what_waits_and_how_to_end_it(cached, capsys):
    path, (held_fid, pending_fid) = cached
    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "waiting to be cleaned: 2 (1 held for an operator)" in out
    assert (f"held: {held_fid} (released by {A} at 1970-01-01 00:00:00 "
            f"UTC): the kernel offers no reset; clean it, then "
            f"'accel-inventory clear {held_fid}'") in out
    assert f"cleaning: {pending_fid} (released by {A}" in out
    assert cli.main(["show"]) == 0
    out = capsys.readouterr().out
    assert f"{held_fid} at " in out and (
        f"held for cleaning after {A}: the kernel offers no reset") in out
    assert f"being cleaned after {A}" in out


def test_clear_lets_them_go_and_says_so(cached, capsys):
    path, fids = cached
    region = fids[0].rsplit("/", 1)[0]
    assert cli.main(["clear", region]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"cleared {fid} (released by {A}, {state}); placement "
                   f"offers it again at the agent's next round"
                   for fid, state in zip(fids, ["held", "pending"],
                                         strict=True)]
    assert cache.load(path).cleaning == {}


def test_clear_of_what_does_not_wait_is_one_line(cached, capsys):
    path, fids = cached
    before = open(path, "rb").read()
    assert cli.main(["clear", fids[0], "dsn-nothing/r0/f0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "nothing of dsn-nothing/r0/f0 waits to be cleaned" in err
    # All or nothing: the first one is not cleared either.
    assert open(path, "rb").read() == before
