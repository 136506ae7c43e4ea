"""The comparison table rendered for people: CSV (every number), Markdown, HTML and LaTeX (booktabs).

Each rendering shows, per method, k, % of tokens kept, index size and per
measure the value (mean ± std when several seeds), its difference Δ from the
unpruned trained baseline, a mark when that difference is significant, and the
paper's published value where one exists. A footnote states the test, the
correction, the number of queries and where the paper's values come from.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tokenprune.io import atomic_file
from tokenprune.layout import CONTRAST_STEM, HEADLINE_STEM, PAIRS_STEM
from tokenprune.reporting.paper import PAPER_LABEL
from tokenprune.reporting.summary import Comparison
from tokenprune.strategies import IN_LOOP_ONLY_STRATEGIES

__all__ = [
    "TABLE_FORMATS",
    "CONTRAST_TITLE",
    "PAPER_COLUMN",
    "format_p",
    "display_table",
    "footnote",
    "contrast_table",
    "TEST_NAME",
    "contrast_note",
    "title",
    "to_markdown",
    "to_html",
    "to_latex",
    "write_tables",
    "headline_table",
    "headline_html",
    "TABLE_STYLE",
    "captioned_html_table",
    "styled_html_fragment",
    "HEADLINE_REFERENCES",
]

TABLE_FORMATS = ("csv", "md", "html", "tex")
CONTRAST_TITLE = "In the training loop vs post hoc: the same selection, trained with or applied after training"
#: The published numbers all come from models trained on MS MARCO.
PAPER_COLUMN = "paper, MS MARCO-trained"


@dataclass(frozen=True)
class _Marks:
    """How one output format writes the pieces that differ between formats."""

    significant: str
    plus_minus: str
    delta: str
    percent: str


_MARKS = {
    "md": _Marks(significant="†", plus_minus=" ± ", delta="Δ", percent="%"),
    "html": _Marks(significant="<sup>†</sup>", plus_minus=" ± ", delta="Δ", percent="%"),
    "tex": _Marks(significant=r"$^\dagger$", plus_minus=r" $\pm$ ", delta=r"$\Delta$", percent=r"\%"),
}


def _number(value: float, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_p(value: float | None) -> str:
    """A p-value for people: three decimals, ``<0.001`` below that, ``–`` when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _signed(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:+.3f}"


def _escape(text: str, fmt: str) -> str:
    if fmt == "html":
        return html.escape(text)
    if fmt == "tex":
        for char, replacement in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
            text = text.replace(char, replacement)
    return text


def display_table(comparison: Comparison, fmt: str) -> pd.DataFrame:
    """The comparison as strings, ready to print in ``fmt`` (``"md"``, ``"html"`` or ``"tex"``)."""
    marks = _MARKS[fmt]
    table = comparison.table
    columns: dict[str, list[str]] = {
        "method": [_escape(str(method), fmt) for method in table["method"]],
        "k": ["–" if pd.isna(k) else str(int(k)) for k in table["k"]],
        f"{marks.percent} tokens": [_number(value, 1) for value in table["percent_tokens_kept"]],
        "index MiB": [_number(value, 1) for value in table["index_mib"]],
    }
    if "kib_per_passage" in table:
        columns["vectors/passage (mean, median, max)"] = [
            "–" if pd.isna(mean) else f"{mean:.1f}, {median:g}, {maximum:g}"
            for mean, median, maximum in zip(
                table["vectors_mean"], table["vectors_median"], table["vectors_max"], strict=True
            )
        ]
        columns["KiB/passage"] = [_number(value, 2) for value in table["kib_per_passage"]]
    for name in comparison.measures:
        values = []
        for _, row in table.iterrows():
            text = _number(row[name])
            if not math.isnan(row[f"{name} std"]):
                text += marks.plus_minus + _number(row[f"{name} std"])
            if row[f"{name} significant"]:
                text += marks.significant
            values.append(text)
        label = _escape(name, fmt)
        columns[label] = values
        columns[f"{marks.delta} {label}"] = [_signed(value) for value in table[f"{name} delta"]]
        if table[f"{name} paper"].notna().any():
            columns[f"{label} ({PAPER_COLUMN})"] = [_number(value) for value in table[f"{name} paper"]]
    return pd.DataFrame(columns)


