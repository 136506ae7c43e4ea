rule report:
    """Method comparison table and index-size vs nDCG@10 plots (the end of the DAG)."""
    input:
        metrics=evaluation_targets(),
    output:
        table="results/summary/comparison.csv",
        plot="results/summary/index_size_vs_ndcg.png",
    log:
        "logs/report.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/report.yaml"
    shell:
        "tokenprune report --metrics {input.metrics} --table {output.table}"
        " --plot {output.plot} > {log} 2>&1"
