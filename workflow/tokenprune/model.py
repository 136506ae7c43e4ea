"""ColBERT with a token-selection layer on the passage side.

Queries are encoded as ``[CLS] [Q] q1 … [SEP]`` (optionally padded with
``[MASK]`` to the query length: ColBERT's query expansion), passages as
``[CLS] [D] (inserted ids) p1 … [SEP]``; ``[Q]``/``[D]`` are ``[unused0]`` and
``[unused1]``, as in ColBERT. Every output vector is projected to ``dim``
dimensions and optionally L2-normalised. On the passage side the selection
layer (:mod:`tokenprune.selection`) keeps at most ``k`` vectors — in training
as well as at indexing — and MaxSim only ever scores the kept ones.
"""

from __future__ import annotations

import json
import logging
import re
import string
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokenprune.attention import (
    ParallelDropout,
    last_layer_attention,
    last_self_attention,
    register_attention,
    swap_dropout,
)
from tokenprune.backbone import load_tokenizer, resolve_backbone
from tokenprune.budgets import CandidateCounts
from tokenprune.config import schema_default
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_directory
from tokenprune.pylate_format import PylateColBERT, is_pylate_folder, read_pylate_folder
from tokenprune.selection import (
    CANDIDATE_RULES,
    PassageBatch,
    PassageVectors,
    TokenSelector,
    candidate_mask,
    make_selector,
)
from tokenprune.strategies import check_strategy_k

__all__ = [
    "QUERY_MARKER",
    "DOCUMENT_MARKER",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "IDF_FILE",
    "FORMAT_VERSION",
    "ColBERTConfig",
    "parse_k",
    "maxsim",
    "ColBERT",
]

log = logging.getLogger(__name__)

QUERY_MARKER = "[unused0]"
DOCUMENT_MARKER = "[unused1]"
CONFIG_FILE = "tokenprune.json"
WEIGHTS_FILE = "model.safetensors"
IDF_FILE = "idf.safetensors"
# Version 2 replaced the boolean ``mask_punctuation`` by ``candidate_tokens``.
FORMAT_VERSION = 2


