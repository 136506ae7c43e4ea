"""Figures of the study: index size vs effectiveness, training loss, and where kept tokens come from.

Every function returns the matplotlib :class:`~matplotlib.figure.Figure` it
drew (tests inspect its lines and points) and :func:`save_figure` writes it as
PNG and SVG. A strategy has the same colour in every figure.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on cluster nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from tokenprune.io import atomic_file  # noqa: E402

__all__ = [
    "write_embedded_png",
    "STRATEGY_COLOURS",
    "REFERENCE_COLOURS",
    "K_LINESTYLES",
    "MARKER_NAMES",
    "FIGURE_FORMATS",
    "strategy_colour",
    "save_figure",
    "tradeoff_figure",
    "loss_figure",
    "positions_figure",
    "top_tokens_figure",
]

# Colour-blind-safe (Okabe-Ito); fixed per strategy so every figure reads the same way.
STRATEGY_COLOURS = {
    "none": "#000000",
    "first": "#0072B2",
    "idf": "#E69F00",
    "unused": "#009E73",
    "attention": "#CC79A7",
    "pool": "#D55E00",
    # The later families: the last Okabe-Ito blue, then Paul Tol's muted colours (yellow is too pale for lines).
    "const": "#56B4E9",
    "attention_var": "#882255",
    "pool_var": "#44AA99",
    "static": "#999933",
}
_EXTRA_COLOURS = ["#332288", "#DDCC77", "#117733", "#AA4499"]
REFERENCE_COLOURS = {"bm25": "#8C564B", "untrained": "#7F7F7F"}
K_LINESTYLES = ["-", "--", ":", "-."]
# ColBERT's query and document markers are BERT's first two unused entries.
MARKER_NAMES = {"[unused0]": "[Q]", "[unused1]": "[D]"}
FIGURE_FORMATS = ("png", "svg")

plt.rcParams.update(
    {
        "font.size": 10,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "svg.hashsalt": "tokenprune",  # stable SVG ids: identical inputs give identical files
    }
)


def strategy_colour(strategy: str) -> str:
    """The colour of ``strategy`` (new strategies get the next free colour, deterministically)."""
    if strategy in STRATEGY_COLOURS:
        return STRATEGY_COLOURS[strategy]
    return _EXTRA_COLOURS[sum(map(ord, strategy)) % len(_EXTRA_COLOURS)]


def save_figure(figure: Figure, stem: str | Path, formats: Sequence[str] = FIGURE_FORMATS) -> list[Path]:
    """Write ``figure`` as ``<stem>.png`` and ``<stem>.svg`` (atomically) and close it."""
    stem = Path(stem)
    written = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_file(path) as tmp:
            # Fixed metadata so reruns on the same inputs give byte-identical files.
            metadata = {"Date": None} if fmt == "svg" else {"Software": "tokenprune"}
            figure.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
        written.append(path)
    plt.close(figure)
    return written


def write_embedded_png(png: Path, *, alt: str) -> Path:
    """``<png stem>.html``: an ``<img>`` holding ``png`` as a data URI, written atomically."""
    encoded = base64.b64encode(png.read_bytes()).decode("ascii")
    path = png.with_suffix(".html")
    with atomic_file(path) as tmp:
        tmp.write_text(
            f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}" style="width: 100%; max-width: 60rem;">\n',
            encoding="utf-8",
        )
    return path


def tradeoff_figure(table: pd.DataFrame, measure: str, *, title: str = "") -> Figure:
    """Index size vs ``measure``: one line per pruning strategy across k, references as points and lines.

    Two panels share the y axis: the bytes stored per passage (KiB, log scale;
    the index size in MiB for tables without that column) and the share of
    tokens kept. The trained unpruned baseline is a star with a dotted
    horizontal line, the step-0 model a black plus, the untrained backbone a
    grey diamond, and BM25 (no index size measured) a dashed horizontal line.
    Selections applied post hoc are hollow markers in the strategy's colour:
    circles on dashed lines for the trained baseline's vectors, squares on
    dotted lines for the untrained backbone's. Compressed copies of any of
    these (``storage`` other than ``fp16``) are small triangles in the same
    colour on dash-dotted lines, at the bytes their codes take.

    Parameters
    ----------
    table
        The comparison table (:attr:`tokenprune.reporting.summary.Comparison.table`
        or its CSV): columns ``kind``, ``strategy``, ``k``, ``kib_per_passage`` or ``index_mib``,
        ``percent_tokens_kept``, ``measure`` and ``measure + " std"``.
    measure
        The measure on the y axis.
    """
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True, layout="constrained")
    # Bytes per passage compare across collections and codecs; tables from before it was recorded have MiB.
    size = (
        ("kib_per_passage", "KiB per passage (log scale)")
        if "kib_per_passage" in table and table["kib_per_passage"].notna().any()
        else ("index_mib", "index size (MiB, log scale)")
    )
    x_columns = [size, ("percent_tokens_kept", "tokens kept (%)")]
    # Tables written before compression existed have no storage column: all float16.
    storage = table["storage"].fillna("") if "storage" in table else pd.Series("", index=table.index)
    compressed = table[~storage.isin(["", "fp16"])]
    table = table[storage.isin(["", "fp16"])]
    for axis, (x_column, x_label) in zip(axes, x_columns, strict=True):
        _draw_in_loop_strategies(axis, table, x_column, measure)
        _draw_posthoc_selections(axis, table, x_column, measure)
        _draw_references(axis, table, x_column, measure)
        _draw_compressed(axis, compressed, x_column, measure)
        if x_column == size[0] and table[x_column].notna().any():
            axis.set_xscale("log")
            axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            # Unlabelled minor ticks: labelled ones overlap on a log axis spanning a decade or two.
            axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(x_label)
    axes[0].set_ylabel(measure)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    # Strategies first, in table order, then their post-hoc forms and the references.
    strategies = [str(s) for s in dict.fromkeys(table.loc[table["kind"] == "pruned", "strategy"])]
    strategies += [
        label for strategy in list(strategies) for label in unique if label.startswith(f"{strategy} (post-hoc")
    ]
    order = [label for label in strategies if label in unique] + [label for label in unique if label not in strategies]
    figure.legend([unique[label] for label in order], order, loc="outside right center", frameon=False)
    figure.suptitle(title or f"Index size vs {measure}")
    return figure


def _draw_in_loop_strategies(axis: Axes, table: pd.DataFrame, x_column: str, measure: str) -> None:
    """One line per strategy trained with its selection, across k, with the seed spread as error bars."""
    pruned = table[table["kind"] == "pruned"]
    for strategy, rows in pruned.groupby("strategy", sort=False):
        rows = rows.sort_values(x_column)
        errors = rows[f"{measure} std"] if rows[f"{measure} std"].notna().any() else None
        axis.errorbar(
            rows[x_column],
            rows[measure],
            yerr=errors,
            color=strategy_colour(str(strategy)),
            marker="o",
            markersize=5,
            linewidth=1.6,
            capsize=3,
            label=str(strategy),
            gid=f"strategy:{strategy}",
        )
        for _, row in rows.iterrows():
            axis.annotate(
                f"k={int(row['k'])}",
                (row[x_column], row[measure]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color=strategy_colour(str(strategy)),
            )


def _draw_posthoc_selections(axis: Axes, table: pd.DataFrame, x_column: str, measure: str) -> None:
    """The same selections applied only at indexing: hollow markers in the strategy's colour."""
    for kind, marker, linestyle, suffix in [
        ("posthoc", "o", "--", "post-hoc"),
        ("untrained-posthoc", "s", ":", "post-hoc, untrained"),
    ]:
        for strategy, rows in table[table["kind"] == kind].groupby("strategy", sort=False):
            rows = rows.sort_values(x_column)
            axis.plot(
                rows[x_column],
                rows[measure],
                color=strategy_colour(str(strategy)),
                marker=marker,
                markerfacecolor="white",
                markersize=5,
                linewidth=1.0,
                linestyle=linestyle,
                label=f"{strategy} ({suffix})",
                gid=f"{kind}:{strategy}",
            )


