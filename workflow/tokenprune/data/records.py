"""The records every collection reader yields, and the protocol of a reader.

Their own module so that the readers (:mod:`tokenprune.data.sources`,
:mod:`tokenprune.data.classic`) and the data stage depend on them, and not on
each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Document", "Query", "Judgment", "CollectionSource", "join_fields"]


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str


@dataclass(frozen=True)
class Judgment:
    query_id: str
    doc_id: str
    relevance: int


class CollectionSource(Protocol):
    """What the data stage needs from a collection."""

    description: str

    def documents(self) -> Iterator[Document]: ...

    def queries(self, split: str) -> Iterator[Query]: ...

    def judgments(self, split: str) -> Iterator[Judgment]: ...


def join_fields(record: Any, fields: tuple[str, ...]) -> str:
    """Join the named fields of a dict or named tuple, skipping empty ones; runs of white space become one space."""
    getter = record.get if isinstance(record, dict) else (lambda name: getattr(record, name, None))
    return " ".join(word for value in map(getter, fields) if value for word in str(value).split())
