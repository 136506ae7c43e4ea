"""Each strategy keeps exactly the expected positions; no padding is ever kept."""

from __future__ import annotations

import pytest
import torch

from tokenprune.errors import TokenpruneError
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.selection import SELECTORS, PassageBatch, candidate_mask, make_selector, top_k_mask

# Two hand-built passages. Row 0: [CLS] [D] t10 "," t12 t13 t14 [SEP]; row 1: [CLS] [D] t20 [SEP] and padding.
INPUT_IDS = torch.tensor([[101, 2, 10, 11, 12, 13, 14, 102], [101, 2, 20, 102, 0, 0, 0, 0]])
ATTENTION_MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0, 0]])
PUNCTUATION = INPUT_IDS == 11
SPECIAL = torch.isin(INPUT_IDS, torch.tensor([0, 2, 101, 102]))


def batch(input_ids=INPUT_IDS, attention_mask=ATTENTION_MASK, **extra) -> PassageBatch:
    return PassageBatch(
        input_ids, attention_mask, input_ids == 11, torch.isin(input_ids, torch.tensor([0, 2, 101, 102])), **extra
    )


def kept(mask: torch.Tensor) -> list[list[int]]:
    return [row.nonzero().flatten().tolist() for row in mask]


def test_registry_lists_every_strategy() -> None:
    assert sorted(SELECTORS) == [
        "attention",
        "attention_var",
        "const",
        "first",
        "idf",
        "none",
        "pool",
        "pool_var",
        "static",
        "unused",
    ]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("content", [[2, 4, 5, 6], [2]]),
        ("no_punctuation", [[0, 1, 2, 4, 5, 6, 7], [0, 1, 2, 3]]),
        ("all", [list(range(8)), [0, 1, 2, 3]]),
    ],
)
def test_candidate_rules_and_the_baseline_that_keeps_every_candidate(rule: str, expected: list[list[int]]) -> None:
    assert kept(candidate_mask(batch(), rule)) == expected
    assert kept(make_selector("none", None).select(batch(), rule)) == expected


def test_unknown_candidate_rule_names_the_known_ones() -> None:
    with pytest.raises(
        TokenpruneError, match=r"unknown candidate rule 'words'; choose from \['content', 'no_punctuation', 'all'\]"
    ):
        candidate_mask(batch(), "words")


def test_first_keeps_the_first_k_content_tokens() -> None:
    # Neither [CLS], [D] nor the comma take a slot: the first two content tokens are positions 2 and 4.
    assert kept(make_selector("first", 2).select(batch(), "content")) == [[2, 4], [2]]
    assert kept(make_selector("first", 20).select(batch(), "content")) == [[2, 4, 5, 6], [2]]
    # Under the other rules it is the first k positions of what they allow.
    assert kept(make_selector("first", 3).select(batch(), "no_punctuation")) == [[0, 1, 2], [0, 1, 2]]
    assert kept(make_selector("first", 4).select(batch(), "all")) == [[0, 1, 2, 3], [0, 1, 2, 3]]


def test_idf_keeps_the_k_highest_idf_tokens_against_a_hand_table() -> None:
    idf = torch.zeros(200)
    # Hand-made table: the comma rarest, then 13, 20, 14, 10, 12; [CLS] and [SEP] even rarer, as a table
    # that counted no special tokens would make them.
    idf[[10, 11, 12, 13, 14, 20]] = torch.tensor([2.0, 9.0, 1.0, 5.0, 3.0, 4.0])
    idf[[101, 102, 2]] = 99.0
    assert kept(make_selector("idf", 3, idf=idf).select(batch(), "content")) == [[2, 5, 6], [2]]
    assert kept(make_selector("idf", 4, idf=idf).select(batch(), "content")) == [[2, 4, 5, 6], [2]]
    # Special tokens are never chosen, whatever the rule; under 'all' the comma is a candidate.
    assert kept(make_selector("idf", 3, idf=idf).select(batch(), "all")) == [[3, 5, 6], [2]]
    assert kept(make_selector("idf", 8, idf=idf).select(batch(), "no_punctuation")) == [[2, 4, 5, 6], [2]]
    # Ties resolve to the earlier position.
    flat = torch.ones(200)
    assert kept(make_selector("idf", 2, idf=flat).select(batch(), "content")) == [[2, 4], [2]]


