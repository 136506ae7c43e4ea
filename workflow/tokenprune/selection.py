"""The selection layer: which passage token vectors survive, per strategy.

Each strategy is one small class registered under its name; all share the
:class:`TokenSelector` interface, so a new strategy is one class (plus a test).
A selector sees the encoded passage batch and returns a boolean *keep* mask.

One *candidate rule* (:data:`CANDIDATE_RULES`, the model setting
``candidate_tokens``) says which positions any strategy may spend its ``k``
slots on, so strategies differ only in how they rank the same candidates:

* ``content`` (default): real tokens that are neither special tokens
  (``[CLS]``, ``[SEP]``, the ``[Q]``/``[D]`` markers, ``[MASK]``) nor
  punctuation. Otherwise ``first`` spends two of its slots on ``[CLS]`` and
  ``[D]`` and ``idf`` gives special tokens, absent from its document counts,
  the highest IDF;
* ``no_punctuation``: real tokens minus punctuation (ColBERT's own document mask);
* ``all``: every real token.

Whatever the rule, padding is never a candidate, a passage with fewer than
``k`` candidates keeps all of them, ``idf`` never chooses a special token,
and ``unused`` keeps exactly its inserted ``[unusedN]`` positions. The
percentage of tokens kept divides by the candidates of the same rule
(:func:`candidate_mask`), so above and below the line count alike.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from tokenprune.errors import TokenpruneError
from tokenprune.pooling import cluster_means, cosine_profiles, ward_clusters
from tokenprune.strategies import check_strategy_k

__all__ = [
    "SELECTORS",
    "register",
    "PassageBatch",
    "PassageVectors",
    "gather_kept",
    "CANDIDATE_RULES",
    "candidate_mask",
    "top_k_mask",
    "TokenSelector",
    "KeepAll",
    "FirstK",
    "TopIdf",
    "UnusedTokens",
    "TopAttention",
    "TokenPooling",
    "make_selector",
]

SELECTORS: dict[str, type[TokenSelector]] = {}


def register(name: str) -> Callable[[type[TokenSelector]], type[TokenSelector]]:
    """Class decorator adding a strategy to :data:`SELECTORS` under ``name``."""

    def add(cls: type[TokenSelector]) -> type[TokenSelector]:
        cls.name = name
        SELECTORS[name] = cls
        return cls

    return add


@dataclass
class PassageBatch:
    """What a selector may look at.

    Attributes
    ----------
    input_ids
        ``[batch, length]`` token ids, including ``[CLS]``, the document
        marker, any inserted ``[unusedN]`` ids and ``[SEP]``.
    attention_mask
        ``[batch, length]``, 1 for real tokens and 0 for padding.
    punctuation
        ``[batch, length]``, True where the token is punctuation.
    special
        ``[batch, length]``, True where the token is a special token
        (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]``, the query and document
        markers); inserted ``[unusedN]`` ids are not special.
    attentions
        Last-layer attention probabilities ``[batch, heads, rows, columns]``,
        present only for selectors with ``needs_attention``.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    punctuation: torch.Tensor
    special: torch.Tensor
    attentions: torch.Tensor | None = None


@dataclass
class PassageVectors:
    """The vectors stored of a passage batch, left-aligned and padded.

    Attributes
    ----------
    vectors
        ``[batch, kept, dim]``; rows beyond a passage's count are zeros.
    mask
        ``[batch, kept]``, True for stored vectors.
    positions
        ``[batch, kept]`` position in the encoded passage of each stored
        vector's token (for ``pool``, the first token of its cluster).
    token_ids
        ``[batch, kept]`` token id at each of those positions.
    """

    vectors: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    token_ids: torch.Tensor


def gather_kept(vectors: torch.Tensor, keep: torch.Tensor, input_ids: torch.Tensor) -> PassageVectors:
    """Compact the kept positions of each row to the front, in position order."""
    counts = keep.sum(dim=1)
    width = max(int(counts.max()) if counts.numel() else 0, 1)
    # A stable sort of "not kept" puts kept positions first and keeps their order.
    positions = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :width]
    mask = torch.arange(width, device=keep.device)[None, :] < counts[:, None]
    gathered = vectors.gather(1, positions[..., None].expand(-1, -1, vectors.shape[-1]))
    return PassageVectors(
        vectors=gathered * mask[..., None].to(gathered.dtype),
        mask=mask,
        positions=positions,
        token_ids=input_ids.gather(1, positions),
    )


