"""MaxSim, gradients, encoding switches, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokenprune.errors import TokenpruneError
from tokenprune.model import ColBERT, ColBERTConfig, maxsim, parse_k
from tokenprune.selection import gather_kept
from tokenprune.training import initialise_projection_pca


def naive_maxsim(queries, query_mask, vectors, keep) -> torch.Tensor:
    scores = torch.zeros(queries.shape[0], vectors.shape[0])
    for q in range(queries.shape[0]):
        for p in range(vectors.shape[0]):
            total = 0.0
            for i in range(queries.shape[1]):
                if not query_mask[q, i]:
                    continue
                best = max(float(queries[q, i] @ vectors[p, j]) for j in range(vectors.shape[1]) if keep[p, j])
                total += best
            scores[q, p] = total
    return scores


def test_maxsim_over_kept_vectors_equals_a_naive_double_loop() -> None:
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(3, 5, 8, generator=generator)
    query_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    vectors = torch.randn(4, 7, 8, generator=generator)
    keep = torch.rand(4, 7, generator=generator) > 0.5
    keep[:, 0] = True  # every passage keeps at least one vector
    input_ids = torch.arange(28).reshape(4, 7)

    scores = maxsim(queries, query_mask, gather_kept(vectors, keep, input_ids))
    assert torch.allclose(scores, naive_maxsim(queries, query_mask, vectors, keep), atol=1e-5)


def test_gradients_flow_through_kept_vectors_only() -> None:
    vectors = torch.randn(2, 6, 4, requires_grad=True)
    keep = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    queries = torch.randn(3, 2, 4)
    maxsim(
        queries, torch.ones(3, 2, dtype=torch.bool), gather_kept(vectors, keep, torch.zeros(2, 6, dtype=torch.long))
    ).sum().backward()
    gradient_norm = vectors.grad.norm(dim=-1)
    assert (gradient_norm[~keep] == 0).all()
    assert gradient_norm[1, 1] > 0  # a passage's only kept vector is every query token's maximum


@pytest.fixture(scope="module")
def small_config() -> ColBERTConfig:
    return ColBERTConfig(strategy="first", k=8, dim=32, query_max_length=16, passage_max_length=32)


def test_query_expansion_pads_with_mask_tokens_that_count(small_config: ColBERTConfig) -> None:
    plain = ColBERT.from_backbone(small_config)
    expanded = ColBERT.from_backbone(ColBERTConfig(**{**small_config.__dict__, "query_expansion": True}))
    ids, mask = plain.tokenize_queries(["aspirin"])
    assert ids.tolist() == [[101, 1, *plain.tokenizer("aspirin", add_special_tokens=False)["input_ids"], 102]]
    ids, mask = expanded.tokenize_queries(["aspirin"])
    assert ids.shape == (1, 16) and mask.all()
    assert (ids[0, ids[0].tolist().index(102) + 1 :] == expanded.tokenizer.mask_token_id).all()
    expanded.load_state_dict(plain.state_dict())
    vectors, counted = expanded.encode_queries(["aspirin"])
    assert counted.sum() == 16 and vectors.shape == (1, 16, 32)


def test_normalize_gives_unit_vectors(small_config: ColBERTConfig) -> None:
    model = ColBERT.from_backbone(ColBERTConfig(**{**small_config.__dict__, "normalize": True})).eval()
    with torch.no_grad():
        passages = model.encode_passages(["a passage about aspirin and heart attacks"])
    norms = passages.vectors[passages.mask].norm(dim=-1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)


def test_pca_projection_preserves_inner_products_at_unit_scale(small_config: ColBERTConfig) -> None:
    model = ColBERT.from_backbone(ColBERTConfig(**{**small_config.__dict__, "dim": 384})).eval()
    texts = ["aspirin lowers the risk of heart attacks", "vitamin c does not cure colds", "adults need sleep"]
    initialise_projection_pca(model, texts)
    with torch.no_grad():
        ids, mask = model.tokenize_passages(texts)
        hidden = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()]
        projected = model.projection(hidden)
    # Full rank: an orthogonal map times one scale, chosen so the mean squared norm is 1.
    assert torch.allclose(projected.pow(2).sum(-1).mean(), torch.tensor(1.0), atol=1e-4)
    scale = projected.norm(dim=-1) / hidden.norm(dim=-1)
    assert torch.allclose(scale, scale[0].expand_as(scale), rtol=1e-3)


@pytest.mark.parametrize(("strategy", "k"), [("none", None), ("idf", 5), ("unused", 4), ("attention", 6)])
def test_save_then_load_gives_identical_encodings(tmp_path: Path, strategy: str, k: int | None) -> None:
    idf = torch.rand(30522) if strategy == "idf" else None
    model = ColBERT.from_backbone(ColBERTConfig(strategy=strategy, k=k, dim=16, passage_max_length=32), idf=idf).eval()
    with torch.no_grad():
        model.projection.weight.normal_()  # not the initial weights, so loading must restore them
    model.save(tmp_path / "model")
    loaded = ColBERT.load(tmp_path / "model").eval()
    texts = ["aspirin, taken daily, lowers the risk of heart attacks", "sleep"]
    with torch.no_grad():
        before, after = model.encode_passages(texts), loaded.encode_passages(texts)
        queries_before, _ = model.encode_queries(["does aspirin help"])
        queries_after, _ = loaded.encode_queries(["does aspirin help"])
    assert loaded.config == model.config
    assert torch.equal(before.positions, after.positions) and torch.equal(before.mask, after.mask)
    assert torch.allclose(before.vectors, after.vectors, atol=1e-6)
    assert torch.allclose(queries_before, queries_after, atol=1e-6)


def test_loading_a_corrupted_model_is_detected(tmp_path: Path) -> None:
    model = ColBERT.from_backbone(ColBERTConfig(dim=16))
    model.save(tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(TokenpruneError, match="unreadable or corrupted"):
        ColBERT.load(tmp_path / "model")


def test_loading_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(TokenpruneError, match="is not a tokenprune model"):
        ColBERT.load(tmp_path)


@pytest.mark.parametrize(("value", "expected"), [("all", None), (None, None), ("10", 10), (50, 50)])
def test_parse_k(value, expected) -> None:
    assert parse_k(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "ten", "1.5"])
def test_parse_k_rejects(value) -> None:
    with pytest.raises(TokenpruneError, match=f"got {value!r}"):
        parse_k(value)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(TokenpruneError, match="dim must be a positive integer, got 0"):
        ColBERTConfig(dim=0)
    with pytest.raises(TokenpruneError, match="baseline 'none' keeps every token; got k=10"):
        ColBERTConfig(strategy="none", k=10)
    with pytest.raises(TokenpruneError, match=r"unknown model setting\(s\) \['dimension'\]"):
        ColBERTConfig.from_dict({"dimension": 64})


def test_untrained_reference_is_the_backbone_normalised(tmp_path: Path) -> None:
    from tokenprune.reference_systems import untrained_model

    untrained_model(
        "embedded",
        tmp_path / "untrained",
        query_max_length=16,
        passage_max_length=32,
        candidate_tokens="content",
        strategy="first",
        k=4,
    )
    model = ColBERT.load(tmp_path / "untrained").eval()
    assert (model.config.strategy, model.config.k, model.config.dim, model.config.normalize) == ("first", 4, 384, True)
    with torch.no_grad():
        ids, mask = model.tokenize_passages(["aspirin lowers the risk of heart attacks"])
        # The first 4 content tokens: [CLS] and [D] (positions 0 and 1) are not candidates.
        hidden = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state[0, 2:6]
        passages = model.encode_passage_ids(ids, mask)
    assert passages.positions[0].tolist() == [2, 3, 4, 5]
    assert torch.allclose(passages.vectors[0], torch.nn.functional.normalize(hidden, dim=-1), atol=1e-5)
