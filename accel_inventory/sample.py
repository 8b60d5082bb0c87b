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

"""Fake hardware, laid out as the kernel lays out sysfs.

``FakeSysfs`` writes device directories under ``devices/``, the
``bus/*/devices`` and ``class/*`` symlinks into them (relative, as the
kernel makes them), binary PCI config space with a PCIe extended
capability chain, binary VPD, SR-IOV ``virtfnN``/``physfn`` links, mdev
parents and instances, NVIDIA's vendor-specific vGPU files, DFL FPGA
regions, USB devices (and the ``peer`` links of a connector's USB 2 and
USB 3 ports) and network interfaces. The scanner
cannot tell it from a real tree, which is the point: tests, the demo and
``accel-inventory show --sample`` all run the real scanner on it.
"""

from __future__ import annotations

import os
import struct

PCI_ROOT = "pci0000:00"


def _write(path: str, content: str | bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(path, mode) as f:
        f.write(content)


def _link(link: str, target: str) -> None:
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.relpath(target, os.path.dirname(link)), link)


def config_space(vendor: str, device: str, dsn: int | None = None,
                 size: int = 4096) -> bytes:
    """PCI config space; with ``dsn``, a Device Serial Number extended
    capability (id 0x0003) at 0x100 after a first, unrelated one."""
    data = bytearray(size)
    struct.pack_into("<HH", data, 0, int(vendor, 16), int(device, 16))
    if dsn is not None and size >= 0x200:
        # AER (0x0001) at 0x100 pointing to DSN at 0x140.
        struct.pack_into("<I", data, 0x100, 0x0001 | (1 << 16) | (0x140 << 20))
        struct.pack_into("<I", data, 0x140, 0x0003 | (1 << 16))
        struct.pack_into("<II", data, 0x144, dsn & 0xFFFFFFFF, dsn >> 32)
    return bytes(data)


def vpd_blob(identifier: str, serial: str) -> bytes:
    """VPD: an identifier string (0x82), read-only keywords (0x90) with
    ``SN``, and the end tag (0x78)."""
    ident = identifier.encode()
    fields = b"SN" + bytes([len(serial)]) + serial.encode()
    fields += b"RV\x01\x00"
    return (bytes([0x82]) + struct.pack("<H", len(ident)) + ident
            + bytes([0x90]) + struct.pack("<H", len(fields)) + fields
            + bytes([0x78]))


