"""Each strategy keeps exactly the expected positions; no padding is ever kept."""

from __future__ import annotations

import pytest
import torch

from tokenprune.errors import TokenpruneError
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.selection import SELECTORS, PassageBatch, make_selector, top_k_mask

# Two passages: row 0 has 8 real tokens (position 3 is punctuation), row 1 has 3 real tokens then padding.
INPUT_IDS = torch.tensor([[101, 2, 10, 11, 12, 13, 14, 102], [101, 2, 102, 0, 0, 0, 0, 0]])
ATTENTION_MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0, 0]])
PUNCTUATION = torch.zeros_like(INPUT_IDS, dtype=torch.bool)
PUNCTUATION[0, 3] = True


def batch(**extra) -> PassageBatch:
    return PassageBatch(INPUT_IDS, ATTENTION_MASK, PUNCTUATION, **extra)


def kept(mask: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in mask]


def test_registry_lists_every_strategy() -> None:
    assert sorted(SELECTORS) == ["attention", "first", "idf", "none", "unused"]


def test_none_keeps_every_real_non_punctuation_token() -> None:
    assert kept(make_selector("none", None).select(batch())) == [[0, 1, 2, 4, 5, 6, 7], [0, 1, 2]]
    # With punctuation masking switched off, the comma is kept too.
    assert kept(make_selector("none", None).select(batch(), mask_punctuation=False)) == [list(range(8)), [0, 1, 2]]


def test_first_keeps_the_first_k_positions_punctuation_included() -> None:
    assert kept(make_selector("first", 4).select(batch())) == [[0, 1, 2, 3], [0, 1, 2]]
    assert kept(make_selector("first", 20).select(batch())) == [list(range(8)), [0, 1, 2]]


def test_idf_keeps_the_k_highest_idf_tokens_against_a_hand_table() -> None:
    idf = torch.zeros(200)
    # Hand-made table: token 13 rarest, then 11 (punctuation, never kept), then 14, 10, 12; specials 0.
    idf[[10, 11, 12, 13, 14]] = torch.tensor([2.0, 9.0, 1.0, 5.0, 3.0])
    selector = make_selector("idf", 3, idf=idf)
    assert kept(selector.select(batch())) == [[2, 5, 6], [0, 1, 2]]
    assert kept(make_selector("idf", 4, idf=idf).select(batch())) == [[2, 4, 5, 6], [0, 1, 2]]
    # Ties resolve to the earlier position: the fifth place is a tie between [CLS], [D] and [SEP] (idf 0).
    assert kept(make_selector("idf", 5, idf=idf).select(batch())) == [[0, 2, 4, 5, 6], [0, 1, 2]]


def test_idf_needs_a_table() -> None:
    with pytest.raises(TokenpruneError, match="needs an IDF table"):
        make_selector("idf", 3)


def naive_attention_received(attentions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    batch_size, heads, rows, columns = attentions.shape
    scores = torch.zeros(batch_size, columns)
    for b in range(batch_size):
        for h in range(heads):
            for i in range(rows):
                if attention_mask[b, i]:
                    for j in range(columns):
                        scores[b, j] += attentions[b, h, i, j]
    return scores


def test_attention_matches_a_naive_per_head_loop() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator)
    logits = logits.masked_fill(~ATTENTION_MASK.bool()[:, None, None, :], float("-inf"))
    attentions = logits.softmax(dim=-1)
    reference = naive_attention_received(attentions, ATTENTION_MASK)
    candidates = ATTENTION_MASK.bool() & ~PUNCTUATION
    expected = [sorted(reference[0].masked_fill(~candidates[0], -1).topk(3).indices.tolist()), [0, 1, 2]]

    assert kept(make_selector("attention", 3).select(batch(attentions=attentions))) == expected


def test_the_papers_row_sum_is_degenerate() -> None:
    """Why the column sum: summed over its own softmax row, every token scores the number of heads."""
    attentions = torch.randn(1, 4, 6, 6).softmax(dim=-1)
    assert torch.allclose(attentions.sum(dim=(1, 3)), torch.full((1, 6), 4.0))


def test_top_k_mask_never_keeps_non_candidates() -> None:
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    candidates = torch.tensor([[False, True, False, True]])
    assert kept(top_k_mask(scores, candidates, 3)) == [[1, 3]]


@pytest.mark.parametrize("k", [0, -3, 2.5, "10", True])
def test_k_must_be_a_positive_integer(k) -> None:
    with pytest.raises(TokenpruneError, match=f"positive integer k, got {k!r}"):
        make_selector("first", k)


def test_unknown_strategy_names_the_known_ones() -> None:
    with pytest.raises(TokenpruneError, match=r"unknown strategy 'random'; choose from \['attention', 'first', 'idf', 'none', 'unused'\]"):
        make_selector("random", 3)


@pytest.fixture(scope="module")
def unused_model() -> ColBERT:
    return ColBERT.from_backbone(ColBERTConfig(strategy="unused", k=3, passage_max_length=16, dim=16))


def test_unused_inserts_ids_after_the_marker_and_keeps_only_them(unused_model: ColBERT) -> None:
    input_ids, attention_mask = unused_model.tokenize_passages(["aspirin, heart", "a much longer passage about sleep"])
    # [CLS]=101, [D]=[unused1]=2, then [unused2..4] = ids 3, 4, 5 (never the markers' ids 1 and 2).
    assert input_ids[0, :5].tolist() == [101, 2, 3, 4, 5]
    text_and_sep = unused_model.tokenizer("aspirin, heart")["input_ids"][1:]
    assert input_ids[0, 5 : 5 + len(text_and_sep)].tolist() == text_and_sep
    assert attention_mask[0].sum() == 5 + len(text_and_sep)
    passages = unused_model.encode_passage_ids(input_ids, attention_mask)
    assert passages.positions.tolist() == [[2, 3, 4], [2, 3, 4]]
    assert passages.token_ids.tolist() == [[3, 4, 5], [3, 4, 5]]
    assert passages.mask.all()


def test_unused_refuses_k_beyond_the_supply(unused_model: ColBERT) -> None:
    supply = len(unused_model.unused_ids)
    assert supply == 992  # BERT's 994 [unusedN] tokens minus the two markers
    with pytest.raises(TokenpruneError, match=f"k=993 needs 993 \\[unusedN\\] tokens, .* has only {supply}"):
        make_selector("unused", 993, unused_ids=unused_model.unused_ids)


def test_passages_shorter_than_k_keep_all_their_real_tokens() -> None:
    model = ColBERT.from_backbone(ColBERTConfig(strategy="attention", k=50, passage_max_length=64, dim=16))
    passages = model.encode_passages(["short one.", "a slightly longer passage, with a comma and more words in it"])
    input_ids, attention_mask = model.tokenize_passages(["short one.", "a slightly longer passage, with a comma and more words in it"])
    punctuation = torch.isin(input_ids, model.punctuation_ids)
    expected = (attention_mask.bool() & ~punctuation).sum(dim=1)
    assert passages.mask.sum(dim=1).tolist() == expected.tolist()
    # No padding position is ever kept.
    kept_positions = passages.positions[passages.mask]
    rows = torch.arange(2)[:, None].expand_as(passages.positions)[passages.mask]
    assert attention_mask[rows, kept_positions].all()
