# Helpers shared by the rules files: path templates and the expansion of the
# configured study into concrete targets and rule inputs.

import json
import shlex
from pathlib import Path

from tokenprune.devices import visible_gpu_count
from tokenprune.strategies import TRAINED_STRATEGY_PATTERN

TRAIN = config["train"]
MODEL = config["model"]
INDEXING = config["indexing"]
REPORT = config["report"]
CONTROLS = config["controls"]
COMPRESSION = config["compression"]
# Strategies trained with the selection in the loop; the step-0 model is indexed like them.
TRAINED_STRATEGY = TRAINED_STRATEGY_PATTERN

# The torch stages (train, index, posthoc_index, retrieve) ask for one GPU each
# where this machine has GPUs, so `--resources gpu=N` runs N at a time. On a
# machine without one they are CPU jobs: one thread each, so that `--cores N`
# runs N side by side; so are the faiss stages (ann_index, compress_index),
# since a 2-thread job waits for two free cores, which a stream of 1-thread jobs
# never leaves. Side by side beats one job on both cores (a training step
# takes 2.4 s on one thread and 1.37 s on two, yet two 1-thread trainings side
# by side finish in 18% less time than one after the other on two threads;
# benchmarks/README, "Jobs side by side"). Cluster profiles set both per rule
# (profiles/slurm).
LOCAL_GPUS = visible_gpu_count()
GPU_PER_TORCH_JOB = 1 if LOCAL_GPUS else 0
THREADS_PER_COMPUTE_JOB = 2 if LOCAL_GPUS else 1
# The indexing and retrieval environment: GPU faiss (and CUDA torch) where this
# machine has a GPU, CPU faiss otherwise; both files list what they install.
RETRIEVAL_ENV = (
    "../../envs/retrieval-gpu.yaml" if LOCAL_GPUS else "../../envs/retrieval.yaml"
)