def footnote(comparison: Comparison, fmt: str = "md") -> str:
    """What the marks and columns mean, with the test, its correction and the sample size."""
    marks = _MARKS[fmt]

    def text(plain: str) -> str:
        return _escape(plain, fmt)

    alpha = r"$\alpha$" if fmt == "tex" else "α"
    parts = []
    baseline = comparison.baseline_label
    if baseline is not None:
        parts.append(
            marks.significant
            + text(
                f" significantly different from the unpruned trained baseline ({baseline}): {TEST_NAME} over "
                f"{comparison.queries} queries{_seed_clause(comparison)}, Holm-corrected across the "
                f"{comparison.compared} compared methods, "
            )
            + f"{alpha} = {comparison.alpha:g}. {marks.delta}"
            + text(": difference from that baseline.")
        )
    else:
        parts.append(text("No unpruned trained baseline in this comparison, so no differences are tested."))
    if any(count > 1 for count in comparison.seed_counts):
        parts.append(
            text(
                "Values are means ± sample standard deviations over seeds; seed s of one method is paired with "
                "seed s of the other, and a single-seed reference with every seed."
            ).replace("±", marks.plus_minus.strip())
        )
    parts.append(
        text(
            "% tokens: vectors kept as a share of the unpruned token count of the same passages; "
            "index MiB: vectors, offsets and ids (BM25's inverted index is not measured); vectors/passage: "
            "the mean, median and max stored per passage (a fixed k caps them, a variable budget holds only "
            "the mean at k); KiB/passage: the index's bytes, codec included, over its passages."
        )
    )
    if comparison.paper_source:
        parts.append(
            text(
                f"({PAPER_COLUMN}): the published value of {PAPER_LABEL}, {comparison.paper_source}, for models "
                "trained on MS MARCO (zero-shot on every other collection); not computed here."
            )
        )
    if (comparison.table["selection"] == "post-hoc").any():
        parts.append(
            text(
                "(post-hoc): the selection applied at indexing only, to the vectors of the unpruned trained "
                "baseline, or of the untrained backbone; the other pruned rows were trained with it in the loop."
            )
        )
    return " ".join(parts)


def contrast_table(comparison: Comparison, fmt: str) -> pd.DataFrame:
    """In-loop minus post-hoc per strategy and k, as strings for ``fmt`` (``"md"``, ``"html"`` or ``"tex"``)."""
    marks = _MARKS[fmt]
    rows = comparison.contrast
    return pd.DataFrame(
        {
            "strategy": [_escape(str(strategy), fmt) for strategy in rows["strategy"]],
            "k": [str(int(k)) for k in rows["k"]],
            "measure": [_escape(str(measure), fmt) for measure in rows["measure"]],
            "in-loop": [_number(value) for value in rows["in-loop"]],
            "post-hoc": [_number(value) for value in rows["post-hoc"]],
            f"{marks.delta} (in-loop − post-hoc)": [
                _signed(value) + (marks.significant if significant else "")
                for value, significant in zip(rows["delta"], rows["significant"], strict=True)
            ],
            "p (Holm)": [format_p(value) for value in rows["p_holm"]],
        }
    )


TEST_NAME = "two-sided paired t-test"


def _seed_clause(comparison: Comparison) -> str:
    """How the test lets seeds in, when a compared method has several."""
    if not any(count > 1 for count in comparison.seed_counts):
        return ""
    return " and seeds (a mixed model with query and seed as crossed random effects)"


def contrast_note(comparison: Comparison, fmt: str = "md") -> str:
    """What the in-loop vs post-hoc table tests."""
    queries = int(comparison.contrast["queries"].max()) if len(comparison.contrast) else 0
    pairs = comparison.contrast.groupby(["k", "measure"]).size().max() if len(comparison.contrast) else 0
    alpha = r"$\alpha$" if fmt == "tex" else "α"
    return (
        _MARKS[fmt].significant
        + _escape(
            f" significant: {TEST_NAME} over {queries} queries{_seed_clause(comparison)}, Holm-corrected across the "
            f"{pairs} strategies of each k and measure, ",
            fmt,
        )
        + f"{alpha} = {comparison.alpha:g}."
    )


