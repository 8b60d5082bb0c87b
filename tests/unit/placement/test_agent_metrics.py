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

"""The agent's figures after a real round: the bundled sample host
scanned, published to placement's own code (its fixture) and its
allocations read, the textfile parsed back with prometheus_client's own
parser, and the same served over HTTP. In the first pytest run, without
nova: nova's eventlet would turn the HTTP server's thread green, as it
never is in the agent."""

import logging
import socket
import threading
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

from accel_inventory import agent
from accel_inventory import cache
from accel_inventory import cli
from accel_inventory import fragmentation
from accel_inventory import metrics
from accel_inventory import model
from accel_inventory import provider_tree
from accel_inventory import sample
from tests.common import placement_host
from tests.common.placement_builders import HOST, make_card

host = placement_host.host

FPGA_RC = "CUSTOM_ACCEL_FPGA"


def parse(text):
    """``{(name, frozenset(labels)): value}`` of a Prometheus text."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples}


def agent_round(host, tmp_path, **agent_opts):
    root = sample.build_sample_host(str(tmp_path / "sys"))
    lines = [f"{k} = {v}" for k, v in agent_opts.items()]
    with open(host.config_file, "a") as f:
        f.write("[agent]\n" + "\n".join(lines) + "\n")
    rc = cli.main(["--config-file", str(host.config_file), "agent", "--once",
                   "--sysfs-root", root])
    assert rc == 0
    return root


def fpga_regions(host):
    inv = cache.load(host.cache_path)
    [card] = [c for c in inv.cards if c.regions[0].resource_class
              == FPGA_RC]
    return inv, card, [provider_tree.provider_uuid(inv.hostname, r.id)
                       for r in card.regions]


def test_the_textfile_after_a_round_holds_cards_regions_and_host(
        host, tmp_path):
    path = tmp_path / "nova_accel.prom"
    root = agent_round(host, tmp_path, metrics_path=path)
    inv, card, regions = fpga_regions(host)
    # Two servers take 1 and 2 functions of the FPGA's first region and
    # one its whole third region: the round after sees them.
    for amount, rp in ((1, regions[0]), (2, regions[0]), (4, regions[2])):
        host.allocate(str(uuid.uuid4()), rp, amount, rc=FPGA_RC)
    assert cli.main(["--config-file", str(host.config_file), "agent",
                     "--once", "--sysfs-root", root]) == 0

    got = parse(path.read_text())

    def value(name, **labels):
        return got[(name, frozenset(labels.items()))]

    region0 = dict(host=HOST, card=card.id, region=card.regions[0].id,
                   resource_class=FPGA_RC, size="4")
    assert value("nova_accel_region_capacity_functions", **region0) == 4
    assert value("nova_accel_region_functions", state="used",
                 **region0) == 3
    assert value("nova_accel_region_functions", state="free",
                 **region0) == 1
    assert value("nova_accel_region_functions", state="reserved",
                 **region0) == 0
    assert value("nova_accel_region_whole_free", **region0) == 0
    region1 = dict(region0, region=card.regions[1].id)
    assert value("nova_accel_region_whole_free", **region1) == 1
    assert value("nova_accel_region_degraded", **region1) == 0
    card_labels = dict(host=HOST, card=card.id, kind="pci")
    assert value("nova_accel_card_capacity_functions", **card_labels) == 12
    assert value("nova_accel_card_functions", state="used",
                 **card_labels) == 7
    assert value("nova_accel_card_whole_free", **card_labels) == 0
    assert value("nova_accel_card_degraded", **card_labels) == 0
    assert value("nova_accel_host_whole_free_regions", host=HOST,
                 resource_class=FPGA_RC, size="4") == 1
    # The free function of region 0; region 2 is full, region 1 whole.
    assert value("nova_accel_host_fragmented_functions", host=HOST,
                 resource_class=FPGA_RC) == 1
    assert value("nova_accel_host_largest_request_functions", host=HOST,
                 resource_class=FPGA_RC) == 4
    assert value("nova_accel_agent_round_success", host=HOST) == 1
    # FGD's figure is the scheduler's function on the same host.
    fills = [row.fill for row in _rows(inv, host)]
    expected = fragmentation.host_fragmentation(
        fragmentation.room_of(fills), fragmentation.parse_task_mix(
            ["0.4:1", "0.2:2", "0.4:region4"]))
    assert value("nova_accel_host_fragmentation_functions",
                 host=HOST) == expected > 0
    # Every other card of the sample host is there too (VCA, GPU, sticks).
    kinds = {dict(labels)["kind"] for name, labels in got
             if name == "nova_accel_card_capacity_functions"}
    assert kinds == {"pci", "ippcie", "mdev", "usb"}


def _rows(inv, host):
    allocations = {}
    for card in inv.cards:
        for region in card.regions:
            rp = provider_tree.provider_uuid(inv.hostname, region.id)
            body = host.get(f"/resource_providers/{rp}/allocations")
            allocations[rp] = {c: a["resources"] for c, a in
                               body["allocations"].items()}
    return metrics.snapshot(inv, allocations, fragmentation.parse_task_mix(
        ["1:1"]), timestamp=0).regions


def test_a_failed_round_leaves_only_its_own_series(host, tmp_path):
    path = tmp_path / "nova_accel.prom"
    agent_round(host, tmp_path, metrics_path=path)
    assert any(name == "nova_accel_region_functions"
               for name, _ in parse(path.read_text()))
    # Placement gone: the round fails and says so, with no stale figures.
    host.config_file.write_text(host.config_file.read_text().replace(
        "endpoint = ", "endpoint = http://127.0.0.1:9/nowhere#"))
    root = str(tmp_path / "sys")
    assert cli.main(["--config-file", str(host.config_file), "agent",
                     "--once", "--sysfs-root", root]) == 1
    got = parse(path.read_text())
    assert {name for name, _ in got} == {
        "nova_accel_agent_round_success",
        "nova_accel_agent_round_timestamp_seconds"}
    assert got[("nova_accel_agent_round_success",
                frozenset({("host", HOST)}))] == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_running_agent_serves_the_same_figures_over_http(host, tmp_path):
    path = tmp_path / "nova_accel.prom"
    port = free_port()
    root = sample.build_sample_host(str(tmp_path / "sys"))
    with open(host.config_file, "a") as f:
        f.write(f"[agent]\nmetrics_path = {path}\nmetrics_port = {port}\n"
                f"metrics_address = 127.0.0.1\nwatch_devices = false\n")
    conf = host.load_conf()
    conf.set_override("sysfs_root", root, group="inventory")
    stop = threading.Event()
    served = []

    class Scrape:
        """The agent's event source: after the first round, scrape the
        port, then stop the agent."""

        def poll(self, timeout=None):
            if path.exists() and not served:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{port}/metrics") as r:
                    served.append(r.read().decode())
                stop.set()
            return None

    assert agent.run(conf, stop, events=Scrape()) == 1
    assert parse(served[0]) == parse(path.read_text())
    assert any(name == "nova_accel_host_fragmentation_functions"
               for name, _ in parse(served[0]))
    # Stopped: the port is closed again.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_a_bad_task_mix_is_one_line(host, tmp_path, capsys):
    with open(host.config_file, "a") as f:
        f.write("[agent]\ntask_mix = 0.5:lots\n")
    root = sample.build_sample_host(str(tmp_path / "sys"))
    assert cli.main(["--config-file", str(host.config_file), "agent",
                     "--once", "--sysfs-root", root]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[agent] task_mix: bad task mix " \
        "entry '0.5:lots'" in err


def test_a_metrics_folder_others_can_write_is_refused_in_one_line(
        host, tmp_path, capsys):
    # Root replaces the textfile through a temporary beside it: whoever
    # can write the folder could have root overwrite any file.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    path = shared / "nova_accel.prom"
    with open(host.config_file, "a") as f:
        f.write(f"[agent]\nmetrics_path = {path}\n")
    root = sample.build_sample_host(str(tmp_path / "sys"))
    assert cli.main(["--config-file", str(host.config_file), "agent",
                     "--once", "--sysfs-root", root]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{shared} is writable by its group or others" in err
    assert not path.exists() and list(shared.iterdir()) == []


def test_a_metrics_folder_opened_to_others_later_is_not_written(
        tmp_path, caplog):
    folder = tmp_path / "metrics"
    folder.mkdir(mode=0o755)
    path = folder / "nova_accel.prom"
    exporter = metrics.Exporter(str(path))
    snap = metrics.Snapshot(host="h", timestamp=0, ok=True)
    exporter.publish(snap)
    assert path.exists()
    before = path.read_text()
    path.unlink()
    folder.chmod(0o777)
    caplog.set_level(logging.WARNING)
    exporter.publish(snap)
    assert list(folder.iterdir()) == []
    [line] = [r.getMessage() for r in caplog.records]
    assert "Not writing the metrics" in line
    assert f"{folder} is writable by its group or others" in line
    folder.chmod(0o755)
    exporter.publish(snap)
    assert path.read_text() == before


def test_the_snapshot_of_a_degraded_card_has_nothing_free():
    card = make_card(1, regions=2, status=model.STATUS_LOST)
    inv = model.Inventory(hostname="h", cards=[card])
    allocations = {provider_tree.provider_uuid("h", r.id): {}
                   for r in card.regions}
    snap = metrics.snapshot(inv, allocations, fragmentation.parse_task_mix(
        ["1:region4"]), timestamp=0)
    assert [(r.fill.free, r.reserved, r.fill.whole_free, r.fill.degraded)
            for r in snap.regions] == [(0, 4, False, True)] * 2
    [figures] = snap.classes.values()
    assert figures.whole_free == {} and figures.fragmented == 0
    assert figures.degraded == 2
