"""Compare the metrics of two runs of the study, system by system (e.g. fp32 against bf16).

    python benchmarks/compare_results.py --reference results-fp32 --candidate results \\
        --measure nDCG@10 --output benchmarks/results/precision-effectiveness.md

Every ``metrics/**/<split>.<mode>.json`` present under both folders is one
row: the measure in each run, the difference, the paired two-sided t-test's
p-value over the per-query values (``*.perquery.tsv``) and how many queries
changed. Systems whose runs are identical (BM25) show a difference of zero.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from scipy import stats


def per_query(path: Path, measure: str) -> pd.Series:
    """One measure's per-query values of a ``*.perquery.tsv`` file, indexed by query id."""
    table = pd.read_csv(path, sep="\t", dtype={"query_id": str})
    return table[table["measure"] == measure].set_index("query_id")["value"]


def compare(reference: Path, candidate: Path, measure: str) -> pd.DataFrame:
    """One row per evaluated run found under both ``reference/metrics`` and ``candidate/metrics``."""
    rows = []
    for reference_json in sorted((reference / "metrics").rglob("*.json")):
        relative = reference_json.relative_to(reference / "metrics")
        candidate_json = candidate / "metrics" / relative
        if not candidate_json.is_file():
            continue
        a = json.loads(reference_json.read_text())["measures"][measure]
        b = json.loads(candidate_json.read_text())["measures"][measure]
        queries_file = relative.with_name(relative.name.removesuffix(".json") + ".perquery.tsv")
        paired = pd.concat(
            [
                per_query(reference / "metrics" / queries_file, measure),
                per_query(candidate / "metrics" / queries_file, measure),
            ],
            axis=1,
            join="inner",
            keys=["a", "b"],
        )
        differs = paired["a"] != paired["b"]
        p_value = float(stats.ttest_rel(paired["a"], paired["b"]).pvalue) if differs.any() else 1.0
        rows.append(
            {
                "run": str(relative.with_suffix("")),
                f"{measure} reference": round(a, 4),
                f"{measure} candidate": round(b, 4),
                "Δ": round(b - a, 4),
                "p (paired t)": round(p_value, 3),
                "queries changed": f"{int(differs.sum())}/{len(paired)}",
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, type=Path, help="results/ folder of the reference run.")
    parser.add_argument("--candidate", required=True, type=Path, help="results/ folder of the run compared with it.")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures name, as in the metrics files.")
    parser.add_argument("--output", type=Path, help="Markdown file to write (default: print only).")
    args = parser.parse_args()
    table = compare(args.reference, args.candidate, args.measure)
    if table.empty:
        raise SystemExit(f"no metrics file is present under both {args.reference}/metrics and {args.candidate}/metrics")
    markdown = table.to_markdown(index=False)
    print(markdown)
    print(f"\nmean |Δ| {table['Δ'].abs().mean():.4f}, max |Δ| {table['Δ'].abs().max():.4f} over {len(table)} runs")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(markdown + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
