"""Corpus IDF per vocabulary entry, for the ``idf`` selection strategy.

``idf(t) = ln((1 + N) / (1 + df(t)))`` over the ``N`` passages of the training
corpus, with ``df`` counted on the backbone's word pieces (special tokens
excluded, whole passages, no truncation). Only the ranking of tokens within a
passage matters to the strategy, and any decreasing function of ``df`` gives
the same ranking; the smoothing keeps unseen tokens finite.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tokenprune.data import PreparedDataset
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_file

__all__ = ["document_frequencies", "idf_from_frequencies", "compute_idf", "load_idf"]


def document_frequencies(dataset: PreparedDataset, tokenizer, batch_size: int = 2048) -> tuple[np.ndarray, int]:  # noqa: ANN001
    """Number of passages containing each token id, streaming the corpus; and the passage count."""
    frequencies = np.zeros(len(tokenizer), dtype=np.int64)
    documents = 0
    for _, texts in dataset.corpus_batches(batch_size):
        encoded = tokenizer(texts, add_special_tokens=False, truncation=False, padding=False, verbose=False)
        for ids in encoded["input_ids"]:
            frequencies[np.unique(np.asarray(ids, dtype=np.int64))] += 1
        documents += len(texts)
    return frequencies, documents


def idf_from_frequencies(frequencies: np.ndarray, documents: int) -> torch.Tensor:
    """Smoothed IDF, ``ln((1 + N) / (1 + df))``, as a float32 tensor."""
    return torch.from_numpy(np.log((1.0 + documents) / (1.0 + frequencies))).float()


def compute_idf(dataset: PreparedDataset, tokenizer, output: str | Path) -> torch.Tensor:  # noqa: ANN001
    """Compute the IDF table of a prepared corpus and save it (safetensors, key ``idf``)."""
    from safetensors.torch import save_file

    frequencies, documents = document_frequencies(dataset, tokenizer)
    idf = idf_from_frequencies(frequencies, documents)
    with atomic_file(output) as tmp:
        # One metadata entry: safetensors writes several in hash order, so reruns would differ in bytes.
        counts = json.dumps({"documents": documents, "vocabulary": len(tokenizer)}, sort_keys=True)
        save_file({"idf": idf}, str(tmp), metadata={"tokenprune_counts": counts})
    return idf


def load_idf(path: str | Path) -> torch.Tensor:
    """Read an IDF table written by :func:`compute_idf`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        idf = load_file(str(path))["idf"]
    except (OSError, SafetensorError, KeyError) as error:
        raise TokenpruneError(f"IDF table {str(path)!r} is missing or corrupted: {error}") from None
    if not torch.isfinite(idf).all():
        raise TokenpruneError(f"IDF table {str(path)!r} holds non-finite values")
    return idf
