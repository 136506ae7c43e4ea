"""Read access to a folder written by :func:`tokenprune.data.prepare_dataset`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tokenprune.errors import TokenpruneError


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

    def corpus_batches(self, batch_size: int = 4096) -> Iterator[tuple[list[str], list[str]]]:
        """Yield ``(doc_ids, texts)`` batches in corpus order without loading the whole corpus."""
        for batch in pq.ParquetFile(self.folder / "corpus.parquet").iter_batches(batch_size=batch_size):
            yield batch.column("doc_id").to_pylist(), batch.column("text").to_pylist()

    def corpus(self) -> tuple[list[str], list[str]]:
        """The whole corpus as ``(doc_ids, texts)``; for collections that fit in memory."""
        table = pq.read_table(self.folder / "corpus.parquet")
        return table.column("doc_id").to_pylist(), table.column("text").to_pylist()

    def queries(self, split: str) -> dict[str, str]:
        """Query id to text for one split."""
        table = pq.read_table(self._split_file("queries", split, ".parquet"))
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
