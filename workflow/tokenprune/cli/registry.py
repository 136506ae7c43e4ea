"""What a sub-command is: its name, help, argument builder and handler."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Command"]


@dataclass(frozen=True)
class Command:
    """One ``tokenprune`` sub-command.

    Attributes
    ----------
    name
        The sub-command as typed (``prepare-data``).
    help
        One line for ``tokenprune --help`` and the sub-command's description.
    add_arguments
        Adds the sub-command's options to its parser.
    run
        Runs it on the parsed arguments.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