class FakeSysfs:
    """Build a sysfs tree under ``root``. Methods return the device's real
    directory so callers can corrupt or extend it."""

    def __init__(self, root: str):
        self.root = root
        os.makedirs(os.path.join(root, "devices", PCI_ROOT), exist_ok=True)
        # Every sysfs has it, even without a PCI device: a scan refuses a
        # root without it.
        os.makedirs(os.path.join(root, "bus", "pci", "devices"),
                    exist_ok=True)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    # -- PCI -------------------------------------------------------------

    def add_pci(self, bdf: str, vendor: str, device: str, *,
                klass: str = "0x120000", parent: str | None = None,
                numa_node: int = -1, dsn: int | None = None,
                vpd_serial: str | None = None, slot: str | None = None,
                driver: str | None = None, config_size: int = 4096,
                totalvfs: int = 0, reset: bool = False) -> str:
        """A PCI function; with ``reset``, the ``reset`` attribute the
        kernel makes for a function it can reset (FLR, a PM or a bus
        reset): what is written to it stays in the file, for the tests
        to see."""
        base = parent or self.path("devices", PCI_ROOT)
        real = os.path.join(base, bdf)
        os.makedirs(real, exist_ok=True)
        for name, value in (("vendor", f"0x{vendor}"),
                            ("device", f"0x{device}"),
                            ("subsystem_vendor", f"0x{vendor}"),
                            ("subsystem_device", "0x0000"),
                            ("class", klass),
                            ("numa_node", str(numa_node))):
            _write(os.path.join(real, name), value + "\n")
        _write(os.path.join(real, "config"),
               config_space(vendor, device, dsn, config_size))
        if vpd_serial is not None:
            _write(os.path.join(real, "vpd"),
                   vpd_blob(f"card {vendor}:{device}", vpd_serial))
        if reset:
            _write(os.path.join(real, "reset"), "")
        if totalvfs:
            _write(os.path.join(real, "sriov_totalvfs"), f"{totalvfs}\n")
            _write(os.path.join(real, "sriov_numvfs"), "0\n")
        if driver:
            drv = self.path("bus", "pci", "drivers", driver)
            os.makedirs(drv, exist_ok=True)
            _link(os.path.join(real, "driver"), drv)
        group = self.path("kernel", "iommu_groups", bdf)
        os.makedirs(group, exist_ok=True)
        _link(os.path.join(real, "iommu_group"), group)
        _link(self.path("bus", "pci", "devices", bdf), real)
        if slot is not None:
            _write(self.path("bus", "pci", "slots", slot, "address"),
                   bdf.rsplit(".", 1)[0] + "\n")
        return real

    def set_numa_node(self, bdf: str, node: int) -> None:
        """What the firmware reports as the device's node (``numa_node``;
        -1: none)."""
        _write(self.path("bus", "pci", "devices", bdf, "numa_node"),
               f"{node}\n")

    # -- NUMA nodes and CPUs -----------------------------------------------

    def add_numa_node(self, node: int, cpus: list[int],
                      socket: int = 0) -> None:
        """A NUMA node and its CPUs, as the kernel lays them out
        (Documentation/ABI/stable/sysfs-devices-node: ``nodeN/cpulist``;
        sysfs-devices-system-cpu: ``cpuN/topology/physical_package_id``,
        the CPU's socket, and its ``nodeN`` link)."""
        home = self.path("devices", "system", "node", f"node{node}")
        _write(os.path.join(home, "cpulist"),
               ",".join(str(cpu) for cpu in cpus) + "\n")
        for cpu in cpus:
            cpu_dir = self.path("devices", "system", "cpu", f"cpu{cpu}")
            _write(os.path.join(cpu_dir, "topology", "physical_package_id"),
                   f"{socket}\n")
            _link(os.path.join(cpu_dir, f"node{node}"), home)

    def add_vfs(self, pf_bdf: str, vf_bdfs: list[str], device: str, *,
                order: list[int] | None = None, reset: bool = True) -> None:
        """SR-IOV: VFs beside their PF, linked both ways; ``virtfnN`` is
        ``vf_bdfs[N]``, made in ``order`` (of indices) when given; each
        with a ``reset`` (the SR-IOV specification requires FLR of every
        VF)."""
        pf = os.path.realpath(self.path("bus", "pci", "devices", pf_bdf))
        vendor = open(os.path.join(pf, "vendor")).read().strip()[2:]
        numa = open(os.path.join(pf, "numa_node")).read().strip()
        for index in order or range(len(vf_bdfs)):
            vf_bdf = vf_bdfs[index]
            vf = self.add_pci(vf_bdf, vendor, device,
                              parent=os.path.dirname(pf),
                              numa_node=int(numa), config_size=64,
                              reset=reset)
            _link(os.path.join(vf, "physfn"), pf)
            _link(os.path.join(pf, f"virtfn{index}"), vf)
        _write(os.path.join(pf, "sriov_numvfs"), f"{len(vf_bdfs)}\n")

    def add_netdev(self, bdf: str, ifname: str, mac: str) -> str:
        dev = os.path.realpath(self.path("bus", "pci", "devices", bdf))
        net = os.path.join(dev, "net", ifname)
        _write(os.path.join(net, "address"), mac + "\n")
        _link(os.path.join(net, "device"), dev)
        _link(self.path("class", "net", ifname), net)
        return net

    def rename_netdev(self, bdf: str, old: str, new: str) -> None:
        dev = os.path.realpath(self.path("bus", "pci", "devices", bdf))
        os.rename(os.path.join(dev, "net", old), os.path.join(dev, "net",
                                                              new))
        os.unlink(self.path("class", "net", old))
        _link(self.path("class", "net", new), os.path.join(dev, "net", new))

    def add_vca_card(self, number: int, upstream_bdf: str,
                     node_bdfs: list[str], *, serial: str,
                     interfaces: list[str], numa_node: int = -1) -> None:
        """An IP-over-PCIe card: a PLX upstream port (with VPD), node
        functions 8086:2954.. below it, one host-side netdev per node
        (MAC fe:00:00:00:0<card+1>:0<node+1>), and class/vca/vca<N>."""
        upstream = self.add_pci(upstream_bdf, "8086", "2953",
                                klass="0x060400", numa_node=numa_node,
                                vpd_serial=serial)
        for node, (bdf, ifname) in enumerate(zip(node_bdfs, interfaces,
                                                 strict=True)):
            self.add_pci(bdf, "8086", f"{0x2954 + node:04x}",
                         klass="0x0b4000", parent=upstream,
                         numa_node=numa_node, driver="vca_pci")
            self.add_netdev(bdf, ifname,
                            f"fe:00:00:00:{number + 1:02x}:{node + 1:02x}")
        _link(self.path("class", "vca", f"vca{number}"), upstream)

    def add_mdev_parent(self, bdf: str, types: dict[str, int],
                        instances: list[tuple[str, str]] = (), *,
                        names: dict[str, str] | None = None,
                        descriptions: dict[str, str] | None = None) -> None:
        dev = os.path.realpath(self.path("bus", "pci", "devices", bdf))
        for type_name, available in types.items():
            t = os.path.join(dev, "mdev_supported_types", type_name)
            _write(os.path.join(t, "available_instances"), f"{available}\n")
            _write(os.path.join(t, "device_api"), "vfio-pci\n")
            _write(os.path.join(t, "name"),
                   f"{(names or {}).get(type_name, type_name)}\n")
            _write(os.path.join(t, "description"),
                   (descriptions or {}).get(type_name, "num_heads=4") + "\n")
            _write(os.path.join(t, "create"), "")
            os.makedirs(os.path.join(t, "devices"), exist_ok=True)
        for uuid, type_name in instances:
            self.add_mdev(bdf, uuid, type_name)
        _link(self.path("class", "mdev_bus", bdf), dev)

    def add_mdev(self, parent_bdf: str, uuid: str, type_name: str) -> None:
        dev = os.path.realpath(self.path("bus", "pci", "devices",
                                         parent_bdf))
        inst = os.path.join(dev, uuid)
        t = os.path.join(dev, "mdev_supported_types", type_name)
        _write(os.path.join(inst, "remove"), "")
        _link(os.path.join(inst, "mdev_type"), t)
        _link(os.path.join(t, "devices", uuid), inst)
        _link(self.path("bus", "mdev", "devices", uuid), inst)

    def create_mdev(self, parent_bdf: str, uuid: str, type_name: str) -> None:
        """What writing ``uuid`` to the type's ``create`` file does: a new
        instance, and one fewer ``available_instances``."""
        dev = os.path.realpath(self.path("bus", "pci", "devices",
                                         parent_bdf))
        available = os.path.join(dev, "mdev_supported_types", type_name,
                                 "available_instances")
        with open(available) as f:
            left = int(f.read())
        if left < 1:
            raise OSError(f"{available}: no instance left to create")
        self.add_mdev(parent_bdf, uuid, type_name)
        _write(available, f"{left - 1}\n")

    def remove_mdev(self, uuid: str) -> None:
        """What writing 1 to the instance's ``remove`` file (or a reboot)
        does: the instance goes, and its type has one more available."""
        link = self.path("bus", "mdev", "devices", uuid)
        inst = os.path.realpath(link)
        t = os.path.realpath(os.path.join(inst, "mdev_type"))
        available = os.path.join(t, "available_instances")
        with open(available) as f:
            left = int(f.read())
        for path in (link, os.path.join(t, "devices", uuid),
                     os.path.join(inst, "mdev_type")):
            os.unlink(path)
        os.unlink(os.path.join(inst, "remove"))
        os.rmdir(inst)
        _write(available, f"{left + 1}\n")

    def add_vgpu_interface(self, bdf: str, creatable: dict[int, str],
                           current: int = 0) -> str:
        """NVIDIA's vendor-specific VFIO files of a VF: ``nvidia/
        creatable_vgpu_types`` (a header, then ``ID : NAME`` lines; empty
        while the VF holds a vGPU) and ``nvidia/current_vgpu_type``."""
        dev = os.path.realpath(self.path("bus", "pci", "devices", bdf))
        self.set_vgpu(bdf, creatable, current)
        return os.path.join(dev, "nvidia")

    def set_vgpu(self, bdf: str, creatable: dict[int, str],
                 current: int) -> None:
        """What the VF shows now: the types it can take and the one it
        holds (0: none)."""
        nvidia = os.path.join(os.path.realpath(self.path(
            "bus", "pci", "devices", bdf)), "nvidia")
        lines = "".join(f"{i} : {n}\n" for i, n in creatable.items())
        _write(os.path.join(nvidia, "creatable_vgpu_types"),
               f"ID    : vGPU Name\n{lines}" if lines else "")
        _write(os.path.join(nvidia, "current_vgpu_type"), f"{current}\n")

    def add_dfl_fpga(self, bdf: str, region: int, *,
                     pr_regions: dict[int, str] = (),
                     afu_ids: list[str] = ()) -> str:
        """A DFL FPGA's base region below PCI function ``bdf``:
        ``fpga_region/region<region>`` (an empty ``compat_id``), with an
        FME whose partial-reconfiguration regions ``region<R>`` have
        ``compat_id`` ``pr_regions[R]``, and one port per AFU id."""
        dev = os.path.realpath(self.path("bus", "pci", "devices", bdf))
        base = os.path.join(dev, "fpga_region", f"region{region}")
        _write(os.path.join(base, "compat_id"), "")
        _link(self.path("class", "fpga_region", f"region{region}"), base)
        fme = os.path.join(base, f"dfl-fme.{region}")
        _write(os.path.join(fme, "ports_num"), f"{len(afu_ids)}\n")
        for k, (number, compat) in enumerate(dict(pr_regions).items()):
            pr = os.path.join(fme, f"dfl-fme-region.{k}", "fpga_region",
                              f"region{number}")
            _write(os.path.join(pr, "compat_id"), compat + "\n")
            _link(self.path("class", "fpga_region", f"region{number}"), pr)
        for port, afu in enumerate(afu_ids):
            _write(os.path.join(base, f"dfl-port.{port}", "afu_id"),
                   afu + "\n")
        return base

    # -- USB -------------------------------------------------------------

    def add_usb(self, name: str, vendor: str, product: str, *,
                serial: str | None, devnum: int,
                controller: str = "0000:00:14.0",
                product_name: str = "Movidius MyriadX") -> str:
        """A USB device ``<bus>-<port path>`` below its host controller."""
        bus = int(name.split("-", 1)[0])
        real = self.path("devices", PCI_ROOT, controller, f"usb{bus}", name)
        values = {"idVendor": vendor, "idProduct": product,
                  "busnum": str(bus), "devnum": str(devnum),
                  "devpath": name.split("-", 1)[1],
                  "bDeviceClass": "00", "product": product_name,
                  "manufacturer": "Movidius Ltd."}
        if serial is not None:
            values["serial"] = serial
        for key, value in values.items():
            _write(os.path.join(real, key), value + "\n")
        _link(self.path("bus", "usb", "devices", name), real)
        return real

    def link_usb_peers(self, first: str, second: str,
                       controller: str = "0000:00:14.0",
                       hubs: tuple = (("2109", "2817"), ("2109", "0817"))
                       ) -> None:
        """The ports that devices ``first`` and ``second`` (``1-4.4.3``,
        ``2-3.4.3``) are plugged into are one connector's USB 2 and USB 3
        halves: each port device (``<hub>:1.0/<hub>-port<N>``, ``<hub>``
        ``usb<bus>`` for a root port) links the other as ``peer``. A hub
        that is not a root hub is a USB device of ids ``hubs`` (the USB 2
        and USB 3 halves of a VIA Labs hub by default)."""
        ports = []
        for name, (vendor, product) in zip((first, second), hubs,
                                           strict=True):
            bus, _, path = name.partition("-")
            hub, _, number = path.rpartition(".")
            hub = f"{bus}-{hub}" if hub else f"usb{bus}"
            interface = f"{hub}:1.0" if hub != f"usb{bus}" else \
                f"{bus}-0:1.0"
            hub_dir = self.path("devices", PCI_ROOT, controller, f"usb{bus}",
                                hub) if hub != f"usb{bus}" else self.path(
                "devices", PCI_ROOT, controller, hub)
            port = os.path.join(hub_dir, interface,
                                f"{hub}-port{number or path}")
            os.makedirs(port, exist_ok=True)
            if hub != f"usb{bus}" and not os.path.exists(
                    os.path.join(hub_dir, "idVendor")):
                for key, value in (("idVendor", vendor),
                                   ("idProduct", product),
                                   ("busnum", bus), ("devnum", "1"),
                                   ("bDeviceClass", "09")):
                    _write(os.path.join(hub_dir, key), value + "\n")
            if not os.path.lexists(self.path("bus", "usb", "devices", hub)):
                _link(self.path("bus", "usb", "devices", hub), hub_dir)
            ports.append(port)
        _link(os.path.join(ports[0], "peer"), ports[1])
        _link(os.path.join(ports[1], "peer"), ports[0])

    def unplug_usb(self, name: str) -> None:
        """The device at port ``name`` is gone (unplugged, or re-enumerating
        after a firmware load)."""
        link = self.path("bus", "usb", "devices", name)
        real = os.path.realpath(link)
        os.unlink(link)
        for entry in os.listdir(real):
            os.unlink(os.path.join(real, entry))
        os.rmdir(real)


