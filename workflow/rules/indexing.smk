INDEXING = config["indexing"]


def index_command(shard_arguments=""):
    """The shell command of one index job; sharded jobs add --shard/--shards."""
    return (
        "tokenprune index --model {input.model} --data {input.data} --batch-size {params.batch_size}"
        " --chunk-documents {params.chunk_documents}" + shard_arguments + " --threads {threads}"
        " --output {output} > {log} 2>&1"
    )


if INDEXING["shards"] == 1:

    rule index:
        """Encode a corpus with the model's selection layer active: fp16 vectors, offsets, index_stats.json."""
        input:
            model=MODEL_DIR,
            data=DATA_DIR.replace("{dataset}", "{corpus}"),
        output:
            directory(INDEX_DIR),
        params:
            batch_size=INDEXING["batch_size"],
            chunk_documents=INDEXING["chunk_documents"],
        log:
            "logs/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.log",
        benchmark:
            "benchmarks/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.tsv"
        threads: 2
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=720,
        conda:
            "../../envs/retrieval.yaml"
        shell:
            index_command()

else:

    rule index_shard:
        """Encode one shard of a corpus (a contiguous range of whole chunks); temporary until merged."""
        input:
            model=MODEL_DIR,
            data=DATA_DIR.replace("{dataset}", "{corpus}"),
        output:
            temp(directory(INDEX_SHARD_DIR)),
        params:
            batch_size=INDEXING["batch_size"],
            chunk_documents=INDEXING["chunk_documents"],
            shards=INDEXING["shards"],
        log:
            "logs/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.shard{shard}.log",
        benchmark:
            "benchmarks/index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.shard{shard}.tsv"
        threads: 2
        resources:
            gpu=1,
            mem_mb=16000,
            runtime=720,
        conda:
            "../../envs/retrieval.yaml"
        shell:
            index_command(" --shard {wildcards.shard} --shards {params.shards}")

    rule merge_index:
        """Join a corpus's shard indexes into one sharded index (hard links: no vector data is copied)."""
        input:
            expand(INDEX_SHARD_DIR, shard=range(INDEXING["shards"]), allow_missing=True),
        output:
            directory(INDEX_DIR),
        log:
            "logs/merge_index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.log",
        threads: 1
        resources:
            gpu=0,
            mem_mb=4000,
            runtime=60,
        conda:
            "../../envs/retrieval.yaml"
        shell:
            "tokenprune merge-index --shard-dirs {input} --output {output} > {log} 2>&1"


rule ann_index:
    """faiss IVF-PQ over every vector of a pruned index, trained on a sample and filled shard by shard."""
    input:
        INDEX_DIR,
    output:
        ANN_INDEX,
    params:
        nlist=config["retrieval"]["ann"]["nlist"],
        m=config["retrieval"]["ann"]["m"],
        nbits=config["retrieval"]["ann"]["nbits"],
    log:
        "logs/ann_index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.log",
    benchmark:
        "benchmarks/ann_index/{dataset}/{strategy}/k{k}/seed{seed}/{corpus}.tsv"
    threads: 2
    resources:
        gpu=0,
        mem_mb=16000,
        runtime=240,
    conda:
        "../../envs/retrieval.yaml"
    shell:
        "tokenprune ann-index --index {input} --nlist {params.nlist} --m {params.m}"
        " --nbits {params.nbits} --output {output} > {log} 2>&1"
