"""Sub-commands for the report: comparison tables, trade-off plots, loss curves, kept-token diagnostics."""

from __future__ import annotations

import argparse
from pathlib import Path

from tokenprune.cli.registry import command


def _add_systems(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--systems", nargs="+", required=True,
        help="System ids: 'dataset/strategy/k<k|all>/seed<n>' for models, 'untrained/none/kall/seed0', 'bm25'.",
    )  # fmt: skip
    parser.add_argument(
        "--root", type=Path, default=Path("."), help="Workflow directory holding results/ (default: .)."
    )


@command("summarize", "Method comparison on one evaluation set: CSV, Markdown, HTML and LaTeX tables.")
def _summarize_arguments(parser: argparse.ArgumentParser) -> None:
    _add_systems(parser)
    parser.add_argument("--corpus", required=True, help="Evaluated collection (dataset name).")
    parser.add_argument("--split", required=True, help="Evaluated split.")
    parser.add_argument("--mode", required=True, choices=["exact", "ann"], help="Dense retrieval mode.")
    parser.add_argument("--measures", nargs="+", required=True, help="ir_measures names, in table order.")
    parser.add_argument("--alpha", type=float, default=0.05, help="Significance level after Holm's correction.")
    parser.add_argument(
        "--paper-collection", default=None,
        help="ir_datasets id of the evaluated split (e.g. beir/scifact/test), to show the paper's published values.",
    )  # fmt: skip
    parser.add_argument("--output-dir", required=True, type=Path, help="Folder for comparison.{csv,md,html,tex}.")


@_summarize_arguments.run
def _summarize(args: argparse.Namespace) -> None:
    from tokenprune.reporting.stages import summarize

    summarize(
        args.systems, corpus=args.corpus, split=args.split, mode=args.mode, measures=args.measures,
        output_dir=args.output_dir, alpha=args.alpha, paper_collection=args.paper_collection, root=args.root,
    )  # fmt: skip


@command("plot-tradeoff", "Index size vs each measure, one line per strategy across k (PNG + SVG).")
def _plot_tradeoff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--table", required=True, type=Path, help="comparison.csv written by 'summarize'.")
    parser.add_argument("--measures", nargs="+", required=True, help="Measures to plot, one figure each.")
    parser.add_argument("--title", default="", help="Figure title prefix (e.g. the evaluation set).")
    parser.add_argument("--output-dir", required=True, type=Path, help="Folder for index_size_vs_<measure>.{png,svg}.")


@_plot_tradeoff_arguments.run
def _plot_tradeoff(args: argparse.Namespace) -> None:
    from tokenprune.reporting.stages import plot_tradeoffs

    plot_tradeoffs(args.table, args.measures, args.output_dir, title=args.title)


@command("plot-training", "Training loss curves of trained models (PNG + SVG).")
def _plot_training_arguments(parser: argparse.ArgumentParser) -> None:
    _add_systems(parser)
    parser.add_argument("--title", default="", help="Figure title.")
    parser.add_argument(
        "--output", required=True, type=Path, help="Output path without extension (.png and .svg are written)."
    )


@_plot_training_arguments.run
def _plot_training(args: argparse.Namespace) -> None:
    from tokenprune.reporting.stages import plot_training

    plot_training(args.systems, args.output, root=args.root, title=args.title)


@command("token-diagnostics", "Where in the passage each pruned index's tokens sit, and which tokens it keeps most.")
def _token_diagnostics_arguments(parser: argparse.ArgumentParser) -> None:
    _add_systems(parser)
    parser.add_argument("--corpus", required=True, help="Indexed collection.")
    parser.add_argument("--top", type=int, default=20, help="Most often kept tokens listed per model.")
    parser.add_argument("--title", default="", help="Figure title prefix.")
    parser.add_argument("--output-dir", required=True, type=Path, help="Folder for kept_positions.* and kept_tokens.*.")


@_token_diagnostics_arguments.run
def _token_diagnostics(args: argparse.Namespace) -> None:
    from tokenprune.reporting.stages import token_diagnostics

    token_diagnostics(
        args.systems, corpus=args.corpus, output_dir=args.output_dir, root=args.root, top=args.top, title=args.title
    )
