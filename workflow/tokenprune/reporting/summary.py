"""The method comparison: one row per method, seeds averaged, differences from the baseline tested.

Every searched system (a trained model, the untrained backbone, BM25) has an
aggregate metrics JSON and a per-query TSV from the ``evaluate`` stage, and
each dense system an ``index_stats.json``. :func:`compare_methods` turns them
into the table of the paper's Table 2: % of tokens kept, index size, each
measure, its difference from the unpruned trained baseline, and whether that
difference is significant.

Every paired comparison reports three tests (:mod:`tokenprune.reporting.statistics`):
over queries, over seeds, and a mixed model with query and seed as crossed
random effects. The mixed model decides (``p_holm``, ``significant``), each
within a fixed family:

- against the baseline: every other method of the table, per measure;
- in the loop vs post hoc (:func:`in_loop_contrast`): the strategies with both
  forms at one k, per measure;
- strategy vs strategy (:func:`strategy_pairs`): every pair of in-loop
  strategies at one k, per measure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokenprune.errors import TokenpruneError
from tokenprune.index import STATS_FILE
from tokenprune.layout import System
from tokenprune.reporting.statistics import PairedTest, holm_adjust, paired_test

__all__ = [
    "METHOD_LABELS",
    "KIND_ORDER",
    "SELECTION_LABELS",
    "method_label",
    "SystemResult",
    "read_per_query",
    "SystemFiles",
    "load_system_results",
    "Comparison",
    "compare_methods",
    "PER_PASSAGE_COLUMNS",
    "PerSeed",
    "TEST_COLUMNS",
    "CONTRAST_COLUMNS",
    "in_loop_contrast",
    "PAIR_COLUMNS",
    "strategy_pairs",
]

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


@dataclass
class Comparison:
    """The comparison of every method on one evaluation set.

    Attributes
    ----------
    table
        One row per method. Columns: ``method``, ``kind``, ``strategy``, ``k``,
        ``seeds``, ``percent_tokens_kept``, ``index_mib``, the vectors per passage
        (``vectors_mean``, ``vectors_median``, ``vectors_max``), ``kib_per_passage``
        (the index's bytes over its passages), and per measure ``m``:
        ``m`` (mean over seeds), ``m std`` (sample std over seeds, ``nan`` for
        one seed), ``m delta`` (minus the baseline), the three tests' raw
        ``m p_query``, ``m p_seed``, ``m p_mixed``, the mixed model's ``m se``
        and ``m df``, ``m p_holm`` (the mixed model's, Holm-corrected over
        the compared methods), ``m significant`` and ``m paper`` (the
        published value, ``nan`` if none).
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
    pairs
        Every pair of in-loop strategies at one k, per measure (:func:`strategy_pairs`).
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
    pairs: pd.DataFrame = field(default_factory=pd.DataFrame)

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
    alpha: float,
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
    _check_one_precision(results)
    by_method, baseline = _group_by_method(results)
    per_seed = {method: _per_seed(group, measures) for method, group in by_method.items()}
    strategy_order: dict[str, int] = {}
    for result in results:
        strategy_order.setdefault(result.system.strategy, len(strategy_order))
    methods = sorted(by_method, key=lambda method: _method_sort_key(by_method[method][0].system, strategy_order))
    table = pd.DataFrame([_method_row(by_method[method], measures, paper) for method in methods])
    table["k"] = table["k"].astype("Int64")
    compared_methods = [method for method in methods if method != baseline]
    _test_against_baseline(table, methods, baseline, per_seed, measures, alpha)
    ordered = ["method", "kind", "selection", "storage", "strategy", "k", "seeds", "percent_tokens_kept", "index_mib"]
    ordered += PER_PASSAGE_COLUMNS
    for name in measures:
        ordered += [name, f"{name} std", f"{name} delta"]
        ordered += [f"{name} {column}" for column in ("p_query", "p_seed", "p_mixed", "se", "df", "p_holm")]
        ordered += [f"{name} significant", f"{name} paper"]
    queries = _query_count(per_seed[baseline]) if baseline else max(map(_query_count, per_seed.values()))
    sources = None
    if paper is not None and not paper.empty:
        sources = ", ".join(sorted(set(paper["source"])))
    return Comparison(
        table=table[ordered],
        contrast=in_loop_contrast(by_method, per_seed, measures, alpha),
        pairs=strategy_pairs(by_method, per_seed, measures, alpha, strategy_order),
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


def _check_one_precision(results: Sequence[SystemResult]) -> None:
    """Every index of one comparison was encoded in one precision: a paired test must not compare precisions too.

    Indexes written before the precision was recorded say nothing and are not checked.
    """
    precisions: dict[str, list[str]] = {}
    for result in results:
        precision = (result.index_stats or {}).get("encoding_precision")
        if precision is not None:
            precisions.setdefault(precision, []).append(result.system.id)
    if len(precisions) > 1:
        found = "; ".join(
            f"{name}: {', '.join(ids[:3])}{' ...' if len(ids) > 3 else ''}" for name, ids in sorted(precisions.items())
        )
        raise TokenpruneError(
            f"the compared indexes were encoded in {len(precisions)} precisions ({found}); a paired test would compare "
            "precisions (and likely hosts) as well as methods: index every system of one study on one host and precision"
        )


def _group_by_method(results: Sequence[SystemResult]) -> tuple[dict[str, list[SystemResult]], str | None]:
    """The seeds of each method, and the unpruned trained baseline's method (at most one)."""
    by_method: dict[str, list[SystemResult]] = {}
    for result in results:
        by_method.setdefault(result.system.method, []).append(result)
    # The reference of every difference is the float16 baseline; its compressed copies are compared with it.
    baselines = [
        method
        for method, group in by_method.items()
        if group[0].system.kind == "baseline" and group[0].system.bits is None
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
        **_per_passage(sizes),
    }
    for name in measures:
        values = np.array([r.measures[name] for r in group])
        row[name] = float(values.mean())
        row[f"{name} std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        row[f"{name} paper"] = _paper_value(paper, system, name)
    return row


#: Per-passage columns of the table: the stored vectors' mean, median and max, and the bytes stored.
PER_PASSAGE_COLUMNS = ["vectors_mean", "vectors_median", "vectors_max", "kib_per_passage"]


def _per_passage(sizes: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Vectors per passage (mean, median, max) and KiB per passage (the index's bytes over its passages), over seeds.

    Indexes written before the per-document counts were recorded give ``nan``.
    """
    counted = [s for s in sizes if "vectors_per_document" in s and s.get("documents")]
    if not counted:
        return dict.fromkeys(PER_PASSAGE_COLUMNS, np.nan)
    return {
        "vectors_mean": float(np.mean([s["vectors_per_document"]["mean"] for s in counted])),
        "vectors_median": float(np.mean([s["vectors_per_document"]["median"] for s in counted])),
        "vectors_max": float(np.mean([s["vectors_per_document"]["max"] for s in counted])),
        "kib_per_passage": float(np.mean([s["index_bytes"] / s["documents"] for s in counted]) / 1024),
    }


PerSeed = dict[str, dict[int, pd.Series]]
"""Per measure, each seed's per-query values of one method."""


def _per_seed(group: Sequence[SystemResult], measures: Sequence[str]) -> PerSeed:
    """The per-query values of each seed of one method, per measure."""
    seeds = [result.system.seed for result in group]
    if len(set(seeds)) != len(seeds):
        raise TokenpruneError(f"method {group[0].system.method!r} has several results for one seed: {sorted(seeds)}")
    return {name: {result.system.seed: result.per_query[name] for result in group} for name in measures}


def _query_count(per_seed: PerSeed) -> int:
    queries = pd.Index([])
    for values in next(iter(per_seed.values())).values():
        queries = queries.union(values.index)
    return len(queries)


#: Columns each paired test adds, after the two means and ``delta``.
TEST_COLUMNS = ["seed_deltas", "p_query", "p_seed", "p_mixed", "se", "df", "p_holm", "significant", "queries", "seeds"]


def _test_columns(test: PairedTest) -> dict[str, Any]:
    """The test's columns but ``p_holm`` and ``significant``, which need the whole family."""
    return {
        "seed_deltas": test.seed_deltas_text(),
        "p_query": test.p_query,
        "p_seed": test.p_seed,
        "p_mixed": test.p_mixed,
        "se": test.se,
        "df": test.df,
        "queries": test.queries,
        "seeds": test.seeds,
    }


def _holm_within(rows: list[dict[str, Any]], family: Sequence[str], alpha: float) -> None:
    """Fill ``p_holm`` and ``significant`` of ``rows`` in place: Holm over p_mixed within each family key."""
    families: dict[tuple, list[int]] = {}
    for position, row in enumerate(rows):
        families.setdefault(tuple(row[key] for key in family), []).append(position)
    for positions in families.values():
        adjusted = holm_adjust([rows[position]["p_mixed"] for position in positions])
        for position, p_holm in zip(positions, adjusted, strict=True):
            rows[position]["p_holm"] = float(p_holm)
            rows[position]["significant"] = bool(p_holm < alpha)


def _test_against_baseline(
    table: pd.DataFrame,
    methods: list[str],
    baseline: str | None,
    per_seed: dict[str, PerSeed],
    measures: Sequence[str],
    alpha: float,
) -> None:
    """Fill each measure's delta, tests, Holm-adjusted p-value and significance against the baseline, in place."""
    compared_methods = [method for method in methods if method != baseline]
    for name in measures:
        for column in ("delta", "p_query", "p_seed", "p_mixed", "se", "df", "p_holm"):
            table[f"{name} {column}"] = np.nan
        table[f"{name} significant"] = False
        if baseline is None:
            continue
        tests = {method: paired_test(per_seed[method][name], per_seed[baseline][name]) for method in compared_methods}
        adjusted = dict(zip(compared_methods, holm_adjust([tests[m].p_mixed for m in compared_methods]), strict=True))
        baseline_value = table.loc[methods.index(baseline), name]
        for position, method in enumerate(methods):
            table.loc[position, f"{name} delta"] = table.loc[position, name] - baseline_value
            if method in adjusted:
                test = tests[method]
                for column in ("p_query", "p_seed", "p_mixed", "se", "df"):
                    table.loc[position, f"{name} {column}"] = getattr(test, column)
                table.loc[position, f"{name} p_holm"] = adjusted[method]
                table.loc[position, f"{name} significant"] = bool(adjusted[method] < alpha)


CONTRAST_COLUMNS = ["strategy", "k", "measure", "in-loop", "post-hoc", "delta", *TEST_COLUMNS]


def _mean_measure(group: Sequence[SystemResult], measure: str) -> float:
    return float(np.mean([result.measures[measure] for result in group]))


def in_loop_contrast(
    by_method: dict[str, list[SystemResult]], per_seed: dict[str, PerSeed], measures: Sequence[str], alpha: float
) -> pd.DataFrame:
    """The paper's claim, tested: for each strategy and k, selection in the training loop minus the same selection
    applied post hoc to the trained baseline's vectors.

    One row per (strategy, k, measure) where both exist: the two means (over
    seeds), their difference, the per-seed differences (in-loop seed s
    against the selection on baseline seed s), the three paired tests, and the
    mixed model's p Holm-corrected over the strategies of one k and measure
    (a family that does not grow when a study adds budgets). Float16 indexes
    only: compression is a separate axis.
    """
    uncompressed = {method: group for method, group in by_method.items() if group[0].system.bits is None}
    in_loop = {
        (g[0].system.strategy, g[0].system.k): m for m, g in uncompressed.items() if g[0].system.kind == "pruned"
    }
    post_hoc = {
        (g[0].system.strategy, g[0].system.k): m for m, g in uncompressed.items() if g[0].system.kind == "posthoc"
    }
    rows = []
    for name in measures:
        for pair in (pair for pair in in_loop if pair in post_hoc):
            ours, theirs = in_loop[pair], post_hoc[pair]
            test = paired_test(per_seed[ours][name], per_seed[theirs][name])
            in_loop_mean, post_hoc_mean = _mean_measure(by_method[ours], name), _mean_measure(by_method[theirs], name)
            rows.append(
                {"strategy": pair[0], "k": pair[1], "measure": name, "in-loop": in_loop_mean, "post-hoc": post_hoc_mean}
                | {"delta": in_loop_mean - post_hoc_mean, **_test_columns(test)}
            )
    _holm_within(rows, ("k", "measure"), alpha)
    contrast = pd.DataFrame(rows, columns=CONTRAST_COLUMNS)
    contrast["k"] = contrast["k"].astype("Int64")
    return contrast


PAIR_COLUMNS = ["k", "measure", "strategy", "versus", "mean", "versus mean", "delta", *TEST_COLUMNS]


def strategy_pairs(
    by_method: dict[str, list[SystemResult]],
    per_seed: dict[str, PerSeed],
    measures: Sequence[str],
    alpha: float,
    strategy_order: dict[str, int],
) -> pd.DataFrame:
    """Every pair of strategies trained in the loop at one k: ``strategy`` minus ``versus``.

    One row per unordered pair (in the study's strategy order), k and measure,
    with the three paired tests (seed s against seed s) and the mixed model's
    p Holm-corrected over all pairs of one k and measure. Float16 indexes only.
    """
    in_loop = {
        (group[0].system.k, group[0].system.strategy): method
        for method, group in by_method.items()
        if group[0].system.kind == "pruned" and group[0].system.bits is None
    }
    budgets = sorted({k for k, _ in in_loop if k is not None}, reverse=True)
    rows: list[dict[str, Any]] = []
    for name in measures:
        for k in budgets:
            strategies = sorted((s for budget, s in in_loop if budget == k), key=lambda s: strategy_order.get(s, 99))
            for position, strategy in enumerate(strategies):
                for versus in strategies[position + 1 :]:
                    ours, theirs = in_loop[(k, strategy)], in_loop[(k, versus)]
                    test = paired_test(per_seed[ours][name], per_seed[theirs][name])
                    mean, versus_mean = _mean_measure(by_method[ours], name), _mean_measure(by_method[theirs], name)
                    rows.append(
                        {"k": k, "measure": name, "strategy": strategy, "versus": versus, "mean": mean}
                        | {"versus mean": versus_mean, "delta": mean - versus_mean, **_test_columns(test)}
                    )
    _holm_within(rows, ("k", "measure"), alpha)
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    pairs["k"] = pairs["k"].astype("Int64")
    return pairs


def _paper_value(paper: pd.DataFrame | None, system: System, measure: str) -> float:
    """The published value for a trained method, or ``nan`` (references have no published counterpart)."""
    if paper is None or system.kind not in ("baseline", "pruned") or system.bits is not None:
        return np.nan
    k = "all" if system.k is None else str(system.k)
    match = paper[(paper["strategy"] == system.strategy) & (paper["k"] == k) & (paper["measure"] == measure)]
    return float(match["value"].iloc[0]) if len(match) else np.nan
