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

"""Real hardware layouts, rebuilt as the kernel lays them out in sysfs.

Each builder writes one layout into a ``sample.FakeSysfs`` tree, and says
beside each field which public document or capture it follows. Where a
value is not in a source (a serial number, a bus number the source does
not show), the comment says so and what constraint chose it; such values
never decide what the tests check.

Sources:

[NV]  NVIDIA vGPU user guide (Linux with KVM): "Preparing the Virtual
      Function for an NVIDIA vGPU that Supports SR-IOV", "Creating an
      NVIDIA vGPU that Supports SR-IOV", "... that Uses a Vendor-Specific
      VFIO Framework", "NVIDIA vGPU Information in the sysfs File System".
[KV]  NVIDIA/kubevirt-gpu-device-plugin: README ("Preparing a GPU to be
      used in vGPU mode (Ada Lovelace / Hopper and newer)") and
      pkg/device_plugin/vfio_vgpu_test.go.
[ON]  OpenNebula 7.0 "NVIDIA vGPU & MIG" guide (an A10 on Ubuntu 24.04:
      ``virsh nodedev-dumpxml``, ``ls -l .../virtfn*``, ``onehost show``).
[OPAE] OFS/opae-sdk tests/framework mock sysfs captures
      (mock_sys_dfl_n3000_nlb0, mock_sys_dfl_n6000_sku0_nlb0).
[DFL] Linux Documentation/fpga/dfl.rst and
      Documentation/ABI/testing/sysfs-class-fpga-region.
[FEC] Intel's SRIOV-FEC operator guide for the PAC N3000 (``lspci | grep
      accelerators``: 1b:00.0 Device 0b30, 1d:00.0 Device 0d8f).
[DPDK] DPDK's doc/guides/bbdevs/fpga_5gnr_fec.rst ("8 VFs per PF") and
      drivers/baseband/fpga_5gnr_fec/fpga_5gnr_fec.h (the N3000 FEC's PF
      device id 0x0D8F, its VFs' 0x0D90).
[OAK] A public OAK-D Pro bring-up log (sysfs table of the Myriad X in
      boot mode, dmesg of its firmware-loaded re-enumeration) and OpenVINO
      ``lsusb -v`` / dmesg logs of Myriad X sticks (iSerial 03e72485).
[USB] Linux drivers/usb/core/port.c (link_peers: the ``peer`` link of a
      connector's USB 2 and USB 3 ports) and
      Documentation/ABI/testing/sysfs-bus-usb (``<hub_interface>/port<X>``).
[QAT] intel/intel-device-plugins-for-kubernetes demo/qat-init.sh (QAT PF
      ids 37c8 4940 4942, sriov_totalvfs written to sriov_numvfs) and a
      public C62x log (``lspci``: Co-processor 37c8 PF, 16 VFs 37c9 at
      3d:01.0...).
"""

from accel_inventory import sample

# -- NVIDIA A40 with mdev vGPUs on its SR-IOV VFs [NV] ---------------------

A40 = ("10de", "2235")           # NVIDIA A40 (the [NV] examples' GPU)
A40_PF = "0000:41:00.0"          # [NV]: "slot 00, bus 41, domain 0000"
A40_ROOT_PORT = "0000:40:01.1"   # [NV]: mdev link ../pci0000:40/0000:40:01.1
A40_DSN = 0x2235000000000A40     # not in [NV]: any serial, fixed per card
A40_VFS = 32                     # [NV]: virtfn0 .. virtfn31
A40_TYPES = {                    # [NV] vendor-specific listing: ID : name
    557: "NVIDIA A40-1Q", 558: "NVIDIA A40-2Q", 559: "NVIDIA A40-3Q",
    560: "NVIDIA A40-4Q", 561: "NVIDIA A40-6Q"}
A40_INSTANCE = "aa618089-8b16-4d01-a136-25a0f3c73123"  # [NV] example UUID


