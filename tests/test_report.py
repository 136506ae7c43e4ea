"""The report: seed aggregation, significance marks, table renderings, figures and kept-token diagnostics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tokenprune.errors import TokenpruneError
from tokenprune.layout import System
from tokenprune.reporting import diagnostics, plots, tables
from tokenprune.reporting.paper import paper_values, published_results
from tokenprune.reporting.report_files import summarize, token_diagnostics
from tokenprune.reporting.statistics import holm_adjust, paired_test
from tokenprune.reporting.summary import SystemFiles, SystemResult, compare_methods

QUERIES = [f"q{i}" for i in range(40)]
RNG = np.random.default_rng(7)
BASE = RNG.uniform(0.2, 0.6, len(QUERIES))


def per_query(values: np.ndarray, measure: str = "nDCG@10") -> pd.DataFrame:
    return pd.DataFrame({measure: values}, index=pd.Index(QUERIES, name="query_id"))


def result(system_id: str, values: np.ndarray, *, kept: float | None = 100.0, mib: float = 1.0) -> SystemResult:
    stats_ = None if kept is None else {"percent_tokens_kept": kept, "index_bytes": int(mib * 2**20)}
    return SystemResult(System.parse(system_id), {"nDCG@10": float(values.mean())}, per_query(values), stats_)


@pytest.fixture()
def synthetic() -> list[SystemResult]:
    """A baseline, a clearly better method, an identical one, a two-seed method, and BM25."""
    better = np.clip(BASE + 0.2 + RNG.normal(0, 0.01, len(QUERIES)), 0, 1)
    return [
        result("sci/none/kall/seed1", BASE, mib=8.0),
        result("sci/first/k10/seed1", better, kept=10.0, mib=1.0),
        result("sci/idf/k10/seed1", BASE.copy(), kept=10.0, mib=1.0),
        result("sci/unused/k10/seed1", BASE - 0.1, kept=10.0, mib=1.0),
        result("sci/unused/k10/seed2", BASE - 0.2, kept=12.0, mib=1.2),
        result("bm25", BASE - 0.05, kept=None),
    ]


def test_holm_adjustment_matches_a_hand_computation() -> None:
    # Sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> raised to the running maximum 0.06.
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm_adjust([0.5, 0.9]), [1.0, 1.0])
    adjusted = holm_adjust([0.02, float("nan")])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])


def query_p(values: pd.Series, reference: pd.Series) -> float:
    """The one-seed paired test (tests/test_statistics.py checks it against scipy)."""
    return paired_test({0: values}, {0: reference}).p_mixed


def test_aggregation_means_deltas_and_significance(synthetic: list[SystemResult]) -> None:
    comparison = compare_methods(synthetic, ["nDCG@10"], alpha=0.05)
    table = comparison.table.set_index("method")
    assert list(comparison.table["method"]) == ["BM25", "ColBERT (no pruning)", "first", "idf", "unused"]
    baseline = BASE.mean()
    assert table.loc["ColBERT (no pruning)", "nDCG@10"] == pytest.approx(baseline)
    assert math.isnan(table.loc["ColBERT (no pruning)", "nDCG@10 p_holm"])
    # Two seeds: the mean of the seeds' means, their sample std, the mean index size.
    assert table.loc["unused", "seeds"] == 2
    assert table.loc["unused", "nDCG@10"] == pytest.approx(baseline - 0.15)
    assert table.loc["unused", "nDCG@10 std"] == pytest.approx(math.sqrt(0.005))
    assert table.loc["unused", "nDCG@10 delta"] == pytest.approx(-0.15)
    assert table.loc["unused", "percent_tokens_kept"] == pytest.approx(11.0)
    assert table.loc["unused", "index_mib"] == pytest.approx(1.1)
    assert math.isnan(table.loc["first", "nDCG@10 std"])
    # The clearly better method is marked, the identical one is not.
    assert table.loc["first", "nDCG@10 significant"]
    assert table.loc["first", "nDCG@10 delta"] > 0.15
    assert not table.loc["idf", "nDCG@10 significant"]
    assert table.loc["idf", "nDCG@10 p_holm"] == 1.0
    assert table.loc["idf", "nDCG@10 delta"] == pytest.approx(0.0)
    assert comparison.compared == 4 and comparison.queries == len(QUERIES)
    assert math.isnan(table.loc["BM25", "index_mib"])


def test_holm_family_is_the_compared_methods(synthetic: list[SystemResult]) -> None:
    comparison = compare_methods(synthetic, ["nDCG@10"], alpha=0.05)
    table = comparison.table.set_index("method")
    per_method = {r.system.method: r.per_query["nDCG@10"] for r in synthetic}
    reference = per_method["sci/none/kall"]
    # Two seeds, each a constant shift (-0.1, -0.2) from the one-seed baseline: over queries the
    # difference is certain, over seeds it is a t-test of [-0.1, -0.2] on one degree of freedom.
    unused_seeds = stats.ttest_1samp([-0.1, -0.2], 0.0).pvalue
    raw = {
        "first": query_p(per_method["sci/first/k10"], reference),
        "idf": query_p(per_method["sci/idf/k10"], reference),
        "unused": unused_seeds,
        "BM25": query_p(per_method["bm25"], reference),
    }
    expected = dict(zip(raw, holm_adjust(list(raw.values())), strict=True))
    for method, value in expected.items():
        assert table.loc[method, "nDCG@10 p_holm"] == pytest.approx(value)
    assert table.loc["unused", "nDCG@10 p_query"] == 0.0
    assert table.loc["unused", "nDCG@10 p_seed"] == pytest.approx(unused_seeds)
    assert table.loc["unused", "nDCG@10 p_mixed"] == pytest.approx(unused_seeds)


def test_missing_measure_names_the_system(synthetic: list[SystemResult]) -> None:
    with pytest.raises(TokenpruneError, match="'sci/none/kall/seed1' was not evaluated with \\['RR@10'\\]"):
        compare_methods(synthetic, ["nDCG@10", "RR@10"], alpha=0.05)


def test_paper_values_are_shown_for_the_matching_collection(synthetic: list[SystemResult]) -> None:
    published = published_results()
    assert set(published["source"]) == {"Table 2", "Table 3"}
    scifact = paper_values("beir/scifact/test")
    assert dict(zip(scifact["strategy"], scifact["value"], strict=True)) == {
        "none": 0.633,
        "first": 0.545,
        "idf": 0.475,
        "unused": 0.502,
        "attention": 0.564,
    }
    assert paper_values(None).empty and paper_values("cranfield").empty
    renamed = [
        SystemResult(System.parse(r.system.id.replace("k10", "k50")), r.measures, r.per_query, r.index_stats)
        for r in synthetic
    ]
    comparison = compare_methods(renamed, ["nDCG@10"], alpha=0.05, paper=scifact)
    table = comparison.table.set_index("method")
    assert table.loc["ColBERT (no pruning)", "nDCG@10 paper"] == 0.633
    assert table.loc["first", "nDCG@10 paper"] == 0.545
    assert math.isnan(table.loc["BM25", "nDCG@10 paper"])
    assert comparison.paper_source == "Table 3"
    markdown = tables.to_markdown(comparison)
    # The paper's models were all trained on MS MARCO: on SciFact its values are zero-shot, and the label says so.
    assert "nDCG@10 (paper, MS MARCO-trained)" in markdown and "0.545" in markdown
    assert "zero-shot on every other collection" in markdown and "Lassance et al. (2022)" in markdown


def test_renderings_carry_values_marks_and_footnote(synthetic: list[SystemResult]) -> None:
    comparison = compare_methods(synthetic, ["nDCG@10"], alpha=0.05, corpus="sci", split="test", mode="exact")
    first_value = f"{comparison.table.set_index('method').loc['first', 'nDCG@10']:.3f}"
    markdown = tables.to_markdown(comparison)
    first_row = next(line for line in markdown.splitlines() if line.startswith("| first"))
    assert f"{first_value}†" in first_row
    idf_row = next(line for line in markdown.splitlines() if line.startswith("| idf"))
    assert "†" not in idf_row and "+0.000" in idf_row
    unused_row = next(line for line in markdown.splitlines() if line.startswith("| unused"))
    assert " ± 0.071" in unused_row
    assert "Holm-corrected across the 4 compared methods" in markdown and f"over {len(QUERIES)} queries" in markdown
    html = tables.to_html(comparison)
    assert "<caption>sci test, exact retrieval</caption>" in html and f"{first_value}<sup>†</sup>" in html
    latex = tables.to_latex(comparison)
    assert latex.count(r"\toprule") == 1 and r"\midrule" in latex and r"\bottomrule" in latex
    assert rf"{first_value}$^\dagger$" in latex and r"\% tokens" in latex and r"$\pm$" in latex
    # Every table row has the same number of cells as the header.
    body = latex.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    cells = {line.count(" & ") for line in body.splitlines() if line.endswith(r"\\")}
    assert cells == {latex.split(r"\toprule")[1].splitlines()[1].count(" & ")}


def _write_system_outputs(root: Path, system_id: str, values: np.ndarray, kept: float | None) -> None:
    system = System.parse(system_id)
    metrics = system.metrics_path("sci", "test", "exact", root)
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps({"measures": {"nDCG@10": float(values.mean())}}))
    rows = ["query_id\tmeasure\tvalue"] + [f"{q}\tnDCG@10\t{v:.6f}" for q, v in zip(QUERIES, values, strict=True)]
    system.per_query_path("sci", "test", "exact", root).write_text("\n".join(rows) + "\n")
    if kept is not None:
        index = system.index_dir("sci", root)
        index.mkdir(parents=True, exist_ok=True)
        # 512 passages of 2 KiB each; the per-passage counts scale with the share kept (100% = 100 vectors).
        per_document = {"mean": kept, "median": kept - 1, "max": 3 * kept}
        stats = {
            "percent_tokens_kept": kept,
            "index_bytes": 2**20,
            "documents": 512,
            "vectors_per_document": per_document,
        }
        (index / "index_stats.json").write_text(json.dumps(stats))


def system_files(root: Path, system_id: str) -> SystemFiles:
    """Where _write_system_outputs put one system's files: what the summarize rule hands the library."""
    system = System.parse(system_id)
    return SystemFiles(
        system,
        system.metrics_path("sci", "test", "exact", root),
        system.per_query_path("sci", "test", "exact", root),
        system.index_dir("sci", root),
    )


