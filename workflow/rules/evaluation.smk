rule evaluate:
    """ir_measures over a run: aggregated JSON plus per-query TSV for significance tests."""
    input:
        run=SYSTEM_RUN,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
    output:
        metrics=SYSTEM_METRICS,
        per_query=SYSTEM_PER_QUERY,
    log:
        "logs/evaluate/{system}/{corpus}/{split}.{mode}.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("evaluate", "mem_mb"),
        runtime=job_resource("evaluate", "runtime"),
    params:
        metrics=lambda wildcards: quoted_measures(wildcards.corpus, wildcards.split),
    shell:
        "tokenprune evaluate --run {input.run} --data {input.data} --split {wildcards.split}"
        " --metrics {params.metrics} --output {output.metrics} --per-query {output.per_query} > {log} 2>&1"