def root_port_dir(fs: sample.FakeSysfs, bdf: str) -> str:
    """The root port a GPU sits below, in its root complex
    ``pciDDDD:BB``; its ids are not in the sources and play no part."""
    complex_dir = fs.path("devices", f"pci{bdf[:4]}:{bdf[5:7]}")
    return fs.add_pci(bdf, "1022", "1483", klass="0x060400",
                      parent=complex_dir)


def vf_bdfs(pf: str, count: int, first_function: int = 4) -> list[str]:
    """The VFs' BDFs in virtfn order: [NV] virtfn0 -> 41:00.4,
    virtfn4 -> 41:01.0, virtfn31 -> 41:04.3 (offset 4, stride 1)."""
    domain_bus, _ = pf.rsplit(":", 1)
    return [f"{domain_bus}:{(first_function + n) // 8:02x}."
            f"{(first_function + n) % 8}" for n in range(count)]


def mdev_type_dir(type_id: int) -> str:
    """[NV]: the vGPU type A40-2Q is ``mdev_supported_types/nvidia-558``."""
    return f"nvidia-{type_id}"


def a40_description(name: str) -> str:
    """The fields of [NV]'s example (``num_heads=4, frl_config=60,
    framebuffer=2048M, max_resolution=4096x2160, max_instance=4``);
    framebuffer and max_instance follow the type's size on the A40's
    48 GB (NVIDIA's A40 product brief; 48 / size is not in [NV]), and
    max_resolution (7680x4320) is in no source and plays no part."""
    size = int(name.rsplit("-", 1)[1][:-1])
    return (f"num_heads=4, frl_config=60, framebuffer={size * 1024}M, "
            f"max_resolution=7680x4320, max_instance={48 // size}")


def a40_mdev_on_vfs(fs: sample.FakeSysfs, *, pf: str = A40_PF,
                    root_port: str = A40_ROOT_PORT,
                    instances: dict[int, tuple[str, int]] = None,
                    vfs: int = A40_VFS, dsn: int = A40_DSN,
                    order: list[int] | None = None) -> list[str]:
    """An A40 with ``vfs`` VFs enabled (``sriov-manage -e``), each an mdev
    parent (the PF never is: [NV] "The mdev_supported_types directory
    itself is never visible on the physical function"). ``instances``
    maps a VF's index to the ``(uuid, type id)`` living on it; such a VF
    has no instance left of any type (``available_instances`` 0: [NV]
    "Only one instance of any vGPU type can be created on a virtual
    function"), the others 1 of each type. ``order`` lists the virtfn
    indices in the order the kernel made their directories. Returns the
    VFs' BDFs."""
    instances = {0: (A40_INSTANCE, 558)} if instances is None else instances
    port_dir = root_port_dir(fs, root_port)
    fs.add_pci(pf, *A40, klass="0x030200", parent=port_dir, numa_node=0,
               dsn=dsn, totalvfs=A40_VFS, driver="nvidia")  # [NV], [ON]
    bdfs = vf_bdfs(pf, vfs)
    # [ON]: a VF shows the PF's device id
    fs.add_vfs(pf, bdfs, A40[1], order=order)
    names = {mdev_type_dir(i): n for i, n in A40_TYPES.items()}
    for index, vf in enumerate(bdfs):
        held = instances.get(index)
        fs.add_mdev_parent(
            vf, {t: 0 if held else 1 for t in names},
            [(held[0], mdev_type_dir(held[1]))] if held else [],
            names=names,
            descriptions={t: a40_description(n) for t, n in names.items()})
    return bdfs


# -- NVIDIA A10 through the vendor-specific VFIO interface [ON], [NV], [KV] -

A10 = ("10de", "2236")           # [ON]: product id 0x2236, "GA102GL [A10]"
A10_PF = "0000:41:00.0"          # [ON]: nodedev pci_0000_41_00_0
A10_ROOT_PORT = "0000:40:03.1"   # [ON]: path /sys/devices/pci0000:40/
                                 #       0000:40:03.1/0000:41:00.0
