"""Reference systems in every table: BM25, and the untrained backbone used as ColBERT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tokenprune.data import PreparedDataset
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.negatives import bm25_index
from tokenprune.search import Ranking, write_trec_run


def bm25_run(dataset: PreparedDataset, split: str, output: str | Path, depth: int = 1000) -> None:
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
    identity projection). With the default ``strategy="none"`` every
    candidate passage token is kept, and its scores show what
    training and pruning add; with another strategy it is pruning applied
    without any training, the paper's "prune after training" contrast.
    """
    from transformers import AutoConfig

    from tokenprune.backbone import resolve_backbone

    hidden = AutoConfig.from_pretrained(resolve_backbone(backbone)).hidden_size
    config = ColBERTConfig(
        backbone=backbone,
        strategy=strategy,
        k=k,
        dim=hidden,
        normalize=True,
        projection_init="random",
        query_max_length=query_max_length,
        passage_max_length=passage_max_length,
        candidate_tokens=candidate_tokens,
    )
    model = ColBERT.from_backbone(config, idf=idf)
    with torch.no_grad():
        model.projection.weight.copy_(torch.eye(hidden))
    model.save(output)
    return model
