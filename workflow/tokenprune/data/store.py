"""Read access to a folder written by :func:`tokenprune.data.prepare_dataset`."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tokenprune.errors import TokenpruneError

__all__ = ["PASSAGE_TEXTS", "PASSAGE_OFFSETS", "PassageStore", "PreparedDataset"]

# The passage store the data stage writes next to corpus.parquet (see tokenprune.data.prepare).
PASSAGE_TEXTS = "passages.bin"
PASSAGE_OFFSETS = "passages.offsets"


class PassageStore:
    """Corpus texts by row number, read from the files on demand: nothing is held in memory.

    Training draws passages from anywhere in the corpus (MS MARCO: 8.8M); a
    dict of the texts would hold most of them as Python strings, and a memory
    map would leave every page it touched (and the kernel's read-ahead around
    it) in the process's resident memory: 360 MiB after 200 batches from a
    1M-passage store. Each read here is two ``pread`` calls.

    Parameters
    ----------
    folder
        A prepared dataset folder holding ``passages.bin`` and ``passages.offsets``.
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        for name in (PASSAGE_TEXTS, PASSAGE_OFFSETS):
            if not (folder / name).is_file():
                raise TokenpruneError(
                    f"{str(folder)!r} has no passage store ({name}): it was prepared by an older "
                    "tokenprune; rerun 'tokenprune prepare-data' for it"
                )
        self._passages = (folder / PASSAGE_OFFSETS).stat().st_size // 8 - 1
        self._offsets = os.open(folder / PASSAGE_OFFSETS, os.O_RDONLY)
        self._texts = os.open(folder / PASSAGE_TEXTS, os.O_RDONLY)

    def __del__(self) -> None:
        for descriptor in (getattr(self, "_offsets", None), getattr(self, "_texts", None)):
            if descriptor is not None:
                os.close(descriptor)

    def __len__(self) -> int:
        return self._passages

    def text(self, row: int) -> str:
        """The text of the passage in corpus row ``row``."""
        if not 0 <= row < self._passages:
            raise TokenpruneError(f"passage row {row} is outside the corpus's {self._passages} passages")
        start, end = struct.unpack("<qq", os.pread(self._offsets, 16, row * 8))
        return os.pread(self._texts, end - start, start).decode("utf-8")


class PreparedDataset:
    """A normalised collection on disk.

    Parameters
    ----------
    folder
        The output folder of the data stage.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not (self.folder / "stats.json").is_file():
            raise TokenpruneError(
                f"{str(self.folder)!r} is not a prepared dataset (no stats.json); run 'tokenprune prepare-data' first"
            )

    @cached_property
    def stats(self) -> dict[str, Any]:
        return json.loads((self.folder / "stats.json").read_text(encoding="utf-8"))

    @property
    def splits(self) -> list[str]:
        return list(self.stats["splits"])

    def _split_file(self, kind: str, split: str, suffix: str) -> Path:
        if split not in self.stats["splits"]:
            raise TokenpruneError(f"dataset {self.stats['dataset']!r} has no split {split!r}; splits: {self.splits}")
        return self.folder / kind / f"{split}{suffix}"

    @property
    def documents(self) -> int:
        """Number of documents in the corpus."""
        return int(self.stats["documents"])

    def corpus_batches(
        self, batch_size: int = 4096, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[list[str], list[str]]]:
        """Yield ``(doc_ids, texts)`` batches in corpus order without loading the whole corpus.

        Parameters
        ----------
        batch_size
            Documents per batch. Batches are cut at ``start + i * batch_size``
            whatever the file's row groups, so a range that starts on a
            multiple of ``batch_size`` is batched exactly as the whole corpus is.
        start, stop
            Document range ``[start, stop)`` to read (default: the whole corpus);
            row groups outside it are not read.
        """
        if batch_size <= 0:
            raise TokenpruneError(f"corpus batch size must be positive, got {batch_size}")
        parquet = pq.ParquetFile(self.folder / "corpus.parquet")
        total = parquet.metadata.num_rows
        stop = total if stop is None else min(stop, total)
        if not 0 <= start <= stop:
            raise TokenpruneError(f"document range [{start}, {stop}) is not within the corpus's {total} documents")
        row_groups, group_starts, row = [], [], 0
        for group in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if row + rows > start and row < stop:
                row_groups.append(group)
                group_starts.append(row)
            row += rows
        if not row_groups:
            return
        first_row = group_starts[0]
        pending_ids: list[str] = []
        pending_texts: list[str] = []
        position = first_row
        for batch in parquet.iter_batches(batch_size=batch_size, row_groups=row_groups, columns=["doc_id", "text"]):
            # Trim the rows of the first and last row groups that fall outside [start, stop).
            low, high = max(start - position, 0), min(stop - position, batch.num_rows)
            position += batch.num_rows
            if high <= low:
                continue
            part = batch.slice(low, high - low)
            pending_ids += part.column("doc_id").to_pylist()
            pending_texts += part.column("text").to_pylist()
            while len(pending_ids) >= batch_size:
                yield pending_ids[:batch_size], pending_texts[:batch_size]
                del pending_ids[:batch_size], pending_texts[:batch_size]
        if pending_ids:
            yield pending_ids, pending_texts

    def passage_store(self) -> PassageStore:
        """Random access to the corpus texts by row (see :class:`PassageStore`)."""
        return PassageStore(self.folder)

    def doc_ids(self) -> pa.ChunkedArray:
        """The document ids in corpus order, as one Arrow column (compact, unlike a list of str)."""
        return pq.read_table(self.folder / "corpus.parquet", columns=["doc_id"]).column("doc_id")

    def query_table(self, split: str) -> pa.Table:
        """``query_id`` and ``text`` of one split, as an Arrow table."""
        return pq.read_table(self._split_file("queries", split, ".parquet"))

    def corpus(self) -> tuple[list[str], list[str]]:
        """The whole corpus as ``(doc_ids, texts)``; for collections that fit in memory."""
        table = pq.read_table(self.folder / "corpus.parquet")
        return table.column("doc_id").to_pylist(), table.column("text").to_pylist()

    def queries(self, split: str) -> dict[str, str]:
        """Query id to text for one split."""
        table = self.query_table(split)
        return dict(zip(table.column("query_id").to_pylist(), table.column("text").to_pylist(), strict=True))

    def qrels_path(self, split: str) -> Path:
        """The TREC qrels file of one split (gains already mapped)."""
        return self._split_file("qrels", split, ".txt")

    def qrels(self, split: str) -> dict[str, dict[str, int]]:
        """Query id to ``{doc_id: gain}`` for one split."""
        judged: dict[str, dict[str, int]] = {}
        with open(self.qrels_path(split), encoding="utf-8") as lines:
            for line in lines:
                query_id, _, doc_id, gain = line.split()
                judged.setdefault(query_id, {})[doc_id] = int(gain)
        return judged