A10_DSN = 0x2236000000000A10     # not in [ON]: any serial, fixed per card
A10_VFS = 32                     # [ON]: virt_functions maxCount='32'
A10_TYPES = {                    # [ON]: PROFILES of VF 41:00.4
    588: "NVIDIA A10-1B", 589: "NVIDIA A10-2B", 590: "NVIDIA A10-1Q",
    591: "NVIDIA A10-2Q", 592: "NVIDIA A10-3Q", 593: "NVIDIA A10-4Q",
    594: "NVIDIA A10-6Q", 595: "NVIDIA A10-8Q", 596: "NVIDIA A10-12Q",
    597: "NVIDIA A10-24Q"}


def a10_vendor_vfio(fs: sample.FakeSysfs, *, pf: str = A10_PF,
                    root_port: str = A10_ROOT_PORT,
                    current: dict[int, int] = None, vfs: int = A10_VFS,
                    full: bool = False, dsn: int = A10_DSN,
                    order: list[int] | None = None) -> list[str]:
    """An A10 whose VFs give vGPUs through ``nvidia/current_vgpu_type``.
    ``current`` maps a VF's index to the type it holds; such a VF's
    ``creatable_vgpu_types`` is empty ([NV]: "If a vGPU has been created
    on this virtual function, this file is empty"), a free VF lists the
    types of the size already in use on the GPU ([NV]: equal-size mode),
    or every type when none is, or nothing when ``full`` ([NV]: "If the
    maximum number of vGPUs ... has been created ..., this file is
    empty"; [KV]: reduced to its header). The PF lists every type
    ([KV]: a freshly enumerated PF reports its full list). ``order``
    lists the virtfn indices in the order the kernel made their
    directories."""
    current = {} if current is None else current
    port_dir = root_port_dir(fs, root_port)
    fs.add_pci(pf, *A10, klass="0x030200", parent=port_dir, numa_node=0,
               dsn=dsn, totalvfs=A10_VFS, driver="nvidia")  # [ON]
    fs.add_vgpu_interface(pf, A10_TYPES)
    bdfs = vf_bdfs(pf, vfs)  # [ON]: virtfn0 -> 41:00.4 ... virtfn31 -> 41:04.3
    # [ON]: VF 0000:41:00.4 DEVICE 2236
    fs.add_vfs(pf, bdfs, A10[1], order=order)
    used = {A10_TYPES[t].rsplit("-", 1)[1] for t in current.values()}
    free_types = {} if full else {
        i: n for i, n in A10_TYPES.items()
        if not used or n.rsplit("-", 1)[1] in used}
    for index, vf in enumerate(bdfs):
        held = current.get(index, 0)
        fs.add_vgpu_interface(vf, {} if held else free_types, held)
    return bdfs


# -- Intel PAC N3000: FPGA and FEC behind the card's own switch ------------

N3000_FPGA = ("8086", "0b30")    # [OPAE] n3000 mock, [FEC]
N3000_FEC = ("8086", "0d8f")     # [FEC]: the FEC's PF
N3000_FEC_VF = "0d90"            # [DPDK]: its VFs
N3000_AFU = "9aeffe5f84570612c000c9660d824272"     # [OPAE]: dfl-port.0
N3000_COMPAT = "a5d72a3cc8b04939912cf715e5dc10ca"  # [OPAE]: region2
N3000_DSN = 0x0B30000000003000   # not in the sources: the FPGA's serial


def n3000_dfl(fs: sample.FakeSysfs, bdf: str = "0000:05:00.0",
              parent: str | None = None) -> None:
    """[OPAE]'s n3000 capture: PF 8086:0b30, sriov_totalvfs 1 (no VF
    made), its base region ``fpga_region/region0`` with ``dfl-fme.0``
    (partial-reconfiguration region ``region2``, compat_id above) and
    ``dfl-port.0`` (the NLB0 AFU). Its class, missing from the capture,
    is [FEC]'s "Processing accelerators" (0x120000)."""
    fs.add_pci(bdf, *N3000_FPGA, klass="0x120000", parent=parent,
               dsn=N3000_DSN, totalvfs=1)
    fs.add_dfl_fpga(bdf, 0, pr_regions={2: N3000_COMPAT},
                    afu_ids=[N3000_AFU])