CANDIDATE_RULES = ("content", "no_punctuation", "all")


def candidate_mask(batch: PassageBatch, rule: str = "content") -> torch.Tensor:
    """``[batch, length]`` positions a strategy may keep under candidate ``rule`` (see the module docstring).

    Raises
    ------
    TokenpruneError
        For an unknown rule, naming the known ones.
    """
    if rule not in CANDIDATE_RULES:
        raise TokenpruneError(f"unknown candidate rule {rule!r}; choose from {list(CANDIDATE_RULES)}")
    candidates = batch.attention_mask.bool()
    if rule != "all":
        candidates = candidates & ~batch.punctuation
    if rule == "content":
        candidates = candidates & ~batch.special
    return candidates


def top_k_mask(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` highest-scoring candidate positions of each row.

    Rows with fewer than ``k`` candidates keep all of them; non-candidates are
    never kept. Among equal scores the earlier position wins.

    Parameters
    ----------
    scores
        ``[batch, length]`` floating-point scores.
    candidates
        ``[batch, length]`` boolean mask of selectable positions.
    k
        Positions to keep per row.
    """
    length = scores.shape[1]
    if k >= length:
        return candidates.clone()
    # A tiny position penalty makes ties resolve to the earlier token, deterministically.
    position = torch.arange(length, device=scores.device, dtype=torch.float64)
    ranked = scores.double() - position * 1e-9
    ranked = ranked.masked_fill(~candidates, float("-inf"))
    chosen = ranked.topk(k, dim=1).indices
    keep = torch.zeros_like(candidates)
    keep.scatter_(1, chosen, True)
    return keep & candidates


class TokenSelector(ABC):
    """Choose at most ``k`` passage positions to keep.

    Parameters
    ----------
    k
        Vectors kept per passage (``None`` for the unpruned baseline).
    """

    name: ClassVar[str]
    #: Whether the backbone must return last-layer attention probabilities.
    needs_attention: ClassVar[bool] = False

    def __init__(self, k: int | None) -> None:
        if self.name != "none":
            check_strategy_k(self.name, k)
        self.k = k

    @property
    def budget(self) -> int:
        """``k`` of a selector that prunes (every strategy but ``none``, whose k is None)."""
        if self.k is None:
            raise TokenpruneError(f"strategy {self.name!r} keeps every token: it has no budget")
        return self.k

    def prefix_ids(self) -> list[int]:
        """Token ids to insert right after the document marker (only ``unused`` has any)."""
        return []

    @abstractmethod
    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        """Return the ``[batch, length]`` boolean keep mask, a subset of ``candidate_mask(batch, candidate_tokens)``."""

    def reduce(self, vectors: torch.Tensor, batch: PassageBatch, candidate_tokens: str) -> PassageVectors:
        """The at most ``k`` vectors stored per passage, from every position's vector ``[batch, length, dim]``.

        Selecting strategies store the vectors of the positions :meth:`select`
        keeps; gradients flow to those vectors, not through the choice.
        """
        with torch.no_grad():
            keep = self.select(batch, candidate_tokens)
        return gather_kept(vectors, keep, batch.input_ids)


@register("none")
class KeepAll(TokenSelector):
    """The unpruned ColBERT baseline: every candidate token."""

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        return candidate_mask(batch, candidate_tokens)


@register("first")
class FirstK(TokenSelector):
    """The first ``k`` candidate tokens of the passage (with ``content``, the first ``k`` word pieces of its text)."""

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        candidates = candidate_mask(batch, candidate_tokens)
        position = torch.arange(candidates.shape[1], device=candidates.device).expand_as(candidates)
        return top_k_mask(-position.float(), candidates, self.budget)


@register("idf")
class TopIdf(TokenSelector):
    """The ``k`` candidate tokens with the highest IDF; special tokens are never chosen, whatever the rule.

    The table comes from the training corpus, or from the corpus being
    indexed (:mod:`tokenprune.idf`); a token absent from it scores as a
    token seen in no passage, the table's maximum.

    Parameters
    ----------
    k
        Vectors kept per passage.
    idf
        ``[vocabulary]`` IDF of every token id (see :mod:`tokenprune.idf`).
    """

    def __init__(self, k: int | None, idf: torch.Tensor | None = None) -> None:
        super().__init__(k)
        if idf is None:
            raise TokenpruneError("strategy 'idf' needs an IDF table: run 'tokenprune compute-idf' and pass --idf")
        self.idf = idf.float()

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        if int(batch.input_ids.max()) >= self.idf.numel():
            raise TokenpruneError(
                f"token id {int(batch.input_ids.max())} is outside the IDF table ({self.idf.numel()} entries); "
                "was the IDF computed with another tokenizer?"
            )
        scores = self.idf.to(batch.input_ids.device)[batch.input_ids]
        return top_k_mask(scores, candidate_mask(batch, candidate_tokens) & ~batch.special, self.budget)


@register("unused")
class UnusedTokens(TokenSelector):
    """Prepend ``k`` ``[unusedN]`` ids to the passage and keep only their output vectors.

    The ids are inserted as ids, not as text: the string ``"[unused5]"``
    would be split into word pieces by the tokenizer.

    Parameters
    ----------
    k
        Vectors kept per passage.
    unused_ids
        The ``[unusedN]`` ids available (the query and document markers
        already excluded), in vocabulary order.
    """

    def __init__(self, k: int | None, unused_ids: list[int] | None = None) -> None:
        super().__init__(k)
        supply = list(unused_ids or [])
        if self.budget > len(supply):
            raise TokenpruneError(
                f"strategy 'unused' with k={self.k} needs {self.k} [unusedN] tokens, but the vocabulary "
                f"has only {len(supply)} besides the markers; choose k <= {len(supply)}"
            )
        self.unused_ids = supply[: self.k]

    def prefix_ids(self) -> list[int]:
        return list(self.unused_ids)

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        inserted = torch.tensor(self.unused_ids, device=batch.input_ids.device)
        return torch.isin(batch.input_ids, inserted) & batch.attention_mask.bool()


@register("attention")
class TopAttention(TokenSelector):
    """The ``k`` candidate tokens that receive the most last-layer attention.

    A token's score is ``sum_h sum_i A[h, i, j]`` over heads ``h`` and real
    (non-padding) query rows ``i``: the attention *received* by column ``j``.
    The paper prints the sum over the token's own row, ``sum_h sum_j A[h, i, j]``,
    but each row of a softmax sums to one, so that score equals the number of
    heads for every token and cannot rank anything; the column sum is the
    reading that selects tokens.
    """

    needs_attention = True

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        if batch.attentions is None:
            raise TokenpruneError("strategy 'attention' needs the backbone's last-layer attentions")
        rows = batch.attention_mask.to(batch.attentions.dtype)[:, None, :, None]
        received = (batch.attentions * rows).sum(dim=(1, 2))
        return top_k_mask(received.float(), candidate_mask(batch, candidate_tokens), self.budget)


@register("pool")
class TokenPooling(TokenSelector):
    """Cluster each passage's candidate vectors into ``k`` groups and store each group's mean.

    PyLate's token pooling with the budget given as a number of vectors
    (``k`` clusters) rather than a ``pool_factor``, so it sits on the same
    size axis as the selecting strategies. The clustering is PyLate 1.2's:
    Ward linkage over each token's profile of cosine distances to the
    passage's tokens (:mod:`tokenprune.pooling`); the means are not
    re-normalised, as PyLate's are not. Only the candidates are pooled, so
    ``[CLS]``, ``[D]``, ``[SEP]`` and punctuation never blur a cluster
    (PyLate keeps ``[CLS]`` apart and pools the rest). Gradients flow
    through the means; the clustering is a fixed assignment per step.
    """

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        """Every candidate: pooling stores no token as it is, but every candidate enters a cluster."""
        return candidate_mask(batch, candidate_tokens)

    def reduce(self, vectors: torch.Tensor, batch: PassageBatch, candidate_tokens: str) -> PassageVectors:
        members = candidate_mask(batch, candidate_tokens)
        with torch.no_grad():
            labels = ward_clusters(cosine_profiles(vectors.detach(), members), members, self.budget)
        means, named = cluster_means(vectors, labels)
        return gather_kept(means, named, batch.input_ids)


def make_selector(strategy: str, k: int | None, **resources: object) -> TokenSelector:
    """Build the selector of ``strategy``, passing only the resources it accepts.

    Raises
    ------
    TokenpruneError
        For an unknown strategy, naming the registered ones.
    """
    if strategy not in SELECTORS:
        raise TokenpruneError(f"unknown strategy {strategy!r}; choose from {sorted(SELECTORS)}")
    cls = SELECTORS[strategy]
    # Keyword-only parameters count too: co_varnames' positional slice would drop them.
    accepted = inspect.signature(cls).parameters
    return cls(k, **{name: value for name, value in resources.items() if name in accepted})
