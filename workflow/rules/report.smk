# The end of the DAG: comparison tables, trade-off plots, loss curves and kept-token
# diagnostics, each marked for `snakemake --report reports/report.html`.

REPORT = config["report"]
COMPARISON = SUMMARY_DIR + "/comparison"
DIAGNOSTICS_DIR = "results/summary/{corpus}/diagnostics"


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


def tradeoff_plot(measure):
    return SUMMARY_DIR + f"/index_size_vs_{measure_slug(measure)}"


def report_targets():
    """What `rule all` asks for: every table and figure of the report."""
    targets = []
    for corpus, split in evaluation_sets():
        for mode in config["retrieval"]["modes"]:
            where = dict(corpus=corpus, split=split, mode=mode)
            targets += [
                COMPARISON.format(**where) + f".{fmt}"
                for fmt in ("csv", "md", "html", "tex")
            ]
            targets += [
                tradeoff_plot(m).format(**where) + ".png" for m in config["metrics"]
            ]
    for corpus in dict.fromkeys(corpus for corpus, _ in evaluation_sets()):
        targets += [
            DIAGNOSTICS_DIR.format(corpus=corpus) + f"/{stem}.png"
            for stem in ("kept_positions", "kept_tokens")
        ]
    targets.append(
        TRAINING_SUMMARY_DIR.format(dataset=TRAIN["dataset"]) + "/training_loss.png"
    )
    return targets


rule summarize:
    """Method comparison on one evaluation set (the paper's Table 2): tables in four formats."""
    input:
        summary_inputs,
    output:
        html=report(
            COMPARISON + ".html",
            caption="../report/comparison.rst",
            category="1. Method comparison",
            subcategory="{corpus} {split}",
            labels={
                "evaluation set": "{corpus} {split}",
                "retrieval": "{mode}",
                "figure": "comparison table",
            },
        ),
        csv=report(
            COMPARISON + ".csv",
            caption="../report/comparison_csv.rst",
            category="1. Method comparison",
            subcategory="{corpus} {split}",
            labels={
                "evaluation set": "{corpus} {split}",
                "retrieval": "{mode}",
                "figure": "table (CSV, every number)",
            },
        ),
        markdown=COMPARISON + ".md",
        latex=COMPARISON + ".tex",
    log:
        "logs/summarize/{corpus}/{split}.{mode}.log",
    benchmark:
        "benchmarks/summarize/{corpus}/{split}.{mode}.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        systems=" ".join(compared_systems()),
        measures=" ".join(shlex.quote(name) for name in config["metrics"]),
        paper=lambda wildcards: (
            f"--paper-collection {shlex.quote(collection)}"
            if (collection := paper_collection(wildcards.corpus, wildcards.split))
            else ""
        ),
        alpha=REPORT["alpha"],
        output_dir=SUMMARY_DIR,
    shell:
        "tokenprune summarize --systems {params.systems} --corpus {wildcards.corpus} --split {wildcards.split}"
        " --mode {wildcards.mode} --measures {params.measures} --alpha {params.alpha} {params.paper}"
        " --output-dir {params.output_dir} > {log} 2>&1"


rule plot_tradeoff:
    """Index size (MiB and % of tokens) vs every measure, one line per strategy across k."""
    input:
        COMPARISON + ".csv",
    output:
        png=[
            report(
                tradeoff_plot(measure) + ".png",
                caption="../report/tradeoff.rst",
                category="2. Index size vs effectiveness",
                subcategory="{corpus} {split}",
                labels={
                    "evaluation set": "{corpus} {split}",
                    "retrieval": "{mode}",
                    "measure": measure,
                },
            )
            for measure in config["metrics"]
        ],
        svg=[tradeoff_plot(measure) + ".svg" for measure in config["metrics"]],
    log:
        "logs/plot_tradeoff/{corpus}/{split}.{mode}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        measures=" ".join(shlex.quote(name) for name in config["metrics"]),
        output_dir=SUMMARY_DIR,
    shell:
        "tokenprune plot-tradeoff --table {input} --measures {params.measures}"
        " --title '{wildcards.corpus} {wildcards.split} ({wildcards.mode})' --output-dir {params.output_dir} > {log} 2>&1"


def trained_systems_of(dataset):
    """Ids of the study's models trained on ``dataset``."""
    return [s for s in trained_systems() if System.parse(s).dataset == dataset]


rule plot_training:
    """Training loss of every trained model of one training collection."""
    input:
        models=lambda wildcards: [
            str(System.parse(system).model_dir())
            for system in trained_systems_of(wildcards.dataset)
        ],
    output:
        png=report(
            TRAINING_SUMMARY_DIR + "/training_loss.png",
            caption="../report/training_loss.rst",
            category="3. Training",
            labels={"training set": "{dataset}", "figure": "loss curves"},
        ),
        svg=TRAINING_SUMMARY_DIR + "/training_loss.svg",
    log:
        "logs/plot_training/{dataset}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        systems=lambda wildcards: " ".join(trained_systems_of(wildcards.dataset)),
        stem=TRAINING_SUMMARY_DIR + "/training_loss",
    shell:
        "tokenprune plot-training --systems {params.systems} --title 'Training on {wildcards.dataset}'"
        " --output {params.stem} > {log} 2>&1"


def diagnostic_systems():
    """Trained models of the first seed: one index per strategy and k is enough to see what is kept."""
    first_seed = config["seeds"][0]
    return [
        system
        for system in trained_systems()
        if System.parse(system).seed == first_seed
    ]


rule token_diagnostics:
    """Where the kept tokens sit in the passage, and which tokens each strategy keeps most, from the indexes."""
    input:
        indexes=lambda wildcards: [
            str(System.parse(s).index_dir(wildcards.corpus))
            for s in diagnostic_systems()
        ],
        models=lambda wildcards: [
            str(System.parse(s).model_dir()) for s in diagnostic_systems()
        ],
    output:
        positions=report(
            DIAGNOSTICS_DIR + "/kept_positions.png",
            caption="../report/kept_positions.rst",
            category="4. What the strategies keep",
            labels={"collection": "{corpus}", "figure": "positions of kept tokens"},
        ),
        tokens=report(
            DIAGNOSTICS_DIR + "/kept_tokens.png",
            caption="../report/kept_tokens.rst",
            category="4. What the strategies keep",
            labels={"collection": "{corpus}", "figure": "tokens kept most often"},
        ),
        positions_svg=DIAGNOSTICS_DIR + "/kept_positions.svg",
        tokens_svg=DIAGNOSTICS_DIR + "/kept_tokens.svg",
        positions_csv=DIAGNOSTICS_DIR + "/kept_positions.csv",
        tokens_csv=DIAGNOSTICS_DIR + "/kept_tokens.csv",
    log:
        "logs/token_diagnostics/{corpus}.log",
    benchmark:
        "benchmarks/token_diagnostics/{corpus}.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        systems=" ".join(diagnostic_systems()),
        top=REPORT["top_tokens"],
        output_dir=DIAGNOSTICS_DIR,
    shell:
        "tokenprune token-diagnostics --systems {params.systems} --corpus {wildcards.corpus} --top {params.top}"
        " --title {wildcards.corpus} --output-dir {params.output_dir} > {log} 2>&1"
