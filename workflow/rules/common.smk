# Helpers shared by the rule files: paths, wildcard constraints and the
# expansion of the configured study into concrete targets.

import json
import shlex


wildcard_constraints:
    dataset=r"[A-Za-z0-9_-]+",
    corpus=r"[A-Za-z0-9_-]+",
    split=r"[A-Za-z0-9_-]+",
    strategy=r"none|first|idf|unused|attention",
    k=r"all|\d+",
    seed=r"\d+",
    shard=r"\d+",
    mode=r"exact|ann|bm25",
    system=r"bm25|[A-Za-z0-9_-]+/(none|first|idf|unused|attention)/k(all|\d+)/seed\d+",


TRAIN = config["train"]
MODEL = config["model"]

# Path templates shared with the library (the report stages read what these rules write).
from tokenprune.layout import (
    ANN_INDEX,
    BM25_ID,
    DATA_DIR,
    IDF,
    INDEX_DIR,
    INDEX_SHARD_DIR,
    MODEL_DIR,
    MODEL_ID,
    RUN,
    SUMMARY_DIR,
    SYSTEM_METRICS,
    SYSTEM_RUN,
    TRAINING_SUMMARY_DIR,
    TRIPLES,
    UNTRAINED_ID,
    System,
    measure_slug,
)


def quoted_json(value):
    """A config section as one shell-quoted JSON argument."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def model_variants():
    """(strategy, k) pairs of the study: the baseline once, each strategy per k."""
    variants = []
    for strategy in config["strategies"]:
        if strategy == "none":
            variants.append(("none", "all"))
        else:
            variants.extend((strategy, str(k)) for k in config["k"])
    return variants


def check_variant(wildcards):
    """Refuse paths that mix the baseline with a k, or a strategy with k=all."""
    if (wildcards.strategy == "none") != (wildcards.k == "all"):
        raise ValueError(
            f"strategy {wildcards.strategy!r} with k={wildcards.k!r}: the baseline 'none' "
            "uses k=all and every other strategy a number"
        )
    return []


def query_max_length(corpus):
    """Per-collection query length (classic collections have long queries)."""
    return config["datasets"][corpus].get("query_max_length", MODEL["query_max_length"])


def trained_systems():
    """Ids of every trained model of the study: the baseline once, each strategy per k, per seed."""
    return [
        MODEL_ID.format(dataset=TRAIN["dataset"], strategy=strategy, k=k, seed=seed)
        for strategy, k in model_variants()
        for seed in config["seeds"]
    ]


def compared_systems():
    """Every system in the comparison tables: trained models, the untrained backbone, BM25."""
    return trained_systems() + [UNTRAINED_ID, BM25_ID]


def evaluation_sets():
    """(corpus, split) of every configured evaluation set."""
    return [
        (evaluation["dataset"], evaluation["split"])
        for evaluation in config["evaluate"]
    ]


def evaluation_targets():
    """Metrics of every compared system on every evaluation set (BM25 once, whatever the mode)."""
    return sorted(
        {
            str(System.parse(system).metrics_path(corpus, split, mode))
            for corpus, split in evaluation_sets()
            for system in compared_systems()
            for mode in config["retrieval"]["modes"]
        }
    )
