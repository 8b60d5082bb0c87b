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

"""Domain XML for accelerator devices, as pure functions.

Each function returns one lxml element that libvirt's RelaxNG schema
accepts inside ``<devices>``. The hook's rewrite and the attach path build
their XML here and nowhere else.
"""

from __future__ import annotations

from lxml import etree


def pci_address_attrs(bdf: str) -> dict[str, str]:
    """``0000:3b:00.1`` as libvirt's address attributes."""
    domain, bus, slot_function = bdf.split(":")
    slot, function = slot_function.split(".")
    return {"domain": f"0x{domain}", "bus": f"0x{bus}",
            "slot": f"0x{slot}", "function": f"0x{function}"}


def pci_hostdev(bdf: str, managed: bool = True) -> etree._Element:
    hostdev = etree.Element("hostdev", mode="subsystem", type="pci",
                            managed="yes" if managed else "no")
    source = etree.SubElement(hostdev, "source")
    etree.SubElement(source, "address", **pci_address_attrs(bdf))
    return hostdev


def usb_hostdev(vendor_id: str, product_id: str, *,
                bus: int | None = None, device: int | None = None,
                startup_policy: str | None = None) -> etree._Element:
    """A USB hostdev matched on vendor:product and, when given, bus/device
    (libvirt never matches on the serial, so several identical sticks need
    the address)."""
    hostdev = etree.Element("hostdev", mode="subsystem", type="usb",
                            managed="yes")
    source = etree.SubElement(hostdev, "source")
    if startup_policy:
        source.set("startupPolicy", startup_policy)
    etree.SubElement(source, "vendor", id=f"0x{vendor_id}")
    etree.SubElement(source, "product", id=f"0x{product_id}")
    if bus is not None and device is not None:
        etree.SubElement(source, "address", bus=str(bus), device=str(device))
    return hostdev


def mdev_hostdev(uuid: str) -> etree._Element:
    hostdev = etree.Element("hostdev", mode="subsystem", type="mdev",
                            model="vfio-pci", managed="no")
    source = etree.SubElement(hostdev, "source")
    etree.SubElement(source, "address", uuid=uuid)
    return hostdev


def bridge_interface(bridge: str, model: str = "virtio") -> etree._Element:
    """How a domain reaches an IP-over-PCIe node: through the node's stable
    bridge, never the node's host-side interface, whose name may change."""
    interface = etree.Element("interface", type="bridge")
    etree.SubElement(interface, "source", bridge=bridge)
    etree.SubElement(interface, "model", type=model)
    return interface


def to_string(element: etree._Element) -> str:
    return etree.tostring(element, encoding="unicode")
