"""The paper's claims as verdict rules over a study's own summaries.

Each claim is a :class:`Claim` in :data:`CLAIMS`: a statement, the rule that
decides it, and a function that reads one evaluation set's summaries
(``comparison.csv``, ``inloop_vs_posthoc.csv``, ``strategy_pairs.csv``) and
returns rows with a verdict: ``yes``, ``no``, ``inconclusive``, or ``not
tested`` where the study does not reach the claim's operating point. Every
p-value that decides comes from the mixed model with query and seed as crossed
random effects (:mod:`tokenprune.reporting.statistics`), Holm-corrected within
the family the claim names; the query- and seed-level p-values stand beside it.
:func:`write_claims` writes ``claims.csv`` (every number) and ``claims.md``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_file
from tokenprune.layout import COMPARISON_STEM, CONTRAST_STEM, PAIRS_STEM
from tokenprune.reporting.statistics import holm_adjust, margin_p_values
from tokenprune.reporting.tables import captioned_html_table, format_p, styled_html_fragment

__all__ = [
    "verdicts_html",
    "CLAIMS",
    "CLAIM_COLUMNS",
    "COST_MARGIN",
    "COST_MIN_PERCENT_KEPT",
    "Claim",
    "EvaluationSummary",
    "SMALL_K",
    "VERDICTS",
    "ZERO_SHOT_K",
    "claims_markdown",
    "format_p",
    "judge_claims",
    "judge_cost",
    "judge_idf_worst",
    "judge_in_loop",
    "judge_training",
    "judge_unused_best",
    "read_summary",
    "sync_verdicts",
    "verdict_counts",
    "verdict_sources",
    "write_claims",
]

#: The cost the paper calls small: at k=50 (73% of MS MARCO tokens) first, idf and attention lose
#: 0.007-0.010 MRR@10 and unused 0.023 (Table 2).
COST_MARGIN = 0.02
#: The share of tokens the cost claim is about: the paper's k=50 keeps 73% of MS MARCO passage tokens.
COST_MIN_PERCENT_KEPT = 70.0
#: The paper's small budget, where unused is best (Table 2), and its zero-shot budget (Table 3).
SMALL_K = 10
ZERO_SHOT_K = 50

CLAIM_COLUMNS = [
    "claim",
    "corpus",
    "split",
    "zero_shot",
    "measure",
    "k",
    "percent_tokens_kept",
    "subject",
    "versus",
    "value",
    "versus value",
    "delta",
    "seeds",
    "seed_deltas",
    "p_query",
    "p_seed",
    "p_mixed",
    "p_holm",
    "family",
    "verdict",
    "reason",
]


@dataclass(frozen=True)
class EvaluationSummary:
    """One evaluation set's summaries, as ``summarize`` wrote them.

    Attributes
    ----------
    corpus, split
        The evaluation set.
    zero_shot
        Whether the models never saw this collection's domain.
    measure
        The measure the verdicts read (the set's first).
    comparison, contrast, pairs
        ``comparison.csv``, ``inloop_vs_posthoc.csv`` and ``strategy_pairs.csv``.
    """

    corpus: str
    split: str
    zero_shot: bool
    measure: str
    comparison: pd.DataFrame
    contrast: pd.DataFrame
    pairs: pd.DataFrame


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TokenpruneError(f"summary {str(path)!r} does not exist; run 'tokenprune summarize' first")
    frame = pd.read_csv(path, dtype={"seed_deltas": str})
    if "k" in frame.columns:
        frame["k"] = frame["k"].astype("Int64")
    return frame


def read_summary(folder: str | Path, *, corpus: str, split: str, zero_shot: bool, measure: str) -> EvaluationSummary:
    """The summaries ``summarize`` wrote to ``folder`` for one evaluation set."""
    folder = Path(folder)
    comparison = _read_csv(folder / f"{COMPARISON_STEM}.csv")
    if measure not in comparison.columns:
        raise TokenpruneError(f"{folder / COMPARISON_STEM}.csv has no measure {measure!r}; it has other measures")
    return EvaluationSummary(
        corpus=corpus,
        split=split,
        zero_shot=zero_shot,
        measure=measure,
        comparison=comparison,
        contrast=_read_csv(folder / f"{CONTRAST_STEM}.csv"),
        pairs=_read_csv(folder / f"{PAIRS_STEM}.csv"),
    )


def _decide(delta: float, p_holm: float, alpha: float) -> str:
    """yes when significantly positive, no when significantly negative, else inconclusive."""
    if math.isnan(p_holm) or p_holm >= alpha:
        return "inconclusive"
    return "yes" if delta > 0 else "no"


def _row(summary: EvaluationSummary, claim: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(CLAIM_COLUMNS, np.nan)
    row |= {"claim": claim, "corpus": summary.corpus, "split": summary.split, "zero_shot": summary.zero_shot}
    row |= {"measure": summary.measure, "subject": "", "versus": "", "seed_deltas": "", "family": "", "reason": ""}
    return row | values


def _in_loop_rows(summary: EvaluationSummary) -> pd.DataFrame:
    table = summary.comparison
    return table[(table["kind"] == "pruned") & (table["storage"] == "fp16")]


def _percent_kept(summary: EvaluationSummary, k: int) -> float:
    rows = _in_loop_rows(summary)
    return float(rows.loc[rows["k"] == k, "percent_tokens_kept"].mean())


def judge_cost(summary: EvaluationSummary, alpha: float) -> list[dict[str, Any]]:
    """Claim (a): at a k keeping >= 70% of the tokens, each in-loop strategy costs at most 0.02.

    Per strategy, two one-sided tests of the difference from the unpruned
    baseline against -0.02, Holm-corrected over the strategies of that k: yes
    when the cost is shown below the margin, no when shown above it. Where no
    k keeps 70%, the k=50 rows are listed as not tested, with their cost.
    """
    m = summary.measure
    rows_in_loop = _in_loop_rows(summary)
    budgets = sorted({int(k) for k in rows_in_loop["k"].dropna()}, reverse=True)
    tested = [k for k in budgets if _percent_kept(summary, k) >= COST_MIN_PERCENT_KEPT]
    shown = tested or [k for k in budgets if k == ZERO_SHOT_K]
    rows = []
    for k in shown:
        at_k = rows_in_loop[rows_in_loop["k"] == k]
        margins = [
            margin_p_values(r[f"{m} delta"], r[f"{m} se"], r[f"{m} df"], -COST_MARGIN) for _, r in at_k.iterrows()
        ]
        below = holm_adjust([p for p, _ in margins])
        above = holm_adjust([p for _, p in margins])
        percent = _percent_kept(summary, k)
        for (_, r), p_below, p_above in zip(at_k.iterrows(), below, above, strict=True):
            if k not in tested:
                verdict = "not tested"
                reason = (
                    f"k={k} keeps {percent:.0f}% of the tokens here; the claim is about >= {COST_MIN_PERCENT_KEPT:.0f}%"
                )
                p_holm = np.nan
            elif p_below < alpha:
                verdict, reason, p_holm = "yes", f"cost shown below {COST_MARGIN}", p_below
            elif p_above < alpha:
                verdict, reason, p_holm = "no", f"cost shown above {COST_MARGIN}", p_above
            else:
                verdict, reason, p_holm = "inconclusive", f"neither side of {COST_MARGIN} shown", min(p_below, p_above)
            rows.append(
                _row(
                    summary,
                    "cost",
                    k=k,
                    percent_tokens_kept=r["percent_tokens_kept"],
                    subject=r["strategy"],
                    versus="baseline",
                    value=r[m],
                    **{"versus value": r[m] - r[f"{m} delta"]},
                    delta=r[f"{m} delta"],
                    seeds=r["seeds"],
                    p_query=r[f"{m} p_query"],
                    p_seed=r[f"{m} p_seed"],
                    p_mixed=r[f"{m} p_mixed"],
                    p_holm=p_holm,
                    family=f"{len(at_k)} in-loop strategies at k={k}, one-sided vs -{COST_MARGIN}",
                    verdict=verdict,
                    reason=reason,
                )
            )
    return rows


def _oriented_pairs(summary: EvaluationSummary, strategy: str, k: int) -> pd.DataFrame:
    """Pairs of ``strategy`` with every other in-loop strategy at k, as ``strategy - other``."""
    pairs = summary.pairs
    pairs = pairs[(pairs["k"] == k) & (pairs["measure"] == summary.measure)]
    mine = pairs[pairs["strategy"] == strategy].copy()
    flipped = pairs[pairs["versus"] == strategy].copy()
    flipped[["strategy", "versus", "mean", "versus mean"]] = flipped[
        ["versus", "strategy", "versus mean", "mean"]
    ].to_numpy()
    flipped["delta"] = -flipped["delta"]
    flipped["seed_deltas"] = [
        " ".join(f"{-float(value):+.4f}" for value in str(text).split()) for text in flipped["seed_deltas"]
    ]
    return pd.concat([mine, flipped], ignore_index=True)


def _judge_rank(
    summary: EvaluationSummary, alpha: float, claim: str, strategy: str, k: int, best: bool
) -> list[dict[str, Any]]:
    """``strategy`` is the best (or worst) in-loop strategy at k: one row against its closest rival.

    The family is the strategy's pairs with every other in-loop strategy at k,
    Holm-corrected: yes when it beats (or trails) each significantly; no when
    any rival is significantly on the wrong side; else inconclusive.
    """
    pairs = _oriented_pairs(summary, strategy, k)
    if pairs.empty:
        return []
    pairs["p_holm"] = holm_adjust(pairs["p_mixed"].to_numpy())
    sign = 1 if best else -1
    wanted = (sign * pairs["delta"] > 0) & (pairs["p_holm"] < alpha)
    against = (sign * pairs["delta"] < 0) & (pairs["p_holm"] < alpha)
    closest = pairs.loc[(sign * pairs["delta"]).idxmin()]
    if wanted.all():
        verdict, reason = "yes", f"{'above' if best else 'below'} all {len(pairs)} others"
    elif against.any():
        rivals = ", ".join(pairs.loc[against, "versus"])
        verdict, reason = "no", f"{rivals} significantly {'above' if best else 'below'}"
    else:
        verdict, reason = "inconclusive", f"{int(wanted.sum())} of {len(pairs)} pairs decided"
    return [
        _row(
            summary,
            claim,
            k=k,
            percent_tokens_kept=_percent_kept(summary, k),
            subject=strategy,
            versus=closest["versus"],
            value=closest["mean"],
            **{"versus value": closest["versus mean"]},
            delta=closest["delta"],
            seeds=closest["seeds"],
            seed_deltas=closest["seed_deltas"],
            p_query=closest["p_query"],
            p_seed=closest["p_seed"],
            p_mixed=closest["p_mixed"],
            p_holm=closest["p_holm"],
            family=f"{strategy} vs the {len(pairs)} other in-loop strategies at k={k}",
            verdict=verdict,
            reason=reason,
        )
    ]


def judge_unused_best(summary: EvaluationSummary, alpha: float) -> list[dict[str, Any]]:
    """Claim (b): at k=10 unused is the best strategy (row: unused against its closest rival)."""
    return _judge_rank(summary, alpha, "unused-best", "unused", SMALL_K, best=True)


def judge_idf_worst(summary: EvaluationSummary, alpha: float) -> list[dict[str, Any]]:
    """Claim (d): zero-shot at k=50, idf is the worst strategy (zero-shot sets only)."""
    if not summary.zero_shot:
        return []
    return _judge_rank(summary, alpha, "idf-worst", "idf", ZERO_SHOT_K, best=False)


def judge_in_loop(summary: EvaluationSummary, alpha: float) -> list[dict[str, Any]]:
    """Claim (c): the selection trained in the loop beats the same selection applied after training.

    One row per strategy and k, from ``inloop_vs_posthoc.csv``; its Holm
    family is the strategies of that k.
    """
    contrast = summary.contrast[summary.contrast["measure"] == summary.measure]
    rows = []
    for _, r in contrast.iterrows():
        family = int((contrast["k"] == r["k"]).sum())
        rows.append(
            _row(
                summary,
                "in-loop",
                k=int(r["k"]),
                percent_tokens_kept=_percent_kept(summary, int(r["k"])),
                subject=r["strategy"],
                versus="post-hoc",
                value=r["in-loop"],
                **{"versus value": r["post-hoc"]},
                delta=r["delta"],
                seeds=r["seeds"],
                seed_deltas=r["seed_deltas"],
                p_query=r["p_query"],
                p_seed=r["p_seed"],
                p_mixed=r["p_mixed"],
                p_holm=r["p_holm"],
                family=f"{family} strategies in and after the loop at k={int(r['k'])}",
                verdict=_decide(r["delta"], r["p_holm"], alpha),
                reason="",
            )
        )
    return rows


#: Reference rows the trained baseline must beat: where training started, and the classic baseline.
_STARTING_POINTS = {"step0": "step 0", "untrained": "untrained backbone", "bm25": "BM25"}


def judge_training(summary: EvaluationSummary, alpha: float) -> list[dict[str, Any]]:
    """Control (not the paper's): the trained, unpruned baseline beats step 0, the untrained backbone and BM25.

    The family is those references; p-values are the comparison table's raw
    mixed-model ones, re-corrected over this family alone.
    """
    m = summary.measure
    table = summary.comparison
    baseline = table[(table["kind"] == "baseline") & (table["storage"] == "fp16")]
    references = table[table["kind"].isin(list(_STARTING_POINTS)) & table["storage"].fillna("").isin(["fp16", ""])]
    if baseline.empty or references.empty:
        return []
    base = baseline.iloc[0]
    adjusted = holm_adjust(references[f"{m} p_mixed"].to_numpy())
    rows = []
    for (_, r), p_holm in zip(references.iterrows(), adjusted, strict=True):
        delta = -float(r[f"{m} delta"])
        rows.append(
            _row(
                summary,
                "training",
                k=np.nan,
                percent_tokens_kept=base["percent_tokens_kept"],
                subject="baseline",
                versus=_STARTING_POINTS[r["kind"]],
                value=base[m],
                **{"versus value": r[m]},
                delta=delta,
                seeds=base["seeds"],
                p_query=r[f"{m} p_query"],
                p_seed=r[f"{m} p_seed"],
                p_mixed=r[f"{m} p_mixed"],
                p_holm=p_holm,
                family=f"baseline vs {len(references)} references",
                verdict=_decide(delta, p_holm, alpha),
                reason="",
            )
        )
    return rows


@dataclass(frozen=True)
class Claim:
    """One claim: its key in ``claims.csv``, its statement, and the rule that judges it on one evaluation set."""

    key: str
    statement: str
    judge: Callable[[EvaluationSummary, float], list[dict[str, Any]]]
    #: The claim in a few words, for the verdict counts.
    label: str = ""


#: The claims every study is judged on, in report order.
CLAIMS: dict[str, Claim] = {
    claim.key: claim
    for claim in [
        Claim(
            "training",
            "Control: training lifts the unpruned model above step 0, the untrained backbone and BM25",
            judge_training,
            "training lifts the baseline above step 0, the untrained backbone, BM25",
        ),
        Claim(
            "cost",
            f"Pruning to a k that keeps >= {COST_MIN_PERCENT_KEPT:.0f}% of the tokens costs <= {COST_MARGIN}",
            judge_cost,
            f"a k keeping ≥ {COST_MIN_PERCENT_KEPT:.0f}% of tokens costs ≤ {COST_MARGIN}",
        ),
        Claim(
            "unused-best",
            f"unused is the best strategy at k={SMALL_K}",
            judge_unused_best,
            f"unused best at k={SMALL_K}",
        ),
        Claim(
            "in-loop",
            "Selecting in the training loop beats the same selection applied after training",
            judge_in_loop,
            "in-loop beats post hoc",
        ),
        Claim(
            "idf-worst",
            f"idf is the worst strategy zero-shot at k={ZERO_SHOT_K}",
            judge_idf_worst,
            f"idf worst zero-shot at k={ZERO_SHOT_K}",
        ),
    ]
}


def judge_claims(summaries: Sequence[EvaluationSummary], alpha: float) -> pd.DataFrame:
    """Every claim on every evaluation set: one row per verdict (columns :data:`CLAIM_COLUMNS`)."""
    if not 0 < alpha < 1:
        raise TokenpruneError(f"alpha {alpha!r} is not a significance level; choose a value between 0 and 1, e.g. 0.05")
    rows = [row for claim in CLAIMS.values() for summary in summaries for row in claim.judge(summary, alpha)]
    table = pd.DataFrame(rows, columns=CLAIM_COLUMNS)
    table["k"] = table["k"].astype("Int64")
    return table


#: Every verdict a rule can give, in the order the counts show them.
VERDICTS = ("yes", "no", "inconclusive", "not tested")


def verdict_counts(table: pd.DataFrame) -> pd.DataFrame:
    """How many verdicts of each kind every claim got: one row per claim judged, columns :data:`VERDICTS`."""
    counts = pd.crosstab(table["claim"], table["verdict"]).reindex(columns=list(VERDICTS), fill_value=0)
    judged = [key for key in CLAIMS if key in counts.index]
    return counts.loc[judged].rename_axis(index="claim", columns=None)


def _glance_markdown(table: pd.DataFrame, *, study: str) -> list[str]:
    counts = verdict_counts(table)
    lines = [
        f"<!-- verdicts of {study}: begin -->",
        f"| claim ({', '.join(sorted(set(table['measure'])))}) | " + " | ".join(VERDICTS) + " |",
        "|---" * (len(VERDICTS) + 1) + "|",
    ]
    lines += [
        f"| {CLAIMS[key].label} | " + " | ".join(str(int(n)) for n in row) + " |" for key, row in counts.iterrows()
    ]
    return [*lines, f"<!-- verdicts of {study}: end -->"]


def _number(value: Any, fmt: str = ".3f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(float(value), fmt)


def _evaluation_sets(table: pd.DataFrame) -> list[str]:
    sets = table[["corpus", "split"]].drop_duplicates()
    return [f"{corpus} {split}" for corpus, split in sets.itertuples(index=False)]


def claims_markdown(table: pd.DataFrame, *, study: str, alpha: float) -> str:
    """``claims.md``: one section per claim, one row per verdict."""
    lines = [
        f"# Claims of Lassance et al. (2022), judged on the study `{study}`",
        "",
        f"Written by `tokenprune claims` from the study's own summaries. Verdicts: yes / no at α = {alpha:g} after "
        "Holm's correction within the family named in each row; inconclusive when neither side is shown; not tested "
        "when the study does not reach the claim's operating point. p: query-level / seed-level / mixed model "
        "(query and seed as crossed random effects; it decides). Δ per seed: seed s against seed s.",
        "",
        f"## Verdicts at a glance ({', '.join(_evaluation_sets(table))})",
        "",
        *_glance_markdown(table, study=study),
    ]
    for claim in CLAIMS.values():
        rows = table[table["claim"] == claim.key]
        if rows.empty:
            continue
        lines += [
            "",
            f"## {claim.statement}",
            "",
            "| collection | k (% kept) | system | vs | value | vs value | Δ | Δ per seed | p query / seed / mixed | p Holm | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for _, r in rows.iterrows():
            budget = "–" if pd.isna(r["k"]) else f"{int(r['k'])} ({_number(r['percent_tokens_kept'], '.0f')}%)"
            where = f"{r['corpus']} {r['split']}" + (" (zero-shot)" if bool(r["zero_shot"]) else "")
            tests = " / ".join(format_p(r[column]) for column in ("p_query", "p_seed", "p_mixed"))
            verdict = f"**{r['verdict']}**" + (f" ({r['reason']})" if r["reason"] else "")
            seeds = r["seed_deltas"] if isinstance(r["seed_deltas"], str) else ""
            lines.append(
                f"| {where} | {budget} | {r['subject']} | {r['versus']} | {_number(r['value'])} | "
                f"{_number(r['versus value'])} | {_number(r['delta'], '+.3f')} | {seeds} | {tests} | {format_p(r['p_holm'])} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def verdicts_html(table: pd.DataFrame) -> str:
    """The verdict counts per claim as an HTML fragment: the first table of the report's opening page."""
    counts = verdict_counts(table)
    counts.index = [CLAIMS[key].label for key in counts.index]
    measures = ", ".join(sorted(set(table["measure"])))
    caption = f"Verdicts on the paper's claims ({measures}), over {len(_evaluation_sets(table))} evaluation set(s)"
    table_html = captioned_html_table(counts.rename_axis(index="claim").reset_index(), caption, "comparison verdicts")
    return styled_html_fragment(table_html)


def write_claims(table: pd.DataFrame, stem: str | Path, *, study: str, alpha: float) -> dict[str, Path]:
    """Write ``<stem>.csv`` (every number), ``<stem>.md`` and ``<stem>_verdicts.html``, each atomically."""
    stem = Path(stem)
    written = {
        "csv": stem.with_suffix(".csv"),
        "md": stem.with_suffix(".md"),
        "html": stem.with_name(f"{stem.name}_verdicts.html"),
    }
    with atomic_file(written["csv"]) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_file(written["md"]) as tmp:
        tmp.write_text(claims_markdown(table, study=study, alpha=alpha), encoding="utf-8")
    with atomic_file(written["html"]) as tmp:
        tmp.write_text(verdicts_html(table), encoding="utf-8")
    return written


_GLANCE_BLOCK = re.compile(
    r"<!-- verdicts of (?P<study>[^:]+): begin -->\n.*?<!-- verdicts of (?P=study): end -->", re.DOTALL
)
_SOURCED_BLOCK = re.compile(
    r"<!-- verdicts from (?P<source>\S+) -->\n(?P<block><!-- verdicts of (?P<study>[^:]+): begin -->\n.*?<!-- verdicts of (?P=study): end -->)",
    re.DOTALL,
)


def sync_verdicts(document: str, root: str | Path) -> str:
    """``document`` with every verdict table copied, cell for cell, from the ``claims.md`` it names.

    A document (the README) names its source on the line before each table,
    ``<!-- verdicts from reports/figures/<run>/claims.md -->``, the path
    relative to ``root``; the table is the block ``claims.md`` wrote between
    its ``<!-- verdicts of <study>: begin/end -->`` markers. Comparing the
    result with ``document`` tells whether the document's verdicts are stale.
    """
    root = Path(root)

    def copy(match: re.Match[str]) -> str:
        source = root / match["source"]
        if not source.is_file():
            raise TokenpruneError(
                f"the verdicts name {match['source']!r}, which does not exist under {str(root)!r}; run 'tokenprune claims' or fix the path"
            )
        found = _GLANCE_BLOCK.search(source.read_text(encoding="utf-8"))
        if found is None:
            raise TokenpruneError(f"{str(source)!r} has no verdict table; regenerate it with 'tokenprune claims'")
        return f"<!-- verdicts from {match['source']} -->\n{found.group(0)}"

    return _SOURCED_BLOCK.sub(copy, document)


def verdict_sources(document: str) -> list[str]:
    """The ``claims.md`` files whose verdict tables ``document`` copies, in order."""
    return [match["source"] for match in _SOURCED_BLOCK.finditer(document)]
