"""Training triples: (query, positive, hard negatives).

Collections with a training docpairs set in ir_datasets (MS MARCO's
``train/triples-small``) use it directly. Otherwise the negatives are mined
with BM25 (bm25s, Snowball-stemmed, English stop words) over the corpus: for
each judged training query, the top-ranked passages that are not judged
relevant, after skipping the first ``skip`` ranks if asked.

Output: a parquet file with one row per (query, positive) pair and columns
``query_id``, ``positive_id`` and ``negative_ids`` (a list).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenprune.data import PreparedDataset
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_file

log = logging.getLogger(__name__)

TRIPLES_SCHEMA = pa.schema(
    [("query_id", pa.string()), ("positive_id", pa.string()), ("negative_ids", pa.list_(pa.string()))]
)


def bm25_index(doc_texts: list[str]):  # noqa: ANN201 - bm25s.BM25
    """A bm25s index of the corpus (Snowball English stemming, English stop words)."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(doc_texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    return retriever, stemmer


def mine_bm25_negatives(
    dataset: PreparedDataset, split: str, output: str | Path, negatives_per_query: int = 20, skip: int = 0
) -> dict[str, int]:
    """Mine BM25 hard negatives for every judged query of ``split`` and write the triples file.

    Returns
    -------
    dict
        Counts: queries, (query, positive) pairs, queries left without negatives.
    """
    import bm25s

    doc_ids, doc_texts = dataset.corpus()
    queries = dataset.queries(split)
    qrels = dataset.qrels(split)
    retriever, stemmer = bm25_index(doc_texts)
    del doc_texts
    query_ids = [query_id for query_id in queries if any(gain > 0 for gain in qrels.get(query_id, {}).values())]
    if not query_ids:
        raise TokenpruneError(f"split {split!r} has no query with a relevant judgment to train on")
    depth = min(len(doc_ids), negatives_per_query + skip + max(len(qrels[q]) for q in query_ids))
    tokens = bm25s.tokenize([queries[q] for q in query_ids], stopwords="en", stemmer=stemmer, show_progress=False)
    ranked, _ = retriever.retrieve(tokens, k=depth, show_progress=False, n_threads=0)

    rows: dict[str, list] = {"query_id": [], "positive_id": [], "negative_ids": []}
    starved = 0
    for query_id, ranking in zip(query_ids, np.asarray(ranked), strict=True):
        judged = qrels[query_id]
        negatives = [doc_ids[index] for index in ranking[skip:] if doc_ids[index] not in judged][:negatives_per_query]
        if not negatives:
            starved += 1
            continue
        for positive in (doc for doc, gain in judged.items() if gain > 0):
            rows["query_id"].append(query_id)
            rows["positive_id"].append(positive)
            rows["negative_ids"].append(negatives)
    with atomic_file(output) as tmp:
        pq.write_table(pa.table(rows, schema=TRIPLES_SCHEMA), tmp)
    counts = {"queries": len(query_ids) - starved, "pairs": len(rows["query_id"]), "queries_without_negatives": starved}
    log.info("mined BM25 negatives for %s: %s", split, counts)
    return counts


def docpairs_to_triples(irds_id: str, output: str | Path, batch_size: int = 100_000) -> int:
    """Stream an ir_datasets docpairs set (query, positive, negative) into the triples file.

    ``IR_DATASETS_HOME`` must be set before the first import of ir_datasets.
    """
    import ir_datasets

    try:
        dataset = ir_datasets.load(irds_id)
    except KeyError:
        raise TokenpruneError(f"{irds_id!r} is not an ir_datasets id") from None
    if not dataset.has_docpairs():
        raise TokenpruneError(f"ir_datasets id {irds_id!r} has no docpairs (training triples)")
    written = 0
    with atomic_file(output) as tmp, pq.ParquetWriter(tmp, TRIPLES_SCHEMA) as writer:
        rows: dict[str, list] = {"query_id": [], "positive_id": [], "negative_ids": []}
        for pair in dataset.docpairs_iter():
            rows["query_id"].append(str(pair.query_id))
            rows["positive_id"].append(str(pair.doc_id_a))
            rows["negative_ids"].append([str(pair.doc_id_b)])
            if len(rows["query_id"]) == batch_size:
                writer.write_table(pa.table(rows, schema=TRIPLES_SCHEMA))
                written += batch_size
                rows = {key: [] for key in rows}
        if rows["query_id"]:
            writer.write_table(pa.table(rows, schema=TRIPLES_SCHEMA))
            written += len(rows["query_id"])
    return written