SAMPLE_FPGA = ("1172", "5000")
SAMPLE_GPU = ("10de", "1eb8")
SAMPLE_NCS2 = ("03e7", "2485")


def build_sample_host(root: str) -> str:
    """The bundled sample host: a 3-region FPGA card (3 PFs x 4 VFs, with a
    serial number), a VCA2-like card with 3 nodes, two NCS2 sticks, and a
    GPU with mdev types. Returns ``root``."""
    fs = FakeSysfs(root)
    for pf in range(3):
        pf_bdf = f"0000:3b:00.{pf}"
        fs.add_pci(pf_bdf, *SAMPLE_FPGA, numa_node=0,
                   dsn=0x0011223344556677, totalvfs=4, driver="ifpga")
        fs.add_vfs(pf_bdf, [f"0000:3b:{1 + pf:02x}.{vf}" for vf in range(4)],
                   "5001")
    fs.add_vca_card(0, "0000:5e:00.0",
                    [f"0000:5f:00.{n}" for n in range(3)],
                    serial="VCA2-SN-0042", numa_node=1,
                    interfaces=["eth4", "eth5", "eth6"])
    fs.add_pci("0000:86:00.0", *SAMPLE_GPU, klass="0x030000", numa_node=1,
               dsn=0x1eb8000000000001, driver="nvidia")
    fs.add_mdev_parent("0000:86:00.0", {"nvidia-222": 3, "nvidia-223": 1},
                       [("4b20d080-1b54-4048-85b3-a6a62d165c01",
                         "nvidia-222")])
    fs.add_usb("3-1", *SAMPLE_NCS2, serial="03e72485A1", devnum=4)
    fs.add_usb("3-2", *SAMPLE_NCS2, serial="03e72485B2", devnum=5)
    return root
