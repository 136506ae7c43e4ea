"""The ``tokenprune`` console script: every pipeline stage as a sub-command.

The Snakemake rules call these sub-commands; users can run any stage on its
own with the same arguments. User errors are printed as one line and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tokenprune.cli import pipeline_commands, report_commands
from tokenprune.cli.registry import Command
from tokenprune.errors import TokenpruneError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Every sub-command by name: the pipeline stages first, then the report, as ``--help`` lists them.
COMMANDS: dict[str, Command] = {
    command.name: command for command in (*pipeline_commands.COMMANDS, *report_commands.COMMANDS)
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenprune", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_arguments(subcommands.add_parser(command.name, help=command.help, description=command.help))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; user errors exit 2 with a one-line message."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        COMMANDS[args.command].run(args)
    except TokenpruneError as error:
        print(f"tokenprune {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
