rule evaluate:
    """ir_measures over a run: aggregated JSON plus per-query TSV for significance tests."""
    input:
        run=SYSTEM_RUN,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
    output:
        metrics=SYSTEM_METRICS,
        per_query=SYSTEM_METRICS.replace(".json", ".perquery.tsv"),
    params:
        metrics=" ".join(shlex.quote(name) for name in config["metrics"]),
    log:
        "logs/evaluate/{system}/{corpus}/{split}.{mode}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/report.yaml"
    shell:
        "tokenprune evaluate --run {input.run} --data {input.data} --split {wildcards.split}"
        " --metrics {params.metrics} --output {output.metrics} --per-query {output.per_query} > {log} 2>&1"
