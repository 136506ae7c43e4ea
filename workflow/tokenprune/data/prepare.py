"""Normalise a collection into the files every later stage reads.

Output folder layout::

    corpus.parquet            doc_id, text        (written in batches)
    passages.bin              the corpus texts, UTF-8, one after the other
    passages.offsets          little-endian int64: passage i is bytes [o[i], o[i+1]) of passages.bin
    queries/<split>.parquet   query_id, text
    qrels/<split>.txt         TREC qrels: query_id 0 doc_id gain
    stats.json                counts and token-length statistics

The folder is built under a temporary name and renamed at the end, so an
interrupted run never leaves a complete-looking folder behind.
"""

from __future__ import annotations

import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenprune.backbone import token_lengths
from tokenprune.data.records import CollectionSource, Document
from tokenprune.data.spec import DatasetSpec
from tokenprune.data.store import PASSAGE_OFFSETS, PASSAGE_TEXTS
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_directory, write_json

__all__ = ["CORPUS_SCHEMA", "QUERY_SCHEMA", "prepare_dataset"]

log = logging.getLogger(__name__)

CORPUS_SCHEMA = pa.schema([("doc_id", pa.string()), ("text", pa.string())])
QUERY_SCHEMA = pa.schema([("query_id", pa.string()), ("text", pa.string())])


def _length_summary(lengths: list[int], max_length: int | None) -> dict[str, Any]:
    if not lengths:
        return {"mean": 0.0, "median": 0.0, "max": 0}
    summary: dict[str, Any] = {
        "mean": round(statistics.fmean(lengths), 2),
        "median": float(statistics.median(lengths)),
        "max": max(lengths),
    }
    if max_length is not None:
        summary[f"share_over_{max_length}"] = round(sum(length > max_length for length in lengths) / len(lengths), 4)
    return summary


def _write_corpus(
    source: CollectionSource, folder: Path, tokenizer: Any, batch_size: int
) -> tuple[set[str], list[int], list[str]]:
    """Stream documents to parquet and to the passage store, batch by batch.

    Returns the ids, the token lengths and the ids of empty documents.
    """
    seen: set[str] = set()
    lengths: list[int] = []
    empty: list[str] = []
    batch: list[Document] = []
    stored_bytes = 0
    with (
        pq.ParquetWriter(folder / "corpus.parquet", CORPUS_SCHEMA, compression="zstd") as writer,
        open(folder / PASSAGE_TEXTS, "wb") as texts,
        open(folder / PASSAGE_OFFSETS, "wb") as offsets,
    ):
        offsets.write(np.zeros(1, dtype="<i8").tobytes())

        def flush() -> None:
            nonlocal stored_bytes
            writer.write_batch(
                pa.record_batch([[d.doc_id for d in batch], [d.text for d in batch]], schema=CORPUS_SCHEMA)
            )
            encoded = [d.text.encode("utf-8") for d in batch]
            texts.write(b"".join(encoded))
            ends = stored_bytes + np.cumsum([len(text) for text in encoded], dtype="<i8")
            offsets.write(ends.astype("<i8").tobytes())
            stored_bytes = int(ends[-1])
            lengths.extend(token_lengths(tokenizer, [d.text for d in batch]))
            batch.clear()

        for document in source.documents():
            if document.doc_id in seen:
                raise TokenpruneError(f"{source.description}: duplicate document id {document.doc_id!r}")
            seen.add(document.doc_id)
            if not document.text.strip():
                empty.append(document.doc_id)
            batch.append(document)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    if not seen:
        raise TokenpruneError(f"{source.description}: the corpus is empty")
    return seen, lengths, empty


