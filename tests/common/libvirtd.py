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

"""A domain the real libvirtd defines and boots (qemu, TCG): the libvirt
integration tests' (tests/integration/libvirt) only builder."""

import uuid

from lxml import etree


def domain_xml(name, *devices):
    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = name
    etree.SubElement(dom, "uuid").text = str(uuid.uuid4())
    etree.SubElement(dom, "memory", unit="MiB").text = "64"
    os_ = etree.SubElement(dom, "os")
    etree.SubElement(os_, "type", arch="x86_64", machine="pc").text = "hvm"
    devs = etree.SubElement(dom, "devices")
    etree.SubElement(devs, "graphics", type="vnc", port="-1",
                     listen="127.0.0.1")
    for device in devices:
        devs.append(device)
    return etree.tostring(dom, encoding="unicode")