def test_summarize_reads_pipeline_outputs_and_writes_four_formats(tmp_path: Path) -> None:
    _write_system_outputs(tmp_path, "sci/none/kall/seed1", BASE, 100.0)
    _write_system_outputs(tmp_path, "sci/first/k10/seed1", BASE - 0.3, 10.0)
    _write_system_outputs(tmp_path, "bm25", BASE, None)
    out = tmp_path / "summary"
    summarize(
        [system_files(tmp_path, s) for s in ("sci/none/kall/seed1", "sci/first/k10/seed1", "bm25")],
        corpus="sci",
        split="test",
        mode="exact",
        measures=["nDCG@10"],
        output_dir=out,
        alpha=0.05,
        storage_budgets_kib=[1, 4],
    )
    assert sorted(p.name for p in out.iterdir()) == [
        "best_at_budget.csv",
        "best_at_budget.md",
        "comparison.csv",
        "comparison.html",
        "comparison.md",
        "comparison.tex",
        "headline.html",
        "inloop_vs_posthoc.csv",
        "strategy_pairs.csv",
    ]
    table = pd.read_csv(out / "comparison.csv").set_index("method")
    assert table.loc["first", "nDCG@10 delta"] == pytest.approx(-0.3, abs=1e-6)
    assert bool(table.loc["first", "nDCG@10 significant"])
    # The report's opening table: the references, then each k's strategies; no post-hoc run here.
    (headline,) = pd.read_html(out / "headline.html", encoding="utf-8")
    assert list(headline["method"]) == ["BM25", "ColBERT (no pruning)", "first"]
    first = headline.set_index("method").loc["first"]
    assert (str(first["k"]), str(first["% tokens"]), first["nDCG@10, post hoc"]) == (
        "10",
        "10.0",
        "– (not in the study)",
    )
    assert float(first["nDCG@10, in the loop"]) == pytest.approx(table.loc["first", "nDCG@10"], abs=5e-4)
    # Per passage: the stored vectors' mean, median and max, and the bytes (2**20 over 512 passages).
    assert table.loc["first", ["vectors_mean", "vectors_median", "vectors_max", "kib_per_passage"]].tolist() == [
        10.0,
        9.0,
        30.0,
        2.0,
    ]
    assert "10.0, 9, 30" in (out / "comparison.md").read_text()

    def summarize_on_sci(systems: list[str], alpha: float = 0.05) -> None:
        summarize(
            [system_files(tmp_path, s) for s in systems],
            corpus="sci",
            split="test",
            mode="exact",
            measures=["nDCG@10"],
            output_dir=out,
            alpha=alpha,
            storage_budgets_kib=[1.0],
        )

    with pytest.raises(TokenpruneError, match="alpha 1.5"):
        summarize_on_sci(["bm25"], alpha=1.5)
    with pytest.raises(TokenpruneError, match="no systems given"):
        summarize_on_sci([])
    with pytest.raises(TokenpruneError, match="does not exist; run the pipeline"):
        summarize_on_sci(["sci/idf/k10/seed1"])


