rule evaluate:
    """ir_measures over a run: aggregated JSON plus per-query TSV for significance tests."""
    input:
        run=RUN,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
    output:
        METRICS,
    params:
        metrics=" ".join(shlex.quote(name) for name in config["metrics"]),
    log:
        "logs/evaluate/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}/{split}.{mode}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/report.yaml"
    shell:
        "tokenprune evaluate --run {input.run} --data {input.data} --split {wildcards.split}"
        " --metrics {params.metrics} --output {output} > {log} 2>&1"
