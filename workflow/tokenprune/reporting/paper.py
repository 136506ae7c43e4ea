"""The paper's published numbers, shown beside ours and always labelled as the paper's.

The values live in ``lassance2022.csv`` next to this module, with their
citation in its header. Nothing in that file is computed by tokenprune.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["PAPER_CITATION", "PAPER_LABEL", "published_results", "paper_values"]

PAPER_CITATION = (
    "Lassance, Maachou, Park, Clinchant. Learned Token Pruning in Contextualized "
    "Late Interaction over BERT. SIGIR 2022 (arXiv:2112.06540)"
)
PAPER_LABEL = "Lassance et al. (2022)"
_COLUMNS = ["collection", "measure", "strategy", "k", "value", "percent_tokens_kept", "source"]


def published_results() -> pd.DataFrame:
    """Every published value: collection, measure, strategy, k (``"all"`` for the baseline), value, source."""
    with resources.files("tokenprune.reporting").joinpath("lassance2022.csv").open(encoding="utf-8") as handle:
        table = pd.read_csv(handle, comment="#", dtype={"k": str, "collection": str, "measure": str, "strategy": str})
    return table[_COLUMNS]


def paper_values(collection: str | None) -> pd.DataFrame:
    """The published values for one evaluated collection (an ir_datasets id such as ``beir/scifact/test``).

    Returns an empty frame (same columns) when the paper reports nothing for
    ``collection`` or when ``collection`` is ``None`` (a collection without an
    ir_datasets id, which the paper cannot have used).
    """
    table = published_results()
    if collection is None:
        return table.iloc[0:0]
    return table[table["collection"] == collection].reset_index(drop=True)
