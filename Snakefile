# tokenprune: passage-token pruning for ColBERT (Lassance et al., SIGIR 2022).
#
#   snakemake --cores all                        # the whole study
#   snakemake --cores all --until prepare_data   # one stage
#   snakemake --report reports/report.html       # the HTML report
#
# Every rule calls a `tokenprune` sub-command; the logic lives in the
# library under workflow/tokenprune.

from pathlib import Path

from snakemake.utils import min_version

from tokenprune.config import validate_config
from tokenprune.strategies import STRATEGY_PATTERN

min_version("9.0")


configfile: "config.yaml"


# Snakemake's validate() against workflow/schemas/config.schema.yaml (filling
# defaults), preceded by a concise message for the first violation and
# followed by cross-checks a schema cannot express (dataset/split/measure names).
validate_config(config)


report: "workflow/report/workflow.rst"


# `snakemake --report reports/report.html` writes into reports/ but does not create it.
Path("reports").mkdir(exist_ok=True)


# Wildcards name datasets, strategies, k, seeds, shards and retrieval modes; nothing else.
wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",
    corpus=r"[A-Za-z0-9_-]+",
    split=r"[A-Za-z0-9_-]+",
    # A trained strategy, a selection applied post hoc to an unpruned model, or the step-0 model.
    strategy=rf"(posthoc-)?({STRATEGY_PATTERN})|step0",
    k=r"all|\d+",
    seed=r"\d+",
    shard=r"\d+",
    bits=r"[1-8]",
    mode=r"exact|ann|bm25",
    # A model id, ending in r<bits> when its index is stored compressed.
    system=rf"bm25|[A-Za-z0-9_-]+/((posthoc-)?({STRATEGY_PATTERN})|step0)/k(all|\d+)/seed\d+(/r[1-8])?",


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/indexing.smk"
include: "workflow/rules/retrieval.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/references.smk"
include: "workflow/rules/report.smk"


# The study ends at the comparison tables and figures; `snakemake --report
# reports/report.html` then gathers them into one HTML file.
rule all:
    default_target: True
    input:
        report_targets(),
