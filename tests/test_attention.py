"""SDPA with parallel dropout, and the recomputed last-layer attention, against Hugging Face's own kernels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tokenprune import attention
from tokenprune.attention import (
    ParallelDropout,
    dropout_mask,
    last_layer_attention,
    parallel_dropout,
    register_attention,
    sdpa_with_parallel_dropout,
    swap_dropout,
)
from tokenprune.backbone import resolve_backbone
from tokenprune.model import ColBERT, ColBERTConfig


def test_dropout_mask_is_reproducible_and_independent_of_the_thread_count() -> None:
    like = torch.empty(300, 1000)
    threads = torch.get_num_threads()
    masks = []
    try:
        for count in (1, 2, 4):
            torch.set_num_threads(count)
            torch.manual_seed(7)
            masks.append(dropout_mask(like, 0.9))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(masks[0], mask) for mask in masks[1:])
    torch.manual_seed(8)
    assert not torch.equal(dropout_mask(like, 0.9), masks[0])


def test_dropout_mask_keeps_the_asked_share_in_every_piece() -> None:
    torch.manual_seed(0)
    mask = dropout_mask(torch.empty(2_000_000, dtype=torch.bfloat16), 0.9)
    assert mask.dtype == torch.bfloat16
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    pieces = mask.float().tensor_split(attention.MASK_PIECES)
    # 250,000 draws per piece: the standard deviation of the share is 0.0006.
    assert all(abs(float(piece.mean()) - 0.9) < 0.004 for piece in pieces)
    assert not torch.equal(pieces[0], pieces[1])  # each piece has its own seed


def test_parallel_dropout_zeroes_or_rescales_and_is_off_in_evaluation() -> None:
    inputs = torch.randn(400, 500)
    torch.manual_seed(1)
    outputs = parallel_dropout(inputs, 0.1, training=True)
    dropped = outputs == 0
    assert 0.08 < float(dropped.float().mean()) < 0.12
    assert torch.allclose(outputs[~dropped], inputs[~dropped] / 0.9)
    assert parallel_dropout(inputs, 0.1, training=False) is inputs
    layer = ParallelDropout(0.1).eval()
    assert layer(inputs) is inputs


def test_math_path_equals_sdpa_when_dropout_keeps_everything(monkeypatch) -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(2, 3, 5, 4, generator=generator) for _ in range(3))
    mask = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    mask[1, :, :, 3:] = False  # the second sequence has two padding tokens
    monkeypatch.setattr(attention, "parallel_dropout", lambda inputs, p, training: inputs)
    module = nn.Module()
    ours, _ = sdpa_with_parallel_dropout(module, query, key, value, mask, dropout=0.1, scaling=0.5)
    reference, _ = sdpa_attention_forward(module, query, key, value, mask, dropout=0.0, scaling=0.5)
    assert ours.shape == reference.shape == (2, 5, 3, 4)
    assert torch.allclose(ours, reference, atol=1e-6)


def test_recomputed_last_layer_attention_equals_the_eager_kernels_weights() -> None:
    from transformers import AutoModel

    model = ColBERT.from_backbone(ColBERTConfig(strategy="attention", k=4, dim=16, passage_max_length=32)).eval()
    eager = AutoModel.from_pretrained(resolve_backbone("embedded"), attn_implementation="eager").eval()
    input_ids, attention_mask = model.tokenize_passages(
        ["a short passage.", "a longer passage about sleep and the heart rate"]
    )
    with torch.no_grad():
        ours = model.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        reference = eager(input_ids=input_ids, attention_mask=attention_mask, output_attentions=True)
        recomputed = last_layer_attention(model.backbone, ours.hidden_states[-2], attention_mask)
    real = attention_mask.bool()
    # Outputs at padding positions are never read (selection and MaxSim mask them), and kernels differ there:
    # on an AMX CPU the SDPA and eager kernels put them 5e-5 apart, while real tokens agree to 3e-6.
    assert torch.allclose(ours.last_hidden_state[real], reference.last_hidden_state[real], atol=1e-5)
    # Rows of padding tokens are never read either (the selector sums real rows only); real rows must agree.
    assert torch.allclose(
        recomputed.permute(0, 2, 1, 3)[real], reference.attentions[-1].permute(0, 2, 1, 3)[real], atol=1e-5
    )


def test_every_dropout_of_the_backbone_draws_in_parallel() -> None:
    model = ColBERT.from_backbone(ColBERTConfig(dim=16))
    dropouts = [module for module in model.backbone.modules() if isinstance(module, nn.Dropout)]
    assert dropouts and all(type(module) is ParallelDropout and module.p == 0.1 for module in dropouts)
    assert model.backbone.config._attn_implementation == register_attention() == "tokenprune_sdpa"


def test_swap_dropout_keeps_rate_and_mode_both_ways() -> None:
    stack = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.3), nn.Sequential(ParallelDropout(0.2).eval()))
    swap_dropout(stack, nn.Dropout)
    assert [(type(m), m.p, m.training) for m in stack.modules() if isinstance(m, nn.Dropout)] == [
        (nn.Dropout, 0.3, True),
        (nn.Dropout, 0.2, False),
    ]
    swap_dropout(stack, ParallelDropout)
    assert [(type(m), m.p, m.training) for m in stack.modules() if isinstance(m, nn.Dropout)] == [
        (ParallelDropout, 0.3, True),
        (ParallelDropout, 0.2, False),
    ]


def test_attention_strategy_refuses_a_backbone_without_bert_layers() -> None:
    from tokenprune.errors import TokenpruneError

    model = ColBERT.from_backbone(ColBERTConfig(dim=16))
    stub = nn.Linear(2, 2)
    stub.config = model.backbone.config  # a hidden size, but no encoder layers
    with pytest.raises(
        TokenpruneError, match="strategy 'attention' needs a BERT-style backbone: Linear is not a BERT-style encoder"
    ):
        ColBERT(ColBERTConfig(strategy="attention", k=4, dim=16), stub, model.tokenizer)
