rule prepare_data:
    """Normalise one collection: corpus, queries and qrels per split, stats.json."""
    output:
        directory(DATA_DIR),
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "results/benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("prepare_data", "mem_mb"),
        runtime=job_resource("prepare_data", "runtime"),
    params:
        spec=lambda wildcards: quoted_json(config["datasets"][wildcards.dataset]),
        query_max_length=lambda wildcards: query_max_length(wildcards.dataset),
        data_dir=lambda wildcards: (
            f"--data-dir {shlex.quote(config['offline_data_dir'])}"
            if config["offline_data_dir"]
            else ""
        ),
        strict="--strict" if config["strict_qrels"] else "",
        backbone=MODEL["backbone"],
        irds_home=config["irds_home"],
        passage_max_length=MODEL["passage_max_length"],
    shell:
        "tokenprune prepare-data --dataset {wildcards.dataset} --spec {params.spec}"
        " --output {output} --backbone {params.backbone} --irds-home {params.irds_home}"
        " --passage-max-length {params.passage_max_length}"
        " --query-max-length {params.query_max_length} {params.data_dir} {params.strict}"
        " > {log} 2>&1"
