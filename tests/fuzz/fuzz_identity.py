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

"""atheris: libFuzzer, coverage-guided, on the DSN and VPD parsers.

Whatever bytes sysfs holds in ``config`` and ``vpd``, the parsers return
a serial or None and never raise. Run by ``tox -e fuzz``; by hand::

    python tests/fuzz/fuzz_identity.py -max_total_time=60 [corpus_dir]
"""

import sys

import atheris
from seeds import with_corpus

with atheris.instrument_imports():
    from accel_inventory import identity, sample

SEEDS = {"config": sample.config_space("1172", "5000", dsn=0x0011223344556677),
         "vpd": sample.vpd_blob("card 1172:5000", "SN-0042")}


def test_one_input(data: bytes) -> None:
    serial = identity.device_serial_number(data)
    assert serial is None or 0 <= serial < 2**64, serial
    vpd = identity.vpd_serial(data)
    assert vpd is None or isinstance(vpd, str), vpd


if __name__ == "__main__":
    atheris.Setup(with_corpus(sys.argv, SEEDS), test_one_input)
    atheris.Fuzz()
