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

"""Prove nova-accel from its built wheel, installed as operators install it.

``tox -e packaging`` (in README's test command, so in CI) builds the sdist
and, from it, the wheel, then installs the wheel (never the source tree)
into two clean virtual environments:

- a scheduler host's: nova beside the wheel with no extra; nova's own
  filter and weigher loaders must find ``AccelTopologyFilter`` and
  ``AccelPackingWeigher`` by the names README's nova.conf gives them,
  and nova-api's extra spec validators ours (``NUMA_AFFINITY_SPEC``);
- a compute host's: nova beside the wheel with its ``[compute]`` extra;
  nova's own driver loader must load the compute driver by its nova.conf
  name (``COMPUTE_DRIVER``) from the one module the wheel puts into nova's
  package, which uninstalling the wheel removes, and nothing of nova's;
  every console
  script the wheel declares must answer ``--help``, ``accel-libvirt-hook
  --install`` must write a working hook, and the hook's fast path (a
  domain with no accelerator, every operation libvirt calls it for) must
  import nothing outside the standard library and the hook's package, and
  the agent's systemd unit (``etc/systemd/``), pointed at this venv, must
  pass ``systemd-analyze verify``.

Each step prints what it checked; the first failure is one line naming the
step, and the exit code is 1.
"""

import argparse
import configparser
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from nova_accel_compute import COMPUTE_DRIVER  # noqa: E402

# The one file of the wheel inside nova's package (never an __init__.py).
NOVA_SHIM = "nova/virt/" + COMPUTE_DRIVER.split(".")[0] + ".py"
FILTER = "nova_accel_weigher.filters.AccelTopologyFilter"
NUMA_AFFINITY_SPEC = "nova_accel:numa_affinity_policy"
WEIGHER = "nova_accel_weigher.weighers.AccelPackingWeigher"
PLAIN_DOMAIN = b"""<domain type='qemu'><name>plain</name>
<uuid>0b9ad6e5-0d51-4d43-9b6c-3a7e6f0f4a10</uuid>
<memory>65536</memory><os><type>hvm</type></os>
<devices><interface type='network'><source network='default'/>
</interface></devices></domain>"""
# What libvirt runs a qemu hook for over a domain's life.
HOOK_CALLS = [("prepare", "begin"), ("start", "begin"), ("started", "begin"),
              ("stopped", "end"), ("release", "end"), ("migrate", "begin"),
              ("restore", "begin"), ("reconnect", "begin"),
              ("attach", "begin")]
FAST_PATH_PROBE = """
import io, json, sys
before = set(sys.modules)
from libvirt_hooks import common, hook
xml = sys.stdin.buffer.read()
codes = [hook.main(["plain", op, sub, "-"], stdin=io.BytesIO(xml))
         for op, sub in json.loads(sys.argv[1])]
foreign = sorted(m for m in set(sys.modules) - before
                 if m.split(".")[0] not in sys.stdlib_module_names
                 and m.split(".")[0] != "libvirt_hooks"
                 and m not in common.FAST_PATH_INVENTORY)
print(json.dumps({"codes": codes, "foreign": foreign}))
"""


class CheckFailed(Exception):
    pass


def run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise CheckFailed(f"{' '.join(cmd[:3])} ... exited "
                          f"{done.returncode}: {' '.join(tail)}")
    return done.stdout


def venv(path: str, *requirements: str) -> str:
    run([sys.executable, "-m", "venv", path])
    python = os.path.join(path, "bin", "python")
    run([python, "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", *requirements])
    return python


def pinned(name: str) -> str:
    with open(os.path.join(ROOT, "test-requirements.txt")) as f:
        for line in f:
            if re.match(rf"{re.escape(name)}\s*[=<>!~]", line):
                return line.split("#")[0].strip()
    raise CheckFailed(f"test-requirements.txt pins no {name}")


