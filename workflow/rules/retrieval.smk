rule retrieve:
    """Rank a split's queries against a pruned index: exact MaxSim, or faiss ANN + exact re-rank."""
    input:
        model=searched_model,
        index=INDEX_DIR,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
        ann=ann_index_input,
    output:
        RUN,
    log:
        "logs/retrieve/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}/{split}.{mode}.log",
    benchmark:
        "results/benchmarks/retrieve/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}/{split}.{mode}.tsv"
    conda:
        RETRIEVAL_ENV
    threads: THREADS_PER_COMPUTE_JOB
    resources:
        gpu=GPU_PER_TORCH_JOB,
        mem_mb=job_resource("retrieve", "mem_mb"),
        runtime=job_resource("retrieve", "runtime"),
    params:
        depth=config["retrieval"]["depth"],
        query_max_length=lambda wildcards: query_max_length(wildcards.corpus),
        ann=lambda wildcards, input: (
            f"--ann-index {input.ann} --nprobe {config['retrieval']['ann']['nprobe']}"
            f" --candidates-per-token {config['retrieval']['ann']['candidates_per_token']}"
            if input.ann
            else ""
        ),
    shell:
        "tokenprune retrieve --model {input.model} --index {input.index} --data {input.data}"
        " --split {wildcards.split} --mode {wildcards.mode} {params.ann} --depth {params.depth}"
        " --query-max-length {params.query_max_length} --threads {threads} --output {output} > {log} 2>&1"


use rule retrieve as retrieve_compressed with:
    input:
        model=searched_model,
        index=COMPRESSED_INDEX_DIR,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
        ann=[],
    output:
        COMPRESSED_RUN,
    log:
        "logs/retrieve/{dataset}/{strategy}/k{k}/seed{seed}/r{bits}/{corpus}/{split}.{mode}.log",
    benchmark:
        "results/benchmarks/retrieve/{dataset}/{strategy}/k{k}/seed{seed}/r{bits}/{corpus}/{split}.{mode}.tsv"
    wildcard_constraints:
        # Compressed indexes are searched exactly, with the vectors decoded from their codes.
        mode="exact",
