rule index:
    """Encode a corpus with the model's selection layer active: fp16 vectors, offsets, index_stats.json."""
    input:
        model=MODEL_DIR,
        data=DATA_DIR.replace("{dataset}", "{corpus}"),
    output:
        directory(INDEX_DIR),
    params:
        batch_size=config["indexing"]["batch_size"],
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
        "tokenprune index --model {input.model} --data {input.data} --batch-size {params.batch_size}"
        " --threads {threads} --output {output} > {log} 2>&1"


rule ann_index:
    """faiss IVF-PQ over every vector of a pruned index, trained on a sample (built once per index)."""
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
        mem_mb=16000,
        runtime=240,
    conda:
        "../../envs/retrieval.yaml"
    shell:
        "tokenprune ann-index --index {input} --nlist {params.nlist} --m {params.m}"
        " --nbits {params.nbits} --output {output} > {log} 2>&1"
