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
    mode=r"exact|ann",


TRAIN = config["train"]
MODEL = config["model"]

DATA_DIR = "resources/data/{dataset}"
IDF = "results/idf/{dataset}.safetensors"
TRIPLES = "results/triples/{dataset}/{split}.parquet"
# {dataset} is the training collection, {corpus} the collection searched.
MODEL_ID = "{dataset}/{strategy}/k{k}/seed{seed}"
MODEL_DIR = "results/models/" + MODEL_ID
INDEX_DIR = "results/indexes/" + MODEL_ID + "/{corpus}"
RUN = "results/runs/" + MODEL_ID + "/{corpus}/{split}.{mode}.trec"
METRICS = "results/metrics/" + MODEL_ID + "/{corpus}/{split}.{mode}.json"


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


def study_targets(pattern, **extra):
    """Expand a per-model path over every model variant, seed and evaluation set."""
    return [
        pattern.format(
            dataset=TRAIN["dataset"],
            strategy=strategy,
            k=k,
            seed=seed,
            corpus=evaluation["dataset"],
            split=evaluation["split"],
            **extra,
        )
        for strategy, k in model_variants()
        for seed in config["seeds"]
        for evaluation in config["evaluate"]
    ]


def query_max_length(corpus):
    """Per-collection query length (classic collections have long queries)."""
    return config["datasets"][corpus].get("query_max_length", MODEL["query_max_length"])
