"""tokenprune: passage-token pruning for ColBERT, as a reproducible pipeline.

Reproduces and extends Lassance, Maachou, Park and Clinchant, "Learned Token
Pruning in Contextualized Late Interaction over BERT" (SIGIR 2022,
arXiv:2112.06540). Every pipeline stage is a function of this package and a
sub-command of the ``tokenprune`` console script; the Snakemake rules only
call those sub-commands.

The names below are the short API for use from Python (docs/python.md): load or
build a model, index a prepared collection, search it and evaluate the run.
They are imported on first use, so ``import tokenprune`` (and every report
command) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tokenprune.errors import TokenpruneError

if TYPE_CHECKING:
    from tokenprune.data import PreparedDataset
    from tokenprune.evaluation import evaluate_run, parse_measures
    from tokenprune.index import PrunedIndex, build_index
    from tokenprune.model import ColBERT, ColBERTConfig
    from tokenprune.search import encode_query_set, exact_search, write_trec_run

#: Public name to the module that defines it.
_API = {
    "ColBERT": "tokenprune.model",
    "ColBERTConfig": "tokenprune.model",
    "PreparedDataset": "tokenprune.data",
    "build_index": "tokenprune.index",
    "PrunedIndex": "tokenprune.index",
    "encode_query_set": "tokenprune.search",
    "exact_search": "tokenprune.search",
    "write_trec_run": "tokenprune.search",
    "parse_measures": "tokenprune.evaluation",
    "evaluate_run": "tokenprune.evaluation",
}

__all__ = [
    "ColBERT",
    "ColBERTConfig",
    "PreparedDataset",
    "PrunedIndex",
    "TokenpruneError",
    "__version__",
    "build_index",
    "encode_query_set",
    "evaluate_run",
    "exact_search",
    "parse_measures",
    "write_trec_run",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'tokenprune' has no attribute {name!r}")