def title(comparison: Comparison) -> str:
    return f"{comparison.corpus} {comparison.split}, {comparison.mode} retrieval"


def to_markdown(comparison: Comparison) -> str:
    table = display_table(comparison, "md")
    text = f"**{title(comparison)}**\n\n{table.to_markdown(index=False, disable_numparse=True)}\n\n{footnote(comparison, 'md')}\n"
    if len(comparison.contrast):
        contrast = contrast_table(comparison, "md").to_markdown(index=False, disable_numparse=True)
        text += f"\n**{CONTRAST_TITLE}**\n\n{contrast}\n\n{contrast_note(comparison, 'md')}\n"
    return text


# Scoped to the tables' own wrapper: the report embeds these pages in its opening page, where a
# rule on `body` or on every `table` would restyle (and, with a margin, widen) the whole report.
TABLE_STYLE = """
.tokenprune-tables { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #222; }
.tokenprune-tables table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin-bottom: 1em; }
.tokenprune-tables caption { font-weight: 600; text-align: left; padding-bottom: .5em; }
.tokenprune-tables th, .tokenprune-tables td { padding: .3em .8em; text-align: right; }
.tokenprune-tables th:first-child, .tokenprune-tables td:first-child { text-align: left; }
.tokenprune-tables thead th { border-top: 2px solid #222; border-bottom: 1px solid #222; }
.tokenprune-tables tbody tr:last-child td { border-bottom: 2px solid #222; }
.tokenprune-tables tbody tr:nth-child(even) { background: #f5f5f5; }
.tokenprune-tables p.footnote { max-width: 60em; font-size: .9em; color: #444; }
"""


def to_html(comparison: Comparison) -> str:
    """A standalone HTML page (the report shows it as is)."""
    body = captioned_html_table(display_table(comparison, "html"), title(comparison), "comparison", escape=False)
    if len(comparison.contrast):
        contrast = captioned_html_table(contrast_table(comparison, "html"), CONTRAST_TITLE, "comparison", escape=False)
        body += f'\n<p class="footnote">{footnote(comparison, "html")}</p>\n{contrast}'
        note = contrast_note(comparison, "html")
    else:
        note = footnote(comparison, "html")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title(comparison))}</title>\n<style>{TABLE_STYLE}</style>\n</head>\n<body>\n"
        f'<div class="tokenprune-tables">\n{body}\n<p class="footnote">{note}</p>\n</div>\n</body>\n</html>\n'
    )


#: The references the headline table opens on, in this order.
HEADLINE_REFERENCES = ("bm25", "untrained", "step0", "baseline")


def captioned_html_table(frame: pd.DataFrame, caption: str, classes: str, *, escape: bool = True) -> str:
    """``frame`` as an HTML ``<table class="{classes}">`` that opens with ``caption``."""
    body = frame.to_html(index=False, escape=escape, border=0, classes=classes)
    return body.replace(
        f'<table class="dataframe {classes}">',
        f'<table class="{classes}">\n<caption>{html.escape(caption)}</caption>',
        1,
    )


def styled_html_fragment(body: str) -> str:
    """``body`` in the tables' wrapper with their scoped style, to embed in another page (the report's)."""
    return f'<div class="tokenprune-tables">\n<style>{TABLE_STYLE}</style>\n{body}\n</div>\n'


def _missing_post_hoc(strategy: str) -> str:
    """Why a strategy has no post-hoc value: it has no such form (unused, const), or the study did not run it."""
    return "– (no post-hoc form)" if strategy in IN_LOOP_ONLY_STRATEGIES else "– (not in the study)"