def test_tradeoff_figure_has_one_line_per_strategy_and_one_point_per_k() -> None:
    rows = [
        {"kind": "bm25", "strategy": "none", "k": None, "index_mib": np.nan, "percent_tokens_kept": np.nan, "m": 0.30},
        {
            "kind": "untrained",
            "strategy": "none",
            "k": None,
            "index_mib": 30.0,
            "percent_tokens_kept": 100.0,
            "m": 0.40,
        },
        {"kind": "baseline", "strategy": "none", "k": None, "index_mib": 10.0, "percent_tokens_kept": 100.0, "m": 0.50},
    ]
    for strategy, scores in {"first": (0.45, 0.35), "idf": (0.44, 0.38), "unused": (0.40, 0.39)}.items():
        rows += [
            {
                "kind": "pruned",
                "strategy": strategy,
                "k": 50,
                "index_mib": 3.0,
                "percent_tokens_kept": 30.0,
                "m": scores[0],
            },
            {
                "kind": "pruned",
                "strategy": strategy,
                "k": 10,
                "index_mib": 0.6,
                "percent_tokens_kept": 6.0,
                "m": scores[1],
            },
        ]
    table = pd.DataFrame(rows).assign(**{"m std": np.nan})
    figure = plots.tradeoff_figure(table, "m")
    assert len(figure.axes) == 2
    for axis, x_column in zip(figure.axes, ["index_mib", "percent_tokens_kept"], strict=True):
        lines = {line.get_gid(): line for line in axis.get_lines() if line.get_gid()}
        strategy_lines = sorted(gid for gid in lines if gid.startswith("strategy:"))
        assert strategy_lines == ["strategy:first", "strategy:idf", "strategy:unused"]
        first = lines["strategy:first"]
        # Points sorted by size: k=10 then k=50.
        assert list(first.get_xdata()) == [table.loc[3 + 1, x_column], table.loc[3, x_column]]
        assert list(first.get_ydata()) == [0.35, 0.45]
        assert list(lines["reference:baseline"].get_ydata()) == [0.50]
        assert list(lines["reference:untrained"].get_xdata()) == [table.loc[1, x_column]]
        assert list(lines["level:bm25"].get_ydata()) == [0.30, 0.30]
        assert list(lines["level:baseline"].get_ydata()) == [0.50, 0.50]
    assert figure.axes[0].get_xscale() == "log"
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels == ["first", "idf", "unused", "ColBERT, no pruning", "untrained backbone", "BM25"]
    plots.plt.close(figure)


