# The end of the DAG: comparison tables, trade-off plots, loss curves and kept-token
# diagnostics, each marked for `snakemake --report reports/report.html`.


rule summarize:
    """Method comparison on one evaluation set (the paper's Table 2): tables in four formats."""
    input:
        summary_inputs,
    output:
        html=report(
            f"{COMPARISON}.html",
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
            f"{COMPARISON}.csv",
            caption="../report/comparison_csv.rst",
            category="1. Method comparison",
            subcategory="{corpus} {split}",
            labels={
                "evaluation set": "{corpus} {split}",
                "retrieval": "{mode}",
                "figure": "table (CSV, every number)",
            },
        ),
        markdown=f"{COMPARISON}.md",
        latex=f"{COMPARISON}.tex",
        pairs=f"{PAIRS}.csv",
        headline=f"{HEADLINE}.html",
        budgets=f"{BUDGETS}.md",
        budgets_csv=f"{BUDGETS}.csv",
        contrast=report(
            f"{CONTRAST}.csv",
            caption="../report/contrast_csv.rst",
            category="1. Method comparison",
            subcategory="{corpus} {split}",
            labels={
                "evaluation set": "{corpus} {split}",
                "retrieval": "{mode}",
                "figure": "in-loop vs post-hoc (CSV)",
            },
        ),
    log:
        "logs/summarize/{corpus}/{split}.{mode}.log",
    benchmark:
        "results/benchmarks/summarize/{corpus}/{split}.{mode}.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("summarize", "mem_mb"),
        runtime=job_resource("summarize", "runtime"),
    params:
        systems=lambda wildcards: repeated_option(
            "--system", summary_entries(wildcards)
        ),
        measures=lambda wildcards: quoted_measures(wildcards.corpus, wildcards.split),
        paper=lambda wildcards: (
            f"--paper-collection {shlex.quote(collection)}"
            if (collection := paper_collection(wildcards.corpus, wildcards.split))
            else ""
        ),
        alpha=REPORT["alpha"],
        budgets=" ".join(str(budget) for budget in REPORT["storage_budgets_kib"]),
        output_dir=SUMMARY_DIR,
    shell:
        "tokenprune summarize {params.systems} --corpus {wildcards.corpus} --split {wildcards.split}"
        " --mode {wildcards.mode} --measures {params.measures} --alpha {params.alpha} {params.paper}"
        " --storage-budgets {params.budgets}"
        " --output-dir {params.output_dir} > {log} 2>&1"


rule claims:
    """The paper's claims judged on every evaluation set's summaries: yes / no / inconclusive, with the tests."""
    input:
        claims_inputs,
    output:
        csv=f"{CLAIMS}.csv",
        verdicts=f"{CLAIMS}_verdicts.html",
        markdown=report(
            f"{CLAIMS}.md",
            caption="../report/claims.rst",
            category="0. Claims",
            labels={"figure": "verdicts on the paper's claims"},
        ),
    log:
        "logs/claims.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("claims", "mem_mb"),
        runtime=job_resource("claims", "runtime"),
    params:
        sets=repeated_option("--set", claims_sets()),
        alpha=REPORT["alpha"],
        study=REPORT["study"],
        stem=lambda wildcards, output: Path(output.csv).with_suffix(""),
    shell:
        "tokenprune claims {params.sets} --alpha {params.alpha} --study {params.study}"
        " --output {params.stem} > {log} 2>&1"


rule plot_tradeoff:
    """Index size (MiB and % of tokens) vs one measure, one line per strategy across k."""
    input:
        f"{COMPARISON}.csv",
    output:
        png=report(
            f"{TRADEOFF_PLOT}.png",
            caption="../report/tradeoff.rst",
            category="2. Index size vs effectiveness",
            subcategory="{corpus} {split}",
            labels=lambda wildcards: {
                "evaluation set": f"{wildcards.corpus} {wildcards.split}",
                "retrieval": wildcards.mode,
                "measure": measure_of_slug(wildcards),
            },
        ),
        svg=f"{TRADEOFF_PLOT}.svg",
        html=f"{TRADEOFF_PLOT}.html",
    log:
        "logs/plot_tradeoff/{corpus}/{split}.{mode}.{slug}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("plot_tradeoff", "mem_mb"),
        runtime=job_resource("plot_tradeoff", "runtime"),
    params:
        measure=lambda wildcards: shlex.quote(measure_of_slug(wildcards)),
        output_dir=lambda wildcards, output: Path(output.png).parent,
    shell:
        "tokenprune plot-tradeoff --table {input} --measures {params.measure}"
        " --title '{wildcards.corpus} {wildcards.split} ({wildcards.mode})' --output-dir {params.output_dir} > {log} 2>&1"


rule plot_training:
    """Training loss of every trained model of one training collection."""
    input:
        models=lambda wildcards: [folder for _, folder in training_entries(wildcards)],
    output:
        png=report(
            f"{TRAINING_LOSS}.png",
            caption="../report/training_loss.rst",
            category="3. Training",
            labels={"training set": "{dataset}", "figure": "loss curves"},
        ),
        svg=f"{TRAINING_LOSS}.svg",
    log:
        "logs/plot_training/{dataset}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("plot_training", "mem_mb"),
        runtime=job_resource("plot_training", "runtime"),
    params:
        models=lambda wildcards: repeated_option("--model", training_entries(wildcards)),
        stem=TRAINING_LOSS,
    shell:
        "tokenprune plot-training {params.models} --title 'Training on {wildcards.dataset}'"
        " --output {params.stem} > {log} 2>&1"


rule token_diagnostics:
    """Where the kept tokens sit in the passage, and which tokens each strategy keeps most, from the indexes."""
    input:
        lambda wildcards: [
            folder for entry in diagnostic_entries(wildcards) for folder in entry[1:]
        ],
    output:
        positions=report(
            f"{KEPT_POSITIONS}.png",
            caption="../report/kept_positions.rst",
            category="4. What the strategies keep",
            labels={"collection": "{corpus}", "figure": "positions of kept tokens"},
        ),
        tokens=report(
            f"{KEPT_TOKENS}.png",
            caption="../report/kept_tokens.rst",
            category="4. What the strategies keep",
            labels={"collection": "{corpus}", "figure": "tokens kept most often"},
        ),
        positions_svg=f"{KEPT_POSITIONS}.svg",
        tokens_svg=f"{KEPT_TOKENS}.svg",
        positions_csv=f"{KEPT_POSITIONS}.csv",
        tokens_csv=f"{KEPT_TOKENS}.csv",
    log:
        "logs/token_diagnostics/{corpus}.log",
    benchmark:
        "results/benchmarks/token_diagnostics/{corpus}.tsv"
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("token_diagnostics", "mem_mb"),
        runtime=job_resource("token_diagnostics", "runtime"),
    params:
        systems=lambda wildcards: repeated_option(
            "--system", diagnostic_entries(wildcards)
        ),
        top=REPORT["top_tokens"],
        output_dir=DIAGNOSTICS_DIR,
    shell:
        "tokenprune token-diagnostics {params.systems} --top {params.top}"
        " --title {wildcards.corpus} --output-dir {params.output_dir} > {log} 2>&1"
