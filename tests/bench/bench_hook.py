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

"""What the libvirt hook costs at a domain start.

Prints the fast path (a domain without accelerators; one on an ordinary
bridge, the usual Nova network, which the hook must look at a little
closer) as a ratio to ``python3 -c pass``, and the full path (``prepare
begin`` of a domain with two PCI hostdevs) on a host of 500 PCI
functions, as whole processes the way libvirt runs the hook. Medians of
repeated runs; nothing is asserted.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

from lxml import etree

from accel_inventory import cache, model
from libvirt_hooks import xmlgen

RUNS = 30
FUNCTIONS = 500


def median_seconds(argv, stdin, env, runs=RUNS):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, input=stdin, env=env,
                              capture_output=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed: {done.stderr.decode()}")
    return statistics.median(times)


def build_host(root):
    sysfs = os.path.join(root, "sys")
    links = os.path.join(sysfs, "bus", "pci", "devices")
    os.makedirs(links)
    functions = []
    for n in range(FUNCTIONS):
        bdf = f"0000:{n // 8 + 16:02x}:00.{n % 8}"
        real = os.path.join(sysfs, "devices", "pci0000:00", bdf)
        os.makedirs(real)
        for name, value in (("vendor", "0x1172"), ("device", "0x5000"),
                            ("class", "0x120000")):
            with open(os.path.join(real, name), "w") as f:
                f.write(value + "\n")
        os.symlink(os.path.relpath(real, links), os.path.join(links, bdf))
        functions.append(model.Function(id=f"dsn-{n:016x}/r0/f0",
                                        address=bdf))
    inv = model.Inventory(hostname="bench", cards=[
        model.Card(id=f.id.split("/")[0], kind="pci", vendor_id="1172",
                   product_id="5000", serial=None, identity_source="dsn",
                   address=f.address, status="ok",
                   regions=[model.Region(id=f.id.rsplit("/", 1)[0], index=0,
                                         resource_class="CUSTOM_ACCEL_FPGA",
                                         functions=[f])])
        for f in functions])
    cache_path = os.path.join(root, "inventory.json")
    cache.save(cache_path, inv)
    config = os.path.join(root, "nova-accel.conf")
    with open(config, "w") as f:
        f.write(f"[inventory]\nsysfs_root = {sysfs}\n"
                f"cache_path = {cache_path}\n[libvirt_hooks]\n"
                f"log_file = {os.path.join(root, 'hook.log')}\n")
    return config, [fn.address for fn in functions[:2]]


def domain(*devices):
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = "bench"
    etree.SubElement(dom, "uuid").text = "5e1b7c1e-0d3a-4a4e-9f1e-1b2c3d4e5f60"
    devs = etree.SubElement(dom, "devices")
    for device in devices:
        devs.append(device)
    return etree.tostring(dom)


def main():
    hook = [sys.executable, "-m", "libvirt_hooks.hook"]
    with tempfile.TemporaryDirectory() as root:
        config, bdfs = build_host(root)
        env = dict(os.environ, NOVA_ACCEL_CONFIG=config)
        baseline = median_seconds([sys.executable, "-c", "pass"], b"", env)
        fast = median_seconds(hook + ["bench", "prepare", "begin", "-"],
                              domain(), env)
        fast_net = median_seconds(
            hook + ["bench", "prepare", "begin", "-"],
            domain(xmlgen.bridge_interface("br-int")), env)
        full = median_seconds(
            hook + ["bench", "prepare", "begin", "-"],
            domain(*(xmlgen.pci_hostdev(b) for b in bdfs)), env)
    print(f"python3 -c pass            {baseline * 1000:7.1f} ms")
    print(f"hook fast path             {fast * 1000:7.1f} ms  "
          f"({fast / baseline:.2f}x python3 -c pass; goal < 1.5x)")
    print(f"hook fast path, bridge     {fast_net * 1000:7.1f} ms  "
          f"({fast_net / baseline:.2f}x python3 -c pass; goal < 1.5x)")
    print(f"hook full path, {FUNCTIONS} fns   {full * 1000:7.1f} ms  "
          f"(goal < 150 ms)")


if __name__ == "__main__":
    main()