def test_loss_figure_draws_every_logged_step() -> None:
    curves = {
        "no pruning": pd.DataFrame({"step": [10, 20, 30], "loss": [1.0, 0.8, 0.7]}),
        "first k=10": pd.DataFrame({"step": [10, 20], "loss": [1.2, 1.1]}),
    }
    figure = plots.loss_figure(
        curves, {"no pruning": "none", "first k=10": "first"}, {"no pruning": "all", "first k=10": "10"}
    )
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["no pruning", "first k=10"]
    assert [len(line.get_xdata()) for line in lines] == [3, 2]
    assert lines[0].get_color() == plots.STRATEGY_COLOURS["none"] and lines[1].get_linestyle() == "--"
    plots.plt.close(figure)


def write_index(folder: Path, token_ids: list[list[int]], positions: list[list[int]], dim: int = 4) -> Path:
    """A hand-built index folder in the layout of tokenprune.index."""
    folder.mkdir(parents=True)
    counts = [len(ids) for ids in token_ids]
    vectors = sum(counts)
    np.zeros((vectors, dim), dtype=np.float16).tofile(folder / "vectors.f16")
    np.save(folder / "offsets.npy", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    (folder / "doc_ids.txt").write_text("".join(f"d{i}\n" for i in range(len(counts))))
    np.array([t for ids in token_ids for t in ids], dtype=np.int32).tofile(folder / "token_ids.i32")
    np.array([p for ps in positions for p in ps], dtype=np.int16).tofile(folder / "positions.i16")
    (folder / "index_stats.json").write_text(json.dumps({"documents": len(counts), "vectors": vectors, "dim": dim}))
    return folder


def test_kept_token_counts_are_exact(tmp_path: Path) -> None:
    index = write_index(tmp_path / "idx", [[101, 2, 7592], [101, 7592]], [[0, 1, 4], [0, 2]])
    kept = diagnostics.count_kept_tokens(index)
    assert kept.vectors == 5
    assert kept.position_counts.tolist() == [2, 1, 1, 0, 1]
    assert kept.token_counts == {2: 1, 101: 2, 7592: 2}
    assert kept.top_tokens(2) == [(101, 2), (7592, 2)]


def test_truncated_diagnostics_are_detected(tmp_path: Path) -> None:
    index = write_index(tmp_path / "idx", [[101, 2]], [[0, 1]])
    np.array([101], dtype=np.int32).tofile(index / "token_ids.i32")
    with pytest.raises(TokenpruneError, match="corrupted: token_ids.i32 holds 1 entries.*2 vectors"):
        diagnostics.count_kept_tokens(index)


def test_token_diagnostics_tables_and_figures(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    systems = {
        "sci/none/kall/seed1": ([[101, 2023, 2003, 102]], [[0, 2, 3, 4]]),
        "sci/first/k2/seed1": ([[101, 1]], [[0, 1]]),
    }
    for system_id, (ids, positions) in systems.items():
        system = System.parse(system_id)
        write_index(system.index_dir("sci", tmp_path), ids, positions)
        tokenizer.save_pretrained(system.model_dir(tmp_path))
    entries = [(s, System.parse(s).model_dir(tmp_path), System.parse(s).index_dir("sci", tmp_path)) for s in systems]
    written = token_diagnostics(entries, output_dir=tmp_path / "diag", top=5)
    assert sorted(p.name for p in written) == sorted(
        f"{stem}.{fmt}" for stem in ("kept_positions", "kept_tokens") for fmt in ("csv", "png", "svg")
    )
    tokens = pd.read_csv(tmp_path / "diag" / "kept_tokens.csv")
    # Only the pruned model is listed; its two tokens split the kept vectors evenly.
    assert list(tokens["model"].unique()) == ["first k=2"]
    assert list(tokens["token"]) == ["[unused0]", "[CLS]"] and list(tokens["share"]) == [0.5, 0.5]
    positions = pd.read_csv(tmp_path / "diag" / "kept_positions.csv")
    assert positions.groupby("model")["count"].sum().to_dict() == {"first k=2": 2, "no pruning": 4}


def test_positions_figure_has_a_panel_per_k_and_a_line_per_strategy() -> None:
    histograms = {
        "none": np.array([1, 1, 1, 1, 1, 1]),
        "first k=2": np.array([1, 1]),
        "idf k=2": np.array([0, 0, 0, 1, 1]),
    }
    figure = plots.positions_figure(
        histograms,
        {"none": "none", "first k=2": "first", "idf k=2": "idf"},
        {"none": None, "first k=2": 2, "idf k=2": 2},
        bin_width=2,
    )
    (axis,) = figure.axes
    steps = axis.get_lines()
    assert [line.get_label() for line in steps] == ["first", "idf"]
    # Bins of width 2 over 6 positions: first keeps bin 0 only, idf bins 1 and 2.
    np.testing.assert_allclose(steps[0].get_ydata()[:3], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(steps[1].get_ydata()[:3], [0.0, 0.5, 0.5])
    assert len(axis.collections) == 1  # the grey distribution of all tokens
    plots.plt.close(figure)


def test_saved_figures_are_byte_identical_across_runs(tmp_path: Path) -> None:
    curves = {"no pruning": pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.5]})}
    digests = []
    for run in ("a", "b"):
        paths = plots.save_figure(
            plots.loss_figure(curves, {"no pruning": "none"}, {"no pruning": "all"}), tmp_path / run / "loss"
        )
        digests.append([path.read_bytes() for path in paths])
    assert digests[0] == digests[1]


