"""Flex Template entry point: the launcher runs this file with every template parameter as --name=value."""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
