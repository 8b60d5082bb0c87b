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

"""accel-sim refuses bad input before any work: exit 2, one line."""

import io
import json
import subprocess
import sys

import pytest

from nova_accel_weigher import sim

NODES = "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,P100\n"
UNTIMED_PODS = ("name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
                "p0,1000,1024,1,460\np1,1000,1024,2,1000\n")


def refused(capsys, *argv):
    """The one line accel-sim printed when it refused ``argv``."""
    with pytest.raises(SystemExit) as exit_:
        sim.main(list(argv), out=io.StringIO())
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("accel-sim: ")
    return lines[0]


@pytest.mark.parametrize("argv,expected", [
    (["--cluster", "homogeneous:0:3x4"], "HOSTS in 'homogeneous:0:3x4' "
     "must be a whole number from 1 to 1,000,000, not '0'"),
    (["--cluster", "homogeneous:2000000:3x4"], "HOSTS in "),
    (["--cluster", "homogeneous:1:99999x4"], "R (regions)"),
    (["--cluster", "homogeneous:1:1x999999999999"], "F (functions)"),
    (["--workload", "poisson:99999999999999"], "N in "),
    (["--cluster", "homogeneous:2:0x4"], "R (regions)"),
    (["--cluster", "homogeneous:2:3x-4"], "F (functions)"),
    (["--cluster", "homogeneous:abc"], "expected homogeneous:HOSTS:RxF"),
    (["--cluster", "homogeneous:3:4"], "expected homogeneous:HOSTS:RxF"),
    (["--cluster", "mixed:-2"], "HOSTS in 'mixed:-2'"),
    (["--cluster", "meeting:3"], "unknown cluster 'meeting:3'; expected "),
    (["--cluster", "cloud"], "unknown cluster 'cloud'"),
    (["--workload", "poisson:-5"], "N in 'poisson:-5'"),
    (["--workload", "poisson:10:abc"], "RATE in 'poisson:10:abc'"),
    (["--workload", "poisson:10:0"], "must be a number > 0"),
    (["--workload", "csv:"], "unknown workload 'csv:'"),
    (["--fill-to", "-1"], "argument --fill-to: invalid share (> 0, at most "
     "10) value: '-1'"),
    (["--fill-to", "0"], "--fill-to"),
    (["--fill-to", "inf"], "--fill-to"),
    (["--fill-to", "1e9"], "invalid share (> 0, at most 10) value"),
    (["--fill-to", "nan"], "--fill-to"),
    (["--weight-multiplier", "nan"], "argument --weight-multiplier: "
     "invalid finite number value: 'nan'"),
    (["--weight-multiplier", "x"], "--weight-multiplier"),
    (["--policies", "random,,fgd"], "unknown policies: (empty); expected"),
    (["--seed", "x"], "argument --seed: invalid int value"),
    (["--mode", "drain"], "argument --mode: invalid choice"),
    (["--policies", "best-fit,first"], "unknown policies: first; expected"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--cluster", "openb:/nonexistent/nodes.csv"],
     "cannot read openb node list /nonexistent/nodes.csv: No such file"),
    (["--plot", "/nonexistent/plot.png"],
     "--plot /nonexistent/plot.png: folder /nonexistent does not exist"),
])
def test_bad_spec_is_one_line_naming_it(capsys, argv, expected):
    assert expected in refused(capsys, *argv)


def test_openb_pods_without_times_fill_but_do_not_replay(tmp_path, capsys):
    nodes, pods = tmp_path / "nodes.csv", tmp_path / "pods.csv"
    nodes.write_text(NODES)
    pods.write_text(UNTIMED_PODS)
    args = ["--cluster", f"openb:{nodes}", "--workload", f"openb:{pods}",
            "--policies", "best-fit"]
    out = io.StringIO()
    assert sim.main(args + ["--mode", "fill", "--json"], out=out) == 0
    assert json.loads(out.getvalue())["policies"]["best-fit"][
        "utilisation"] > 0
    capsys.readouterr()
    line = refused(capsys, *args, "--mode", "replay")
    assert line == (f"accel-sim: openb pod list {pods} lacks the column(s) "
                    "creation_time, deletion_time; expected a header with "
                    "cpu_milli, memory_mib, num_gpu, gpu_milli, "
                    "creation_time, deletion_time")