def test_report_commands_fail_with_one_line_naming_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokenprune.cli import main

    status = main(
        [
            "summarize",
            "--system",
            "scifact/first/kten/seed1",
            "m.json",
            "q.tsv",
            "-",
            "--corpus",
            "sci",
            "--split",
            "test",
            "--mode",
            "exact",
            "--measures",
            "nDCG@10",
            "--alpha",
            "0.05",
            "--storage-budgets",
            "2",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert status == 2
    assert "'scifact/first/kten/seed1' is not a system id" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    status = main(
        [
            "plot-tradeoff",
            "--table",
            str(tmp_path / "missing.csv"),
            "--measures",
            "nDCG@10",
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert status == 2
    assert "missing.csv' does not exist; run 'tokenprune summarize' first" in capsys.readouterr().err


def test_in_loop_minus_post_hoc_is_tested_per_strategy_and_k() -> None:
    """The paper's contrast: each in-loop row against the same selection applied post hoc, paired, Holm-corrected."""
    loop_first = np.clip(BASE + 0.1 + RNG.normal(0, 0.01, len(QUERIES)), 0, 1)
    post_first = BASE.copy()
    loop_idf = BASE + 0.001 * RNG.normal(0, 1, len(QUERIES))
    post_idf = BASE.copy()
    results = [
        result("sci/none/kall/seed1", BASE, mib=8.0),
        result("sci/step0/kall/seed1", BASE - 0.1, mib=8.0),
        result("sci/first/k10/seed1", loop_first, kept=10.0),
        result("sci/posthoc-first/k10/seed1", post_first, kept=10.0),
        result("sci/idf/k10/seed1", loop_idf, kept=10.0),
        result("sci/posthoc-idf/k10/seed1", post_idf, kept=10.0),
        result("untrained/posthoc-first/k10/seed0", BASE - 0.2, kept=10.0),
        result("untrained/none/kall/seed0", BASE - 0.05),
    ]
    comparison = compare_methods(results, ["nDCG@10"], alpha=0.05)
    table = comparison.table
    assert list(table["method"]) == [
        "untrained backbone",
        "ColBERT, step 0",
        "ColBERT (no pruning)",
        "first",
        "idf",
        "first (post-hoc)",
        "idf (post-hoc)",
        "first (post-hoc, untrained)",
    ]
    assert list(table["selection"]) == ["", "", "", "in-loop", "in-loop", "post-hoc", "post-hoc", "post-hoc"]
    contrast = comparison.contrast.set_index("strategy")
    assert list(contrast.index) == ["first", "idf"]
    assert contrast.loc["first", "delta"] == pytest.approx(loop_first.mean() - post_first.mean())
    raw = [stats.ttest_rel(loop_first, post_first).pvalue, stats.ttest_rel(loop_idf, post_idf).pvalue]
    np.testing.assert_allclose(contrast["p_query"], raw)
    np.testing.assert_allclose(contrast["p_mixed"], raw)
    assert contrast["p_seed"].isna().all() and list(contrast["seeds"]) == [1, 1]
    np.testing.assert_allclose(contrast["p_holm"], holm_adjust(raw))
    assert bool(contrast.loc["first", "significant"]) and not bool(contrast.loc["idf", "significant"])
    markdown = tables.to_markdown(comparison)
    assert "In the training loop vs post hoc" in markdown and "first (post-hoc)" in markdown
    assert "Holm-corrected across the 2 strategies of each k and measure" in markdown
    # Strategy against strategy at one k: first minus idf, one pair.
    pairs = comparison.pairs
    assert list(zip(pairs["strategy"], pairs["versus"], strict=True)) == [("first", "idf")]
    assert pairs["delta"].iloc[0] == pytest.approx(loop_first.mean() - loop_idf.mean())
    assert pairs["p_mixed"].iloc[0] == pytest.approx(stats.ttest_rel(loop_first, loop_idf).pvalue)


def test_post_hoc_rows_are_hollow_markers_in_the_strategy_colour() -> None:
    rows = [
        {"kind": "baseline", "strategy": "none", "k": None, "index_mib": 10.0, "percent_tokens_kept": 100.0, "m": 0.5},
        {"kind": "step0", "strategy": "none", "k": None, "index_mib": 10.0, "percent_tokens_kept": 100.0, "m": 0.4},
        {"kind": "pruned", "strategy": "first", "k": 10, "index_mib": 1.0, "percent_tokens_kept": 10.0, "m": 0.45},
        {"kind": "posthoc", "strategy": "first", "k": 10, "index_mib": 1.0, "percent_tokens_kept": 10.0, "m": 0.41},
        {"kind": "posthoc", "strategy": "first", "k": 50, "index_mib": 5.0, "percent_tokens_kept": 50.0, "m": 0.48},
    ]
    figure = plots.tradeoff_figure(pd.DataFrame(rows).assign(**{"m std": np.nan}), "m")
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines() if line.get_gid()}
    hollow = lines["posthoc:first"]
    assert list(hollow.get_ydata()) == [0.41, 0.48]
    assert hollow.get_markerfacecolor() == "white"
    assert hollow.get_color() == plots.strategy_colour("first")
    assert list(lines["reference:step0"].get_ydata()) == [0.4]
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels[:2] == ["first", "first (post-hoc)"]
    plots.plt.close(figure)


def test_system_ids_of_compressed_indexes() -> None:
    system = System.parse("sci/posthoc-first/k10/seed3/r2")
    assert (system.kind, system.strategy, system.k, system.seed, system.bits) == ("posthoc", "first", 10, 3, 2)
    assert system.storage == "2-bit" and system.uncompressed_id == "sci/posthoc-first/k10/seed3"
    # Seeds of a compressed method group together, apart from the float16 method.
    assert system.method == "sci/posthoc-first/k10/r2"
    assert System.parse("sci/posthoc-first/k10/seed3").method == "sci/posthoc-first/k10"
    # The index is its own; the queries are encoded by the model the uncompressed system uses.
    assert str(system.index_dir("cran")) == "results/indexes/sci/posthoc-first/k10/seed3/r2/cran"
    assert str(system.model_dir()) == "results/models/sci/none/kall/seed3"
    assert str(System.parse("sci/first/k10/seed3/r4").model_dir()) == "results/models/sci/first/k10/seed3"
    assert System.parse("untrained/none/kall/seed0").storage == "fp16" and System.parse("bm25").storage == ""
    with pytest.raises(ValueError, match="is not a system id"):
        System.parse("sci/first/k10/seed3/r9")


def test_compressed_rows_follow_their_float16_rows_and_are_tested_against_the_float16_baseline() -> None:
    results = [
        result("sci/none/kall/seed1", BASE, mib=8.0),
        result("sci/none/kall/seed1/r2", BASE - 0.02, mib=1.1),
        result("sci/first/k10/seed1", BASE - 0.03, kept=10.0, mib=1.0),
        result("sci/first/k10/seed1/r2", BASE - 0.05, kept=10.0, mib=0.15),
        result("sci/posthoc-first/k10/seed1", BASE - 0.04, kept=10.0, mib=1.0),
        result("sci/posthoc-first/k10/seed1/r2", BASE - 0.06, kept=10.0, mib=0.15),
    ]
    comparison = compare_methods(results, ["nDCG@10"], alpha=0.05)
    table = comparison.table
    assert list(table["method"]) == [
        "ColBERT (no pruning)",
        "ColBERT (no pruning, 2-bit)",
        "first",
        "first (post-hoc)",
        "first (2-bit)",
        "first (post-hoc, 2-bit)",
    ]
    assert list(table["storage"]) == ["fp16", "2-bit", "fp16", "fp16", "2-bit", "2-bit"]
    assert comparison.baseline_label == "ColBERT (no pruning)"
    assert table["nDCG@10 delta"].tolist() == pytest.approx([0.0, -0.02, -0.03, -0.04, -0.05, -0.06])
    # The in-loop vs post-hoc contrast pairs float16 indexes only.
    assert comparison.contrast["delta"].tolist() == pytest.approx([0.01])
    assert table["index_mib"].tolist() == pytest.approx([8.0, 1.1, 1.0, 1.0, 0.15, 0.15], abs=1e-6)


def test_compressed_copies_are_small_triangles_in_the_familys_colour() -> None:
    rows = [
        {
            "method": "ColBERT (no pruning)",
            "kind": "baseline",
            "storage": "fp16",
            "strategy": "none",
            "k": None,
            "index_mib": 10.0,
            "percent_tokens_kept": 100.0,
            "m": 0.5,
        },
        {
            "method": "first",
            "kind": "pruned",
            "storage": "fp16",
            "strategy": "first",
            "k": 10,
            "index_mib": 1.0,
            "percent_tokens_kept": 10.0,
            "m": 0.45,
        },
        {
            "method": "first (2-bit)",
            "kind": "pruned",
            "storage": "2-bit",
            "strategy": "first",
            "k": 50,
            "index_mib": 0.7,
            "percent_tokens_kept": 50.0,
            "m": 0.47,
        },
        {
            "method": "first (2-bit)",
            "kind": "pruned",
            "storage": "2-bit",
            "strategy": "first",
            "k": 10,
            "index_mib": 0.14,
            "percent_tokens_kept": 10.0,
            "m": 0.43,
        },
        {
            "method": "ColBERT (no pruning, 2-bit)",
            "kind": "baseline",
            "storage": "2-bit",
            "strategy": "none",
            "k": None,
            "index_mib": 1.4,
            "percent_tokens_kept": 100.0,
            "m": 0.49,
        },
    ]
    figure = plots.tradeoff_figure(pd.DataFrame(rows).assign(**{"m std": np.nan}), "m")
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines() if line.get_gid()}
    compressed = lines["compressed:pruned:first:2-bit"]
    # Sorted along the size axis, at the bytes of the codes.
    assert list(compressed.get_xdata()) == [0.14, 0.7] and list(compressed.get_ydata()) == [0.43, 0.47]
    assert compressed.get_marker() == "v" and compressed.get_color() == plots.strategy_colour("first")
    assert list(lines["compressed:baseline:none:2-bit"].get_ydata()) == [0.49]
    # The float16 rows are drawn as before: the in-loop line holds only the fp16 point.
    assert list(lines["strategy:first"].get_ydata()) == [0.45]
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "first (2-bit)" in labels and "ColBERT (no pruning, 2-bit)" in labels
    plots.plt.close(figure)


def test_indexes_of_two_precisions_are_not_compared() -> None:
    bf16 = result("sci/none/kall/seed1", BASE)
    fp32 = result("sci/first/k10/seed1", BASE - 0.1, kept=10.0)
    assert bf16.index_stats is not None and fp32.index_stats is not None
    bf16.index_stats["encoding_precision"] = "bf16"
    fp32.index_stats["encoding_precision"] = "fp32"
    with pytest.raises(
        TokenpruneError, match=r"encoded in 2 precisions \(bf16: sci/none/kall/seed1; fp32: sci/first/k10/seed1\)"
    ):
        compare_methods([bf16, fp32], ["nDCG@10"], alpha=0.05)
    fp32.index_stats["encoding_precision"] = "bf16"
    assert len(compare_methods([bf16, fp32], ["nDCG@10"], alpha=0.05).table) == 2


def test_the_headline_says_which_strategies_have_no_post_hoc_form() -> None:
    from tokenprune.reporting.tables import headline_table

    systems = [
        result("sci/none/kall/seed1", BASE),
        result("sci/first/k10/seed1", BASE - 0.1, kept=10.0),
        result("sci/posthoc-first/k10/seed1", BASE - 0.2, kept=10.0),
        result("sci/const/k10/seed1", BASE - 0.05, kept=10.0),
        result("sci/attention/k10/seed1", BASE - 0.05, kept=10.0),
    ]
    headline = headline_table(compare_methods(systems, ["nDCG@10"], alpha=0.05)).set_index("method")
    post_hoc = headline["nDCG@10, post hoc"]
    assert post_hoc["first"] == f"{(BASE - 0.2).mean():.3f}"
    assert post_hoc["const"] == "– (no post-hoc form)"
    assert post_hoc["attention"] == "– (not in the study)"


def sized(system_id: str, values: np.ndarray, kib: float) -> SystemResult:
    """A system whose index takes ``kib`` KiB per passage (100 passages)."""
    stats_ = {
        "percent_tokens_kept": 10.0,
        "index_bytes": int(kib * 1024 * 100),
        "documents": 100,
        "vectors_per_document": {"mean": 10.0, "median": 10.0, "max": 10},
    }
    return SystemResult(System.parse(system_id), {"nDCG@10": float(values.mean())}, per_query(values), stats_)


def test_best_at_budget_takes_each_strategys_best_system_that_fits() -> None:
    from tokenprune.reporting.budgets import budget_markdown, budget_table

    systems = [
        sized("sci/none/kall/seed1", BASE, 40.0),
        sized("sci/none/kall/seed1/r2", BASE - 0.01, 5.3),
        sized("sci/first/k50/seed1", BASE - 0.02, 12.5),
        sized("sci/first/k10/seed1", BASE - 0.10, 2.5),
        sized("sci/first/k50/seed1/r2", BASE - 0.03, 1.7),
        sized("sci/first/k10/seed1/r2", BASE - 0.12, 0.33),
        sized("sci/posthoc-first/k50/seed1/r2", BASE - 0.08, 1.7),
        sized("sci/posthoc-first/k10/seed1/r2", BASE - 0.11, 0.33),
        sized("untrained/none/kall/seed0", BASE + 0.05, 40.0),  # a reference, never a candidate
        result("bm25", BASE, kept=None),
    ]
    comparison = compare_methods(systems, ["nDCG@10"], alpha=0.05)
    table = budget_table(comparison, [8, 0.5, 2]).set_index(["budget_kib", "strategy"])
    mean = {offset: (BASE - offset).mean() for offset in (0.01, 0.03, 0.08, 0.11, 0.12)}
    # At 0.5 KiB only the 2-bit k=10 rows fit: in the loop 0.12 below the baseline, post hoc 0.11 below.
    assert table.loc[(0.5, "first"), ["in_loop", "post_hoc"]].tolist() == ["first (2-bit)", "first (post-hoc, 2-bit)"]
    assert table.loc[(0.5, "first"), "delta"] == pytest.approx(mean[0.12] - mean[0.11])
    assert (0.5, "none") not in table.index
    # At 2 KiB the 2-bit k=50 rows win over the 2-bit k=10 ones.
    assert table.loc[(2, "first"), "in_loop_nDCG@10"] == pytest.approx(mean[0.03])
    assert table.loc[(2, "first"), "delta"] == pytest.approx(mean[0.03] - mean[0.08])
    # At 8 KiB the 2-bit baseline (5.3 KiB) fits; it has no post-hoc side.
    assert table.loc[(8, "none"), "in_loop"] == "ColBERT (no pruning, 2-bit)"
    assert table.loc[(8, "none"), "post_hoc"] == "" and np.isnan(table.loc[(8, "none"), "delta"])
    text = budget_markdown(comparison, budget_table(comparison, [0.1, 2]), [0.1, 2])
    assert "best first (2-bit)" in text and "first (2-bit): " in text
    assert "*At most 0.1 KiB per passage*: no system of this study fits." in text


def test_every_strategy_has_a_colour_of_its_own() -> None:
    from tokenprune.reporting.plots import REFERENCE_COLOURS, strategy_colour
    from tokenprune.strategies import STRATEGIES

    colours = [strategy_colour(strategy) for strategy in STRATEGIES] + list(REFERENCE_COLOURS.values())
    assert len(set(colours)) == len(colours)