def headline_table(comparison: Comparison) -> pd.DataFrame:
    """The answer at a glance, on the first measure: the references, then per k each strategy
    trained in the loop beside the same selection applied post hoc to the trained baseline, with
    the in-loop − post-hoc difference and its Holm-corrected p (``†`` where significant)."""
    measure = comparison.measures[0]
    # Uncompressed rows only (BM25 has no storage).
    table = comparison.table[comparison.table["storage"].fillna("").isin(["", "fp16"])]
    contrast = comparison.contrast[comparison.contrast["measure"] == measure]
    rows = []
    for kind in HEADLINE_REFERENCES:
        for _, row in table[table["kind"] == kind].iterrows():
            rows.append(
                {
                    "method": row["method"],
                    "k": "–",
                    "% tokens": _number(row["percent_tokens_kept"], 1),
                    f"{measure}, in the loop": _number(row[measure]),
                    f"{measure}, post hoc": "",
                    "Δ (in-loop − post-hoc)": "",
                    "p (Holm)": "",
                }
            )
    in_loop = table[table["kind"] == "pruned"]
    for k in sorted(in_loop["k"].dropna().unique(), reverse=True):
        for _, row in in_loop[in_loop["k"] == k].iterrows():
            post_hoc = table[(table["kind"] == "posthoc") & (table["strategy"] == row["strategy"]) & (table["k"] == k)]
            tested = contrast[(contrast["strategy"] == row["strategy"]) & (contrast["k"] == k)]
            mark = "†" if len(tested) and bool(tested["significant"].iloc[0]) else ""
            rows.append(
                {
                    "method": row["strategy"],
                    "k": str(int(k)),
                    "% tokens": _number(row["percent_tokens_kept"], 1),
                    f"{measure}, in the loop": _number(row[measure]),
                    f"{measure}, post hoc": _number(post_hoc[measure].iloc[0])
                    if len(post_hoc)
                    else _missing_post_hoc(str(row["strategy"])),
                    "Δ (in-loop − post-hoc)": _signed(tested["delta"].iloc[0]) + mark if len(tested) else "",
                    "p (Holm)": format_p(tested["p_holm"].iloc[0]) if len(tested) else "",
                }
            )
    return pd.DataFrame(rows)


def headline_html(comparison: Comparison) -> str:
    """:func:`headline_table` as an HTML fragment, for the report's opening page."""
    caption = f"At a glance: {title(comparison)}, {comparison.measures[0]}"
    return styled_html_fragment(captioned_html_table(headline_table(comparison), caption, "comparison headline"))


def to_latex(comparison: Comparison) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    table = display_table(comparison, "tex")
    alignment = "l" + "r" * (len(table.columns) - 1)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_escape(title(comparison), 'tex')}. {footnote(comparison, 'tex')}}}",
        rf"\begin{{tabular}}{{{alignment}}}",
        r"\toprule",
        " & ".join(table.columns) + r" \\",
        r"\midrule",
    ]
    # A rule between the unpruned rows and each budget k.
    groups = ["unpruned" if pd.isna(k) else int(k) for k in comparison.table["k"]]
    for number, (group, (_, row)) in enumerate(zip(groups, table.iterrows(), strict=True)):
        if number and group != groups[number - 1]:
            lines.append(r"\midrule")
        lines.append(" & ".join(row.astype(str)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_tables(comparison: Comparison, output_dir: str | Path, stem: str = "comparison") -> dict[str, Path]:
    """Write ``<stem>.csv`` (every number), ``.md``, ``.html`` and ``.tex``, each atomically.

    Returns
    -------
    dict
        Format to written path.
    """
    output_dir = Path(output_dir)
    texts = {"md": to_markdown(comparison), "html": to_html(comparison), "tex": to_latex(comparison)}
    written = {}
    path = output_dir / f"{stem}.csv"
    with atomic_file(path) as tmp:
        comparison.table.to_csv(tmp, index=False, float_format="%.6g")
    written["csv"] = path
    path = output_dir / f"{CONTRAST_STEM}.csv"
    with atomic_file(path) as tmp:
        comparison.contrast.to_csv(tmp, index=False, float_format="%.6g")
    written["contrast"] = path
    path = output_dir / f"{PAIRS_STEM}.csv"
    with atomic_file(path) as tmp:
        comparison.pairs.to_csv(tmp, index=False, float_format="%.6g")
    written["pairs"] = path
    for fmt, text in texts.items():
        path = output_dir / f"{stem}.{fmt}"
        with atomic_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written[fmt] = path
    path = output_dir / f"{HEADLINE_STEM}.html"
    with atomic_file(path) as tmp:
        tmp.write_text(headline_html(comparison), encoding="utf-8")
    written["headline"] = path
    return written
