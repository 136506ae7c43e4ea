"""The method comparison: one row per method, seeds averaged, differences from the baseline tested.

Every searched system (a trained model, the untrained backbone, BM25) has an
aggregate metrics JSON and a per-query TSV from the ``evaluate`` stage, and
each dense system an ``index_stats.json``. :func:`compare_methods` turns them
into the table of the paper's Table 2: % of tokens kept, index size, each
measure, its difference from the unpruned trained baseline, and whether that
difference is significant (paired two-sided t-test on per-query values,
Holm-corrected across the compared methods, per measure).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from tokenprune.errors import TokenpruneError
from tokenprune.index import STATS_FILE
from tokenprune.layout import System

METHOD_LABELS = {
    "bm25": "BM25",
    "untrained": "untrained backbone",
    "step0": "ColBERT, step 0",
    "baseline": "ColBERT (no pruning)",
}
#: Unpruned rows first; then, per k, the strategies trained in the loop, their post-hoc
#: forms on the trained baseline, and on the untrained backbone.
KIND_ORDER = {"bm25": 0, "untrained": 1, "step0": 2, "baseline": 3, "pruned": 4, "posthoc": 5, "untrained-posthoc": 6}
SELECTION_LABELS = {"pruned": "in-loop", "posthoc": "post-hoc", "untrained-posthoc": "post-hoc"}


def method_label(system: System) -> str:
    """The row label of a system's method: references by name, pruned methods by strategy (and where pruned),
    with the storage of a compressed index: ``first (post-hoc, 2-bit)``, ``ColBERT (no pruning, 2-bit)``."""
    notes = {"posthoc": ["post-hoc"], "untrained-posthoc": ["post-hoc", "untrained"]}.get(system.kind, [])
    if system.bits is not None:
        notes.append(system.storage)
    label = METHOD_LABELS.get(system.kind, system.strategy)
    if not notes:
        return label
    if label.endswith(")"):
        return f"{label[:-1]}, {', '.join(notes)})"
    return f"{label} ({', '.join(notes)})"


@dataclass
class SystemResult:
    """What one system (one seed) scored on one evaluation set.

    Attributes
    ----------
    system
        The searched system.
    measures
        Measure name to aggregate value.
    per_query
        Per-query values: rows are query ids, columns measure names.
    index_stats
        The index's ``index_stats.json``, or ``None`` for BM25.
    """

    system: System
    measures: dict[str, float]
    per_query: pd.DataFrame
    index_stats: dict[str, Any] | None = None


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise TokenpruneError(f"{what} {str(path)!r} does not exist; run the pipeline up to it first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TokenpruneError(f"{what} {str(path)!r} is not valid JSON ({error})") from None


def read_per_query(path: Path) -> pd.DataFrame:
    """A per-query TSV (``query_id``, ``measure``, ``value``) as a query x measure frame."""
    if not path.is_file():
        raise TokenpruneError(f"per-query values {str(path)!r} do not exist; run 'tokenprune evaluate' first")
    long = pd.read_csv(path, sep="\t", dtype={"query_id": str, "measure": str, "value": float})
    if list(long.columns) != ["query_id", "measure", "value"]:
        raise TokenpruneError(f"{str(path)!r} has columns {list(long.columns)}; expected query_id, measure, value")
    return long.pivot(index="query_id", columns="measure", values="value")


@dataclass(frozen=True)
class SystemFiles:
    """Where one system's outputs on one evaluation set are: the paths a rule hands the report.

    Attributes
    ----------
    system
        The searched system.
    metrics
        Its aggregate metrics JSON (from ``evaluate``).
    per_query
        Its per-query TSV (from ``evaluate``).
    index
        Its index folder, or ``None`` for BM25.
    """

    system: System
    metrics: Path
    per_query: Path
    index: Path | None = None


def load_system_results(files: Sequence[SystemFiles]) -> list[SystemResult]:
    """Read the evaluation outputs (and index statistics) of each system."""
    results = []
    for entry in files:
        metrics = _read_json(entry.metrics, "metrics")
        index_stats = _read_json(entry.index / STATS_FILE, "index statistics") if entry.index is not None else None
        results.append(
            SystemResult(
                system=entry.system,
                measures={name: float(value) for name, value in metrics["measures"].items()},
                per_query=read_per_query(entry.per_query),
                index_stats=index_stats,
            )
        )
    return results


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    The i-th smallest p-value is multiplied by (m - i), made monotone by a
    running maximum and capped at 1. ``nan`` entries are left out of the family
    and stay ``nan``.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, position in enumerate(order):
        running = max(running, (m - rank) * p[position])
        adjusted[position] = min(1.0, running)
    return adjusted


def paired_t_test(values: pd.Series, reference: pd.Series) -> float:
    """Two-sided paired t-test p-value over the union of queries (a query missing from one side scores 0).

    Identical per-query values give p = 1 (no evidence of a difference) and a
    constant non-zero difference p = 0, where scipy would divide by a zero
    variance.
    """
    queries = values.index.union(reference.index)
    a = values.reindex(queries, fill_value=0.0).to_numpy(dtype=float)
    b = reference.reindex(queries, fill_value=0.0).to_numpy(dtype=float)
    differences = a - b
    if np.allclose(differences, 0.0):
        return 1.0
    if np.ptp(differences) <= 1e-9 * max(1.0, float(np.abs(differences).max())):
        # The same non-zero difference on every query: no variance, a certain difference.
        return 0.0
    return float(stats.ttest_rel(a, b).pvalue)


@dataclass
class Comparison:
    """The comparison of every method on one evaluation set.

    Attributes
    ----------
    table
        One row per method. Columns: ``method``, ``kind``, ``strategy``, ``k``,
        ``seeds``, ``percent_tokens_kept``, ``index_mib``, and per measure ``m``:
        ``m`` (mean over seeds), ``m std`` (sample std over seeds, ``nan`` for
        one seed), ``m delta`` (minus the baseline), ``m p_holm``,
        ``m significant`` and ``m paper`` (the published value, ``nan`` if none).
    measures
        Measure names, in table order.
    queries
        Queries evaluated (the baseline's, or the largest count).
    alpha
        Significance level of the Holm-corrected tests.
    compared
        Methods tested against the baseline (the Holm family size).
    corpus, split, mode
        The evaluation set and retrieval mode.
    paper_source
        The paper tables the ``paper`` columns come from, or ``None``.
    seed_counts
        Distinct numbers of seeds of the trained methods.
    contrast
        In-loop minus post-hoc, per strategy, k and measure (:func:`in_loop_contrast`).
    """

    table: pd.DataFrame
    measures: list[str]
    queries: int
    alpha: float
    compared: int
    corpus: str = ""
    split: str = ""
    mode: str = ""
    paper_source: str | None = None
    seed_counts: list[int] = field(default_factory=list)
    contrast: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def baseline_label(self) -> str | None:
        rows = self.table[(self.table["kind"] == "baseline") & (self.table["storage"] == "fp16")]
        return None if rows.empty else str(rows["method"].iloc[0])


def _method_sort_key(system: System, strategy_order: dict[str, int]) -> tuple:
    # Unpruned rows first, then pruned methods grouped by budget (largest k first) as in the paper;
    # within each, float16 indexes before compressed ones (more bits first).
    storage = 0 if system.bits is None else 9 - system.bits
    if system.k is None:
        return (0, storage, KIND_ORDER[system.kind], 0)
    return (1, -system.k, storage, KIND_ORDER[system.kind], strategy_order.get(system.strategy, len(strategy_order)))


def compare_methods(
    results: Sequence[SystemResult],
    measures: Sequence[str],
    *,
    alpha: float = 0.05,
    paper: pd.DataFrame | None = None,
    corpus: str = "",
    split: str = "",
    mode: str = "",
) -> Comparison:
    """Average seeds per method, take differences from the baseline and test them.

    Parameters
    ----------
    results
        Every system's results on one evaluation set (several seeds of a method allowed).
    measures
        Measure names to report; each must be in every system's results.
    alpha
        Significance level after Holm's correction.
    paper
        Published values for this evaluation set (:func:`tokenprune.reporting.paper.paper_values`).

    Raises
    ------
    TokenpruneError
        When a measure is missing from a system's results, or several
        methods claim to be the unpruned baseline.
    """
    if not results:
        raise TokenpruneError("no systems to compare")
    _check_measures(results, measures)
    by_method, baseline = _group_by_method(results)
    # Per-query values averaged over seeds: the unit of the paired test is the query.
    per_query = {
        method: pd.concat([r.per_query[list(measures)] for r in group]).groupby(level=0).mean()
        for method, group in by_method.items()
    }
    strategy_order: dict[str, int] = {}
    for result in results:
        strategy_order.setdefault(result.system.strategy, len(strategy_order))
    methods = sorted(by_method, key=lambda method: _method_sort_key(by_method[method][0].system, strategy_order))
    table = pd.DataFrame([_method_row(by_method[method], measures, paper) for method in methods])
    table["k"] = table["k"].astype("Int64")
    compared_methods = [method for method in methods if method != baseline]
    _test_against_baseline(table, methods, baseline, per_query, measures, alpha)
    ordered = ["method", "kind", "selection", "storage", "strategy", "k", "seeds", "percent_tokens_kept", "index_mib"]
    for name in measures:
        ordered += [name, f"{name} std", f"{name} delta", f"{name} p_holm", f"{name} significant", f"{name} paper"]
    queries = len(per_query[baseline]) if baseline else max(len(frame) for frame in per_query.values())
    sources = None
    if paper is not None and not paper.empty:
        sources = ", ".join(sorted(set(paper["source"])))
    return Comparison(
        table=table[ordered],
        contrast=in_loop_contrast(by_method, per_query, measures, alpha),
        measures=list(measures),
        queries=queries,
        alpha=alpha,
        compared=len(compared_methods) if baseline else 0,
        corpus=corpus,
        split=split,
        mode=mode,
        paper_source=sources if sources and table[[f"{m} paper" for m in measures]].notna().any().any() else None,
        seed_counts=sorted(
            {len(group) for group in by_method.values() if group[0].system.kind in ("baseline", "pruned")}
        ),
    )


def _check_measures(results: Sequence[SystemResult], measures: Sequence[str]) -> None:
    """Every system must have been evaluated with every measure of the table."""
    for result in results:
        missing = [name for name in measures if name not in result.measures or name not in result.per_query.columns]
        if missing:
            raise TokenpruneError(
                f"system {result.system.id!r} was not evaluated with {missing}; "
                f"it has {sorted(result.measures)} (re-run 'evaluate' with the configured metrics)"
            )


def _group_by_method(results: Sequence[SystemResult]) -> tuple[dict[str, list[SystemResult]], str | None]:
    """The seeds of each method, and the unpruned trained baseline's method (at most one)."""
    by_method: dict[str, list[SystemResult]] = {}
    for result in results:
        by_method.setdefault(result.system.method, []).append(result)
    # The reference of every difference is the float16 baseline; its compressed copies are compared with it.
    baselines = [
        method for method, group in by_method.items() if group[0].system.kind == "baseline" and group[0].system.bits is None
    ]
    if len(baselines) > 1:
        raise TokenpruneError(
            f"several unpruned trained baselines {baselines}; compare one training collection at a time"
        )
    return by_method, baselines[0] if baselines else None


def _method_row(group: Sequence[SystemResult], measures: Sequence[str], paper: pd.DataFrame | None) -> dict[str, Any]:
    """One table row: the method's index size and each measure, averaged over its seeds, with the seed spread."""
    system = group[0].system
    sizes = [r.index_stats for r in group if r.index_stats is not None]
    row: dict[str, Any] = {
        "method": method_label(system),
        "kind": system.kind,
        "selection": SELECTION_LABELS.get(system.kind, ""),
        "storage": system.storage,
        "strategy": system.strategy,
        "k": system.k,
        "seeds": len(group),
        "percent_tokens_kept": float(np.mean([s["percent_tokens_kept"] for s in sizes])) if sizes else np.nan,
        "index_mib": float(np.mean([s["index_bytes"] for s in sizes]) / 2**20) if sizes else np.nan,
    }
    for name in measures:
        values = np.array([r.measures[name] for r in group])
        row[name] = float(values.mean())
        row[f"{name} std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        row[f"{name} paper"] = _paper_value(paper, system, name)
    return row


def _test_against_baseline(
    table: pd.DataFrame, methods: list[str], baseline: str | None, per_query: dict[str, pd.DataFrame],
    measures: Sequence[str], alpha: float,
) -> None:  # fmt: skip
    """Fill each measure's delta, Holm-adjusted p-value and significance against the baseline, in place."""
    compared_methods = [method for method in methods if method != baseline]
    for name in measures:
        table[f"{name} delta"] = np.nan
        table[f"{name} p_holm"] = np.nan
        table[f"{name} significant"] = False
        if baseline is None:
            continue
        reference = per_query[baseline][name]
        raw = [paired_t_test(per_query[method][name], reference) for method in compared_methods]
        adjusted = dict(zip(compared_methods, holm_adjust(raw), strict=True))
        baseline_value = table.loc[methods.index(baseline), name]
        for position, method in enumerate(methods):
            table.loc[position, f"{name} delta"] = table.loc[position, name] - baseline_value
            if method in adjusted:
                table.loc[position, f"{name} p_holm"] = adjusted[method]
                table.loc[position, f"{name} significant"] = bool(adjusted[method] < alpha)


CONTRAST_COLUMNS = ["strategy", "k", "measure", "in-loop", "post-hoc", "delta", "p", "p_holm", "significant", "queries"]


def in_loop_contrast(
    by_method: dict[str, list[SystemResult]], per_query: dict[str, pd.DataFrame], measures: Sequence[str], alpha: float
) -> pd.DataFrame:
    """The paper's claim, tested: for each strategy and k, selection in the training loop minus the same selection
    applied post hoc to the trained baseline's vectors.

    One row per (strategy, k, measure) where both exist: the two means,
    their difference, the paired two-sided t-test over queries (per-query
    values averaged over seeds) and its Holm correction across the
    (strategy, k) pairs of each measure. Float16 indexes only: compression
    is a separate axis.
    """
    uncompressed = {method: group for method, group in by_method.items() if group[0].system.bits is None}
    in_loop = {(g[0].system.strategy, g[0].system.k): m for m, g in uncompressed.items() if g[0].system.kind == "pruned"}
    post_hoc = {(g[0].system.strategy, g[0].system.k): m for m, g in uncompressed.items() if g[0].system.kind == "posthoc"}
    pairs = [pair for pair in in_loop if pair in post_hoc]
    rows = []
    for name in measures:
        raw = [paired_t_test(per_query[in_loop[pair]][name], per_query[post_hoc[pair]][name]) for pair in pairs]
        for pair, p, p_holm in zip(pairs, raw, holm_adjust(raw), strict=True):
            ours = float(np.mean([r.measures[name] for r in by_method[in_loop[pair]]]))
            theirs = float(np.mean([r.measures[name] for r in by_method[post_hoc[pair]]]))
            queries = per_query[in_loop[pair]].index.union(per_query[post_hoc[pair]].index)
            rows.append([*pair, name, ours, theirs, ours - theirs, p, p_holm, bool(p_holm < alpha), len(queries)])
    contrast = pd.DataFrame(rows, columns=CONTRAST_COLUMNS)
    contrast["k"] = contrast["k"].astype("Int64")
    return contrast


def _paper_value(paper: pd.DataFrame | None, system: System, measure: str) -> float:
    """The published value for a trained method, or ``nan`` (references have no published counterpart)."""
    if paper is None or system.kind not in ("baseline", "pruned") or system.bits is not None:
        return np.nan
    k = "all" if system.k is None else str(system.k)
    match = paper[(paper["strategy"] == system.strategy) & (paper["k"] == k) & (paper["measure"] == measure)]
    return float(match["value"].iloc[0]) if len(match) else np.nan
