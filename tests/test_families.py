"""The later families on hand-built batches: const (ConstBERT), variable budgets, static pruning."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tokenprune.budgets import CandidateCounts, frequent_token_ids, proportional_budgets, share_for_mean
from tokenprune.errors import TokenpruneError
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.selection import PassageBatch, make_selector, top_k_mask

# Row 0: [CLS] [D] t10 "," t12 t13 t14 [SEP]; row 1: [CLS] [D] t20 [SEP] and padding (as in test_selection).
INPUT_IDS = torch.tensor([[101, 2, 10, 11, 12, 13, 14, 102], [101, 2, 20, 102, 0, 0, 0, 0]])
ATTENTION_MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]])
# Content candidates (no special token, no punctuation): row 0 positions 2, 4, 5, 6; row 1 position 2.
CANDIDATES = torch.tensor([[0, 0, 1, 0, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0, 0, 0]], dtype=torch.bool)


def batch(**extra) -> PassageBatch:
    special = torch.isin(INPUT_IDS, torch.tensor([0, 2, 101, 102]))
    return PassageBatch(INPUT_IDS, ATTENTION_MASK, INPUT_IDS == 11, special, **extra)


def kept(mask: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in mask]


# ---------------------------------------------------------------------- budgets fitted to a collection


def naive_mean_kept(per_passage: list[int], share: float) -> float:
    # Python's round, like torch's, rounds halves to even.
    return float(np.mean([min(n, max(1, round(n * share))) if n else 0 for n in per_passage]))


def test_proportional_budgets_keep_a_share_at_least_one_and_at_most_all() -> None:
    candidates = torch.tensor([0, 1, 4, 10, 31])
    assert proportional_budgets(candidates, 0.25).tolist() == [0, 1, 1, 2, 8]
    assert proportional_budgets(candidates, 1.0).tolist() == [0, 1, 4, 10, 31]


@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 12])
def test_the_fitted_share_holds_the_mean_nearest_to_k(k: int) -> None:
    per_passage = [3, 5, 8, 13, 21, 34, 2, 1]
    share = share_for_mean(np.array(per_passage), k)
    reached = naive_mean_kept(per_passage, share)
    # No share on a fine grid gets nearer to k than the fitted one.
    best = min(abs(naive_mean_kept(per_passage, s) - k) for s in np.linspace(0, 1, 20001))
    assert abs(reached - k) == pytest.approx(best, abs=1e-12)


def test_a_collection_shorter_than_k_keeps_everything() -> None:
    assert share_for_mean(np.array([2, 3, 4]), 10) == 1.0
    with pytest.raises(TokenpruneError, match="empty"):
        share_for_mean(np.array([], dtype=np.int64), 3)


def test_static_drops_the_fewest_most_frequent_tokens_that_bring_the_mean_to_k() -> None:
    # 3 passages, 30 candidate tokens: id 7 occurs 12 times, id 3 8 times, id 9 and id 4 5 times each.
    per_token = np.zeros(12, dtype=np.int64)
    per_token[[7, 3, 9, 4]] = [12, 8, 5, 5]
    assert frequent_token_ids(per_token, 3, 10).tolist() == []  # 30 / 3 = 10 already
    assert frequent_token_ids(per_token, 3, 6).tolist() == [7]  # 18 left: 6 per passage
    assert frequent_token_ids(per_token, 3, 5).tolist() == [3, 7]  # 10 left
    assert frequent_token_ids(per_token, 3, 1).tolist() == [3, 4, 7, 9]  # ties: the lower id goes first
    assert frequent_token_ids(per_token, 3, 2).tolist() == [3, 4, 7]  # 5 left


def test_per_row_budgets_equal_one_fixed_budget_per_row() -> None:
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(4, 9, generator=generator)
    candidates = torch.rand(4, 9, generator=generator) > 0.3
    budgets = torch.tensor([0, 2, 5, 9])
    rows = [top_k_mask(scores[i : i + 1], candidates[i : i + 1], int(budgets[i])) for i in range(4)]
    assert torch.equal(top_k_mask(scores, candidates, budgets), torch.cat(rows))


def hand_counts() -> CandidateCounts:
    """A collection of 2 passages with 4 and 1 candidates (the hand batch), ids 10-14 and 20."""
    per_token = np.zeros(120, dtype=np.int64)
    per_token[[10, 12, 13, 14, 20]] = [1, 3, 1, 1, 1]
    return CandidateCounts(per_passage=np.array([4, 1]), per_token=per_token)


def test_attention_var_keeps_a_share_of_each_passage_by_attention_received() -> None:
    attentions = torch.zeros(2, 1, 8, 8)
    attentions[0, 0, :, [2, 4, 5, 6]] = torch.tensor([0.1, 0.4, 0.3, 0.2])  # t12 then t13 receive the most
    attentions[1, 0, :, 2] = 1.0
    selector = make_selector("attention_var", 2)
    with pytest.raises(TokenpruneError, match="fit_to_corpus"):
        selector.select(batch(attentions=attentions), "content")
    selector.fit_to_corpus(hand_counts())
    # A mean of 2 over passages of 4 and 1 candidates: 3 and 1 (the short passage keeps its one token).
    assert proportional_budgets(CANDIDATES.sum(dim=1), selector.share).tolist() == [3, 1]
    assert selector.fitted() == {"share_of_tokens": pytest.approx(selector.share)}
    # The 3 of row 0's candidates that receive the most attention: t12, t13, t14 (t10 receives the least).
    assert kept(selector.select(batch(attentions=attentions), "content")) == [[4, 5, 6], [2]]


def test_pool_var_pools_each_passage_to_its_own_share() -> None:
    generator = torch.Generator().manual_seed(2)
    vectors = torch.randn(2, 8, 4, generator=generator)
    selector = make_selector("pool_var", 2)
    selector.fit_to_corpus(hand_counts())
    stored = selector.reduce(vectors, batch(), "content")
    assert stored.mask.sum(dim=1).tolist() == proportional_budgets(CANDIDATES.sum(dim=1), selector.share).tolist()
    # Row 1 has one candidate: its mean is that token's own vector.
    assert torch.allclose(stored.vectors[1, 0], vectors[1, 2])


def test_static_drops_its_stop_list_wherever_it_occurs() -> None:
    selector = make_selector("static", 3)
    with pytest.raises(TokenpruneError, match="fit_to_corpus"):
        selector.select(batch(), "content")
    selector.fit_to_corpus(hand_counts())  # 7 candidates in 2 passages: dropping id 12 (3 of them) leaves 2 each
    assert selector.fitted() == {"stopword_ids": [12]}
    assert kept(selector.select(batch(), "content")) == [[2, 5, 6], [2]]


# ---------------------------------------------------------------------- const (ConstBERT)


def test_const_stores_k_normalised_mixtures_of_the_candidates_only() -> None:
    torch.manual_seed(0)
    selector = make_selector("const", 3, passage_length=8, normalize=True)
    vectors = torch.randn(2, 8, 5, requires_grad=True)
    stored = selector.reduce(vectors, batch(), "content")
    assert stored.vectors.shape == (2, 3, 5) and stored.mask.all()
    weights = selector.mixing.weight.detach()
    for row in range(2):
        for j in range(3):
            mixture = sum(weights[j, i] * vectors[row, i].detach() for i in range(8) if CANDIDATES[row, i])
            assert torch.allclose(stored.vectors[row, j].detach(), F.normalize(mixture, dim=0), atol=1e-6)
    # Each stored vector names the candidate with its largest weight, never padding or a special token.
    assert CANDIDATES.gather(1, stored.positions).all()
    # Gradients reach the mixing weights and the candidates' vectors, nothing else.
    stored.vectors.sum().backward()
    assert selector.mixing.weight.grad is not None and selector.mixing.weight.grad.abs().sum() > 0
    assert (vectors.grad.abs().sum(dim=-1) > 0).equal(CANDIDATES)


def test_const_refuses_passages_longer_than_its_width() -> None:
    selector = make_selector("const", 2, passage_length=6, normalize=False)
    with pytest.raises(TokenpruneError, match="at most 6 positions"):
        selector.reduce(torch.randn(2, 8, 4), batch(), "content")


@pytest.fixture(scope="module")
def const_model() -> ColBERT:
    torch.manual_seed(0)
    return ColBERT.from_backbone(ColBERTConfig(strategy="const", k=4, passage_max_length=16, dim=16)).eval()


def test_a_const_model_trains_its_mixing_and_saves_it(const_model: ColBERT, tmp_path) -> None:
    names = {name for name, _ in const_model.named_parameters()}
    assert "selection_layer.weight" in names
    passages = const_model.encode_passages(["aspirin prevents heart attacks", "sleep"])
    assert passages.vectors.shape == (2, 4, 16) and passages.mask.all()
    assert torch.allclose(passages.vectors.norm(dim=-1), torch.ones(2, 4), atol=1e-5)
    queries, query_mask = const_model.encode_queries(["heart attack"])
    from tokenprune.model import maxsim

    maxsim(queries, query_mask, passages).sum().backward()
    assert const_model.selection_layer.weight.grad.abs().sum() > 0
    const_model.zero_grad()
    const_model.save(tmp_path / "model")
    reloaded = ColBERT.load(tmp_path / "model").eval()
    assert torch.equal(reloaded.selection_layer.weight, const_model.selection_layer.weight)
    again = reloaded.encode_passages(["aspirin prevents heart attacks", "sleep"])
    assert torch.allclose(again.vectors, passages.vectors.detach(), atol=1e-5)


# ---------------------------------------------------------------------- counting a collection


@pytest.fixture(scope="module")
def topics_dataset(tmp_path_factory, tokenizer):
    """The 8 topics' 16 passages, prepared."""
    from conftest import write_topics_collection
    from tokenprune.data import DatasetSpec, PreparedDataset, prepare_dataset
    from tokenprune.data.sources import open_collection

    folder = tmp_path_factory.mktemp("topics")
    collection = write_topics_collection(folder / "collection")
    spec = DatasetSpec.from_config("topics", {"beir_folder": str(collection), "splits": ["train", "test"]})
    prepare_dataset(spec, open_collection(spec, None, folder / "irds"), folder / "data", tokenizer)
    return PreparedDataset(folder / "data")


