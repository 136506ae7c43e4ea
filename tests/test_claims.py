"""The verdict rules of tokenprune claims, on hand-made summaries with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tokenprune.cli import main
from tokenprune.reporting.claims import CLAIMS, EvaluationSummary, format_p, judge_claims, read_summary, verdict_counts
from tokenprune.reporting.report_files import sync_verdict_tables
from tokenprune.reporting.statistics import holm_adjust

M = "nDCG@10"


def comparison(rows: list[dict]) -> pd.DataFrame:
    """A comparison.csv: the baseline at 0.70 and the given rows (kind, strategy, k, %, value, se, p)."""
    base = {
        "kind": "baseline",
        "storage": "fp16",
        "strategy": "none",
        "k": pd.NA,
        "seeds": 3,
        "percent_tokens_kept": 100.0,
        M: 0.70,
        f"{M} delta": np.nan,
        f"{M} se": np.nan,
        f"{M} df": np.nan,
        f"{M} p_query": np.nan,
        f"{M} p_seed": np.nan,
        f"{M} p_mixed": np.nan,
    }
    table = [base]
    for row in rows:
        value = row["value"]
        table.append(
            {
                "kind": row.get("kind", "pruned"),
                "storage": row.get("storage", "fp16"),
                "strategy": row.get("strategy", "none"),
                "k": row.get("k", pd.NA),
                "seeds": 3,
                "percent_tokens_kept": row.get("kept", 100.0),
                M: value,
                f"{M} delta": value - 0.70,
                f"{M} se": row.get("se", 0.005),
                f"{M} df": 20.0,
                f"{M} p_query": row.get("p", 0.5),
                f"{M} p_seed": row.get("p", 0.5),
                f"{M} p_mixed": row.get("p", 0.5),
            }
        )
    frame = pd.DataFrame(table)
    frame["k"] = frame["k"].astype("Int64")
    return frame


def pairs(rows: list[tuple[str, str, float, float]], k: int = 10) -> pd.DataFrame:
    """A strategy_pairs.csv from (strategy, versus, delta, p_mixed)."""
    frame = pd.DataFrame(
        [
            {
                "k": k,
                "measure": M,
                "strategy": a,
                "versus": b,
                "mean": 0.6 + delta,
                "versus mean": 0.6,
                "delta": delta,
                "seed_deltas": f"{delta:+.4f} {delta:+.4f} {delta:+.4f}",
                "p_query": p,
                "p_seed": p,
                "p_mixed": p,
                "seeds": 3,
            }
            for a, b, delta, p in rows
        ],
        columns=[
            "k",
            "measure",
            "strategy",
            "versus",
            "mean",
            "versus mean",
            "delta",
            "seed_deltas",
            "p_query",
            "p_seed",
            "p_mixed",
            "seeds",
        ],
    )
    frame["k"] = frame["k"].astype("Int64")
    return frame


EMPTY_CONTRAST = pd.DataFrame(
    columns=[
        "strategy",
        "k",
        "measure",
        "in-loop",
        "post-hoc",
        "delta",
        "seed_deltas",
        "p_query",
        "p_seed",
        "p_mixed",
        "p_holm",
        "seeds",
    ]
)


def summary(
    table: pd.DataFrame,
    *,
    contrast: pd.DataFrame = EMPTY_CONTRAST,
    strategy_pairs: pd.DataFrame | None = None,
    zero_shot: bool = False,
) -> EvaluationSummary:
    return EvaluationSummary(
        corpus="sci",
        split="test",
        zero_shot=zero_shot,
        measure=M,
        comparison=table,
        contrast=contrast,
        pairs=pairs([]) if strategy_pairs is None else strategy_pairs,
    )


def verdicts(table: pd.DataFrame, claim: str) -> dict[str, str]:
    rows = table[table["claim"] == claim]
    return dict(zip(rows["subject"] if claim in ("cost", "in-loop") else rows["versus"], rows["verdict"], strict=True))


def test_cost_is_judged_against_the_margin_only_where_70_percent_is_kept() -> None:
    at_73 = [
        {"strategy": "first", "k": 50, "kept": 73.0, "value": 0.695, "se": 0.003},  # cost 0.005, shown below 0.02
        {"strategy": "unused", "k": 50, "kept": 73.0, "value": 0.65, "se": 0.005},  # cost 0.05, shown above
        {"strategy": "attention", "k": 50, "kept": 73.0, "value": 0.68, "se": 0.01},  # cost 0.02 exactly: open
    ]
    table = judge_claims([summary(comparison(at_73))], alpha=0.05)
    assert verdicts(table, "cost") == {"first": "yes", "unused": "no", "attention": "inconclusive"}
    first = table[(table["claim"] == "cost") & (table["subject"] == "first")].iloc[0]
    below = [stats.t.sf((delta + 0.02) / se, 20.0) for delta, se in ((-0.005, 0.003), (-0.05, 0.005), (-0.02, 0.01))]
    assert first["p_holm"] == pytest.approx(holm_adjust(below)[0])
    assert first["family"] == "3 in-loop strategies at k=50, one-sided vs -0.02"
    # The same costs where k=50 keeps 32% of the tokens (SciFact): shown, but not judged.
    at_32 = [dict(row, kept=32.0) for row in at_73]
    table = judge_claims([summary(comparison(at_32))], alpha=0.05)
    assert set(verdicts(table, "cost").values()) == {"not tested"}
    assert (
        table.loc[table["claim"] == "cost", "reason"].iloc[0]
        == "k=50 keeps 32% of the tokens here; the claim is about >= 70%"
    )
    assert table.loc[table["claim"] == "cost", "delta"].round(3).tolist() == [-0.005, -0.05, -0.02]


def test_unused_best_needs_every_rival_beaten() -> None:
    table = comparison([{"strategy": s, "k": 10, "kept": 15.0, "value": 0.6} for s in ("first", "idf", "unused")])
    beaten = pairs([("first", "idf", 0.01, 0.2), ("first", "unused", -0.02, 0.001), ("idf", "unused", -0.03, 0.0001)])
    rows = judge_claims([summary(table, strategy_pairs=beaten)], alpha=0.05)
    best = rows[rows["claim"] == "unused-best"].iloc[0]
    # Oriented as unused minus its closest rival, first; Holm over unused's two pairs.
    assert (best["verdict"], best["versus"], best["delta"]) == ("yes", "first", pytest.approx(0.02))
    assert best["seed_deltas"] == "+0.0200 +0.0200 +0.0200"
    # Holm over [0.001, 0.0001]: 0.0001 * 2, then 0.001 * 1.
    assert best["p_holm"] == pytest.approx(0.001)
    open_pair = pairs([("first", "unused", -0.02, 0.08), ("idf", "unused", -0.03, 0.0001)])
    assert judge_claims([summary(table, strategy_pairs=open_pair)], 0.05)["verdict"].tolist() == ["inconclusive"]
    behind = pairs([("first", "unused", 0.02, 0.001), ("idf", "unused", -0.03, 0.0001)])
    row = judge_claims([summary(table, strategy_pairs=behind)], 0.05).iloc[0]
    assert (row["verdict"], row["reason"]) == ("no", "first significantly above")


def test_idf_worst_is_judged_zero_shot_only() -> None:
    table = comparison([{"strategy": s, "k": 50, "kept": 70.0, "value": 0.6} for s in ("first", "idf")])
    below = pairs([("first", "idf", 0.04, 0.001)], k=50)
    assert "idf-worst" not in set(judge_claims([summary(table, strategy_pairs=below)], 0.05)["claim"])
    rows = judge_claims([summary(table, strategy_pairs=below, zero_shot=True)], 0.05)
    worst = rows[rows["claim"] == "idf-worst"].iloc[0]
    assert (worst["verdict"], worst["subject"], worst["versus"], worst["delta"]) == (
        "yes",
        "idf",
        "first",
        pytest.approx(-0.04),
    )
    assert worst["seed_deltas"] == "-0.0400 -0.0400 -0.0400"


def test_in_loop_verdicts_follow_the_contrast_holm_family() -> None:
    contrast = pd.DataFrame(
        [
            {
                "strategy": "first",
                "k": 10,
                "measure": M,
                "in-loop": 0.62,
                "post-hoc": 0.58,
                "delta": 0.04,
                "seed_deltas": "",
                "p_query": 1e-5,
                "p_seed": 0.01,
                "p_mixed": 0.002,
                "p_holm": 0.004,
                "seeds": 3,
            },
            {
                "strategy": "idf",
                "k": 10,
                "measure": M,
                "in-loop": 0.60,
                "post-hoc": 0.62,
                "delta": -0.02,
                "seed_deltas": "",
                "p_query": 1e-4,
                "p_seed": 0.02,
                "p_mixed": 0.01,
                "p_holm": 0.01,
                "seeds": 3,
            },
            {
                "strategy": "idf",
                "k": 50,
                "measure": M,
                "in-loop": 0.66,
                "post-hoc": 0.65,
                "delta": 0.01,
                "seed_deltas": "",
                "p_query": 1e-3,
                "p_seed": 0.3,
                "p_mixed": 0.2,
                "p_holm": 0.2,
                "seeds": 3,
            },
        ]
    ).astype({"k": "Int64"})
    table = comparison(
        [
            {"strategy": "first", "k": 10, "kept": 15.0, "value": 0.6},
            {"strategy": "idf", "k": 50, "kept": 70.0, "value": 0.6},
        ]
    )
    rows = judge_claims([summary(table, contrast=contrast)], 0.05)
    rows = rows[rows["claim"] == "in-loop"]
    assert rows["verdict"].tolist() == ["yes", "no", "inconclusive"]
    assert rows["family"].tolist()[0] == "2 strategies in and after the loop at k=10"


def test_training_control_and_p_values_print_below_a_thousandth() -> None:
    table = comparison(
        [
            {"kind": "step0", "value": 0.66, "p": 0.001},
            {"kind": "untrained", "value": 0.69, "p": 0.3},
            {"kind": "bm25", "storage": "", "value": 0.72, "p": 0.0001},
        ]
    )
    rows = judge_claims([summary(table)], 0.05)
    assert dict(zip(rows["versus"], rows["verdict"], strict=True)) == {
        "step 0": "yes",
        "untrained backbone": "inconclusive",
        "BM25": "no",
    }
    assert rows["p_holm"].tolist() == pytest.approx(holm_adjust([0.001, 0.3, 0.0001]).tolist())
    assert [format_p(p) for p in (0.0004, 0.0123, float("nan"))] == ["<0.001", "0.012", "–"]
    assert list(CLAIMS) == ["training", "cost", "unused-best", "in-loop", "idf-worst"]


def _write_outputs(root: Path, system_id: str, values: np.ndarray) -> tuple[str, str, str, str]:
    """A system's metrics JSON, per-query TSV and index stats, as the pipeline writes them."""
    folder = root / system_id
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(f'{{"measures": {{"{M}": {values.mean()}}}}}')
    pd.DataFrame({"query_id": [f"q{i}" for i in range(len(values))], "measure": M, "value": values}).to_csv(
        folder / "per_query.tsv", sep="\t", index=False
    )
    index = "-"
    if system_id != "bm25":
        kept = 100.0 if "/kall/" in system_id else 15.0
        (folder / "index").mkdir()
        (folder / "index" / "index_stats.json").write_text(f'{{"percent_tokens_kept": {kept}, "index_bytes": 1024}}')
        index = str(folder / "index")
    return system_id, str(folder / "metrics.json"), str(folder / "per_query.tsv"), index


