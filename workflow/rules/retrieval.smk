rule retrieve:
    """Rank a split's queries against a pruned index: exact MaxSim or faiss ANN + exact re-rank."""
    input:
        model=MODEL_DIR,
        index=INDEX_DIR,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
    output:
        RUN,
    params:
        depth=config["retrieval"]["depth"],
        query_max_length=lambda wildcards: query_max_length(wildcards.corpus),
    log:
        "logs/retrieve/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}/{split}.{mode}.log",
    benchmark:
        "benchmarks/retrieve/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}/{split}.{mode}.tsv"
    threads: 2
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../../envs/retrieval.yaml"
    shell:
        "tokenprune retrieve --model {input.model} --index {input.index} --data {input.data}"
        " --split {wildcards.split} --mode {wildcards.mode} --depth {params.depth}"
        " --query-max-length {params.query_max_length} --output {output} > {log} 2>&1"
