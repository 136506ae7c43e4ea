"""Evaluation with ir_measures: aggregated values and per-query values (for significance tests)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import ir_measures

from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_file, write_json

__all__ = ["parse_measures", "evaluate_run"]


def parse_measures(names: list[str]) -> list[Any]:
    """ir_measures measure objects, with a clear error naming an unknown one."""
    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError, AttributeError, KeyError):
            raise TokenpruneError(f"{name!r} is not an ir_measures measure (e.g. nDCG@10, RR@10, R@100)") from None
    return measures


def evaluate_run(
    run: str | Path, qrels: str | Path, measures: list[Any], output: str | Path, per_query: str | Path
) -> dict[str, float]:
    """Evaluate a TREC run against TREC qrels; write the aggregate JSON and a per-query TSV.

    Returns
    -------
    dict
        Measure name to aggregate value.
    """
    judgments = list(ir_measures.read_trec_qrels(str(qrels)))
    ranking = list(ir_measures.read_trec_run(str(run)))
    if not ranking:
        raise TokenpruneError(f"run {str(run)!r} is empty")
    aggregate = ir_measures.calc_aggregate(measures, judgments, ranking)
    values = {str(measure): float(aggregate[measure]) for measure in measures}
    with atomic_file(per_query) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["query_id", "measure", "value"])
        for metric in sorted(
            ir_measures.iter_calc(measures, judgments, ranking), key=lambda m: (m.query_id, str(m.measure))
        ):
            writer.writerow([metric.query_id, str(metric.measure), f"{metric.value:.6f}"])
    evaluated_queries = len({judgment.query_id for judgment in judgments} & {row.query_id for row in ranking})
    write_json(output, {"measures": values, "queries": evaluated_queries, "run": str(run)})
    return values