def _draw_compressed(axis: Axes, table: pd.DataFrame, x_column: str, measure: str) -> None:
    """Compressed copies: per method family (kind, strategy, storage) a line of small triangles across k."""
    if table.empty:
        return
    for (kind, strategy, storage), rows in table.groupby(["kind", "strategy", "storage"], sort=False):
        rows = rows.sort_values(x_column)
        colour = REFERENCE_COLOURS["untrained"] if kind == "untrained" else strategy_colour(str(strategy))
        filled = kind in ("pruned", "baseline", "step0", "untrained")
        # The family's label: the method label of its first row, less the k it varies over.
        label = str(rows["method"].iloc[0])
        axis.plot(
            rows[x_column],
            rows[measure],
            color=colour,
            marker="v",
            markersize=4,
            markerfacecolor=colour if filled else "white",
            linewidth=0.9,
            linestyle="-.",
            alpha=0.85,
            label=label,
            gid=f"compressed:{kind}:{strategy}:{storage}",
        )


def _draw_references(axis: Axes, table: pd.DataFrame, x_column: str, measure: str) -> None:
    """The unpruned baseline (with its level), step 0 and the untrained backbone as points; BM25 as a level."""
    for kind, marker, colour, label in [
        ("baseline", "*", STRATEGY_COLOURS["none"], "ColBERT, no pruning"),
        ("step0", "P", STRATEGY_COLOURS["none"], "ColBERT, step 0"),
        ("untrained", "D", REFERENCE_COLOURS["untrained"], "untrained backbone"),
    ]:
        for _, row in table[table["kind"] == kind].iterrows():
            axis.plot(
                [row[x_column]],
                [row[measure]],
                linestyle="none",
                marker=marker,
                markersize=11 if marker == "*" else 7,
                color=colour,
                label=label,
                gid=f"reference:{kind}",
            )
            if kind == "baseline":
                axis.axhline(row[measure], color=colour, linestyle=":", linewidth=1, gid="level:baseline")
    for _, row in table[table["kind"] == "bm25"].iterrows():
        axis.axhline(
            row[measure], color=REFERENCE_COLOURS["bm25"], linestyle="--", linewidth=1.2, label="BM25", gid="level:bm25"
        )


