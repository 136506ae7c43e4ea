# Reference rows shown in every table: BM25, and the backbone used as ColBERT without training.

ruleorder: untrained_backbone > train


rule untrained_backbone:
    """The pre-trained backbone as ColBERT: normalised token vectors, identity projection, no pruning."""
    output:
        directory("results/models/" + UNTRAINED_ID),
    log:
        "logs/untrained_backbone.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/train.yaml"
    shell:
        "tokenprune untrained-model --backbone {MODEL[backbone]} --query-max-length {MODEL[query_max_length]}"
        " --passage-max-length {MODEL[passage_max_length]} --output {output} > {log} 2>&1"


rule bm25:
    """BM25 (bm25s, stemmed) run for one evaluation set."""
    input:
        DATA_DIR.replace("{dataset}", "{corpus}"),
    output:
        SYSTEM_RUN.replace("{system}", "bm25").replace("{mode}", "bm25"),
    params:
        depth=config["retrieval"]["depth"],
    log:
        "logs/bm25/{corpus}/{split}.log",
    benchmark:
        "benchmarks/bm25/{corpus}/{split}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/train.yaml"
    shell:
        "tokenprune bm25 --data {input} --split {wildcards.split} --depth {params.depth}"
        " --output {output} > {log} 2>&1"
