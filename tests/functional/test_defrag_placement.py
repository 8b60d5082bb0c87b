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

"""accel-defrag against placement's own code (its fixture, SQLite): two
compute nodes whose cards our publisher put there, servers' allocations
as nova writes them (root VCPU, MEMORY_MB, DISK_GB and region
functions), the cluster view in both formats and its heatmap, and a
plan read from the allocations."""

import io
import json
import uuid

from accel_defrag import cli
from tests.common import placement_host
from tests.common.defrag_cloud import OTHER, Cloud
from tests.common.placement_builders import HOST, make_card
from tests.common.placement_host import RC

host = placement_host.host

def run(host, *argv):
    """accel-defrag on this placement, one request at a time (placement's
    fixture shares one SQLite connection between its requests)."""
    out = io.StringIO()
    rc = cli.main(["--config-file", str(host.config_file), "--workers", "1",
                   *argv], out=out)
    return rc, out.getvalue()


def fragmented_cloud(host):
    return Cloud(host).fragmented()


def test_the_view_per_host_and_class_in_json_and_table(host, tmp_path):
    fragmented_cloud(host)
    png = tmp_path / "fragmentation.png"
    rc, out = run(host, "fragmentation", "--format", "json", "--plot",
                  str(png))
    assert rc == 0
    view = json.loads(out)
    first, other = view["hosts"][HOST][RC], view["hosts"][OTHER][RC]
    assert (first["used"], first["capacity"]) == (4, 8)
    assert first["whole_free"] == {} and first["fragmented_functions"] == 4
    assert first["largest_request_functions"] == 3
    assert first["largest_whole_request"] == {"regions": 0, "size": 0}
    assert other["whole_free"] == {"4": 1}
    assert other["fragmented_functions"] == 1
    assert other["largest_request_functions"] == 4
    assert other["largest_whole_request"] == {"regions": 1, "size": 4}
    assert view["totals"][RC]["fragmented_functions"] == 5
    # The heatmap is a PNG.
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rc, out = run(host, "fragmentation")
    lines = out.splitlines()
    assert rc == 0 and lines[0].split()[:3] == ["HOST", "RESOURCE", "CLASS"]
    assert lines[1].split() == [HOST, RC, "2", "4/8", "-", "4", "3", "-"]
    assert lines[2].split() == [OTHER, RC, "2", "3/8", "1x4", "1", "4",
                                "1x", "region4"]
    assert f"{RC}: 1 whole free regions (1x4), 5 fragmented functions of " \
           f"9 free, 7/16 used" in out


def test_an_aggregate_by_uuid_narrows_the_view(host):
    cloud = fragmented_cloud(host)
    aggregate = str(uuid.uuid4())
    root = cloud.roots[OTHER]
    generation = host.get(f"/resource_providers/{root}")["generation"]
    host.put(f"/resource_providers/{root}/aggregates", {
        "aggregates": [aggregate],
        "resource_provider_generation": generation})
    rc, out = run(host, "fragmentation", "--format", "json", "--aggregate",
                  aggregate)
    assert rc == 0 and list(json.loads(out)["hosts"]) == [OTHER]


def test_a_plan_from_placement_names_the_move_and_its_command(host):
    cloud = fragmented_cloud(host)
    rc, out = run(host, "plan", "--free", "1", "--class", RC, "--size", "4",
                  "--format", "json")
    assert rc == 0
    plan = json.loads(out)
    [move] = plan["moves"]
    # s1 alone holds its region; s4's region has the tightest hole.
    assert move["server"] == cloud.servers["s1"]
    assert (move["from"], move["to"], move["how"]) == (HOST, OTHER, "cold")
    assert move["regions"][0]["to"]["uuid"] == cloud.regions[OTHER][0]
    assert move["frees"] == [{"uuid": cloud.regions[HOST][0],
                              "name": f"{HOST}:{make_card(1).regions[0].id}"}]
    assert move["commands"] == [
        f"openstack --os-compute-api-version 2.56 server migrate --host "
        f"{OTHER} --wait {cloud.servers['s1']}",
        f"openstack server migration confirm {cloud.servers['s1']}"]
    assert plan["before"] == {"whole_free_regions": 1,
                              "fragmented_functions": 5}
    assert plan["after"] == {"whole_free_regions": 2,
                             "fragmented_functions": 1}

    rc, out = run(host, "plan", "--free", "1", "--class", RC, "--size", "4")
    assert rc == 0
    assert "gain: 1 region(s) freed by 1 move(s) (1 cold); whole free " \
           "regions 1 -> 2, fragmented functions 5 -> 1" in out
    assert "CUSTOM_ACCEL_MOVE_COLD" in out


def test_a_target_out_of_reach_prints_the_best_and_exits_1(host, capsys):
    fragmented_cloud(host)
    rc, out = run(host, "plan", "--free", "3", "--class", RC, "--size", "4")
    assert rc == 1 and "plan: free 3" in out
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "of the 3 regions asked can be freed" \
        in err


def test_placement_down_and_bad_input_are_one_line(host, tmp_path, capsys):
    host.config_file.write_text(host.config_file.read_text().replace(
        "endpoint = ", "endpoint = http://127.0.0.1:9/nowhere#"))
    assert run(host, "fragmentation")[0] == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach placement" in err
    rc, _ = run(host, "plan", "--free", "0", "--class", RC, "--size", "4")
    assert rc == 2
    assert "expected a whole number, 1 or more" in capsys.readouterr().err
    rc, _ = run(host, "plan", "--free", "1", "--class", "vgpu", "--size",
                "4")
    assert rc == 2 and "custom resource class" in capsys.readouterr().err
    rc, _ = run(host, "fragmentation", "--plot", str(tmp_path / "no" / "x"))
    assert rc == 1 and "does not exist" in capsys.readouterr().err