def test_one_deviant_seed_makes_a_query_level_win_inconclusive(tmp_path: Path) -> None:
    """Through the commands: summarize a hand-made three-seed study, then judge it."""
    rng = np.random.default_rng(2)
    base = rng.uniform(0.2, 0.7, 60)
    systems = []
    for seed, gain in {42: 0.034, 43: 0.039, 44: -0.004}.items():
        systems.append(_write_outputs(tmp_path, f"sci/none/kall/seed{seed}", base))
        systems.append(_write_outputs(tmp_path, f"sci/idf/k10/seed{seed}", base + gain + rng.normal(0, 0.01, 60)))
        systems.append(_write_outputs(tmp_path, f"sci/posthoc-idf/k10/seed{seed}", base + rng.normal(0, 0.01, 60)))
    summary_dir = tmp_path / "summary"
    arguments = ["summarize", "--corpus", "sci", "--split", "test", "--mode", "exact", "--measures", M]
    arguments += ["--alpha", "0.05", "--storage-budgets", "2", "--output-dir", str(summary_dir)]
    for system in systems:
        arguments += ["--system", *system]
    assert main(arguments) == 0
    stem = tmp_path / "claims"
    assert (
        main(
            [
                "claims",
                "--set",
                "sci",
                "test",
                "in-domain",
                M,
                str(summary_dir),
                "--alpha",
                "0.05",
                "--study",
                "hand-made",
                "--output",
                str(stem),
            ]
        )
        == 0
    )
    claims = pd.read_csv(f"{stem}.csv")
    row = claims[claims["claim"] == "in-loop"].iloc[0]
    assert row["p_query"] < 1e-6 and row["p_mixed"] > 0.05
    assert row["verdict"] == "inconclusive"
    markdown = Path(f"{stem}.md").read_text()
    assert "judged on the study `hand-made`" in markdown and "| <0.001 /" in markdown
    assert "| in-loop beats post hoc | 0 | 0 | 1 | 0 |" in markdown
    # A domain the command does not know is named.
    assert (
        main(
            [
                "claims",
                "--set",
                "sci",
                "test",
                "in-domian",
                M,
                str(summary_dir),
                "--alpha",
                "0.05",
                "--study",
                "x",
                "--output",
                str(stem),
            ]
        )
        == 2
    )
    # read_summary names a missing folder's file.
    with pytest.raises(Exception, match="does not exist; run 'tokenprune summarize' first"):
        read_summary(tmp_path / "nowhere", corpus="sci", split="test", zero_shot=False, measure=M)


