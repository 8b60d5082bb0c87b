"""The argument parser of every console script of nova-accel."""

import argparse


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage error is one line on stderr (exit
    2): argparse prints the whole usage before it, several lines for a
    command with subcommands, where the error is easy to miss."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} "
                     f"--help')\n")