def build(out: str) -> str:
    run([sys.executable, "-m", "build", "--outdir", out, ROOT])
    sdists = glob.glob(os.path.join(out, "*.tar.gz"))
    wheels = glob.glob(os.path.join(out, "*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        raise CheckFailed(f"build made {sdists + wheels}, expected one "
                          "sdist and one wheel")
    with zipfile.ZipFile(wheels[0]) as z:
        in_nova = [n for n in z.namelist() if n.startswith("nova/")]
    if in_nova != [NOVA_SHIM]:
        raise CheckFailed(f"the wheel puts {in_nova} into nova's package, "
                          f"expected only {NOVA_SHIM}")
    print(f"built {os.path.basename(sdists[0])} and, from it, "
          f"{os.path.basename(wheels[0])} (of nova's package, only "
          f"{NOVA_SHIM})")
    return wheels[0]


def console_scripts(wheel: str) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist()
                    if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser()
        parser.read_string(z.read(name).decode())
    return sorted(parser["console_scripts"])


def check_scheduler_role(wheel: str, work: str) -> None:
    python = venv(os.path.join(work, "scheduler"), pinned("nova"), wheel)
    probe = (
        "import json, nova_accel_weigher\n"
        "from nova.scheduler import filters, weights\n"
        "f = filters.HostFilterHandler().get_matching_classes(\n"
        f"    [{FILTER!r}])\n"
        "w = weights.HostWeightHandler().get_matching_classes(\n"
        f"    [{WEIGHER!r}])\n"
        "from nova.api.validation.extra_specs import validators\n"
        "validators.load_validators()\n"
        "print(json.dumps([nova_accel_weigher.__file__,\n"
        "                  [c.__name__ for c in f + w],\n"
        f"                  {NUMA_AFFINITY_SPEC!r} in validators.VALIDATORS"
        "]))\n")
    where, names, validated = json.loads(run([python, "-c", probe],
                                             cwd=work))
    if "site-packages" not in where:
        raise CheckFailed(f"scheduler role imported {where}, not the wheel")
    if names != ["AccelTopologyFilter", "AccelPackingWeigher"]:
        raise CheckFailed(f"nova's loaders found {names}")
    if not validated:
        raise CheckFailed(f"nova-api's extra spec validators lack "
                          f"{NUMA_AFFINITY_SPEC}")
    print(f"scheduler role: nova's loaders load {' and '.join(names)} "
          f"and the {NUMA_AFFINITY_SPEC} validator from the installed "
          f"wheel")


DRIVER_PROBE = """
import json, sys
import nova.conf
from nova.virt import driver
from nova.virt.libvirt import driver as libvirt_driver
nova.conf.CONF([], project="nova")
nova.conf.CONF.set_override("compute_driver", sys.argv[1])
loaded = driver.load_compute_driver(None)
module = type(loaded).__module__
print(json.dumps([module, sys.modules[module].__file__,
                  isinstance(loaded, libvirt_driver.LibvirtDriver)]))
"""


def check_compute_driver(python: str, work: str) -> None:
    module, where, is_libvirt = json.loads(
        run([python, "-c", DRIVER_PROBE, COMPUTE_DRIVER], cwd=work))
    if module != "nova_accel_compute.driver" or "site-packages" not in where:
        raise CheckFailed(f"compute_driver = {COMPUTE_DRIVER} loads "
                          f"{module} from {where}")
    if not is_libvirt:
        raise CheckFailed(f"{COMPUTE_DRIVER} is not nova's LibvirtDriver")
    print(f"compute role: nova's driver loader loads compute_driver = "
          f"{COMPUTE_DRIVER} ({module}, a LibvirtDriver)")
    site = os.path.dirname(os.path.dirname(where))  # the venv's site-packages
    run([python, "-m", "pip", "uninstall", "--quiet", "--yes",
         "nova-accel"], cwd=work)
    if os.path.exists(os.path.join(site, NOVA_SHIM)):
        raise CheckFailed(f"uninstalling the wheel left {NOVA_SHIM}")
    run([python, "-c", "import nova.virt.libvirt.driver"], cwd=work)
    print(f"compute role: uninstalling the wheel removes {NOVA_SHIM} "
          f"and nova's libvirt driver still imports")


def check_compute_role(wheel: str, work: str) -> None:
    env_dir = os.path.join(work, "compute")
    python = venv(env_dir, pinned("nova"), f"{wheel}[compute]")
    bin_dir = os.path.join(env_dir, "bin")
    for script in console_scripts(wheel):
        out = run([os.path.join(bin_dir, script), "--help"], cwd=work)
        if "usage:" not in out.lower():
            raise CheckFailed(f"{script} --help printed no usage")
        print(f"compute role: {script} --help")
    hook_path = os.path.join(work, "hooks", "qemu.d", "nova-accel")
    run([os.path.join(bin_dir, "accel-libvirt-hook"), "--install",
         hook_path], cwd=work)
    with open(hook_path) as f:
        shebang = f.readline().strip()
    if shebang != f"#!{python}":
        raise CheckFailed(f"installed hook runs {shebang}, not the venv")
    env = {"PATH": os.environ["PATH"],
           "NOVA_ACCEL_CONFIG": os.path.join(work, "absent.conf")}
    for op, sub in HOOK_CALLS:
        subprocess.run([hook_path, "plain", op, sub, "-"], input=PLAIN_DOMAIN,
                       env=env, check=True, capture_output=True, cwd=work)
    print(f"compute role: installed hook exits 0 for a plain domain on "
          f"{len(HOOK_CALLS)} operations")
    found = json.loads(run([python, "-c", FAST_PATH_PROBE,
                            json.dumps(HOOK_CALLS)],
                           input=PLAIN_DOMAIN.decode(), env=env, cwd=work))
    if any(found["codes"]) or found["foreign"]:
        raise CheckFailed(f"hook fast path: exit codes {found['codes']}, "
                          f"imported outside the standard library "
                          f"{found['foreign']}")
    print("compute role: the hook's fast path imports only the standard "
          "library (and, of ours, the standard-library-only "
          "accel_inventory.safe_io and accel_inventory.settings)")
    check_units(bin_dir, work)
    check_compute_driver(python, work)


def check_units(bin_dir: str, work: str) -> None:
    """Each unit as an operator installs it: from the venv's
    share/nova-accel/systemd (where the wheel puts it), ExecStart pointed
    at the venv's console script, then verified by systemd itself."""
    shipped = os.path.join(os.path.dirname(bin_dir), "share", "nova-accel")
    for source in glob.glob(os.path.join(ROOT, "etc", "systemd", "*")):
        if not os.path.exists(os.path.join(shipped, "systemd",
                                           os.path.basename(source))):
            raise CheckFailed(f"the wheel does not install "
                              f"{os.path.basename(source)} under {shipped}")
    if not os.path.exists(os.path.join(shipped, "nova-accel.conf.sample")):
        raise CheckFailed(f"the wheel does not install the sample "
                          f"configuration under {shipped}")
    for unit in sorted(glob.glob(os.path.join(shipped, "systemd", "*"))):
        with open(unit) as f:
            text = f.read().replace("/usr/local/bin/", bin_dir + "/")
        installed = os.path.join(work, os.path.basename(unit))
        with open(installed, "w") as f:
            f.write(text)
        run(["systemd-analyze", "verify", installed], cwd=work)
        print(f"compute role: systemd-analyze verify "
              f"{os.path.basename(unit)} (installed by the wheel)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", metavar="DIR",
                        help="Folder for the build and the venvs "
                             "(default: a temporary one, removed after).")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = os.path.abspath(args.work or tmp)
        os.makedirs(work, exist_ok=True)
        try:
            wheel = build(os.path.join(work, "dist"))
            check_compute_role(wheel, work)
            check_scheduler_role(wheel, work)
        except CheckFailed as e:
            print(f"check_packaging: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
