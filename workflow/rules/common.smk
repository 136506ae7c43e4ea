# Helpers shared by the rules files: path templates and the expansion of the
# configured study into concrete targets and rule inputs.

import json
import shlex
from pathlib import Path

TRAIN = config["train"]
MODEL = config["model"]
INDEXING = config["indexing"]
REPORT = config["report"]

# Path templates shared with the library (the report stages read what these rules write).
from tokenprune.layout import (
    ANN_INDEX,
    BM25_ID,
    CHECKPOINT_DIR,
    COMPARISON,
    DATA_DIR,
    DIAGNOSTICS_DIR,
    IDF,
    INDEX_DIR,
    INDEX_SHARD_DIR,
    KEPT_POSITIONS,
    KEPT_TOKENS,
    MODEL_DIR,
    MODEL_ID,
    RUN,
    SUMMARY_DIR,
    SYSTEM_METRICS,
    SYSTEM_PER_QUERY,
    SYSTEM_RUN,
    TRAINING_LOSS,
    TRIPLES,
    UNTRAINED_ID,
    UNTRAINED_MODEL_DIR,
    System,
    tradeoff_plot,
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
    return [*trained_systems(), UNTRAINED_ID, BM25_ID]


def evaluation_sets():
    """(corpus, split) of every configured evaluation set."""
    return [
        (evaluation["dataset"], evaluation["split"])
        for evaluation in config["evaluate"]
    ]


# ---------------------------------------------------------------- training


def idf_input(wildcards):
    """The IDF table, for the idf strategy only."""
    return IDF.format(dataset=wildcards.dataset) if wildcards.strategy == "idf" else []


def imported_model_source(wildcards):
    """The model folder under train.models_dir that stands in for training this model."""
    return shlex.quote(str(Path(TRAIN["models_dir"]) / MODEL_ID.format(**wildcards)))


# ---------------------------------------------------------------- indexing and retrieval


def index_shards(corpus):
    """Shard jobs per index of ``corpus``: the dataset's index_shards, else indexing.shards."""
    return config["datasets"][corpus].get("index_shards", INDEXING["shards"])


def corpora_pattern(sharded):
    """A wildcard constraint matching the searched corpora indexed in one job (or in shards)."""
    corpora = sorted(
        {
            corpus
            for corpus, _ in evaluation_sets()
            if (index_shards(corpus) > 1) == sharded
        }
    )
    # "(?!)" never matches: with no such corpus, the rule applies to nothing.
    return "|".join(corpora) if corpora else "(?!)"


def index_command(shard_arguments=""):
    """The shell command of one index job; shard jobs add --shard/--shards."""
    return (
        "tokenprune index --model {input.model} --data {input.data} --batch-size {params.batch_size}"
        f" --chunk-documents {{params.chunk_documents}}{shard_arguments} --precision {{params.precision}}"
        " --threads {threads}"
        " --output {output} > {log} 2>&1"
    )


def index_shard_dirs(wildcards):
    """Every shard of one index, in order."""
    return expand(
        INDEX_SHARD_DIR, **wildcards, shard=range(index_shards(wildcards.corpus))
    )


def ann_index_input(wildcards):
    """The faiss index, for mode ann only."""
    return ANN_INDEX.format(**wildcards) if wildcards.mode == "ann" else []


# ---------------------------------------------------------------- report


def paper_collection(corpus, split):
    """The ir_datasets id of an evaluated split (the key of the paper's published values), if it has one."""
    splits = config["datasets"][corpus]["splits"]
    return splits.get(split) if isinstance(splits, dict) else None


def summary_inputs(wildcards):
    """Metrics, per-query values and index statistics of every compared system on one evaluation set."""
    inputs = []
    for system in map(System.parse, compared_systems()):
        inputs.append(
            system.metrics_path(wildcards.corpus, wildcards.split, wildcards.mode)
        )
        inputs.append(
            system.per_query_path(wildcards.corpus, wildcards.split, wildcards.mode)
        )
        if system.index_dir(wildcards.corpus) is not None:
            inputs.append(system.index_dir(wildcards.corpus))
    return [str(path) for path in inputs]


def report_targets():
    """The default target: every table and figure of the report."""
    targets = []
    for corpus, split in evaluation_sets():
        for mode in config["retrieval"]["modes"]:
            where = dict(corpus=corpus, split=split, mode=mode)
            comparison = COMPARISON.format(**where)
            targets += [f"{comparison}.{fmt}" for fmt in ("csv", "md", "html", "tex")]
            targets += [
                f"{tradeoff_plot(measure).format(**where)}.png"
                for measure in config["metrics"]
            ]
    for corpus in dict.fromkeys(corpus for corpus, _ in evaluation_sets()):
        targets += [
            f"{KEPT_POSITIONS.format(corpus=corpus)}.png",
            f"{KEPT_TOKENS.format(corpus=corpus)}.png",
        ]
    targets.append(f"{TRAINING_LOSS.format(dataset=TRAIN['dataset'])}.png")
    return targets


def trained_systems_of(dataset):
    """Ids of the study's models trained on ``dataset``."""
    return [s for s in trained_systems() if System.parse(s).dataset == dataset]


def diagnostic_systems():
    """Trained models of the first seed: one index per strategy and k is enough to see what is kept."""
    first_seed = config["seeds"][0]
    return [
        system
        for system in trained_systems()
        if System.parse(system).seed == first_seed
    ]
