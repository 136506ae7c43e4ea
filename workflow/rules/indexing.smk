rule index:
    """Encode a corpus with the model's selection layer active: fp16 vectors, offsets, index_stats.json."""
    input:
        model=MODEL_DIR,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
        idf=index_idf_input,
    output:
        directory(INDEX_DIR),
    log:
        "logs/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.log",
    benchmark:
        "results/benchmarks/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.tsv"
    wildcard_constraints:
        corpus=corpora_pattern(sharded=False),
        strategy=own_index_pattern(),
    conda:
        RETRIEVAL_ENV
    threads: THREADS_PER_COMPUTE_JOB
    resources:
        gpu=GPU_PER_TORCH_JOB,
        mem_mb=job_resource("index", "mem_mb"),
        runtime=job_resource("index", "runtime"),
    params:
        batch_size=INDEXING["batch_size"],
        chunk_documents=INDEXING["chunk_documents"],
        precision=INDEXING["precision"],
        idf=idf_option,
        shard="",
    shell:
        "tokenprune index --model {input.model} --data {input.data} --batch-size {params.batch_size}"
        " --chunk-documents {params.chunk_documents} {params.shard} --precision {params.precision}"
        " {params.idf} --threads {threads} --output {output} > {log} 2>&1"


use rule index as index_shard with:
    output:
        temp(directory(INDEX_SHARD_DIR)),
    log:
        "logs/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.shard{shard}.log",
    benchmark:
        "results/benchmarks/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.shard{shard}.tsv"
    wildcard_constraints:
        corpus=corpora_pattern(sharded=True),
        strategy=own_index_pattern(),
    params:
        shard=shard_option,


rule posthoc_index:
    """Prune an unpruned model's vectors at indexing only: its own index and every post-hoc selection from one encoding pass."""
    input:
        model=MODEL_DIR.replace("{strategy}", "none").replace("{k}", "all"),
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
        idf=posthoc_idf_input,
    output:
        own=directory(own_index_dir(INDEX_DIR)),
        selections=[directory(folder) for folder in posthoc_index_dirs(INDEX_DIR)],
    log:
        "logs/posthoc_index/{dataset}/seed{seed}/{corpus}.log",
    benchmark:
        "results/benchmarks/posthoc_index/{dataset}/seed{seed}/{corpus}.tsv"
    wildcard_constraints:
        corpus=posthoc_corpora_pattern(sharded=False),
    conda:
        RETRIEVAL_ENV
    threads: THREADS_PER_COMPUTE_JOB
    resources:
        gpu=GPU_PER_TORCH_JOB,
        mem_mb=job_resource("posthoc_index", "mem_mb"),
        runtime=job_resource("posthoc_index", "runtime"),
    params:
        selections=posthoc_selections,
        batch_size=INDEXING["batch_size"],
        chunk_documents=INDEXING["chunk_documents"],
        precision=INDEXING["precision"],
        idf=idf_option,
        shard="",
    shell:
        "tokenprune posthoc-index --model {input.model} --data {input.data} --own-index {output.own}"
        " {params.selections} {params.idf}"
        " --batch-size {params.batch_size} --chunk-documents {params.chunk_documents} {params.shard}"
        " --precision {params.precision} --threads {threads} > {log} 2>&1"


use rule posthoc_index as posthoc_index_shard with:
    output:
        own=temp(directory(own_index_dir(INDEX_SHARD_DIR))),
        selections=[
            temp(directory(folder)) for folder in posthoc_index_dirs(INDEX_SHARD_DIR)
        ],
    log:
        "logs/posthoc_index/{dataset}/seed{seed}/{corpus}.shard{shard}.log",
    benchmark:
        "results/benchmarks/posthoc_index/{dataset}/seed{seed}/{corpus}.shard{shard}.tsv"
    wildcard_constraints:
        corpus=posthoc_corpora_pattern(sharded=True),
    params:
        shard=shard_option,


rule merge_index:
    """Join a corpus's shard indexes into one sharded index (hard links: no vector data is copied)."""
    input:
        index_shard_dirs,
    output:
        directory(INDEX_DIR),
    log:
        "logs/merge_index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.log",
    wildcard_constraints:
        corpus=corpora_pattern(sharded=True),
    conda:
        RETRIEVAL_ENV
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("merge_index", "mem_mb"),
        runtime=job_resource("merge_index", "runtime"),
    shell:
        "tokenprune merge-index --shard-dirs {input} --output {output} > {log} 2>&1"


rule ann_index:
    """faiss IVF-PQ over every vector of a pruned index, trained on a sample and filled shard by shard."""
    input:
        INDEX_DIR,
    output:
        ANN_INDEX,
    log:
        "logs/ann_index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.log",
    benchmark:
        "results/benchmarks/ann_index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.tsv"
    conda:
        RETRIEVAL_ENV
    threads: THREADS_PER_COMPUTE_JOB
    resources:
        gpu=GPU_PER_TORCH_JOB,
        mem_mb=job_resource("ann_index", "mem_mb"),
        runtime=job_resource("ann_index", "runtime"),
    params:
        nlist=config["retrieval"]["ann"]["nlist"],
        m=config["retrieval"]["ann"]["m"],
        nbits=config["retrieval"]["ann"]["nbits"],
    shell:
        "tokenprune ann-index --index {input} --nlist {params.nlist} --m {params.m}"
        " --nbits {params.nbits} --threads {threads} --output {output} > {log} 2>&1"


rule compress_index:
    """Store an index as residual codes: each vector's coarse centroid and a few bits per dimension."""
    input:
        INDEX_DIR,
    output:
        directory(COMPRESSED_INDEX_DIR),
    log:
        "logs/compress_index/{dataset}/{strategy}/k{k}/seed{seed}/r{bits}/{corpus}.log",
    benchmark:
        "results/benchmarks/compress_index/{dataset}/{strategy}/k{k}/seed{seed}/r{bits}/{corpus}.tsv"
    conda:
        RETRIEVAL_ENV
    threads: THREADS_PER_COMPUTE_JOB
    resources:
        gpu=0,
        mem_mb=job_resource("compress_index", "mem_mb"),
        runtime=job_resource("compress_index", "runtime"),
    params:
        centroids=COMPRESSION["centroids"],
        sample_vectors=COMPRESSION["sample_vectors"],
    shell:
        "tokenprune compress-index --index {input} --bits {wildcards.bits} --centroids {params.centroids}"
        " --sample-vectors {params.sample_vectors} --threads {threads} --output {output} > {log} 2>&1"
