"""The ``tokenprune`` console script: every pipeline stage as a sub-command.

The Snakemake rules call these sub-commands; users can run any stage on its
own with the same arguments. User errors are printed as one line and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tokenprune.cli.registry import COMMANDS
from tokenprune.errors import TokenpruneError

# Importing a command module registers its sub-commands: pipeline stages first, as --help lists them.
for _module in ("stages", "report"):
    importlib.import_module(f"tokenprune.cli.{_module}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenprune", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, build, help_text) in COMMANDS.items():
        build(subcommands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; user errors exit 2 with a one-line message."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = COMMANDS[args.command][0]
    try:
        handler(args)
    except TokenpruneError as error:
        print(f"tokenprune {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0

