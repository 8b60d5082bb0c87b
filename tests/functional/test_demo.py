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

Placement's candidate order is deterministic but undefined, so the demo
replays both ways under 20 shuffled orders: the filter must place every
request in every order, and stock nova's count must be what its
landings say, in orders that do and do not scatter.
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


def test_demo_prints_the_host_and_both_ways_over_every_order():
    out = io.StringIO()
    runs = demo.run(out)
    text = out.getvalue()
    assert f"card {FPGA_CARD} pci 1172:5000" in text
    assert "4. 2 whole regions of 4" in text
    assert len(runs[demo.WITH_FILTER]) == len(runs[demo.STOCK]) == \
        demo.ORDERS
    for landings in runs[demo.WITH_FILTER]:
        check_filtered(landings)
    assert (f"with AccelTopologyFilter: placed all 4 requests in "
            f"{demo.ORDERS} of {demo.ORDERS} orders") in text
    placed = 0
    for stock in runs[demo.STOCK]:
        small = stock[:3]
        assert all(landing is not None and len(landing.regions) == 1
                   and set(landing.regions) <= FPGA_REGIONS
                   for landing in small)
        # Placement's own capacity check: two whole regions are left
        # only if the first three requests shared one region.
        touched = {region for landing in small for region in landing.regions}
        assert (stock[3] is None) == (len(touched) > 1)
        placed += stock[3] is not None
    assert (f"stock nova: placed all 4 requests in {placed} of "
            f"{demo.ORDERS} orders") in text
    # Shuffled orders scatter stock nova's small requests: in 20 orders
    # the chance that every one put all three into one region is nil.
    assert placed < demo.ORDERS
    assert "one in which stock nova did not place all four" in text


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
