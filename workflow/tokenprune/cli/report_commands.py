"""Sub-commands for the report: comparison tables, trade-off plots, loss curves, kept-token diagnostics."""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenprune.cli.registry import Command

__all__ = ["COMMANDS"]

_SYSTEM_IDS = "System ids: 'dataset/strategy/k<k|all>/seed<n>' for models, 'untrained/none/kall/seed0', 'bm25'."


def _summarize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--system",
        required=True,
        nargs=4,
        action="append",
        metavar=("ID", "METRICS", "PER_QUERY", "INDEX"),
        help=f"A system's evaluation files (INDEX: its index folder, '-' for BM25); repeat for each. {_SYSTEM_IDS}",
    )
    parser.add_argument("--corpus", required=True, help="Evaluated collection (dataset name).")
    parser.add_argument("--split", required=True, help="Evaluated split.")
    parser.add_argument("--mode", required=True, choices=["exact", "ann"], help="Dense retrieval mode.")
    parser.add_argument("--measures", nargs="+", required=True, help="ir_measures names, in table order.")
    parser.add_argument("--alpha", type=float, required=True, help="Significance level after Holm's correction.")
    parser.add_argument(
        "--storage-budgets",
        type=float,
        nargs="+",
        required=True,
        help="KiB per passage at which to name each strategy's best system (best_at_budget.{csv,md}).",
    )
    parser.add_argument(
        "--paper-collection",
        default=None,
        help="ir_datasets id of the evaluated split (e.g. beir/scifact/test), to show the paper's published values.",
    )
    parser.add_argument("--output-dir", required=True, type=Path, help="Folder for comparison.{csv,md,html,tex}.")


def _summarize(args: argparse.Namespace) -> None:
    from tokenprune.reporting.report_files import parse_system, summarize
    from tokenprune.reporting.summary import SystemFiles

    systems = [
        SystemFiles(parse_system(system), Path(metrics), Path(per_query), None if index == "-" else Path(index))
        for system, metrics, per_query, index in args.system
    ]
    summarize(
        systems,
        corpus=args.corpus,
        split=args.split,
        mode=args.mode,
        measures=args.measures,
        output_dir=args.output_dir,
        alpha=args.alpha,
        storage_budgets_kib=args.storage_budgets,
        paper_collection=args.paper_collection,
    )


def _plot_tradeoff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, type=Path, help="comparison.csv written by 'summarize'.")
    parser.add_argument("--measures", nargs="+", required=True, help="Measures to plot, one figure each.")
    parser.add_argument("--title", help="Figure title prefix (e.g. the evaluation set).")
    parser.add_argument("--output-dir", required=True, type=Path, help="Folder for index_size_vs_<measure>.{png,svg}.")


def _plot_tradeoff(args: argparse.Namespace) -> None:
    from tokenprune.reporting.report_files import plot_tradeoffs

    plot_tradeoffs(args.table, args.measures, args.output_dir, title=args.title or "")


def _plot_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        nargs=2,
        action="append",
        metavar=("ID", "MODEL_DIR"),
        help=f"A trained model's id and folder; repeat for each. {_SYSTEM_IDS}",
    )
    parser.add_argument("--title", help="Figure title.")
    parser.add_argument(
        "--output", required=True, type=Path, help="Output path without extension (.png and .svg are written)."
    )


def _plot_training(args: argparse.Namespace) -> None:
    from tokenprune.reporting.report_files import plot_training

    plot_training([(system, Path(folder)) for system, folder in args.model], args.output, title=args.title or "")


def _token_diagnostics_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--system",
        required=True,
        nargs=3,
        action="append",
        metavar=("ID", "MODEL_DIR", "INDEX"),
        help=f"A trained model's id, folder and index of the collection; repeat for each. {_SYSTEM_IDS}",
    )
    parser.add_argument("--top", type=int, required=True, help="Most often kept tokens listed per model.")
    parser.add_argument("--title", help="Figure title prefix.")
    parser.add_argument("--output-dir", required=True, type=Path, help="Folder for kept_positions.* and kept_tokens.*.")


def _token_diagnostics(args: argparse.Namespace) -> None:
    from tokenprune.reporting.report_files import token_diagnostics

    systems = [(system, Path(model), Path(index)) for system, model, index in args.system]
    token_diagnostics(systems, output_dir=args.output_dir, top=args.top, title=args.title or "")


def _claims_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        required=True,
        nargs=5,
        action="append",
        dest="sets",
        metavar=("CORPUS", "SPLIT", "DOMAIN", "MEASURE", "SUMMARY_DIR"),
        help="One evaluation set: DOMAIN is 'zero-shot' or 'in-domain', MEASURE the one the verdicts read, "
        "SUMMARY_DIR the folder 'summarize' wrote; repeat for each.",
    )
    parser.add_argument("--alpha", type=float, required=True, help="Significance level after Holm's correction.")
    parser.add_argument("--study", required=True, help="The study's name, shown in claims.md.")
    parser.add_argument("--output", required=True, type=Path, help="Output path without extension (.csv and .md).")


def _claims(args: argparse.Namespace) -> None:
    from tokenprune.reporting.report_files import claims

    claims(args.sets, alpha=args.alpha, study=args.study, output=args.output)


def _sync_verdicts_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "document", type=Path, help="A Markdown file with '<!-- verdicts from PATH -->' tables, e.g. README.md."
    )
    parser.add_argument(
        "--check", action="store_true", help="Change nothing; exit 2 if a table differs from its claims.md."
    )


def _sync_verdicts(args: argparse.Namespace) -> None:
    from tokenprune.reporting.report_files import sync_verdict_tables

    sync_verdict_tables(args.document, check=args.check)


def _config_docs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("document", type=Path, help="The page to write, docs/configuration.md.")
    parser.add_argument(
        "--check", action="store_true", help="Change nothing; exit 2 if the page differs from the schema's."
    )


def _config_docs(args: argparse.Namespace) -> None:
    from tokenprune.config_docs import write_configuration_docs

    write_configuration_docs(args.document, check=args.check)


#: The sub-commands of this module, in the order ``tokenprune --help`` lists them.
COMMANDS = [
    Command(
        "summarize",
        "Method comparison on one evaluation set: CSV, Markdown, HTML and LaTeX tables.",
        _summarize_arguments,
        _summarize,
    ),
    Command(
        "plot-tradeoff",
        "Index size vs each measure, one line per strategy across k (PNG + SVG).",
        _plot_tradeoff_arguments,
        _plot_tradeoff,
    ),
    Command(
        "plot-training", "Training loss curves of trained models (PNG + SVG).", _plot_training_arguments, _plot_training
    ),
    Command(
        "claims",
        "The paper's claims judged on the study's summaries: claims.csv and claims.md.",
        _claims_arguments,
        _claims,
    ),
    Command(
        "sync-verdicts",
        "Copy each verdict table of a document (README) from the claims.md it names.",
        _sync_verdicts_arguments,
        _sync_verdicts,
    ),
    Command(
        "config-docs",
        "Write docs/configuration.md from the config schema (--check: fail if out of date).",
        _config_docs_arguments,
        _config_docs,
    ),
    Command(
        "token-diagnostics",
        "Where in the passage each pruned index's tokens sit, and which tokens it keeps most.",
        _token_diagnostics_arguments,
        _token_diagnostics,
    ),
]
