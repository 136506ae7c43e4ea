"""The backbone's attention and dropout, made fast on the CPU.

Two measured costs of a Hugging Face BERT on this project's 2-core CPU, and
what this module does about them:

- **Dropout masks.** PyTorch's CPU ``bernoulli_`` runs on one core here, and
  drawing the masks of dropout (the attention probabilities' above all) took
  a quarter of a training step. :func:`parallel_dropout` draws the mask in a fixed
  number of pieces, each from its own generator seeded from the global one,
  on all cores: the same distribution (other draws than ``bernoulli_``'s),
  reproducible under ``torch.manual_seed`` whatever the thread count. The backbone's ``nn.Dropout`` modules become
  :class:`ParallelDropout` (:func:`swap_dropout`), and the attention implementation
  :data:`ATTENTION_IMPLEMENTATION` is SDPA with that dropout.
- **Attention weights.** The ``attention`` strategy reads the last layer's
  attention probabilities, which SDPA does not return; asking for them
  switches *every* layer to the slower eager kernel. Instead every layer runs
  SDPA and :func:`last_layer_attention` recomputes the probabilities of the
  last layer alone from its input, without dropout: the selection needs no
  gradient, and should not depend on training noise (the eager kernel's
  weights, read before, included dropout in training).

Everything else (GPU, no dropout at inference) is plain SDPA.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ATTENTION_IMPLEMENTATION",
    "MASK_PIECES",
    "PARALLEL_MINIMUM",
    "dropout_mask",
    "parallel_dropout",
    "ParallelDropout",
    "sdpa_with_parallel_dropout",
    "register_attention",
    "swap_dropout",
    "last_self_attention",
    "last_layer_attention",
]

ATTENTION_IMPLEMENTATION = "tokenprune_sdpa"
# Pieces a mask is drawn in, independent of the thread count so that the mask is too.
MASK_PIECES = 8
# Below this many elements a thread hand-off costs more than it saves.
PARALLEL_MINIMUM = 1 << 16


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tokenprune-dropout")


def dropout_mask(like: torch.Tensor, keep: float) -> torch.Tensor:
    """A Bernoulli(``keep``) mask shaped and typed like ``like``, drawn on all CPU cores.

    A large CPU mask is drawn in :data:`MASK_PIECES` pieces whose seeds come
    from the global generator, on as many pool threads as torch has:
    the mask is a function of the global seed and the call sequence (as with
    ``bernoulli_``), and the same for every thread count.
    """
    mask = torch.empty(like.shape, dtype=like.dtype, device=like.device)
    if like.device.type != "cpu" or mask.numel() < PARALLEL_MINIMUM:
        return mask.bernoulli_(keep)
    seeds = torch.randint(0, 2**62, (MASK_PIECES,)).tolist()
    pieces = mask.view(-1).tensor_split(MASK_PIECES)

    def draw(piece: torch.Tensor, seed: int) -> None:
        piece.bernoulli_(keep, generator=torch.Generator().manual_seed(seed))

    # Torch releases the GIL inside bernoulli_, so the pieces are drawn in parallel.
    list(_pool(torch.get_num_threads()).map(draw, pieces, seeds))
    return mask


def parallel_dropout(inputs: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``F.dropout`` with the CPU mask drawn by :func:`dropout_mask`."""
    if not training or p == 0.0:
        return inputs
    if inputs.device.type != "cpu" or p == 1.0:
        return F.dropout(inputs, p, training=True)
    return inputs * dropout_mask(inputs, 1.0 - p).div_(1.0 - p)


class ParallelDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU masks are drawn on all cores (see :func:`parallel_dropout`)."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return parallel_dropout(inputs, self.p, self.training)


def sdpa_with_parallel_dropout(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Hugging Face's SDPA attention, except that CPU training draws the probabilities' dropout on all cores.

    Query, key and value are ``[batch, heads, length, head_dim]``; the mask is
    SDPA's (boolean, True = attend, or None); the output is ``[batch, length, heads, head_dim]``.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if dropout == 0.0 or query.device.type != "cpu":
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    scores = torch.matmul(query, key.transpose(-1, -2)) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if attention_mask is not None:
        scores = (
            scores.masked_fill(~attention_mask, float("-inf"))
            if attention_mask.dtype == torch.bool
            else scores + attention_mask
        )
    probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    output = torch.matmul(parallel_dropout(probabilities, dropout, True), value)
    return output.transpose(1, 2).contiguous(), None


@functools.cache
def register_attention() -> str:
    """Make :data:`ATTENTION_IMPLEMENTATION` known to transformers (with SDPA's mask format); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_IMPLEMENTATION, sdpa_with_parallel_dropout)
    AttentionMaskInterface.register(ATTENTION_IMPLEMENTATION, sdpa_mask)
    return ATTENTION_IMPLEMENTATION


def swap_dropout(module: nn.Module, kind: type[nn.Dropout]) -> None:
    """Make every dropout layer inside ``module`` a ``kind`` (e.g. :class:`ParallelDropout`) of the same rate and mode."""
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Dropout):
            if type(child) is not kind:
                setattr(module, name, kind(child.p, inplace=child.inplace).train(child.training))
        else:
            swap_dropout(child, kind)


def last_self_attention(backbone: Any) -> Any:
    """The last layer's self-attention module of a BERT-style encoder (``query``/``key`` projections).

    Raises
    ------
    TypeError
        If the backbone has no ``encoder.layer[-1].attention.self`` with query and key projections.
    """
    try:
        attention = backbone.encoder.layer[-1].attention.self
        attention.query, attention.key, attention.attention_head_size  # noqa: B018 - presence check
    except (AttributeError, IndexError, TypeError):
        raise TypeError(
            f"{type(backbone).__name__} is not a BERT-style encoder (no encoder.layer[-1].attention.self)"
        ) from None
    return attention


@torch.no_grad()
def last_layer_attention(backbone: Any, last_layer_input: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last layer's attention probabilities ``[batch, heads, length, length]``, in fp32, without dropout.

    Parameters
    ----------
    backbone
        A BERT-style encoder (see :func:`last_self_attention`).
    last_layer_input
        ``[batch, length, hidden]``: the hidden states entering the last layer
        (``hidden_states[-2]`` of the backbone's output).
    attention_mask
        ``[batch, length]``, 1 for real tokens: padding receives no attention.
    """
    attention = last_self_attention(backbone)
    batch, length, _ = last_layer_input.shape
    head_size = attention.attention_head_size

    def heads(projection: nn.Module) -> torch.Tensor:
        return projection(last_layer_input).float().view(batch, length, -1, head_size).transpose(1, 2)

    scaling = getattr(attention, "scaling", head_size**-0.5)
    scores = heads(attention.query) @ heads(attention.key).transpose(-1, -2) * scaling
    scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)
