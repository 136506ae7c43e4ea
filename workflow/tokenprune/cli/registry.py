"""The sub-command registry: each module registers its commands with :func:`command`."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Handler = Callable[[argparse.Namespace], None]
COMMANDS: dict[str, tuple[Handler, Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help_text: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], Callable]:
    """Register a sub-command: decorate its argument builder, and give its handler as ``.run``."""

    def register(build: Callable[[argparse.ArgumentParser], None]) -> Callable:
        def set_handler(handler: Handler) -> Handler:
            COMMANDS[name] = (handler, build, help_text)
            return handler

        build.run = set_handler  # type: ignore[attr-defined]
        return build

    return register
