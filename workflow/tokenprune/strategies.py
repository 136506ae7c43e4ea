"""The selection strategies by name, and the one rule that ties a strategy to its k.

Kept free of torch: the Snakefile builds its wildcard patterns from these
names at parse time. :data:`tokenprune.selection.SELECTORS` registers one
selector class per name (a test checks that the two agree), and the schema's
enums list the same names (checked by the same test).
"""

from __future__ import annotations

from tokenprune.errors import TokenpruneError

__all__ = ["STRATEGIES", "INSERTING_STRATEGIES", "POSTHOC_STRATEGIES", "STRATEGY_PATTERN", "check_strategy_k"]

#: Every strategy, the unpruned baseline first.
STRATEGIES = ("none", "first", "idf", "unused", "attention", "pool")
#: Strategies that insert tokens into the passage: they change the encoder's input, so have no post-hoc form.
INSERTING_STRATEGIES = frozenset({"unused"})
#: Strategies that can prune an unpruned model's vectors at indexing only.
POSTHOC_STRATEGIES = tuple(s for s in STRATEGIES if s != "none" and s not in INSERTING_STRATEGIES)
#: A regular expression matching exactly one strategy name (the Snakefile's wildcard patterns).
STRATEGY_PATTERN = "|".join(STRATEGIES)


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
