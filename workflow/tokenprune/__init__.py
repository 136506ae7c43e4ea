"""tokenprune: passage-token pruning for ColBERT, as a reproducible pipeline.

Reproduces and extends Lassance, Maachou, Park and Clinchant, "Learned Token
Pruning in Contextualized Late Interaction over BERT" (SIGIR 2022,
arXiv:2112.06540). Every pipeline stage is a function of this package and a
sub-command of the ``tokenprune`` console script; the Snakemake rules only
call those sub-commands.
"""

from tokenprune.errors import TokenpruneError

__all__ = ["TokenpruneError", "__version__"]
__version__ = "0.1.0"