def test_verdict_counts_count_every_row_of_every_claim() -> None:
    table = pd.DataFrame(
        {
            "claim": ["in-loop", "in-loop", "in-loop", "training", "cost"],
            "verdict": ["yes", "yes", "no", "inconclusive", "not tested"],
        }
    )
    counts = verdict_counts(table)
    assert list(counts.index) == ["training", "cost", "in-loop"]  # the order of CLAIMS, claims not judged left out
    assert counts.loc["in-loop"].tolist() == [2, 1, 0, 0]
    assert counts.loc["cost"].tolist() == [0, 0, 0, 1]


def test_a_documents_verdict_tables_are_copied_cell_for_cell_and_staleness_is_caught(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    table = "<!-- verdicts of s: begin -->\n| claim | yes |\n|---|---|\n| x | 3 |\n<!-- verdicts of s: end -->"
    (tmp_path / "run" / "claims.md").write_text(f"# Claims\n\n{table}\n\n## details\n")
    readme = tmp_path / "README.md"
    stale = "intro\n<!-- verdicts from run/claims.md -->\n<!-- verdicts of s: begin -->\n| claim | yes |\n|---|---|\n| x | 2 |\n<!-- verdicts of s: end -->\noutro\n"
    readme.write_text(stale)
    with pytest.raises(Exception, match="differ from run/claims.md; run 'tokenprune sync-verdicts"):
        sync_verdict_tables(readme, check=True)
    assert readme.read_text() == stale
    assert main(["sync-verdicts", str(readme)]) == 0
    assert readme.read_text() == f"intro\n<!-- verdicts from run/claims.md -->\n{table}\noutro\n"
    assert sync_verdict_tables(readme, check=True) is False
    readme.write_text(stale.replace("run/claims.md", "gone/claims.md"))
    with pytest.raises(Exception, match="'gone/claims.md', which does not exist"):
        sync_verdict_tables(readme)


def test_the_readme_verdicts_equal_the_claims_files_they_name() -> None:
    """The README's verdict tables are the pipeline's, cell for cell ('tokenprune sync-verdicts README.md' fixes them)."""
    assert sync_verdict_tables(Path(__file__).parents[1] / "README.md", check=True) is False
