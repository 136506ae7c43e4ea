"""Which family is best at a storage budget: the comparison read at equal bytes per passage.

A fixed ``k`` says little across families: ``pool`` and ``first`` at one ``k``
store the same bytes, a 2-bit code of ``k = 50`` stores fewer than a float16
``k = 10``, and a variable budget holds only the mean. For each budget ``B``
(KiB per passage, ``report.storage_budgets_kib``) this table takes, per
strategy, the best system of the trained study that fits in ``B`` (any ``k``,
float16 or compressed), once among the strategies trained in the loop and
once among the same selections applied post hoc to the trained baseline, and
their difference: whether training in the loop pays at that budget. The
unpruned trained baseline (and its compressed copies) counts as strategy
``none``. Untrained, step-0 and BM25 rows are references, not candidates.

The choice of the best system within a budget is a selection over several
rows, and the differences here are not tested: the paired tests at equal
``k`` are in the comparison and ``inloop_vs_posthoc`` tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tokenprune.io import atomic_file
from tokenprune.layout import BUDGET_STEM
from tokenprune.reporting.summary import Comparison

__all__ = ["BUDGET_COLUMNS", "budget_table", "budget_markdown", "write_budget_tables"]

#: Columns of ``best_at_budget.csv``; ``<measure>`` columns take the comparison's first measure.
BUDGET_COLUMNS = ["budget_kib", "strategy", "in_loop", "in_loop_kib", "post_hoc", "post_hoc_kib"]
#: Which kinds of row compete, and on which side: the trained study's systems only.
_SIDES = {"in_loop": ("baseline", "pruned"), "post_hoc": ("posthoc",)}


def _best(rows: pd.DataFrame, measure: str) -> pd.Series | None:
    """The row with the highest ``measure``; among equals, the fewer bytes."""
    if rows.empty:
        return None
    return rows.sort_values([measure, "kib_per_passage"], ascending=[False, True], kind="stable").iloc[0]


def budget_table(comparison: Comparison, budgets_kib: Sequence[float]) -> pd.DataFrame:
    """Per budget and strategy: the best system in the loop and post hoc within the budget, on the first measure.

    Columns: :data:`BUDGET_COLUMNS` plus ``in_loop_<m>``, ``post_hoc_<m>`` and
    ``delta`` (in-loop − post-hoc), for the comparison's first measure ``m``.
    A strategy with no system within the budget on one side leaves that side
    empty. Tables without ``kib_per_passage`` (older runs) give no rows.
    """
    measure = comparison.measures[0]
    table = comparison.table
    columns = [*BUDGET_COLUMNS, f"in_loop_{measure}", f"post_hoc_{measure}", "delta"]
    if "kib_per_passage" not in table:
        return pd.DataFrame(columns=columns)
    rows = []
    for budget in sorted(budgets_kib):
        fits = table[table["kib_per_passage"] <= budget]
        for strategy in dict.fromkeys(table.loc[table["kind"].isin(["baseline", "pruned", "posthoc"]), "strategy"]):
            best = {
                side: _best(fits[fits["kind"].isin(kinds) & (fits["strategy"] == strategy)], measure)
                for side, kinds in _SIDES.items()
            }
            if all(row is None for row in best.values()):
                continue
            row: dict[str, object] = {"budget_kib": budget, "strategy": strategy}
            for side, chosen in best.items():
                row[side] = chosen["method"] if chosen is not None else ""
                row[f"{side}_kib"] = chosen["kib_per_passage"] if chosen is not None else float("nan")
                row[f"{side}_{measure}"] = chosen[measure] if chosen is not None else float("nan")
            row["delta"] = row[f"in_loop_{measure}"] - row[f"post_hoc_{measure}"]  # type: ignore[operator]
            rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def _cell(method: object, kib: float, value: float) -> str:
    return "–" if not method else f"{method}: {value:.3f} ({kib:.2f} KiB)"


def budget_markdown(comparison: Comparison, budgets: pd.DataFrame, budgets_kib: Sequence[float]) -> str:
    """The budget table for people: per budget, the best system overall, then each strategy's two sides."""
    measure = comparison.measures[0]
    parts = [f"**Best at a storage budget: {comparison.corpus} {comparison.split}, {measure}**\n"]
    for budget in sorted(budgets_kib):
        rows = budgets[budgets["budget_kib"] == budget]
        if rows.empty:
            parts.append(f"\n*At most {budget:g} KiB per passage*: no system of this study fits.\n")
            continue
        # The best value; among equals the fewer bytes, then the in-loop side.
        candidates = [
            (row[f"{side}_{measure}"], -row[f"{side}_kib"], side == "in_loop", row[side], row[f"{side}_kib"])
            for _, row in rows.iterrows()
            for side in ("in_loop", "post_hoc")
            if row[side]
        ]
        value, _, _, method, kib = max(candidates)
        parts.append(
            f"\n*At most {budget:g} KiB per passage*: best {method} ({measure} {value:.3f}, {kib:.2f} KiB per passage).\n"
        )
        shown = pd.DataFrame(
            {
                "strategy": rows["strategy"],
                "in the loop": [
                    _cell(*values)
                    for values in zip(rows["in_loop"], rows["in_loop_kib"], rows[f"in_loop_{measure}"], strict=True)
                ],
                "post hoc": [
                    _cell(*values)
                    for values in zip(rows["post_hoc"], rows["post_hoc_kib"], rows[f"post_hoc_{measure}"], strict=True)
                ],
                "Δ (in-loop − post-hoc)": ["–" if pd.isna(value) else f"{value:+.3f}" for value in rows["delta"]],
            }
        )
        parts.append("\n" + shown.to_markdown(index=False, disable_numparse=True) + "\n")
    parts.append(
        "\nEach side: the strategy's best system (any k, float16 or compressed) whose index takes at most the budget "
        "per passage, codec included; the unpruned baseline and its compressed copies are strategy none. These "
        "differences are selections over several rows and are not tested; the paired tests at equal k are in the "
        "comparison table and the in-loop vs post-hoc table.\n"
    )
    return "".join(parts)


def write_budget_tables(
    comparison: Comparison, budgets_kib: Sequence[float], output_dir: str | Path
) -> dict[str, Path]:
    """Write ``best_at_budget.csv`` (every number) and ``.md``, atomically; return them by format."""
    budgets = budget_table(comparison, budgets_kib)
    output_dir = Path(output_dir)
    written = {"budgets_csv": output_dir / f"{BUDGET_STEM}.csv", "budgets_md": output_dir / f"{BUDGET_STEM}.md"}
    with atomic_file(written["budgets_csv"]) as tmp:
        budgets.to_csv(tmp, index=False, float_format="%.6g")
    has_sizes = "kib_per_passage" in comparison.table and comparison.table["kib_per_passage"].notna().any()
    text = (
        budget_markdown(comparison, budgets, budgets_kib)
        if has_sizes
        else "No system has a measured size per passage.\n"
    )
    with atomic_file(written["budgets_md"]) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return written
