# Reference rows shown in every table: BM25, and the backbone used as ColBERT without training.


rule untrained_backbone:
    """The pre-trained backbone as ColBERT: normalised token vectors, identity projection, no pruning."""
    output:
        directory(UNTRAINED_MODEL_DIR),
    log:
        "logs/untrained_backbone.log",
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("untrained_backbone", "mem_mb"),
        runtime=job_resource("untrained_backbone", "runtime"),
    params:
        backbone=MODEL["backbone"],
        query_max_length=MODEL["query_max_length"],
        passage_max_length=MODEL["passage_max_length"],
        candidate_tokens=MODEL["candidate_tokens"],
    shell:
        "tokenprune untrained-model --backbone {params.backbone} --query-max-length {params.query_max_length}"
        " --passage-max-length {params.passage_max_length} --candidate-tokens {params.candidate_tokens}"
        " --output {output} > {log} 2>&1"


rule bm25:
    """BM25 (bm25s, stemmed) run for one evaluation set."""
    input:
        DATA_DIR.replace("{dataset}", "{corpus}"),
    output:
        SYSTEM_RUN.replace("{system}", "bm25").replace("{mode}", "bm25"),
    log:
        "logs/bm25/{corpus}/{split}.log",
    benchmark:
        "results/benchmarks/bm25/{corpus}/{split}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("bm25", "mem_mb"),
        runtime=job_resource("bm25", "runtime"),
    params:
        depth=config["retrieval"]["depth"],
    shell:
        "tokenprune bm25 --data {input} --split {wildcards.split} --depth {params.depth}"
        " --output {output} > {log} 2>&1"
