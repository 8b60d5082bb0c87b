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

"""The argument parser of every console script of nova-accel."""

import argparse


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage error is one line on stderr (exit
    2): argparse prints the whole usage before it, several lines for a
    command with subcommands, where the error is easy to miss."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} "
                     f"--help')\n")
