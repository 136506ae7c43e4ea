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
    mode=r"exact|ann|bm25",
    system=r"bm25|[A-Za-z0-9_-]+/(none|first|idf|unused|attention)/k(all|\d+)/seed\d+",


TRAIN = config["train"]
MODEL = config["model"]

DATA_DIR = "resources/data/{dataset}"
IDF = "results/idf/{dataset}.safetensors"
TRIPLES = "results/triples/{dataset}/{split}.parquet"
# {dataset} is the training collection, {corpus} the collection searched.
MODEL_ID = "{dataset}/{strategy}/k{k}/seed{seed}"
MODEL_DIR = "results/models/" + MODEL_ID
INDEX_DIR = "results/indexes/" + MODEL_ID + "/{corpus}"
ANN_INDEX = "results/ann/" + MODEL_ID + "/{corpus}.faiss"
RUN = "results/runs/" + MODEL_ID + "/{corpus}/{split}.{mode}.trec"
# {system} is a model id, or "bm25" for the BM25 reference (mode "bm25").
SYSTEM_RUN = "results/runs/{system}/{corpus}/{split}.{mode}.trec"
SYSTEM_METRICS = "results/metrics/{system}/{corpus}/{split}.{mode}.json"
UNTRAINED_ID = "untrained/none/kall/seed0"


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


def evaluation_targets():
    """Metrics of every trained model, the untrained backbone and BM25, on every evaluation set."""
    systems = [
        MODEL_ID.format(dataset=TRAIN["dataset"], strategy=strategy, k=k, seed=seed)
        for strategy, k in model_variants()
        for seed in config["seeds"]
    ] + [UNTRAINED_ID]
    targets = []
    for evaluation in config["evaluate"]:
        where = dict(corpus=evaluation["dataset"], split=evaluation["split"])
        targets += [
            SYSTEM_METRICS.format(system=system, mode=mode, **where)
            for system in systems
            for mode in config["retrieval"]["modes"]
        ]
        targets.append(SYSTEM_METRICS.format(system="bm25", mode="bm25", **where))
    return targets
