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

"""Sphinx configuration of nova-accel's documentation (tox -e docs)."""

project = "nova-accel"
copyright = "2026, nova-accel developers"
extensions = [
    # [section] options and the sample file, from the oslo.config.opts
    # entry points: the reference is generated, never copied.
    "oslo_config.sphinxext",
    "oslo_config.sphinxconfiggen",
    # Command references from the console scripts' own argparse parsers.
    "sphinxarg.ext",
    # The release notes, from releasenotes/notes in git.
    "reno.sphinxext",
]
config_generator_config_file = [
    ("../../etc/oslo-config-generator.conf", "_static/nova-accel"),
]
exclude_patterns = ["_build"]
html_static_path = ["_static"]
html_theme = "alabaster"
master_doc = "index"
nitpicky = True