# Path templates: the rules build every path the library reads or writes.
from tokenprune.layout import (
    ANN_INDEX,
    BM25_ID,
    BUDGETS,
    CHECKPOINT_DIR,
    CLAIMS,
    COMPARISON,
    COMPRESSED_INDEX_DIR,
    COMPRESSED_RUN,
    COMPRESSED_SUFFIX,
    CONTRAST,
    DATA_DIR,
    DIAGNOSTICS_DIR,
    HEADLINE,
    IDF,
    INDEX_DIR,
    INDEX_SHARD_DIR,
    KEPT_POSITIONS,
    KEPT_TOKENS,
    MODEL_DIR,
    MODEL_ID,
    PAIRS,
    POSTHOC_ID,
    RUN,
    STEP0,
    STEP0_ID,
    SUMMARY_DIR,
    SYSTEM_METRICS,
    SYSTEM_MODEL_DIR,
    SYSTEM_PER_QUERY,
    SYSTEM_RUN,
    TRAINING_LOSS,
    TRIPLES,
    UNTRAINED_ID,
    UNTRAINED_MODEL_DIR,
    TRADEOFF_PLOT,
    System,
    measure_slug,
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
    """Refuse paths that mix the baseline (or the step-0 model) with a k, or a strategy with k=all."""
    System.parse(MODEL_ID.format(**wildcards))
    return []


def job_resource(stage, name):
    """A job's ``name`` resource (mem_mb, runtime): its collection's ``resources`` for ``stage``, else the study's.

    The collection is the one the job reads: the searched corpus where the job
    has one, else its dataset (the untrained backbone has none of its own).
    """

    def resolve(wildcards):
        collection = getattr(wildcards, "corpus", None) or getattr(
            wildcards, "dataset", None
        )
        own = config["datasets"].get(collection, {}).get("resources", {}).get(stage, {})
        return own.get(name, config["resources"][stage][name])

    return resolve


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


def posthoc_variants():
    """(strategy, k) of every selection applied post hoc, at indexing only."""
    return [
        (strategy, str(k))
        for strategy in CONTROLS["posthoc_strategies"]
        for k in config["k"]
    ]


def posthoc_bases():
    """(dataset, seed) of the unpruned models the post-hoc selections prune."""
    bases = [("untrained", 0)] if posthoc_variants() else []
    if posthoc_variants() and "none" in config["strategies"]:
        bases += [(TRAIN["dataset"], seed) for seed in config["seeds"]]
    return bases


def posthoc_systems():
    """Ids of every post-hoc system: each base model with each selection."""
    return [
        POSTHOC_ID.format(dataset=dataset, strategy=strategy, k=k, seed=seed)
        for dataset, seed in posthoc_bases()
        for strategy, k in posthoc_variants()
    ]


def step0_systems():
    """Ids of the step-0 models, one per seed (when controls.step0)."""
    if not CONTROLS["step0"] or TRAIN["models_dir"] is not None:
        # An imported model's initialisation is not known here.
        return []
    return [
        STEP0_ID.format(dataset=TRAIN["dataset"], seed=seed) for seed in config["seeds"]
    ]


def dense_systems():
    """Every system with an index: trained, step-0 and post-hoc models and the untrained backbone."""
    return [*trained_systems(), *step0_systems(), *posthoc_systems(), UNTRAINED_ID]


def compressed_systems():
    """The compressed copy of every dense system at each of compression.bits (ids ending in /r<bits>)."""
    return [
        system + COMPRESSED_SUFFIX.format(bits=bits)
        for bits in COMPRESSION["bits"]
        for system in dense_systems()
    ]


def compared_systems(mode):
    """Every system in one retrieval mode's comparison tables: the dense ones, BM25, and in exact mode their compressed copies."""
    return [
        *dense_systems(),
        BM25_ID,
        *(compressed_systems() if mode == "exact" else []),
    ]


def searched_model(wildcards):
    """The model that encodes a system's queries (a post-hoc system's is the unpruned model it prunes)."""
    return str(System.parse(MODEL_ID.format(**wildcards)).model_dir())


def evaluation_metrics(corpus, split):
    """The measures of one evaluation set: its own `metrics`, else the study's."""
    for evaluation in config["evaluate"]:
        if (evaluation["dataset"], evaluation["split"]) == (corpus, split):
            return evaluation.get("metrics", config["metrics"])
    return config["metrics"]


def quoted_measures(corpus, split):
    """The measures of one evaluation set as shell-quoted arguments."""
    return " ".join(shlex.quote(name) for name in evaluation_metrics(corpus, split))


def measure_of_slug(wildcards):
    """The measure whose file-name form is wildcards.slug, on wildcards' evaluation set."""
    by_slug = {
        measure_slug(name): name
        for name in evaluation_metrics(wildcards.corpus, wildcards.split)
    }
    if wildcards.slug not in by_slug:
        raise ValueError(
            f"no measure of {wildcards.corpus} {wildcards.split} is written {wildcards.slug!r}"
        )
    return by_slug[wildcards.slug]


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


def indexing_idf(corpus):
    """The IDF table the idf strategy ranks with when indexing ``corpus`` (indexing.idf_source)."""
    source = corpus if INDEXING["idf_source"] == "indexed" else TRAIN["dataset"]
    return IDF.format(dataset=source)


def index_idf_input(wildcards):
    """The indexed collection's IDF table for an idf model, when indexing.idf_source is 'indexed'."""
    if wildcards.strategy == "idf" and INDEXING["idf_source"] == "indexed":
        return indexing_idf(wildcards.corpus)
    return []


def posthoc_idf_input(wildcards):
    """The IDF table of post-hoc idf selections."""
    if "idf" in CONTROLS["posthoc_strategies"]:
        return indexing_idf(wildcards.corpus)
    return []


def own_index_pattern():
    """Strategies the `index` jobs write; with post-hoc selections, the unpruned ones come from the post-hoc pass."""
    if posthoc_variants():
        strategies = [name for name in TRAINED_STRATEGY.split("|") if name != "none"]
        return "|".join([*strategies, STEP0])
    return f"{TRAINED_STRATEGY}|{STEP0}"


def own_index_dir(template):
    """Output template of an unpruned model's own index, written by its post-hoc pass; {dataset}/{seed}/{corpus} left open."""
    return template.format(
        dataset="{dataset}",
        strategy="none",
        k="all",
        seed="{seed}",
        corpus="{corpus}",
        shard="{shard}",
    )


def posthoc_index_dirs(template):
    """Output templates of one post-hoc job: one index per selection, {dataset}/{seed}/{corpus} left open."""
    return [
        template.format(
            dataset="{dataset}",
            strategy=f"posthoc-{strategy}",
            k=k,
            seed="{seed}",
            corpus="{corpus}",
            shard="{shard}",
        )
        for strategy, k in posthoc_variants()
    ]


def posthoc_selections(wildcards, output):
    """--selection arguments naming each post-hoc selection and the folder it writes."""
    return " ".join(
        f"--selection {strategy} {k} {folder}"
        for (strategy, k), folder in zip(posthoc_variants(), output.selections)
    )


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


def posthoc_corpora_pattern(sharded):
    """corpora_pattern for the post-hoc pass, which runs only when the study has post-hoc selections."""
    return corpora_pattern(sharded) if posthoc_variants() else "(?!)"


def shard_option(wildcards):
    """--shard/--shards of one shard job of an index of wildcards.corpus."""
    return f"--shard {wildcards.shard} --shards {index_shards(wildcards.corpus)}"


def idf_option(wildcards, input):
    """--idf for a job whose idf input is present."""
    return f"--idf {input.idf}" if input.idf else ""


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


def summary_entries(wildcards):
    """(id, metrics, per-query values, index folder or "-") of every compared system on one evaluation set."""
    entries = []
    for system in map(System.parse, compared_systems(wildcards.mode)):
        index = system.index_dir(wildcards.corpus)
        entries.append(
            (
                system.id,
                str(
                    system.metrics_path(
                        wildcards.corpus, wildcards.split, wildcards.mode
                    )
                ),
                str(
                    system.per_query_path(
                        wildcards.corpus, wildcards.split, wildcards.mode
                    )
                ),
                "-" if index is None else str(index),
            )
        )
    return entries


def summary_inputs(wildcards):
    """The files summarize reads: what summary_entries names."""
    return [
        path
        for entry in summary_entries(wildcards)
        for path in entry[1:]
        if path != "-"
    ]


def repeated_option(option, entries):
    """One shell-quoted ``option`` per entry, each followed by the entry's values."""
    return " ".join(
        f"{option} {' '.join(shlex.quote(value) for value in entry)}"
        for entry in entries
    )


def claims_mode():
    """The retrieval mode the claims read: exact search where the study runs it."""
    modes = config["retrieval"]["modes"]
    return "exact" if "exact" in modes else modes[0]


def claims_sets():
    """(corpus, split, domain, measure, summary folder) of every evaluation set, for the claims.

    The verdicts read each set's first measure (nDCG@10 in every shipped config).
    """
    return [
        (
            evaluation["dataset"],
            evaluation["split"],
            "zero-shot" if evaluation["zero_shot"] else "in-domain",
            evaluation_metrics(evaluation["dataset"], evaluation["split"])[0],
            SUMMARY_DIR.format(
                corpus=evaluation["dataset"],
                split=evaluation["split"],
                mode=claims_mode(),
            ),
        )
        for evaluation in config["evaluate"]
    ]


def claims_inputs(wildcards):
    """The summaries the claims read: each evaluation set's comparison, contrast and pairs CSVs."""
    where = [
        dict(corpus=corpus, split=split, mode=claims_mode())
        for corpus, split, *_ in claims_sets()
    ]
    return [
        f"{template.format(**place)}.csv"
        for place in where
        for template in (COMPARISON, CONTRAST, PAIRS)
    ]


def report_targets():
    """The default target: every table and figure of the report."""
    targets = [f"{CLAIMS}.csv", f"{CLAIMS}.md", f"{CLAIMS}_verdicts.html"]
    for corpus, split in evaluation_sets():
        for mode in config["retrieval"]["modes"]:
            where = dict(corpus=corpus, split=split, mode=mode)
            comparison = COMPARISON.format(**where)
            targets += [f"{comparison}.{fmt}" for fmt in ("csv", "md", "html", "tex")]
            targets.append(f"{HEADLINE.format(**where)}.html")
            targets.append(f"{BUDGETS.format(**where)}.md")
            targets += [
                f"{tradeoff_plot(measure).format(**where)}.png"
                for measure in evaluation_metrics(corpus, split)
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


def diagnostic_entries(wildcards):
    """(id, model folder, index folder) of each diagnosed model on wildcards.corpus."""
    return [
        (
            system,
            str(System.parse(system).model_dir()),
            str(System.parse(system).index_dir(wildcards.corpus)),
        )
        for system in diagnostic_systems()
    ]


def training_entries(wildcards):
    """(id, model folder) of each model trained on wildcards.dataset."""
    return [
        (system, str(System.parse(system).model_dir()))
        for system in trained_systems_of(wildcards.dataset)
    ]