def n3000_board(fs: sample.FakeSysfs, *, bus: int = 0x19,
                slot: str | None = None, fec_vfs: int = 2) -> dict:
    """A whole N3000: a PCIe switch (upstream port, one downstream port per
    endpoint) with the FPGA at bus ``bus + 2`` and the FEC at ``bus + 4``
    ([FEC]: 1b:00.0 and 1d:00.0 with the default ``bus`` 0x19); the
    switch's own ports and ids (a PLX PEX 8747) are not in the sources
    and are placed as PCIe numbering needs (a bus per port), the
    board's two XL710 NICs are left out (not accelerators). With
    ``slot``, the firmware registers the physical slot the board's
    upstream port sits in. Returns the BDFs."""
    root = fs.path("devices", sample.PCI_ROOT)
    upstream = f"0000:{bus:02x}:00.0"
    up = fs.add_pci(upstream, "10b5", "8747", klass="0x060400", parent=root,
                    slot=slot)
    fpga, fec = f"0000:{bus + 2:02x}:00.0", f"0000:{bus + 4:02x}:00.0"
    downs = [fs.add_pci(f"0000:{bus + 1:02x}:{n:02x}.0", "10b5", "8747",
                        klass="0x060400", parent=up) for n in range(2)]
    n3000_dfl(fs, fpga, parent=downs[0])
    fs.add_pci(fec, *N3000_FEC, klass="0x120000", parent=downs[1],
               totalvfs=8)  # [DPDK]: 8 VFs per PF
    vfs = [f"0000:{bus + 4:02x}:00.{1 + n}" for n in range(fec_vfs)]
    fs.add_vfs(fec, vfs, N3000_FEC_VF)
    return {"upstream": upstream, "fpga": fpga, "fec": fec, "fec_vfs": vfs}


# -- Intel N6000: DFL PFs and a virtio-net PF on one slot [OPAE] -----------

N6000 = ("8086", "bcce")         # [OPAE] n6000 sku0: PFs 0, 1, 2, 4
N6000_VF = "bccf"                # [OPAE]: sriov_vf_device of PF0 and PF1
N6000_VIRTIO = ("1af4", "1000")  # [OPAE]: PF3, Red Hat virtio network
N6000_COMPAT = "98b4d5bc98ba5f4b98d9a2841ccf11b0"  # [OPAE]: region4


def n6000(fs: sample.FakeSysfs, *, pf0_vfs: int = 3) -> list[str]:
    """[OPAE]'s n6000 sku0 capture: five PFs on slot 0000:01:00 below root
    port 0000:00:01.0, all class 0x120000, subsystem x:1770; PF0 has 3
    VFs of bccf at offset 5 and the FME (partial-reconfiguration region4),
    PF1 one VF at offset 7; PF0, 1, 2 and 4 each have a base region
    (region0, 1, 2, 3). The capture holds no VF directories: ``pf0_vfs``
    are made here (``sriov_numvfs``) at the offset it gives. No serial
    in the capture: the card is known by its path."""
    root = fs.path("devices", sample.PCI_ROOT)
    # The root port's ids are not in the capture; they play no part.
    port = fs.add_pci("0000:00:01.0", "8086", "347a", klass="0x060400",
                      parent=root)
    pfs = [f"0000:01:00.{n}" for n in range(5)]
    for n, bdf in enumerate(pfs):
        ids = N6000_VIRTIO if n == 3 else N6000
        fs.add_pci(bdf, *ids, klass="0x120000", parent=port,
                   totalvfs={0: 3, 1: 1}.get(n, 0))
    fs.add_dfl_fpga(pfs[0], 0, pr_regions={4: N6000_COMPAT})
    for n, region in ((1, 1), (2, 2), (4, 3)):
        fs.add_dfl_fpga(pfs[n], region)
    fs.add_vfs(pfs[0], [f"0000:01:00.{5 + n}" for n in range(pf0_vfs)],
               N6000_VF)
    return pfs


