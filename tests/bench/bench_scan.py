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

"""Scanner cost on a large fake host, against merely reading its files.

Builds 125 PFs with 15 VFs each (2,000 PCI functions) and 100 USB sticks
with FakeSysfs, then prints the median time of ``sysfs.scan_cards`` and of
reading every file of the same device directories, and their ratio; and
the median time of reconciling that scan with the cache it made.
"""

import os
import statistics
import tempfile
import time

from accel_inventory import identity, profiles, sample, sysfs

RUNS = 5


def build(root):
    fs = sample.FakeSysfs(root)
    for pf in range(125):
        bus = 0x10 + pf
        pf_bdf = f"0000:{bus:02x}:00.0"
        fs.add_pci(pf_bdf, "1172", "5000", dsn=pf + 1, totalvfs=15)
        fs.add_vfs(pf_bdf, [f"0000:{bus:02x}:{1 + vf // 8:02x}.{vf % 8}"
                            for vf in range(15)], "5001")
    for stick in range(100):
        fs.add_usb(f"{1 + stick // 50}-{1 + stick % 50}", "03e7", "2485",
                   serial=f"SN{stick:04d}", devnum=stick + 2)
    return fs.root


def raw_read(root):
    for bus in ("pci", "usb"):
        base = os.path.join(root, "bus", bus, "devices")
        for name in os.listdir(base):
            real = os.path.realpath(os.path.join(base, name))
            for entry in os.scandir(real):
                if entry.is_file(follow_symlinks=False):
                    with open(entry.path, "rb") as f:
                        f.read()


def medians(*fns):
    """Median time of each of ``fns``, run in turns so that a busy machine
    slows them alike (the ratio is what stays comparable)."""
    times = [[] for _ in fns]
    for _ in range(RUNS):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def main():
    loaded = profiles.load_profiles()
    with tempfile.TemporaryDirectory() as tmp:
        root = build(os.path.join(tmp, "sys"))
        cards = sysfs.scan_cards(root, profiles=loaded).cards
        scan, raw = medians(lambda: sysfs.scan_cards(root, profiles=loaded),
                            lambda: raw_read(root))
        in_sysfs = {bus: len(os.listdir(os.path.join(root, "bus", bus,
                                                     "devices")))
                    for bus in ("pci", "usb")}
    cached, _ = identity.reconcile(None, cards, "bench")
    [reconcile] = medians(lambda: identity.reconcile(cached, cards,
                                                     "bench"))
    functions = sum(len(c.functions()) for c in cards)
    print(f"sysfs: {in_sysfs['pci']} PCI functions, {in_sysfs['usb']} USB "
          f"devices")
    print(f"cards {len(cards)}, functions {functions}")
    print(f"scan_cards        {scan * 1000:8.1f} ms")
    print(f"raw read of files {raw * 1000:8.1f} ms")
    print(f"ratio             {scan / raw:8.2f}x (goals: under 1 s, "
          f"under 3x)")
    print(f"reconcile         {reconcile * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
