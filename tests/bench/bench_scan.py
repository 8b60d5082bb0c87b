"""Scanner cost on a large fake host, against merely reading its files.

Builds 125 PFs with 15 VFs each (2,000 PCI functions) and 100 USB sticks
with FakeSysfs, then prints the median time of ``sysfs.scan_cards`` and of
reading every file of the same device directories, and their ratio.
"""

import os
import statistics
import tempfile
import time

from accel_inventory import profiles, sample, sysfs

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


def median(fn):
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    loaded = profiles.load_profiles()
    with tempfile.TemporaryDirectory() as tmp:
        root = build(os.path.join(tmp, "sys"))
        cards = sysfs.scan_cards(root, profiles=loaded).cards
        scan = median(lambda: sysfs.scan_cards(root, profiles=loaded))
        raw = median(lambda: raw_read(root))
    functions = sum(len(c.functions()) for c in cards)
    print(f"cards {len(cards)}, functions {functions}")
    print(f"scan_cards        {scan * 1000:8.1f} ms")
    print(f"raw read of files {raw * 1000:8.1f} ms")
    print(f"ratio             {scan / raw:8.2f}x (goals: under 1 s, "
          f"under 3x)")


if __name__ == "__main__":
    main()
