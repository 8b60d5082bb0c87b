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

"""accel-demo: the sample host through real placement and nova's handlers.

Placement's candidate order is deterministic but undefined, and changes
between runs here, so the first test checks what must hold for any order,
and the second fixes an order that spreads (emptiest region first) to show
stock nova failing where the filter does not.
"""

import io
import subprocess
import sys

import pytest

from nova_accel_weigher import demo

FPGA_CARD = "dsn-0011223344556677"
FPGA_REGIONS = {f"{FPGA_CARD}/r{i}" for i in range(3)}


def check_filtered(landings):
    first, second, third, whole = landings
    # 1, 2 and 1 functions share one region; the two whole regions are
    # the other two.
    assert len(first.regions) == 1
    assert first.regions == second.regions == third.regions
    assert set(whole.regions) == FPGA_REGIONS - set(first.regions)


def test_demo_prints_the_host_and_both_landings():
    out = io.StringIO()
    runs = demo.run(out)
    text = out.getvalue()
    assert f"card {FPGA_CARD} pci 1172:5000" in text
    assert "4. 2 whole regions of 4" in text
    check_filtered(runs["with AccelTopologyFilter"])
    stock = runs["stock nova"]
    small = stock[:3]
    assert all(landing is not None and len(landing.regions) == 1
               and set(landing.regions) <= FPGA_REGIONS for landing in small)
    # Placement's own capacity check: two whole regions are left only if
    # the first three requests shared one region.
    touched = {region for landing in small for region in landing.regions}
    assert (stock[3] is None) == (len(touched) > 1)
    assert "with AccelTopologyFilter: 4 of 4 requests placed" in text


@pytest.fixture
def spreading_placement(monkeypatch):
    """Placement answering emptiest region first (a legal order)."""
    original = demo.Placement.candidates

    def candidates(self, querystring):
        def used(candidate):
            return sum(
                self._json("GET", f"/resource_providers/{rp}/usages")[
                    "usages"].get(demo.FPGA_CLASS, 0)
                for rp in candidate["allocations"] if rp != self.root)
        return sorted(original(self, querystring), key=used)

    monkeypatch.setattr(demo.Placement, "candidates", candidates)


def test_stock_nova_strands_the_whole_regions_when_placement_spreads(
        spreading_placement):
    out = io.StringIO()
    runs = demo.run(out)
    check_filtered(runs["with AccelTopologyFilter"])
    stock = runs["stock nova"]
    assert len({region for landing in stock[:3]
                for region in landing.regions}) == 3
    assert stock[3] is None
    assert "stock nova: 3 of 4 requests placed" in out.getvalue()


@pytest.mark.parametrize("argv", [["--bogus"], ["extra"], ["-x", "1"],
                                  ["--help=yes"]])
def test_demo_rejects_arguments_in_one_line(argv):
    run = subprocess.run([sys.executable, "-m", "nova_accel_weigher.demo",
                          *argv], capture_output=True, text=True)
    assert run.returncode == 2, run
    assert run.stdout == ""
    [line] = run.stderr.splitlines()
    assert line.startswith("accel-demo: error: ") and "--help" in line
    assert "Traceback" not in run.stderr