@pytest.mark.parametrize("nodes,pods,expected", [
    ("sn,gpu\nn0,2\n", UNTIMED_PODS, "lacks the column(s) cpu_milli, "
     "memory_mib"),
    (NODES.replace(",2,", ",-2,"), UNTIMED_PODS,
     "nodes.csv:2: gpu must be a whole number >= 0, not '-2'"),
    (NODES.replace("64000", "lots"), UNTIMED_PODS,
     "nodes.csv:2: cpu_milli must be a whole number >= 0, not 'lots'"),
    (NODES.replace(",2,", ",0,"), UNTIMED_PODS, "has no accelerators"),
    (NODES, UNTIMED_PODS.replace(",2,1000", ",-1,1000"),
     "pods.csv:3: num_gpu must be a whole number >= 0, not '-1'"),
    (NODES, UNTIMED_PODS.replace(",460", ",half"),
     "pods.csv:2: gpu_milli must be a whole number >= 0, not 'half'"),
    (NODES, b"\xff\xfe\x00bad", "cannot read openb pod list"),
])
def test_bad_openb_files_are_one_line_naming_file_and_row(
        tmp_path, capsys, nodes, pods, expected):
    node_file, pod_file = tmp_path / "nodes.csv", tmp_path / "pods.csv"
    node_file.write_text(nodes)
    if isinstance(pods, bytes):
        pod_file.write_bytes(pods)
    else:
        pod_file.write_text(pods)
    assert expected in refused(
        capsys, "--cluster", f"openb:{node_file}", "--workload",
        f"openb:{pod_file}", "--mode", "fill")


@pytest.mark.parametrize("rows,expected", [
    ("functions\n1\n", "lacks the column(s) arrival, duration"),
    ("arrival,duration,functions\n0,10,0\n",
     "w.csv:2: functions must be a whole number >= 1, not '0'"),
    ("arrival,duration,functions\n0,-3,1\n",
     "w.csv:2: duration must be a number >= 0, not '-3'"),
    ("arrival,duration,functions,whole_region\n0,1,4,-1\n",
     "w.csv:2: whole_region must be a whole number >= 0, not '-1'"),
])
def test_bad_csv_workload(tmp_path, capsys, rows, expected):
    path = tmp_path / "w.csv"
    path.write_text(rows)
    assert expected in refused(capsys, "--workload", f"csv:{path}")


def test_plot_target_is_checked_before_the_run(tmp_path, capsys,
                                              monkeypatch):
    run = ("--cluster", "homogeneous:5:2x4", "--workload", "poisson:100")
    afile = tmp_path / "afile"
    afile.write_text("")
    assert refused(capsys, *run, "--plot", f"{afile}/p.png") == (
        f"accel-sim: --plot {afile}/p.png: folder {afile} is not a folder")
    assert refused(capsys, *run, "--plot", str(tmp_path)) == (
        f"accel-sim: --plot {tmp_path} is a folder; expected a file name")
    # Root may write anywhere, so the unwritable folder is what os.access
    # says of it.
    monkeypatch.setattr(sim.os, "access", lambda path, mode: False)
    assert refused(capsys, *run, "--plot", f"{tmp_path}/p.png") == (
        f"accel-sim: --plot {tmp_path}/p.png: folder {tmp_path} is not "
        "writable")
    monkeypatch.undo()
    monkeypatch.setattr(sim.importlib.util, "find_spec", lambda name: None)
    assert refused(capsys, *run, "--plot", f"{tmp_path}/p.png") == (
        "accel-sim: --plot needs matplotlib, which is not installed")


def test_console_script_prints_no_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "nova_accel_weigher.sim", "--cluster",
         "homogeneous:0:3x4"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == ("accel-sim: HOSTS in 'homogeneous:0:3x4' must "
                             "be a whole number from 1 to 1,000,000, not "
                             "'0'\n")


def test_help_names_every_policy_mode_and_openb_view(capsys):
    with pytest.raises(SystemExit) as exit_:
        sim.main(["--help"], out=io.StringIO())
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in sim.POLICIES + ("replay", "fill", "openb-milli:NODES.csv",
                                "openb:NODES.csv"):
        assert name in text
