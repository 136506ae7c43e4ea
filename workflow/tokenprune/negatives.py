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
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenprune.data import PreparedDataset
from tokenprune.data.sources import irds_stream
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_file

if TYPE_CHECKING:
    import pandas as pd

    from tokenprune.index import PrunedIndex
    from tokenprune.model import ColBERT

__all__ = ["TRIPLES_SCHEMA", "bm25_index", "mine_bm25_negatives", "docpairs_to_triples", "audit_negatives"]

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
    retriever.index(
        bm25s.tokenize(doc_texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
    )
    return retriever, stemmer


def mine_bm25_negatives(
    dataset: PreparedDataset, split: str, output: str | Path, negatives_per_query: int, skip: int
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
        for pair in irds_stream(dataset.docpairs_iter(), irds_id):
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


def audit_negatives(
    dataset: PreparedDataset, split: str, model: ColBERT, index: PrunedIndex, depth: int = 50
) -> pd.DataFrame:
    """How often each BM25 rank of the unjudged passages looks like an unjudged positive to ``model``.

    For every judged query of ``split``, BM25 ranks the corpus; the unjudged
    passages, in that order, are the candidate hard negatives (rank 1 = the
    first unjudged passage). ``model`` scores each against the query with
    MaxSim over ``index`` (the model's own index of the corpus, e.g. the
    untrained backbone's), and the passage counts as a *suspect* when it
    scores at least as high as the query's best judged positive. Sparse
    judgments (SciFact: about 1.1 per claim) leave relevant passages
    unjudged, and they sit at the top of the BM25 ranking.

    Returns
    -------
    pandas.DataFrame
        One row per unjudged rank: ``rank``, ``queries``, ``suspect_share``
        (share of queries whose passage at that rank is a suspect) and
        ``mean_score_ratio`` (passage score / best positive score).
    """
    import bm25s
    import pandas as pd
    import torch

    doc_ids, doc_texts = dataset.corpus()
    if index.doc_ids != doc_ids:
        raise TokenpruneError(
            f"index {str(index.folder)!r} does not hold the corpus of {str(dataset.folder)!r} in order"
        )
    queries, qrels = dataset.queries(split), dataset.qrels(split)
    retriever, stemmer = bm25_index(doc_texts)
    del doc_texts
    query_ids = [q for q in queries if any(gain > 0 for gain in qrels.get(q, {}).values())]
    tokens = bm25s.tokenize([queries[q] for q in query_ids], stopwords="en", stemmer=stemmer, show_progress=False)
    depth_needed = min(len(doc_ids), depth + max(len(qrels[q]) for q in query_ids))
    ranked, _ = retriever.retrieve(tokens, k=depth_needed, show_progress=False, n_threads=0)
    position = {doc_id: number for number, doc_id in enumerate(doc_ids)}
    rows = []
    model.eval()
    for start in range(0, len(query_ids), 64):
        batch = query_ids[start : start + 64]
        with torch.inference_mode():
            query_vectors, query_mask = model.encode_queries([queries[q] for q in batch])
        for row, (query_id, ranking) in enumerate(zip(batch, np.asarray(ranked)[start : start + 64], strict=True)):
            judged = qrels[query_id]
            positives = [position[d] for d, gain in judged.items() if gain > 0 and d in position]
            unjudged = [int(i) for i in ranking if doc_ids[i] not in judged][:depth]
            real = query_vectors[row][query_mask[row]].float().numpy()
            scores = [
                float(
                    (real @ np.asarray(index.vectors[index.offsets[d] : index.offsets[d + 1]], dtype=np.float32).T)
                    .max(axis=1)
                    .sum()
                )
                if index.offsets[d + 1] > index.offsets[d]
                else float("-inf")
                for d in positives + unjudged
            ]
            best_positive = max(scores[: len(positives)])
            for rank, score in enumerate(scores[len(positives) :], start=1):
                rows.append(
                    (query_id, rank, score >= best_positive, score / best_positive if best_positive > 0 else np.nan)
                )
    frame = pd.DataFrame(rows, columns=["query_id", "rank", "suspect", "score_ratio"])
    return (
        frame.groupby("rank")
        .agg(queries=("query_id", "size"), suspect_share=("suspect", "mean"), mean_score_ratio=("score_ratio", "mean"))
        .reset_index()
    )
