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

"""The ``ippcie`` kind: a card of nodes reached over IP-over-PCIe (Intel
VCA): the nodes below one upstream port form one card of one region, each
node a function with a host-side network interface. A node is given as
an ``<interface>`` on its own bridge, never as a hostdev.

A PCI device is of this kind when its profile says so.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from accel_inventory import contract, model
from accel_inventory.contract import BDF
from accel_inventory.kinds.base import (BUS_PCI, DEVICE_INTERFACE, CardKind,
                                        named_by_profile,
                                        PciDevice, ScanContext,
                                        SysfsReader)

NAME = "ippcie"


def _upstream_port(dev: PciDevice) -> str:
    return os.path.dirname(dev.real)


def _interface_of(reader: SysfsReader, dev: PciDevice
                  ) -> tuple[str | None, str | None]:
    names = sorted(reader.listdir(os.path.join(dev.real, "net")))
    if not names:
        return None, None
    mac = reader.text(os.path.join(dev.real, "net", names[0], "address"))
    return names[0], mac


def _build(context: ScanContext, nodes: Sequence[PciDevice]) -> model.Card:
    """The card's identity is the upstream port's (VPD serial), not the
    card number, which follows enumeration order."""
    reader = context.reader
    upstream_bdf = os.path.basename(_upstream_port(nodes[0]))
    if BDF.match(upstream_bdf):
        upstream = reader.pci_device(upstream_bdf)
    else:
        upstream = nodes[0]
    card_id, source, serial = reader.pci_identity(upstream, None)
    profile = context.profile_for(nodes[0].vendor, nodes[0].device)
    functions = []
    for i, node in enumerate(sorted(nodes, key=lambda n: n.bdf)):
        interface, mac = _interface_of(reader, node)
        functions.append(model.Function(
            id=model.function_id(card_id, 0, i), address=node.bdf,
            attrs={"node": i, "interface": interface, "mac": mac,
                   "product_id": node.device}))
    region = model.Region(id=model.region_id(card_id, 0), index=0,
                          resource_class=profile.resource_class,
                          address=upstream.bdf, functions=functions)
    return model.Card(id=card_id, kind=NAME, vendor_id=upstream.vendor,
                      product_id=upstream.device, serial=serial,
                      identity_source=source, address=upstream.bdf,
                      numa_node=upstream.numa, regions=[region],
                      profile=profile.name)


# A node is reached over an <interface> the attach worker plugs after
# start: stateless on the host side, unplugged before a live migration and
# plugged again on the destination.
KIND = CardKind(name=NAME, bus=BUS_PCI, function_bus=BUS_PCI,
                device=DEVICE_INTERFACE, takes=named_by_profile(NAME),
                group=_upstream_port, build=_build,
                move=contract.MOVE_LIVE)
