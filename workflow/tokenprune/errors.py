"""The one exception type users are meant to read."""

__all__ = ["TokenpruneError"]


class TokenpruneError(Exception):
    """A problem with the user's input, reported without a traceback.

    The message names the offending value and, where possible, says what
    would be accepted instead. The command-line entry point prints it and
    exits with status 2.
    """
