"""Reference systems in every table: BM25, and the untrained backbone used as ColBERT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tokenprune.data import PreparedDataset
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.negatives import bm25_index
from tokenprune.search import Ranking, write_trec_run

__all__ = ["bm25_run", "untrained_model"]


def bm25_run(dataset: PreparedDataset, split: str, output: str | Path, depth: int) -> None:
    """BM25 (bm25s, Snowball stemming, English stop words) over a split's queries, as a TREC run."""
    import bm25s

    doc_ids, texts = dataset.corpus()
    retriever, stemmer = bm25_index(texts)
    queries = dataset.queries(split)
    query_ids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in query_ids], stopwords="en", stemmer=stemmer, show_progress=False)
    indices, scores = retriever.retrieve(tokens, k=min(depth, len(doc_ids)), show_progress=False, n_threads=0)
    # bm25s fills the list with zero-score documents when fewer match; they carry no ranking information.
    scores = np.where(scores > 0, scores, -np.inf)
    write_trec_run(output, query_ids, Ranking(scores, indices), doc_ids, tag="bm25")


def untrained_model(
    backbone: str,
    output: str | Path,
    *,
    query_max_length: int,
    passage_max_length: int,
    candidate_tokens: str,
    strategy: str = "none",
    k: int | None = None,
    idf: torch.Tensor | None = None,
) -> ColBERT:
    """The pre-trained backbone used as ColBERT without fine-tuning.

    Every token vector is the backbone's own output, L2-normalised (an
    identity projection; a PyLate ColBERT backbone keeps its own projection). With the default ``strategy="none"`` every
    candidate passage token is kept, and its scores show what
    training and pruning add; with another strategy it is pruning applied
    without any training, the paper's "prune after training" contrast.
    """
    from transformers import AutoConfig

    from tokenprune.backbone import resolve_backbone
    from tokenprune.pylate_format import is_pylate_folder, read_pylate_folder

    location = resolve_backbone(backbone)
    hidden = AutoConfig.from_pretrained(location).hidden_size
    # A PyLate ColBERT model is used with its own projection: it is the untrained starting point.
    pylate = is_pylate_folder(location)
    config = ColBERTConfig(
        backbone=backbone,
        strategy=strategy,
        k=k,
        dim=read_pylate_folder(location).projection.shape[0] if pylate else hidden,
        normalize=True,
        projection_init="random",
        query_max_length=query_max_length,
        passage_max_length=passage_max_length,
        candidate_tokens=candidate_tokens,
    )
    model = ColBERT.from_backbone(config, idf=idf)
    if not pylate:
        with torch.no_grad():
            model.projection.weight.copy_(torch.eye(hidden))
    model.save(output)
    return model
