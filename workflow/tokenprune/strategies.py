"""The selection strategies by name, and the one rule that ties a strategy to its k.

Kept free of torch: the Snakefile builds its wildcard patterns from these
names at parse time. :data:`tokenprune.selection.SELECTORS` registers one
selector class per name (a test checks that the two agree), and the schema's
enums list the same names (checked by the same test).
"""

from __future__ import annotations

from tokenprune.errors import TokenpruneError

__all__ = [
    "STRATEGIES",
    "INSERTING_STRATEGIES",
    "IN_LOOP_ONLY_STRATEGIES",
    "POSTHOC_ONLY_STRATEGIES",
    "TRAINED_STRATEGIES",
    "POSTHOC_STRATEGIES",
    "CORPUS_FITTED_STRATEGIES",
    "STRATEGY_PATTERN",
    "TRAINED_STRATEGY_PATTERN",
    "check_strategy_k",
]

#: Every strategy, the unpruned baseline first: the paper's four, PyLate's pooling, then the later families
#: (ConstBERT's learned fixed vectors, variable budgets, static pruning of frequent tokens).
STRATEGIES = ("none", "first", "idf", "unused", "attention", "pool", "const", "attention_var", "pool_var", "static")
#: Strategies that insert tokens into the passage: they change the encoder's input, so have no post-hoc form.
INSERTING_STRATEGIES = frozenset({"unused"})
#: Strategies with no post-hoc form: ``unused`` changes the encoder's input, ``const`` stores the output of a
#: mixing layer that exists only once trained.
IN_LOOP_ONLY_STRATEGIES = INSERTING_STRATEGIES | {"const"}
#: Strategies offered only as post-hoc references: ``static`` drops the corpus's most frequent tokens.
POSTHOC_ONLY_STRATEGIES = frozenset({"static"})
#: Strategies a model can be trained with (the ``strategies`` setting).
TRAINED_STRATEGIES = tuple(s for s in STRATEGIES if s not in POSTHOC_ONLY_STRATEGIES)
#: Strategies that can prune an unpruned model's vectors at indexing only.
POSTHOC_STRATEGIES = tuple(s for s in STRATEGIES if s != "none" and s not in IN_LOOP_ONLY_STRATEGIES)
#: Strategies whose per-passage budgets depend on the whole collection being encoded (its token counts).
CORPUS_FITTED_STRATEGIES = frozenset({"attention_var", "pool_var", "static"})
#: A regular expression matching exactly one strategy name (the Snakefile's wildcard patterns); longer names
#: first, so that an alternation never stops at a prefix (``attention`` of ``attention_var``).
STRATEGY_PATTERN = "|".join(sorted(STRATEGIES, key=len, reverse=True))
#: The same for the strategies a model is trained with.
TRAINED_STRATEGY_PATTERN = "|".join(sorted(TRAINED_STRATEGIES, key=len, reverse=True))


def check_strategy_k(strategy: str, k: int | None) -> None:
    """The baseline ``none`` keeps every token (k=all, ``None``); every other strategy a positive integer k.

    Raises
    ------
    TokenpruneError
        Naming the strategy and the offending k.
    """
    if strategy not in STRATEGIES:
        raise TokenpruneError(f"unknown strategy {strategy!r}; choose from {list(STRATEGIES)}")
    if strategy == "none":
        if k is not None:
            raise TokenpruneError(f"the baseline 'none' keeps every token; got k={k!r} (use k=all)")
    elif not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise TokenpruneError(f"strategy {strategy!r} needs a positive integer k, got {k!r}")
