"""Readers for classic test collections in their original Glasgow distributions.

* ``smart``-style files (MED, ADI, and Cranfield's members): records start with
  ``.I <id>``; fields start with a line ``.T`` (title), ``.A`` (authors),
  ``.B`` (bibliography) or ``.W`` (text).
* the NPL/Vaswani files: a record is an id line, text lines, and a line ``/``.

Each collection has one split, ``all``; all judgments are binary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenprune.data.records import Document, Judgment, Query, join_fields
from tokenprune.data.spec import DatasetSpec
from tokenprune.errors import TokenpruneError

__all__ = [
    "SMART_FIELDS",
    "ClassicLayout",
    "CLASSIC_LAYOUTS",
    "read_smart_records",
    "read_npl_records",
    "ClassicCollection",
]

SMART_FIELDS = {".T": "title", ".A": "author", ".B": "bib", ".W": "text"}


@dataclass(frozen=True)
class ClassicLayout:
    """File names and formats of one classic collection."""

    documents: str
    queries: str
    qrels: str
    record_format: str  # "smart" or "npl"
    qrels_format: str  # "trec" (qid 0 docid rel), "pairs" (qid docid ...), or "npl" (blocks)


CLASSIC_LAYOUTS = {
    "med": ClassicLayout("MED.ALL", "MED.QRY", "MED.REL", "smart", "trec"),
    "adi": ClassicLayout("ADI.ALL", "ADI.QRY", "ADI.REL", "smart", "pairs"),
    "vaswani": ClassicLayout("doc-text", "query-text", "rlv-ass", "npl", "npl"),
}


def read_smart_records(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield ``(id, {field: text})`` from a ``.I``-delimited file."""
    record_id: str | None = None
    fields: dict[str, list[str]] = {}
    field = None
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line_number, raw in enumerate(lines, start=1):
            line = raw.rstrip("\r\n")
            if line.startswith(".I"):
                if record_id is not None:
                    yield record_id, {name: " ".join(parts) for name, parts in fields.items()}
                record_id, fields, field = line[2:].strip(), {}, None
                if not record_id:
                    raise TokenpruneError(f"{path}:{line_number}: '.I' without an id")
            elif line.strip() in SMART_FIELDS:
                field = SMART_FIELDS[line.strip()]
                fields.setdefault(field, [])
            elif record_id is None:
                if line.strip():
                    raise TokenpruneError(f"{path}:{line_number}: text before the first '.I' record")
            elif field is not None:
                fields[field].append(line)
    if record_id is not None:
        yield record_id, {name: " ".join(parts) for name, parts in fields.items()}


def read_npl_records(path: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(id, text)`` from an NPL file (id line, text lines, ``/`` terminator)."""
    record: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line_number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if line == "/":
                if not record:
                    raise TokenpruneError(f"{path}:{line_number}: empty record")
                yield record[0], " ".join(record[1:])
                record = []
            elif line or record:
                record.append(line)
    if any(record):
        raise TokenpruneError(f"{path}: last record is not terminated by '/'")


class ClassicCollection:
    """MED, ADI or Vaswani from their original files in ``folder``."""

    def __init__(self, name: str, folder: str | os.PathLike[str], spec: DatasetSpec) -> None:
        if name not in CLASSIC_LAYOUTS:
            raise TokenpruneError(f"unknown classic collection {name!r}; choose from {sorted(CLASSIC_LAYOUTS)}")
        self.layout = CLASSIC_LAYOUTS[name]
        self.folder = Path(folder)
        self.spec = spec
        self.description = f"{name} files in {self.folder}"
        for file in (self.layout.documents, self.layout.queries, self.layout.qrels):
            if not (self.folder / file).is_file():
                raise TokenpruneError(f"dataset {spec.name!r}: {str(self.folder / file)!r} is missing")
        if list(spec.splits) != ["all"]:
            raise TokenpruneError(
                f"dataset {spec.name!r}: a classic collection has one split, 'all'; got {list(spec.splits)}"
            )

    def documents(self) -> Iterator[Document]:
        path = self.folder / self.layout.documents
        if self.layout.record_format == "npl":
            for doc_id, text in read_npl_records(path):
                yield Document(doc_id, " ".join(text.split()))
        else:
            for doc_id, fields in read_smart_records(path):
                yield Document(doc_id, join_fields(fields, self.spec.document_fields))

    def queries(self, split: str) -> Iterator[Query]:
        path = self.folder / self.layout.queries
        if self.layout.record_format == "npl":
            records = read_npl_records(path)
        else:
            records = ((query_id, fields.get("text", "")) for query_id, fields in read_smart_records(path))
        for query_id, text in records:
            yield Query(query_id, " ".join(text.split()))

    def judgments(self, split: str) -> Iterator[Judgment]:
        path = self.folder / self.layout.qrels
        if self.layout.qrels_format == "npl":
            for query_id, doc_ids in read_npl_records(path):
                for doc_id in doc_ids.split():
                    yield Judgment(query_id, doc_id, 1)
            return
        with open(path, encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                columns = line.split()
                if not columns:
                    continue
                if len(columns) < (4 if self.layout.qrels_format == "trec" else 2):
                    raise TokenpruneError(f"{path}:{line_number}: too few columns in {line.strip()!r}")
                if self.layout.qrels_format == "trec":
                    yield Judgment(columns[0], columns[2], int(columns[3]))
                else:
                    yield Judgment(columns[0], columns[1], 1)
