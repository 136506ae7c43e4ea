"""Budgets fitted to a whole collection: variable per-passage budgets and static pruning of frequent tokens.

A fixed budget keeps ``k`` vectors of every passage. The strategies fitted to
the collection (:data:`~tokenprune.strategies.CORPUS_FITTED_STRATEGIES`) hold
the *mean* at ``k`` over the collection being encoded instead, and let each
passage's count vary:

* a **variable budget** (``attention_var``, ``pool_var``) gives every passage
  the same share of its candidate tokens, ``round(share * n)`` of its ``n``
  (at least one), with the share chosen so the collection's mean is as close
  to ``k`` as the rounding allows (:func:`share_for_mean`): long passages keep
  more vectors than short ones;
* **static pruning** (``static``, Acquavia et al., DocEng 2023) drops the
  vectors of the collection's most frequent tokens wherever they occur, one
  stop list for every passage: the fewest most frequent token ids whose
  removal brings the mean below ``k`` (:func:`frequent_token_ids`).

Both read the same statistics, :class:`CandidateCounts`: the candidate tokens
of each passage as the model encodes it (truncated to the passage length,
under the model's candidate rule), counted in one tokenisation pass over the
collection (:meth:`tokenprune.model.ColBERT.count_candidates`). Indexing counts the collection being
indexed, training the training collection, so the mean is ``k`` wherever the
model is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tokenprune.errors import TokenpruneError

__all__ = ["CandidateCounts", "proportional_budgets", "share_for_mean", "frequent_token_ids"]


@dataclass(frozen=True)
class CandidateCounts:
    """A collection's candidate tokens, as a selector sees them.

    Attributes
    ----------
    per_passage
        ``[passages]`` candidate tokens of each passage.
    per_token
        ``[vocabulary]`` occurrences of each token id among all candidates.
    """

    per_passage: np.ndarray
    per_token: np.ndarray

    @property
    def passages(self) -> int:
        return len(self.per_passage)

    @property
    def mean(self) -> float:
        """Mean candidate tokens per passage (what the unpruned index stores)."""
        return float(self.per_passage.mean()) if self.passages else 0.0


def proportional_budgets(candidates: torch.Tensor, share: float) -> torch.Tensor:
    """``round(share * n)`` of each passage's ``n`` candidates (halves to even), at least one, at most ``n`` (0 if 0)."""
    budgets = torch.round(candidates.double() * share).long()
    return torch.minimum(budgets.clamp(min=1), candidates.long())


def _mean_kept(per_passage: np.ndarray, share: float) -> float:
    return float(proportional_budgets(torch.from_numpy(per_passage), share).double().mean())


def share_for_mean(per_passage: np.ndarray, k: int) -> float:
    """The share of each passage's candidates that keeps ``k`` per passage on average, as near as rounding allows.

    The mean kept grows with the share in steps; of the two shares around
    ``k`` the one whose mean is closer wins (the lower on a tie). A collection
    whose passages average at most ``k`` candidates keeps everything (share 1).

    Raises
    ------
    TokenpruneError
        For an empty collection or a ``k`` below 1.
    """
    per_passage = np.asarray(per_passage, dtype=np.int64)
    if per_passage.size == 0 or per_passage.sum() == 0:
        raise TokenpruneError("no candidate tokens to share out: the collection is empty")
    if k < 1:
        raise TokenpruneError(f"a mean budget needs k >= 1, got {k!r}")
    if float(per_passage.mean()) <= k:
        return 1.0
    low, high = 0.0, 1.0  # mean(low) < k <= mean(high)
    for _ in range(60):
        middle = (low + high) / 2
        if _mean_kept(per_passage, middle) < k:
            low = middle
        else:
            high = middle
    below, above = _mean_kept(per_passage, low), _mean_kept(per_passage, high)
    return low if k - below <= above - k else high


def frequent_token_ids(per_token: np.ndarray, passages: int, k: int) -> np.ndarray:
    """The fewest most frequent token ids whose removal leaves at most ``k`` candidates per passage on average.

    Token ids are ranked by their occurrences among the candidates (ties: the
    lower id first) and dropped in that order. Returns the dropped ids,
    sorted; none when the collection already averages ``k`` or fewer.
    """
    per_token = np.asarray(per_token, dtype=np.int64)
    if passages <= 0:
        raise TokenpruneError("no passages to prune: the collection is empty")
    excess = int(per_token.sum()) - k * passages
    if excess <= 0:
        return np.zeros(0, dtype=np.int64)
    # Stable sort of the negated counts: most frequent first, lower id first among equals.
    order = np.argsort(-per_token, kind="stable")
    removed = np.cumsum(per_token[order])
    dropped = int(np.searchsorted(removed, excess)) + 1
    return np.sort(order[:dropped])
