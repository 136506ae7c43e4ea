"""The report's files: each function reads the pipeline outputs it is handed and writes tables or figures.

The ``tokenprune`` sub-commands ``summarize``, ``claims``, ``plot-tradeoff``,
``plot-training`` and ``token-diagnostics`` call these; the rules of
``workflow/rules/report.smk`` run those sub-commands with the paths of their
inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_file
from tokenprune.layout import POSITIONS_STEM, TOP_TOKENS_STEM, TRADEOFF_STEM, System, measure_slug
from tokenprune.reporting import diagnostics, plots
from tokenprune.reporting.budgets import write_budget_tables
from tokenprune.reporting.claims import judge_claims, read_summary, sync_verdicts, verdict_sources, write_claims
from tokenprune.reporting.paper import paper_values
from tokenprune.reporting.summary import Comparison, SystemFiles, compare_methods, load_system_results
from tokenprune.reporting.tables import write_tables

__all__ = [
    "parse_system",
    "summarize",
    "DOMAINS",
    "claims",
    "sync_verdict_tables",
    "read_comparison_csv",
    "plot_tradeoffs",
    "read_loss_log",
    "plot_training",
    "token_diagnostics",
]

log = logging.getLogger(__name__)


def parse_system(system_id: str) -> System:
    """Parse a system id, with a clear message for a malformed one."""
    try:
        return System.parse(system_id)
    except ValueError as error:
        raise TokenpruneError(str(error)) from None


def _nonempty(entries: Sequence, what: str) -> None:
    if not entries:
        raise TokenpruneError(f"no {what} given; name at least one, e.g. 'scifact/none/kall/seed42'")


def summarize(
    systems: Sequence[SystemFiles],
    *,
    corpus: str,
    split: str,
    mode: str,
    measures: Sequence[str],
    output_dir: str | Path,
    alpha: float,
    storage_budgets_kib: Sequence[float],
    paper_collection: str | None = None,
) -> Comparison:
    """Compare every system on one evaluation set and write ``comparison.{csv,md,html,tex}``, the in-loop vs
    post-hoc and strategy-pair tables, the headline, and the best system per storage budget (``best_at_budget``)."""
    _nonempty(systems, "systems")
    if not 0 < alpha < 1:
        raise TokenpruneError(f"alpha {alpha!r} is not a significance level; choose a value between 0 and 1, e.g. 0.05")
    results = load_system_results(systems)
    comparison = compare_methods(
        results,
        list(measures),
        alpha=alpha,
        paper=paper_values(paper_collection),
        corpus=corpus,
        split=split,
        mode=mode,
    )
    written = write_tables(comparison, output_dir) | write_budget_tables(comparison, storage_budgets_kib, output_dir)
    for fmt, path in written.items():
        log.info("wrote %s table %s", fmt, path)
    return comparison


#: How the ``claims`` command names an evaluation set's domain.
DOMAINS = {"zero-shot": True, "in-domain": False}


def claims(sets: Sequence[Sequence[str]], *, alpha: float, study: str, output: str | Path) -> pd.DataFrame:
    """Judge every claim on the summaries of each evaluation set and write ``<output>.csv`` and ``.md``.

    Each of ``sets`` is (corpus, split, domain, measure, summary folder), with
    domain ``zero-shot`` or ``in-domain``.
    """
    _nonempty(sets, "evaluation sets")
    summaries = []
    for corpus, split, domain, measure, folder in sets:
        if domain not in DOMAINS:
            raise TokenpruneError(f"evaluation set {corpus} {split}: domain {domain!r} is not one of {sorted(DOMAINS)}")
        summaries.append(read_summary(folder, corpus=corpus, split=split, zero_shot=DOMAINS[domain], measure=measure))
    table = judge_claims(summaries, alpha)
    for fmt, path in write_claims(table, output, study=study, alpha=alpha).items():
        log.info("wrote %s claims %s", fmt, path)
    return table


def sync_verdict_tables(document: str | Path, *, check: bool = False) -> bool:
    """Copy each verdict table of ``document`` from the ``claims.md`` it names (paths relative to its folder).

    With ``check``, change nothing and raise when a table is stale. Returns
    whether the document was (or would be) changed.
    """
    document = Path(document)
    if not document.is_file():
        raise TokenpruneError(f"document {str(document)!r} does not exist")
    text = document.read_text(encoding="utf-8")
    sources = verdict_sources(text)
    if not sources:
        raise TokenpruneError(
            f"{str(document)!r} copies no verdict table; add '<!-- verdicts from reports/figures/<run>/claims.md -->' followed by the table's markers"
        )
    synced = sync_verdicts(text, document.parent)
    stale = synced != text
    if stale and check:
        raise TokenpruneError(
            f"the verdict tables of {str(document)!r} differ from {', '.join(sources)}; run 'tokenprune sync-verdicts {document}'"
        )
    if stale and not check:
        with atomic_file(document) as tmp:
            tmp.write_text(synced, encoding="utf-8")
    log.info(
        "%s: %d verdict table(s) from %s %s",
        document,
        len(sources),
        ", ".join(sources),
        "stale" if stale else "up to date",
    )
    return stale


def read_comparison_csv(path: str | Path) -> pd.DataFrame:
    """A ``comparison.csv`` written by :func:`summarize`."""
    path = Path(path)
    if not path.is_file():
        raise TokenpruneError(f"comparison table {str(path)!r} does not exist; run 'tokenprune summarize' first")
    table = pd.read_csv(path)
    table["k"] = table["k"].astype("Int64")
    return table


def plot_tradeoffs(
    table_path: str | Path, measures: Sequence[str], output_dir: str | Path, *, title: str = ""
) -> list[Path]:
    """One index-size vs measure figure per measure, from a comparison table: PNG, SVG, and an HTML
    fragment with the PNG inline (the report's opening page shows it; Snakemake's ``embeddedfigure``
    directive leaves its file path in place instead of the image)."""
    table = read_comparison_csv(table_path)
    missing = [name for name in measures if name not in table.columns]
    if missing:
        raise TokenpruneError(f"{str(table_path)!r} has no column for {missing}; it has measures {_measures_of(table)}")
    written = []
    for name in measures:
        figure = plots.tradeoff_figure(table, name, title=f"{title}: index size vs {name}" if title else "")
        stem = Path(output_dir) / TRADEOFF_STEM.format(slug=measure_slug(name))
        written += plots.save_figure(figure, stem)
        written.append(plots.write_embedded_png(stem.with_name(f"{stem.name}.png"), alt=f"index size vs {name}"))
    return written


def _measures_of(table: pd.DataFrame) -> list[str]:
    return [column[: -len(" delta")] for column in table.columns if column.endswith(" delta")]


def _model_label(system: System, several_seeds: bool) -> str:
    label = "no pruning" if system.k is None else f"{system.strategy} k={system.k}"
    return f"{label} (seed {system.seed})" if several_seeds else label


def read_loss_log(model_dir: Path) -> pd.DataFrame:
    """The ``training_log.csv`` of a trained model (columns ``step``, ``loss``, ...)."""
    path = model_dir / "training_log.csv"
    if not path.is_file():
        raise TokenpruneError(f"model {str(model_dir)!r} has no training_log.csv; is it a trained model folder?")
    log_frame = pd.read_csv(path)
    if not {"step", "loss"} <= set(log_frame.columns):
        raise TokenpruneError(f"{str(path)!r} lacks the columns step and loss (has {list(log_frame.columns)})")
    return log_frame


def plot_training(models: Sequence[tuple[str, Path]], output_stem: str | Path, *, title: str = "") -> list[Path]:
    """Loss curves of trained models (PNG + SVG), from (system id, model folder) pairs."""
    _nonempty(models, "models")
    trained = [(parse_system(i), Path(folder)) for i, folder in models]
    trained = [(system, folder) for system, folder in trained if system.kind in ("baseline", "pruned")]
    if not trained:
        raise TokenpruneError(f"none of {[i for i, _ in models]} is a trained model")
    several_seeds = len({system.seed for system, _ in trained}) > 1
    curves, strategies, ks = {}, {}, {}
    for system, folder in trained:
        label = _model_label(system, several_seeds)
        curves[label] = read_loss_log(folder)
        strategies[label] = system.strategy
        ks[label] = "all" if system.k is None else str(system.k)
    return plots.save_figure(plots.loss_figure(curves, strategies, ks, title=title), output_stem)


def token_diagnostics(
    systems: Sequence[tuple[str, Path, Path]],
    *,
    output_dir: str | Path,
    top: int,
    title: str = "",
) -> list[Path]:
    """Position histograms and most often kept tokens of each trained model's index of one collection.

    ``systems`` holds (system id, model folder, index folder) triples. Writes
    ``kept_positions.{png,svg,csv}`` and ``kept_tokens.{png,svg,csv}``.
    """
    from tokenprune.backbone import load_tokenizer

    if top < 1:
        raise TokenpruneError(f"top {top!r} must be a positive number of tokens")
    _nonempty(systems, "systems")
    trained = [(parse_system(i), Path(model), Path(index)) for i, model, index in systems]
    trained = [entry for entry in trained if entry[0].kind in ("baseline", "pruned")]
    if not trained:
        raise TokenpruneError(f"none of {[entry[0] for entry in systems]} is a trained model with an index")
    several_seeds = len({system.seed for system, _, _ in trained}) > 1
    kept, labels = {}, {}
    for system, _, index in trained:
        label = _model_label(system, several_seeds)
        kept[label] = diagnostics.count_kept_tokens(index)
        labels[label] = (system.strategy, system.k)
    # Every trained model shares the backbone's vocabulary; the first model folder holds it.
    tokenizer = load_tokenizer(str(trained[0][1]))
    output_dir = Path(output_dir)
    positions = diagnostics.positions_table(kept, labels)
    tokens = diagnostics.top_tokens_table(
        {m: c for m, c in kept.items() if labels[m][1] is not None}, labels, tokenizer, top
    )
    for frame, stem in ((positions, POSITIONS_STEM), (tokens, TOP_TOKENS_STEM)):
        with atomic_file(output_dir / f"{stem}.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    written = [output_dir / f"{POSITIONS_STEM}.csv", output_dir / f"{TOP_TOKENS_STEM}.csv"]
    histograms = {label: counts.position_counts for label, counts in kept.items()}
    strategies = {label: strategy for label, (strategy, _) in labels.items()}
    ks = {label: k for label, (_, k) in labels.items()}
    prefix = f"{title}: " if title else ""
    written += plots.save_figure(
        plots.positions_figure(histograms, strategies, ks, title=f"{prefix}where the kept tokens sit"),
        output_dir / POSITIONS_STEM,
    )
    heading = "no pruned model: nothing to show" if tokens.empty else "tokens kept most often"
    written += plots.save_figure(plots.top_tokens_figure(tokens, title=prefix + heading), output_dir / TOP_TOKENS_STEM)
    return written