def test_the_model_counts_candidates_as_it_encodes_them(const_model: ColBERT, topics_dataset, tokenizer) -> None:
    dataset = topics_dataset
    counts = const_model.count_candidates(texts for _, texts in dataset.corpus_batches(2))
    texts = [text for _, batch_texts in dataset.corpus_batches(100) for text in batch_texts]
    naive = []
    for text in texts:
        pieces = tokenizer(text, add_special_tokens=False)["input_ids"][: 16 - 3]
        naive.append([piece for piece in pieces if tokenizer.convert_ids_to_tokens(piece) not in ".,"])
    assert counts.per_passage.tolist() == [len(pieces) for pieces in naive]
    expected = np.bincount(np.concatenate(naive), minlength=len(tokenizer))
    assert np.array_equal(counts.per_token, expected)


def test_indexing_fits_the_budgets_to_the_indexed_collection(topics_dataset, tmp_path) -> None:
    """Post hoc, static and attention_var hold the mean at k over the collection; their fit is recorded."""
    from tokenprune.index import build_posthoc_indexes

    torch.manual_seed(0)
    model = ColBERT.from_backbone(ColBERTConfig(strategy="none", dim=16, passage_max_length=32)).eval()
    counts = model.count_candidates(texts for _, texts in topics_dataset.corpus_batches(5))
    selections = {tmp_path / "static": make_selector("static", 4), tmp_path / "var": make_selector("attention_var", 4)}
    static, variable = build_posthoc_indexes(
        model, topics_dataset, selections, batch_size=4, chunk_documents=5, precision="fp32"
    )
    dropped = frequent_token_ids(counts.per_token, counts.passages, 4)
    assert static["stopword_ids"] == dropped.tolist() and static["vectors"] <= 4 * counts.passages
    assert static["vectors"] == counts.per_passage.sum() - counts.per_token[dropped].sum()
    share = share_for_mean(counts.per_passage, 4)
    assert variable["share_of_tokens"] == pytest.approx(share, abs=1e-6)
    expected = proportional_budgets(torch.from_numpy(counts.per_passage), share)
    assert variable["vectors"] == int(expected.sum())
    assert variable["vectors_per_document"]["max"] == int(expected.max()) > 4