def loss_figure(
    curves: Mapping[str, pd.DataFrame], strategies: Mapping[str, str], ks: Mapping[str, str], *, title: str = ""
) -> Figure:
    """Training loss against step, one line per model.

    Parameters
    ----------
    curves
        Model label to its loss log (columns ``step`` and ``loss``).
    strategies, ks
        Model label to its strategy (colour) and k (line style).
    """
    figure, axis = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    k_values = sorted(set(ks.values()), key=lambda k: (k != "all", -int(k) if k.isdigit() else 0))
    for label, curve in curves.items():
        style = K_LINESTYLES[k_values.index(ks[label]) % len(K_LINESTYLES)]
        axis.plot(
            curve["step"],
            curve["loss"],
            color=strategy_colour(strategies[label]),
            linestyle=style,
            linewidth=1.4,
            label=label,
        )
    axis.set_xlabel("training step")
    axis.set_ylabel("loss (in-batch cross-entropy)")
    axis.legend(loc="upper right", ncol=2 if len(curves) > 6 else 1, frameon=False)
    axis.set_title(title or "Training loss")
    return figure


def positions_figure(
    histograms: Mapping[str, np.ndarray],
    strategies: Mapping[str, str],
    ks: Mapping[str, int | None],
    *,
    bin_width: int = 5,
    title: str = "",
) -> Figure:
    """Where in the passage the kept tokens sit: share of kept vectors per position bin, one panel per k.

    Parameters
    ----------
    histograms
        Model label to counts of kept vectors per passage position.
    strategies, ks
        Model label to strategy and k (``None`` for the unpruned baseline,
        which is drawn in every panel as the distribution of all tokens).
    """
    budgets: list[int | None] = [*sorted({k for k in ks.values() if k is not None}, reverse=True)] or [None]
    figure, axes = plt.subplots(
        len(budgets), 1, figsize=(8, 2.6 * len(budgets)), sharex=True, squeeze=False, layout="constrained"
    )
    length = max((len(counts) for counts in histograms.values()), default=1)
    edges = np.arange(0, length + bin_width, bin_width)
    for axis, budget in zip(axes[:, 0], budgets, strict=True):
        for label, counts in histograms.items():
            if ks[label] not in (budget, None):
                continue
            binned = _bin(counts, edges)
            # The last bin's value repeated at the right edge, so the last step is drawn too.
            share = np.append(binned, binned[-1]) / max(binned.sum(), 1)
            if ks[label] is None:
                axis.fill_between(
                    edges, share, step="post", color="#BBBBBB", alpha=0.6, label="all tokens (no pruning)"
                )
            else:
                axis.step(
                    edges,
                    share,
                    where="post",
                    color=strategy_colour(strategies[label]),
                    linewidth=1.5,
                    label=strategies[label],
                )
        axis.set_title(f"k = {budget}" if budget is not None else "no pruning", loc="left")
        axis.set_ylabel("share of kept vectors")
        axis.legend(frameon=False, loc="upper right")
    axes[-1, 0].set_xlabel(f"position in the encoded passage (bins of {bin_width})")
    figure.suptitle(title or "Where the kept tokens sit")
    return figure


def _bin(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Sum per-position counts into the bins ``edges`` (equal widths starting at 0)."""
    padded = np.zeros(edges[-1], dtype=np.int64)
    padded[: len(counts)] = counts
    return padded.reshape(-1, edges[1] - edges[0]).sum(axis=1)


def top_tokens_figure(top_tokens: pd.DataFrame, *, per_model: int = 15, title: str = "") -> Figure:
    """The tokens each pruned model keeps most often, as a share of its kept vectors.

    Parameters
    ----------
    top_tokens
        Columns ``model``, ``strategy``, ``k``, ``token``, ``share``, ordered by
        decreasing share within a model.
    """
    models = list(dict.fromkeys(top_tokens["model"]))
    columns = min(4, max(len(models), 1))
    rows = math.ceil(len(models) / columns) if models else 1
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(3.2 * columns, 0.22 * per_model * rows + 1.2 * rows),
        squeeze=False,
        layout="constrained",
    )
    for axis in axes.flat[len(models) :]:
        axis.set_visible(False)
    for axis, model in zip(axes.flat, models, strict=False):
        rows_of_model = top_tokens[top_tokens["model"] == model].head(per_model)
        strategy = str(rows_of_model["strategy"].iloc[0])
        positions = np.arange(len(rows_of_model))[::-1]
        axis.barh(positions, 100 * rows_of_model["share"], color=strategy_colour(strategy))
        axis.set_yticks(positions, [MARKER_NAMES.get(token, token) for token in rows_of_model["token"]], fontsize=7)
        axis.set_title(model, fontsize=9)
        axis.set_xlabel("% of kept vectors", fontsize=8)
        axis.grid(axis="y", visible=False)
    figure.suptitle(title or "Tokens kept most often")
    return figure