def test_unused_keeps_exactly_its_inserted_ids_whatever_the_rule() -> None:
    input_ids = torch.tensor([[101, 2, 3, 4, 10, 11, 102, 0]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
    selector = make_selector("unused", 2, unused_ids=[3, 4, 5])
    for rule in ("content", "no_punctuation", "all"):
        assert kept(selector.select(batch(input_ids, attention_mask), rule)) == [[2, 3]]


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
    candidates = ATTENTION_MASK.bool() & ~PUNCTUATION & ~SPECIAL
    expected = [sorted(reference[0].masked_fill(~candidates[0], -1).topk(3).indices.tolist()), [2]]
    assert kept(make_selector("attention", 3).select(batch(attentions=attentions), "content")) == expected
    # Special tokens receive much attention: under 'no_punctuation' they compete for the slots.
    candidates = ATTENTION_MASK.bool() & ~PUNCTUATION
    expected = [sorted(reference[b].masked_fill(~candidates[b], -1).topk(3).indices.tolist()) for b in range(2)]
    assert kept(make_selector("attention", 3).select(batch(attentions=attentions), "no_punctuation")) == expected


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
    with pytest.raises(
        TokenpruneError,
        match=r"unknown strategy 'random'; choose from \['attention', 'attention_var', 'const', 'first', 'idf', 'none', "
        r"'pool', 'pool_var', 'static', 'unused'\]",
    ):
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


def test_passages_shorter_than_k_keep_all_their_content_tokens() -> None:
    model = ColBERT.from_backbone(ColBERTConfig(strategy="attention", k=50, passage_max_length=64, dim=16))
    passages = model.encode_passages(["short one.", "a slightly longer passage, with a comma and more words in it"])
    input_ids, attention_mask = model.tokenize_passages(
        ["short one.", "a slightly longer passage, with a comma and more words in it"]
    )
    punctuation = torch.isin(input_ids, model.punctuation_ids)
    special = torch.isin(input_ids, model.special_ids)
    expected = (attention_mask.bool() & ~punctuation & ~special).sum(dim=1)
    assert passages.mask.sum(dim=1).tolist() == expected.tolist()
    # No padding position is ever kept.
    kept_positions = passages.positions[passages.mask]
    rows = torch.arange(2)[:, None].expand_as(passages.positions)[passages.mask]
    assert attention_mask[rows, kept_positions].all()


def test_the_model_marks_bert_special_tokens_and_the_markers_but_not_inserted_ids(unused_model: ColBERT) -> None:
    vocabulary = unused_model.tokenizer.get_vocab()
    names = {"[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[unused0]", "[unused1]"}
    assert sorted(unused_model.special_ids.tolist()) == sorted(vocabulary[name] for name in names)
    assert vocabulary["[unused2]"] not in unused_model.special_ids.tolist()


@pytest.mark.parametrize(("strategy", "k"), [("none", None), ("first", 5), ("attention", 5), ("idf", 5), ("pool", 3)])
def test_real_passages_keep_no_special_token_or_punctuation(strategy: str, k: int | None) -> None:
    idf = torch.rand(30522, generator=torch.Generator().manual_seed(0)) if strategy == "idf" else None
    model = ColBERT.from_backbone(ColBERTConfig(strategy=strategy, k=k, passage_max_length=32, dim=16), idf=idf)
    passages = model.encode_passages(["Aspirin, taken daily, lowers (some) risk.", "Sleep: it matters!"])
    kept_ids = passages.token_ids[passages.mask]
    assert not torch.isin(kept_ids, model.special_ids).any()
    assert not torch.isin(kept_ids, model.punctuation_ids).any()
    assert len(kept_ids) > 0


def test_make_selector_passes_keyword_only_resources(monkeypatch) -> None:
    """A selector whose resource is keyword-only still receives it (co_varnames' positional slice dropped it)."""
    from tokenprune import selection

    class Scaled(selection.FirstK):
        def __init__(self, k: int | None, *, scale: float) -> None:
            super().__init__(k)
            self.scale = scale

    monkeypatch.setitem(selection.SELECTORS, "scaled", Scaled)
    selector = make_selector("scaled", 2, scale=0.5, idf=None)
    assert (selector.k, selector.scale) == (2, 0.5)