# -- Myriad X sticks in boot mode and after their firmware loads [OAK] -----

MYRIAD_BOOT = ("03e7", "2485")   # [OAK]: idVendor/idProduct in boot mode
MYRIAD_BOOTED = ("03e7", "f63b")  # [OAK]: firmware-loaded PID
PLACEHOLDER = "03e72485"         # [OAK]: serial of every unit in boot mode
BOOT_PORT = "1-4.4.3"            # [OAK]: /sys/bus/usb/devices/1-4.4.3
BOOTED_PORT = "2-3.4.3"          # [OAK]: "usb 2-3.4.3: new SuperSpeed USB
                                 #        device" after firmware upload
MXID = "14442C10A1E6D8D600"      # [OAK]: DepthAI's deviceId of that unit


def myriad_boot(fs: sample.FakeSysfs, port: str = BOOT_PORT,
                devnum: int = 9) -> str:
    """A Myriad X waiting for its firmware ([OAK]: busnum 1, devnum 9,
    serial 03e72485, product "Movidius MyriadX")."""
    return fs.add_usb(port, *MYRIAD_BOOT, serial=PLACEHOLDER, devnum=devnum)


def myriad_booted(fs: sample.FakeSysfs, port: str = BOOTED_PORT,
                  devnum: int = 4, serial: str | None = None) -> str:
    """The same unit once its firmware runs: PID f63b on the connector's
    USB 3 port ([OAK]: devnum 4 on bus 2); which serial it then reports
    is not in the sources, so the tests take both a serial of its own
    (its MXID) and none."""
    return fs.add_usb(port, *MYRIAD_BOOTED, serial=serial, devnum=devnum)


def myriad_connector(fs: sample.FakeSysfs, usb2: str = BOOT_PORT,
                     usb3: str = BOOTED_PORT) -> None:
    """[OAK]'s Waveshare hub: its USB 2 half (2109:2817) and USB 3 half
    (2109:0817) give each connector two ports, peers of each other
    [USB]."""
    fs.link_usb_peers(usb2, usb3)


# -- Intel QAT C62x: an SR-IOV co-processor [QAT] --------------------------

QAT = ("8086", "37c8")           # [QAT]: the C62x PF, "Co-processor"
QAT_VF = "37c9"                  # [QAT]: its VFs
QAT_PF = "0000:3d:00.0"          # [QAT]: lspci 3d:00.0 ... 37c8
QAT_VFS = 16                     # [QAT]: 16 VFs per PF


def qat(fs: sample.FakeSysfs, pf: str = QAT_PF, order=None) -> list[str]:
    """A C62x PF with its 16 VFs made (qat-init.sh writes sriov_totalvfs
    to sriov_numvfs) at 3d:01.0 .. 3d:02.7 ([QAT]); class 0x0b4000
    (co-processor). ``order`` lists the virtfn indices in the order the
    kernel made their directories (which must not matter). No serial in
    [QAT]: known by its path."""
    # The PF's driver is not in [QAT]: the kernel's qat_c62x names itself
    # c6xx (ADF_C62X_DEVICE_NAME); it plays no part.
    fs.add_pci(pf, *QAT, klass="0x0b4000", numa_node=0, totalvfs=QAT_VFS,
               driver="c6xx")
    bus = pf.split(":")[1]
    vfs = [f"0000:{bus}:{1 + n // 8:02x}.{n % 8}" for n in range(QAT_VFS)]
    fs.add_vfs(pf, vfs, QAT_VF, order=order)
    return vfs
