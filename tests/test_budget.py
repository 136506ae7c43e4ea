"""Budgets stated as a share of the tokens: the k that keeps it, from an unpruned index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tokenprune.cli import main
from tokenprune.errors import TokenpruneError
from tokenprune.index import k_for_percent, percent_kept_at, write_vectors_index


def naive_k(candidates: list[int], percent: float) -> int:
    """The first k, counting up, whose kept share reaches the target."""
    total = sum(candidates)
    k = 1
    while 100.0 * sum(min(n, k) for n in candidates) / total < percent - 1e-9:
        k += 1
    return k


def test_k_for_percent_on_a_hand_made_collection() -> None:
    candidates = np.array([10, 20, 30])
    # k=10 keeps 10 + 10 + 10 of 60 tokens; k=11 keeps 32 of 60.
    assert percent_kept_at(candidates, 10) == pytest.approx(50.0)
    assert k_for_percent(candidates, 50) == 10
    assert k_for_percent(candidates, 51) == 11
    assert k_for_percent(candidates, 100) == 30
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 180, 500).tolist()
    for percent in (1, 15, 50, 73, 99.5):
        assert k_for_percent(np.array(lengths), percent) == naive_k(lengths, percent)
    with pytest.raises(TokenpruneError, match="percent 0 is not a share of tokens"):
        k_for_percent(candidates, 0)


def test_match_budget_reads_an_unpruned_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counts = [10, 20, 30]
    documents = [np.zeros((n, 4), dtype=np.float16) for n in counts]
    write_vectors_index(tmp_path / "unpruned", [([f"d{i}" for i in range(3)], documents)], dim=4)
    output = tmp_path / "budget.json"
    assert (
        main(["match-budget", "--index", str(tmp_path / "unpruned"), "--percent", "50", "51", "--output", str(output)])
        == 0
    )
    assert "50% of the tokens: k = 10 (keeps 50.0%)" in capsys.readouterr().out
    written = json.loads(output.read_text())
    assert [(b["percent"], b["k"]) for b in written["budgets"]] == [(50.0, 10), (51.0, 11)]
    write_vectors_index(tmp_path / "pruned", [([f"d{i}" for i in range(3)], documents)], dim=4, strategy="first", k=10)
    assert main(["match-budget", "--index", str(tmp_path / "pruned"), "--percent", "50"]) == 2
    assert "give an unpruned one" in capsys.readouterr().err
