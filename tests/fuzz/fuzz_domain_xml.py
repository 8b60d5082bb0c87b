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

"""atheris: libFuzzer, coverage-guided, on the hook's domain XML parser.

``domain.parse`` either returns a Domain or raises DomainXMLError (which
the hook turns into one refusal line); anything else is a crash. Run by
``tox -e fuzz``; by hand::

    python tests/fuzz/fuzz_domain_xml.py -max_total_time=60 [corpus_dir]
"""

import sys

import atheris
from seeds import with_corpus

with atheris.instrument_imports():
    from libvirt_hooks import domain
    from libvirt_hooks import xmlgen

MAX_BYTES = 64 * 1024


def seeds() -> dict[str, bytes]:
    """A domain with one device of each kind the hook reads."""
    from lxml import etree

    dom = etree.Element("domain", type="qemu")
    etree.SubElement(dom, "name").text = "vm"
    etree.SubElement(dom, "uuid").text = (
        "0f3a4a52-6c1e-4b8c-9a3e-2d7c2f6b1a01")
    devices = etree.SubElement(dom, "devices")
    for element in (xmlgen.pci_hostdev("0000:3b:00.1"),
                    xmlgen.usb_hostdev("03e7", "2485", bus=3, device=7),
                    xmlgen.mdev_hostdev(
                        "4b20d080-1b54-4048-85b3-a6a62d165c01"),
                    xmlgen.bridge_interface("accbr-1a2b3c4d")):
        devices.append(element)
    return {"domain.xml": etree.tostring(dom)}


def test_one_input(data: bytes) -> None:
    try:
        dom = domain.parse(data, MAX_BYTES)
    except domain.DomainXMLError:
        return
    for ref in dom.devices:
        assert ref.kind in ("pci", "usb", "mdev", "interface"), ref


if __name__ == "__main__":
    for seed in seeds().values():
        assert domain.parse(seed, MAX_BYTES).devices  # the harness works
    atheris.Setup(with_corpus(sys.argv, seeds()), test_one_input)
    atheris.Fuzz()