@dataclass(frozen=True)
class ColBERTConfig:
    """Everything needed to rebuild a model, saved as ``tokenprune.json``.

    Parameters
    ----------
    backbone
        Backbone as configured (``"embedded"``, a Hugging Face id or a path).
    strategy, k
        Selection strategy and vectors kept per passage (``k=None`` for ``none``).
    dim
        Output dimension of the linear projection.
    query_max_length, passage_max_length
        Lengths in word pieces, special tokens included. ``unused`` adds its
        ``k`` inserted ids on top, so every strategy sees the same text.
    normalize
        L2-normalise every output vector.
    query_expansion
        Pad queries with ``[MASK]`` to ``query_max_length`` and score those vectors too.
    candidate_tokens
        Which passage positions a strategy may keep (:data:`~tokenprune.selection.CANDIDATE_RULES`):
        ``content`` (no special tokens, no punctuation), ``no_punctuation`` or ``all``.
    projection_init
        ``"pca"`` or ``"random"``; only used when training starts.
    """

    # The fields with schema_default take the schema's (config section ``model``);
    # strategy and k come from the study's wildcards.
    backbone: str = schema_default("model", "backbone")
    strategy: str = "none"
    k: int | None = None
    dim: int = schema_default("model", "dim")
    query_max_length: int = schema_default("model", "query_max_length")
    passage_max_length: int = schema_default("model", "passage_max_length")
    normalize: bool = schema_default("model", "normalize")
    query_expansion: bool = schema_default("model", "query_expansion")
    candidate_tokens: str = schema_default("model", "candidate_tokens")
    projection_init: str = schema_default("model", "projection_init")

    def __post_init__(self) -> None:
        check_strategy_k(self.strategy, self.k)
        for name in ("dim", "query_max_length", "passage_max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise TokenpruneError(f"{name} must be a positive integer, got {value!r}")
        if self.query_max_length < 4 or self.passage_max_length < 4:
            raise TokenpruneError(
                "query_max_length and passage_max_length must leave room for the special tokens (>= 4)"
            )
        if self.candidate_tokens not in CANDIDATE_RULES:
            raise TokenpruneError(
                f"candidate_tokens must be one of {list(CANDIDATE_RULES)}, got {self.candidate_tokens!r}"
            )
        if self.projection_init not in ("pca", "random"):
            raise TokenpruneError(f"projection_init must be 'pca' or 'random', got {self.projection_init!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ColBERTConfig:
        """Build from a dict, rejecting unknown keys by name."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TokenpruneError(f"unknown model setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


def parse_k(value: str | int | None) -> int | None:
    """``"all"``/``None`` → ``None`` (keep every token); a positive integer otherwise."""
    if value is None or value == "all":
        return None
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise TokenpruneError(f"k must be a positive integer or 'all', got {value!r}") from None
    if k <= 0 or str(k) != str(value).strip():
        raise TokenpruneError(f"k must be a positive integer or 'all', got {value!r}")
    return k


def maxsim(queries: torch.Tensor, query_mask: torch.Tensor, passages: PassageVectors) -> torch.Tensor:
    """ColBERT's late interaction: every query against every passage.

    ``score(q, p) = sum_i max_j <q_i, p_j>`` over real query tokens ``i`` and
    kept passage vectors ``j``.

    Parameters
    ----------
    queries
        ``[queries, query_length, dim]``.
    query_mask
        ``[queries, query_length]``, True for tokens that count.
    passages
        Stored passage vectors (see :meth:`tokenprune.selection.TokenSelector.reduce`).

    Returns
    -------
    torch.Tensor
        ``[queries, passages]`` scores.
    """
    similarity = torch.einsum("qid,pjd->qpij", queries, passages.vectors)
    similarity = similarity.masked_fill(~passages.mask[None, :, None, :], float("-inf"))
    best = similarity.max(dim=-1).values
    return (best * query_mask[:, None, :].to(best.dtype)).sum(dim=-1)


class ColBERT(nn.Module):
    """Backbone + linear projection + passage-side selection layer.

    Build a fresh one with :meth:`from_backbone`, reload a trained one with :meth:`load`.
    """

    # Declared for the type checker: nn.Module's __getattr__ would type every attribute as Tensor | Module.
    config: ColBERTConfig
    backbone: Any  # a transformers model: its attributes (config, encoder, save_pretrained) are dynamic
    tokenizer: Any
    projection: nn.Linear
    idf: torch.Tensor | None
    selector: TokenSelector
    punctuation_ids: torch.Tensor
    special_ids: torch.Tensor

    def __init__(self, config: ColBERTConfig, backbone: Any, tokenizer: Any, idf: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.projection = nn.Linear(int(backbone.config.hidden_size), config.dim, bias=False)
        self.idf = idf
        vocabulary = tokenizer.get_vocab()
        for marker in (QUERY_MARKER, DOCUMENT_MARKER):
            if marker not in vocabulary:
                raise TokenpruneError(
                    f"backbone {config.backbone!r} has no {marker} token; tokenprune's query/document markers "
                    "need a BERT-style vocabulary"
                )
        self.query_marker_id = vocabulary[QUERY_MARKER]
        self.document_marker_id = vocabulary[DOCUMENT_MARKER]
        unused = sorted(
            (
                (int(match.group(1)), index)
                for token, index in vocabulary.items()
                if (match := re.fullmatch(r"\[unused(\d+)\]", token))
            ),
        )
        self.unused_ids = [index for _, index in unused if index not in (self.query_marker_id, self.document_marker_id)]
        self.selector = make_selector(
            config.strategy,
            config.k,
            idf=idf,
            unused_ids=self.unused_ids,
            passage_length=config.passage_max_length,
            normalize=config.normalize,
        )
        # A selection layer with weights of its own (const) is part of the model: trained, saved and moved with it.
        self.selection_layer: nn.Module | None = self.selector.trainable_module()
        if self.selector.needs_attention:
            try:
                last_self_attention(backbone)
            except TypeError as error:
                raise TokenpruneError(f"strategy 'attention' needs a BERT-style backbone: {error}") from None
        swap_dropout(backbone, ParallelDropout)
        punctuation = [vocabulary[symbol] for symbol in string.punctuation if symbol in vocabulary]
        self.register_buffer("punctuation_ids", torch.tensor(punctuation, dtype=torch.long), persistent=False)
        special = sorted({*tokenizer.all_special_ids, self.query_marker_id, self.document_marker_id})
        self.register_buffer("special_ids", torch.tensor(special, dtype=torch.long), persistent=False)
        # True once the projection is a PyLate model's own (take_pylate_projection): training keeps it.
        self.projection_from_backbone = False

    def use_idf(self, idf: torch.Tensor) -> None:
        """Rank tokens with another IDF table from now on (e.g. the indexed collection's; strategy ``idf`` only)."""
        if self.config.strategy != "idf":
            raise TokenpruneError(f"an IDF table only serves strategy 'idf', not {self.config.strategy!r}")
        self.idf = idf
        self.selector = make_selector("idf", self.config.k, idf=idf)

    # ------------------------------------------------------------------ building and saving
    @classmethod
    def from_backbone(cls, config: ColBERTConfig, idf: torch.Tensor | None = None) -> ColBERT:
        """A new model on top of a pre-trained backbone, with a randomly initialised projection."""
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        location = resolve_backbone(config.backbone)
        try:
            backbone = AutoModel.from_pretrained(location, attn_implementation=register_attention())
        except (OSError, ValueError) as error:
            raise TokenpruneError(f"cannot load backbone {config.backbone!r} ({location}): {error}") from None
        model = cls(config, backbone, load_tokenizer(config.backbone), idf=idf)
        if is_pylate_folder(location):
            model.take_pylate_projection(read_pylate_folder(location))
        return model

    def take_pylate_projection(self, pylate: PylateColBERT) -> None:
        """Start from a PyLate ColBERT model's own projection (its backbone is already loaded), not a new one.

        Training then fine-tunes that model (no PCA initialisation). Its
        markers must be tokenprune's; its lengths give way to the config's.
        """
        folder = str(pylate.folder)
        if (pylate.query_prefix, pylate.document_prefix) != (QUERY_MARKER, DOCUMENT_MARKER):
            raise TokenpruneError(
                f"PyLate model {folder!r} marks queries and documents with {pylate.query_prefix!r} and "
                f"{pylate.document_prefix!r}; tokenprune reads models that use {QUERY_MARKER!r} and {DOCUMENT_MARKER!r} "
                "(ColBERT's own, as in stanford-nlp and answerai ColBERT models and tokenprune's exports)"
            )
        expected = (self.config.dim, self.backbone.config.hidden_size)
        if tuple(pylate.projection.shape) != expected:
            raise TokenpruneError(
                f"PyLate model {folder!r} projects {pylate.projection.shape[1]} to {pylate.projection.shape[0]} "
                f"dimensions; set model.dim to {pylate.projection.shape[0]} (it is {self.config.dim})"
            )
        for name, ours, theirs in (
            ("query_max_length", self.config.query_max_length, pylate.query_length),
            ("passage_max_length", self.config.passage_max_length, pylate.document_length),
        ):
            if theirs is not None and theirs != ours:
                log.warning("PyLate model %s was made with %s %d; using the config's %d", folder, name, theirs, ours)
        with torch.no_grad():
            self.projection.weight.copy_(pylate.projection.to(self.projection.weight.dtype))
        self.projection_from_backbone = True

    def save(self, directory: str | Path, extra_files: dict[str, str] | None = None) -> None:
        """Write weights (safetensors), configs and tokenizer to ``directory``, atomically.

        Parameters
        ----------
        directory
            Folder to create (replaced as a whole if it exists).
        extra_files
            File name to text content, written alongside (e.g. the loss log).
        """
        from safetensors.torch import save_file

        with atomic_directory(directory) as staging:
            for name, content in (extra_files or {}).items():
                (staging / name).write_text(content, encoding="utf-8")
            state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
            save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
            self.backbone.config.save_pretrained(staging)
            self.tokenizer.save_pretrained(staging)
            if self.idf is not None:
                save_file({"idf": self.idf.contiguous().cpu()}, str(staging / IDF_FILE))
            payload = {"format_version": FORMAT_VERSION, **asdict(self.config)}
            (staging / CONFIG_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> ColBERT:
        """Reload a model saved by :meth:`save`; no training arguments are needed."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file():
            raise TokenpruneError(f"{str(directory)!r} is not a tokenprune model (no {CONFIG_FILE})")
        try:
            payload = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            if payload.pop("format_version", None) == 1 and "mask_punctuation" in payload:
                # Version 1 models kept special tokens among the candidates.
                payload["candidate_tokens"] = "no_punctuation" if payload.pop("mask_punctuation") else "all"
            config = ColBERTConfig.from_dict(payload)
            backbone = AutoModel.from_config(
                AutoConfig.from_pretrained(directory), attn_implementation=register_attention()
            )
            tokenizer = AutoTokenizer.from_pretrained(directory, use_fast=True)
            idf = load_file(str(directory / IDF_FILE))["idf"] if (directory / IDF_FILE).is_file() else None
            state = load_file(str(directory / WEIGHTS_FILE))
        except (json.JSONDecodeError, OSError, ValueError, SafetensorError, KeyError) as error:
            raise TokenpruneError(f"model folder {str(directory)!r} is unreadable or corrupted: {error}") from None
        model = cls(config, backbone, tokenizer, idf=idf)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise TokenpruneError(
                f"model folder {str(directory)!r} does not match its config: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        return model.to(device)

    # ------------------------------------------------------------------ tokenisation
    @property
    def device(self) -> torch.device:
        return self.projection.weight.device

    def _word_pieces(self, texts: list[str], budget: int) -> list[list[int]]:
        encoded = self.tokenizer(
            texts, add_special_tokens=False, truncation=True, max_length=budget, padding=False, verbose=False
        )
        return encoded["input_ids"]

    def tokenize_queries(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``[CLS] [Q] … [SEP]`` ids and attention mask; ``[MASK]``-padded when expanding."""
        length = max_length or self.config.query_max_length
        tokenizer = self.tokenizer
        rows = [
            [tokenizer.cls_token_id, self.query_marker_id, *ids, tokenizer.sep_token_id]
            for ids in self._word_pieces(texts, length - 3)
        ]
        if self.config.query_expansion:
            # ColBERT's query augmentation: [MASK] up to the full length, attended and scored like real tokens.
            rows = [row + [tokenizer.mask_token_id] * (length - len(row)) for row in rows]
        return self._pad(rows)

    def tokenize_passages(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``[CLS] [D] (selector's inserted ids) … [SEP]`` ids and attention mask."""
        prefix = self.selector.prefix_ids()
        tokenizer = self.tokenizer
        rows = [
            [tokenizer.cls_token_id, self.document_marker_id, *prefix, *ids, tokenizer.sep_token_id]
            for ids in self._word_pieces(texts, self.config.passage_max_length - 3)
        ]
        return self._pad(rows)

    def _pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = torch.tensor(row)
            attention_mask[index, : len(row)] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)

    # ------------------------------------------------------------------ encoding
    def _project(self, hidden: torch.Tensor, *, normalize: bool) -> torch.Tensor:
        vectors = self.projection(hidden)
        return F.normalize(vectors, dim=-1) if normalize else vectors

    def encode_queries(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Query vectors ``[batch, length, dim]`` and the mask of vectors that count."""
        input_ids, attention_mask = self.tokenize_queries(texts, max_length)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self._project(hidden, normalize=self.config.normalize), attention_mask.bool()

    def encode_passages(self, texts: list[str]) -> PassageVectors:
        """Passage vectors after the selection layer."""
        input_ids, attention_mask = self.tokenize_passages(texts)
        return self.encode_passage_ids(input_ids, attention_mask)

    def encode_passage_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> PassageVectors:
        """Encode already tokenised passages and apply the selection layer."""
        vectors, batch = self.encode_passage_tokens(
            input_ids, attention_mask, with_attention=self.selector.needs_attention
        )
        return self.reduce(vectors, batch)

    def reduce(
        self, vectors: torch.Tensor, batch: PassageBatch, selector: TokenSelector | None = None
    ) -> PassageVectors:
        """The vectors ``selector`` (default: the model's own) stores of these passages, under the model's candidate rule."""
        return (selector or self.selector).reduce(vectors, batch, self.config.candidate_tokens)

    def passage_batch(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, attentions: torch.Tensor | None = None
    ) -> PassageBatch:
        """What a selector may look at for these passages (special and punctuation positions marked)."""
        return PassageBatch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            punctuation=torch.isin(input_ids, self.punctuation_ids),
            special=torch.isin(input_ids, self.special_ids),
            attentions=attentions,
        )

    def encode_passage_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, with_attention: bool
    ) -> tuple[torch.Tensor, PassageBatch]:
        """Every position's projected vector ``[batch, length, dim]``, before selection, and the selector's view.

        ``with_attention`` adds the last layer's attention probabilities to the
        view (for ``attention``); one pass can then serve several selectors,
        as the post-hoc indexes do.
        """
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=with_attention)
        attentions = (
            last_layer_attention(self.backbone, output.hidden_states[-2], attention_mask) if with_attention else None
        )
        # A mixing selector (const) takes the vectors before normalisation and normalises its mixtures.
        normalize = self.config.normalize and not self.selector.mixes_before_normalising
        vectors = self._project(output.last_hidden_state, normalize=normalize)
        return vectors, self.passage_batch(input_ids, attention_mask, attentions)

    # ------------------------------------------------------------------ budgets fitted to a collection
    def count_candidates(self, batches: Iterable[list[str]]) -> CandidateCounts:
        """The candidate tokens of every passage in ``batches`` of texts as this model encodes them (tokenisation only).

        Inserted ids (``unused``) are not counted: they are no passage token.
        """
        inserted = torch.tensor(self.selector.prefix_ids(), dtype=torch.long)
        per_passage: list[np.ndarray] = []
        per_token = np.zeros(len(self.tokenizer), dtype=np.int64)
        for texts in batches:
            input_ids, attention_mask = (tensor.cpu() for tensor in self.tokenize_passages(texts))
            view = self.passage_batch(input_ids, attention_mask)
            candidates = candidate_mask(view, self.config.candidate_tokens) & ~torch.isin(input_ids, inserted)
            per_passage.append(candidates.sum(dim=1).numpy())
            per_token += np.bincount(input_ids[candidates].numpy(), minlength=len(per_token))[: len(per_token)]
        return CandidateCounts(
            per_passage=np.concatenate(per_passage) if per_passage else np.zeros(0, dtype=np.int64),
            per_token=per_token,
        )

    def fit_selectors(self, batches: Iterable[list[str]], selectors: Iterable[TokenSelector]) -> None:
        """Fit the selectors that need them to the candidate counts of a whole collection, given as ``batches`` of texts.

        The batches are read once, and only if a selector needs them. Pass the
        whole collection, even for one shard's job, so every shard holds the same mean.
        """
        fitted = [selector for selector in selectors if selector.needs_corpus_counts]
        if fitted:
            counts = self.count_candidates(batches)
            for selector in fitted:
                selector.fit_to_corpus(counts)

    def score(self, queries: list[str], passages: list[str]) -> torch.Tensor:
        """MaxSim scores ``[len(queries), len(passages)]``."""
        query_vectors, query_mask = self.encode_queries(queries)
        return maxsim(query_vectors, query_mask, self.encode_passages(passages))
