"""Atomic output and line-numbered input helpers shared by every stage."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tokenprune.errors import TokenpruneError

__all__ = ["remove_leftovers", "atomic_file", "atomic_directory", "write_json", "json_object", "iter_jsonl"]

log = logging.getLogger(__name__)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def remove_leftovers(target: Path) -> list[Path]:
    """Delete the temporary siblings an earlier, killed write of ``target`` left (``.<name>.<8 chars>.tmp``).

    A SIGKILL runs no clean-up, so an atomic write's temporary file or folder
    outlives the job; on MS MARCO each is an index of many GB. Snakemake never
    runs two jobs for one output at once, so a sibling of that name found when
    the job runs again is garbage.
    """
    pattern = re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]{{8}}\.tmp")
    removed = []
    if target.parent.is_dir():
        for sibling in target.parent.iterdir():
            if pattern.fullmatch(sibling.name):
                if sibling.is_dir() and not sibling.is_symlink():
                    shutil.rmtree(sibling)
                else:
                    sibling.unlink(missing_ok=True)
                removed.append(sibling)
    for leftover in removed:
        log.info("removed %s, left by an interrupted write of %s", leftover, target)
    return removed


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    Temporary files an earlier, killed write of ``path`` left are removed first.

    The temporary file lives next to the target, so the final
    :func:`os.replace` is an atomic rename on the same file system: a reader
    (or Snakemake) never sees a half-written file under the final name.

    Parameters
    ----------
    path
        The file to create or replace.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions of a normally created file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    An existing directory at ``path`` is replaced as a whole; on failure the
    temporary directory is removed and ``path`` is left as it was. Temporary
    folders an earlier, killed write of ``path`` left are removed first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def json_object(text: str, where: str) -> dict[str, Any]:
    """Parse ``text`` as one JSON object; errors name ``where`` it came from (a file and line, an option)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise TokenpruneError(f"{where}: malformed JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(value, dict):
        raise TokenpruneError(f"{where}: expected a JSON object, found {type(value).__name__}")
    return value


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for each non-blank line of a JSON-lines file.

    Raises
    ------
    TokenpruneError
        If a line is not a JSON object; the message gives file and line number.
    """
    with open(path, encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if line.strip():
                yield line_number, json_object(line, f"{path}:{line_number}")
