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

Later families follow the same interface: ``const`` (ConstBERT) stores ``k``
learned mixtures of the candidates' vectors, and the strategies fitted to the
collection (``attention_var``, ``pool_var``, ``static``) hold the *mean*
count at ``k`` while each passage's varies (:mod:`tokenprune.budgets`).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tokenprune.budgets import CandidateCounts, frequent_token_ids, proportional_budgets, share_for_mean
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
    "ConstVectors",
    "VariableBudget",
    "VariableTopAttention",
    "VariablePooling",
    "StaticPruning",
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


def top_k_mask(scores: torch.Tensor, candidates: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
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
        Positions to keep per row: one count for every row, or ``[batch]`` counts (a variable budget).
    """
    length = scores.shape[1]
    if isinstance(k, int) and k >= length:
        return candidates.clone()
    # A tiny position penalty makes ties resolve to the earlier token, deterministically.
    position = torch.arange(length, device=scores.device, dtype=torch.float64)
    ranked = scores.double() - position * 1e-9
    ranked = ranked.masked_fill(~candidates, float("-inf"))
    keep = torch.zeros_like(candidates)
    if isinstance(k, int):
        keep.scatter_(1, ranked.topk(k, dim=1).indices, True)
    else:
        order = ranked.argsort(dim=1, descending=True, stable=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(length, device=scores.device).expand_as(order))
        keep = rank < k.to(scores.device)[:, None]
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
    #: Whether the budgets depend on the encoded collection's token counts (:meth:`fit_to_corpus` first).
    needs_corpus_counts: ClassVar[bool] = False
    #: Whether :meth:`reduce` wants the projected vectors before L2 normalisation (it normalises what it stores).
    mixes_before_normalising: ClassVar[bool] = False

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

    def trainable_module(self) -> nn.Module | None:
        """The selection layer's own trainable parameters, which the model holds and saves (only ``const`` has any)."""
        return None

    def fit_to_corpus(self, counts: CandidateCounts) -> None:
        """Fit the budgets to the collection about to be encoded (for selectors with ``needs_corpus_counts``)."""
        if self.needs_corpus_counts:
            raise NotImplementedError(f"strategy {self.name!r} needs corpus counts but does not fit to them")

    def fitted(self) -> dict[str, object]:
        """What :meth:`fit_to_corpus` chose, for the index statistics (empty for a fixed budget)."""
        return {}

    def row_budgets(self, candidates: torch.Tensor) -> int | torch.Tensor:
        """Vectors each passage keeps, given its ``[batch, length]`` candidates: ``k`` for all, unless the budget varies."""
        return self.budget

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
        return top_k_mask(-position.float(), candidates, self.row_budgets(candidates))


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
        candidates = candidate_mask(batch, candidate_tokens) & ~batch.special
        return top_k_mask(scores, candidates, self.row_budgets(candidates))


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
            raise TokenpruneError(f"strategy {self.name!r} needs the backbone's last-layer attentions")
        rows = batch.attention_mask.to(batch.attentions.dtype)[:, None, :, None]
        received = (batch.attentions * rows).sum(dim=(1, 2))
        candidates = candidate_mask(batch, candidate_tokens)
        return top_k_mask(received.float(), candidates, self.row_budgets(candidates))


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
            labels = ward_clusters(cosine_profiles(vectors.detach(), members), members, self.row_budgets(members))
        means, named = cluster_means(vectors, labels)
        return gather_kept(means, named, batch.input_ids)


@register("const")
class ConstVectors(TokenSelector):
    """ConstBERT's fixed count: ``k`` learned linear mixtures of the passage's candidate vectors.

    Output ``j`` is ``sum_i W[j, i] v_i`` over the candidate positions ``i``
    of the encoded passage (padding, special tokens and, under the default
    rule, punctuation contribute nothing), with ``W`` a ``[k, passage
    length]`` matrix trained with the model, as in MacAvaney, Mallia and
    Tonellotto (ECIR 2025). As there, the mixtures are taken of the projected
    vectors before L2 normalisation, and normalised after. Every passage
    stores exactly ``k`` vectors, so a passage shorter than ``k`` stores more
    vectors than it has tokens. There is no post-hoc form: ``W`` exists only
    once trained. ``W`` starts as ``nn.Linear``'s default (uniform), as
    ConstBERT's does. Each stored vector records the candidate position of
    its largest absolute weight, for the token diagnostics.

    Parameters
    ----------
    k
        Vectors stored per passage.
    passage_length
        The model's passage length (word pieces, special tokens included): the width of ``W``.
    normalize
        Whether the model L2-normalises its vectors.
    """

    mixes_before_normalising = True

    def __init__(self, k: int | None, passage_length: int | None = None, normalize: bool | None = None) -> None:
        super().__init__(k)
        if passage_length is None or normalize is None:
            raise TokenpruneError("strategy 'const' needs its model's passage length and normalisation setting")
        self.normalize = normalize
        self.mixing = nn.Linear(passage_length, self.budget, bias=False)

    def trainable_module(self) -> nn.Module:
        return self.mixing

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        """Every candidate: each enters every mixture."""
        return candidate_mask(batch, candidate_tokens)

    def reduce(self, vectors: torch.Tensor, batch: PassageBatch, candidate_tokens: str) -> PassageVectors:
        members = candidate_mask(batch, candidate_tokens)
        width = vectors.shape[1]
        if width > self.mixing.in_features:
            raise TokenpruneError(
                f"strategy 'const' mixes at most {self.mixing.in_features} positions, the passage length it was built "
                f"for; got passages of {width}"
            )
        weights = self.mixing.weight[:, :width]
        mixed = torch.einsum("kl,bld->bkd", weights.to(vectors.dtype), vectors * members[..., None].to(vectors.dtype))
        if self.normalize:
            mixed = F.normalize(mixed, dim=-1)
        with torch.no_grad():
            dominant = (weights.abs()[None] * members[:, None, :]).argmax(dim=-1)
        stored = members.any(dim=1, keepdim=True).expand(-1, self.budget)
        return PassageVectors(
            vectors=mixed * stored[..., None].to(mixed.dtype),
            mask=stored,
            positions=dominant,
            token_ids=batch.input_ids.gather(1, dominant),
        )


class VariableBudget(TokenSelector):
    """A selector whose passages keep the same *share* of their candidates, ``k`` on average over the collection.

    :meth:`fit_to_corpus` sets the share from the encoded collection's
    candidate counts (:func:`tokenprune.budgets.share_for_mean`); a passage of
    ``n`` candidates then keeps ``round(share * n)``, at least one.
    """

    needs_corpus_counts = True
    share: float | None = None

    def fit_to_corpus(self, counts: CandidateCounts) -> None:
        self.share = share_for_mean(counts.per_passage, self.budget)

    def fitted(self) -> dict[str, object]:
        return {} if self.share is None else {"share_of_tokens": round(self.share, 6)}

    def row_budgets(self, candidates: torch.Tensor) -> torch.Tensor:
        if self.share is None:
            raise TokenpruneError(
                f"strategy {self.name!r} keeps a share of each passage fitted to the collection: "
                "call fit_to_corpus(count_candidates(...)) before encoding"
            )
        return proportional_budgets(candidates.sum(dim=1), self.share)


@register("attention_var")
class VariableTopAttention(VariableBudget, TopAttention):
    """``attention`` with a variable budget: each passage keeps the same share of its tokens, ``k`` on average."""


@register("pool_var")
class VariablePooling(VariableBudget, TokenPooling):
    """``pool`` with a variable budget: each passage is pooled to the same share of its tokens, ``k`` on average."""


@register("static")
class StaticPruning(TokenSelector):
    """Static pruning (Acquavia, MacAvaney and Tonellotto, DocEng 2023): drop the collection's most frequent tokens.

    One stop list for every passage: the fewest most frequent candidate token
    ids of the encoded collection whose removal leaves at most ``k`` vectors
    per passage on average (:func:`tokenprune.budgets.frequent_token_ids`).
    Every other candidate is kept, so counts vary per passage. Offered as a
    post-hoc reference (it is the cheapest rival of ``idf``, whose ``k`` per
    passage is the same ranking cut per passage instead of per collection).
    """

    needs_corpus_counts = True
    stopword_ids: torch.Tensor | None = None

    def fit_to_corpus(self, counts: CandidateCounts) -> None:
        self.stopword_ids = torch.from_numpy(frequent_token_ids(counts.per_token, counts.passages, self.budget))

    def fitted(self) -> dict[str, object]:
        return {} if self.stopword_ids is None else {"stopword_ids": self.stopword_ids.tolist()}

    def select(self, batch: PassageBatch, candidate_tokens: str) -> torch.Tensor:
        if self.stopword_ids is None:
            raise TokenpruneError(
                "strategy 'static' drops the collection's most frequent tokens: "
                "call fit_to_corpus(count_candidates(...)) before encoding"
            )
        stopwords = self.stopword_ids.to(batch.input_ids.device)
        return candidate_mask(batch, candidate_tokens) & ~torch.isin(batch.input_ids, stopwords)


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