def prepare_dataset(
    spec: DatasetSpec,
    source: CollectionSource,
    output_dir: str | Path,
    tokenizer: Any,
    *,
    strict: bool = False,
    batch_size: int = 4096,
    passage_max_length: int | None = None,
    query_max_length: int | None = None,
) -> dict[str, Any]:
    """Write the normalised corpus, queries and qrels of ``source`` and return its statistics.

    Parameters
    ----------
    spec
        The collection's configuration (splits, relevance gains).
    source
        An opened collection (see :func:`tokenprune.data.sources.open_collection`).
    output_dir
        Folder to create; replaced atomically if it exists.
    tokenizer
        The backbone's tokenizer, used for the token-length statistics.
    strict
        Fail, instead of warning, when qrels name unknown queries or documents.
    batch_size
        Documents per written batch; bounds memory for large collections.
    passage_max_length, query_max_length
        When given, ``stats.json`` also reports the share of texts longer than these.

    Raises
    ------
    TokenpruneError
        On duplicate ids, an empty corpus, unmapped relevance codes, or
        (when ``strict``) judgments naming unknown ids.
    """
    output_dir = Path(output_dir)
    with atomic_directory(output_dir) as staging:
        (staging / "queries").mkdir()
        (staging / "qrels").mkdir()
        doc_ids, passage_lengths, empty_documents = _write_corpus(source, staging, tokenizer, batch_size)
        if empty_documents:
            # Kept, not refused: real collections (BEIR among them) hold a few.
            log.warning(
                "%s: %d documents have no text (e.g. %s); they are kept, with only [CLS] [D] [SEP] to match on",
                source.description,
                len(empty_documents),
                ", ".join(map(repr, empty_documents[:5])),
            )
        stats: dict[str, Any] = {
            "dataset": spec.name,
            "source": source.description,
            "documents": len(doc_ids),
            "empty_documents": len(empty_documents),
            "passage_tokens": _length_summary(passage_lengths, passage_max_length),
            "relevance_gain": {str(code): gain for code, gain in (spec.relevance_gain or {}).items()} or None,
            "splits": {},
        }
        del passage_lengths
        for split in spec.splits:
            stats["splits"][split] = _write_split(
                spec, source, split, staging, doc_ids, tokenizer, strict=strict, query_max_length=query_max_length
            )
        write_json(staging / "stats.json", stats)
    return stats


def _write_split(
    spec: DatasetSpec,
    source: CollectionSource,
    split: str,
    staging: Path,
    doc_ids: set[str],
    tokenizer: Any,
    *,
    strict: bool,
    query_max_length: int | None,
) -> dict[str, Any]:
    queries: dict[str, str] = {}
    for query in source.queries(split):
        if query.query_id in queries:
            raise TokenpruneError(f"{source.description}, split {split!r}: duplicate query id {query.query_id!r}")
        queries[query.query_id] = query.text

    judgments = list(source.judgments(split))
    unknown_queries = Counter(j.query_id for j in judgments if j.query_id not in queries)
    unknown_documents = Counter(j.doc_id for j in judgments if j.doc_id not in doc_ids)
    for kind, unknown in (("queries", unknown_queries), ("documents", unknown_documents)):
        if unknown:
            example = ", ".join(repr(key) for key in list(unknown)[:5])
            message = (
                f"{source.description}, split {split!r}: {sum(unknown.values())} judgments name "
                f"{len(unknown)} unknown {kind} (e.g. {example})"
            )
            if strict:
                raise TokenpruneError(message)
            log.warning("%s; judgments of unknown queries are dropped, unknown documents are kept", message)

    # A judged query without text cannot be run, so its judgments cannot be evaluated.
    kept = [j for j in judgments if j.query_id in queries]
    judged_queries = {j.query_id for j in kept}
    with open(staging / "qrels" / f"{split}.txt", "w", encoding="utf-8") as qrels:
        for judgment in kept:
            qrels.write(f"{judgment.query_id} 0 {judgment.doc_id} {spec.gain(judgment.relevance)}\n")

    # Only judged queries are kept: an unjudged query contributes nothing to any measure.
    ids = [query_id for query_id in queries if query_id in judged_queries]
    texts = [queries[query_id] for query_id in ids]
    pq.write_table(pa.table([ids, texts], schema=QUERY_SCHEMA), staging / "queries" / f"{split}.parquet")
    return {
        "queries": len(ids),
        "judgments": len(kept),
        "relevant_judgments": sum(spec.gain(j.relevance) > 0 for j in kept),
        "unknown_query_judgments": sum(unknown_queries.values()),
        "unknown_document_judgments": sum(unknown_documents.values()),
        "query_tokens": _length_summary(token_lengths(tokenizer, texts) if texts else [], query_max_length),
    }
