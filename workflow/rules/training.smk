rule compute_idf:
    """IDF of every vocabulary entry over the training corpus, with the backbone's tokenizer."""
    input:
        DATA_DIR,
    output:
        IDF,
    log:
        "logs/compute_idf/{dataset}.log",
    benchmark:
        "results/benchmarks/compute_idf/{dataset}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("compute_idf", "mem_mb"),
        runtime=job_resource("compute_idf", "runtime"),
    params:
        backbone=MODEL["backbone"],
    shell:
        "tokenprune compute-idf --data {input} --backbone {params.backbone} --output {output} > {log} 2>&1"


rule mine_negatives:
    """(query, positive, BM25 hard negative) triples from a split's qrels."""
    input:
        DATA_DIR,
    output:
        TRIPLES,
    log:
        "logs/mine_negatives/{dataset}/{split}.log",
    benchmark:
        "results/benchmarks/mine_negatives/{dataset}/{split}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 1
    resources:
        gpu=0,
        mem_mb=job_resource("mine_negatives", "mem_mb"),
        runtime=job_resource("mine_negatives", "runtime"),
    params:
        negatives=config["training"]["negatives_per_query"],
        skip=config["training"]["negatives_skip"],
        docpairs=(
            f"--docpairs-irds-id {config['training']['docpairs_irds_id']}"
            if config["training"]["docpairs_irds_id"]
            else ""
        ),
        irds_home=config["irds_home"],
    shell:
        "tokenprune mine-negatives --data {input} --split {wildcards.split}"
        " --negatives-per-query {params.negatives} --skip {params.skip} {params.docpairs}"
        " --irds-home {params.irds_home} --output {output} > {log} 2>&1"


if TRAIN["models_dir"] is None:

    rule train:
        """ColBERT with the selection layer in the loop; the baseline ('none', k=all) once per dataset."""
        input:
            check_variant,
            data=DATA_DIR,
            triples=TRIPLES.replace("{split}", TRAIN["split"]),
            idf=idf_input,
        output:
            directory(MODEL_DIR),
        log:
            "logs/train/{dataset}/{strategy}/k{k}/seed{seed}.log",
        benchmark:
            "results/benchmarks/train/{dataset}/{strategy}/k{k}/seed{seed}.tsv"
        wildcard_constraints:
            strategy=TRAINED_STRATEGY,
        conda:
            "../../envs/train.yaml"
        threads: THREADS_PER_COMPUTE_JOB
        resources:
            gpu=GPU_PER_TORCH_JOB,
            mem_mb=job_resource("train", "mem_mb"),
            runtime=job_resource("train", "runtime"),
        params:
            idf=lambda wildcards, input: f"--idf {input.idf}" if input.idf else "",
            model=quoted_json(MODEL),
            training=quoted_json(config["training"]),
            checkpoints=CHECKPOINT_DIR,
            split=TRAIN["split"],
        shell:
            "tokenprune train --data {input.data} --split {params.split} --triples {input.triples} {params.idf}"
            " --strategy {wildcards.strategy} --k {wildcards.k} --seed {wildcards.seed}"
            " --model-config {params.model} --training-config {params.training}"
            " --checkpoint-dir {params.checkpoints} --threads {threads} --output {output} > {log} 2>&1"

    ruleorder: untrained_backbone > train

    rule initial_model:
        """The model as training initialises it (PCA projection from the training passages), before any step."""
        input:
            data=DATA_DIR,
            triples=TRIPLES.replace("{split}", TRAIN["split"]),
        output:
            directory(SYSTEM_MODEL_DIR.replace("{system}", STEP0_ID)),
        log:
            "logs/initial_model/{dataset}/seed{seed}.log",
        conda:
            "../../envs/train.yaml"
        threads: THREADS_PER_COMPUTE_JOB
        resources:
            gpu=0,
            mem_mb=job_resource("initial_model", "mem_mb"),
            runtime=job_resource("initial_model", "runtime"),
        params:
            model=quoted_json(MODEL),
            split=TRAIN["split"],
        shell:
            "tokenprune initial-model --data {input.data} --split {params.split} --triples {input.triples}"
            " --seed {wildcards.seed} --model-config {params.model} --threads {threads} --output {output} > {log} 2>&1"

else:

    rule import_model:
        """Copy a model trained elsewhere (train.models_dir) instead of training it: zero-shot studies."""
        input:
            check_variant,
        output:
            directory(MODEL_DIR),
        log:
            "logs/import_model/{dataset}/{strategy}/k{k}/seed{seed}.log",
        wildcard_constraints:
            strategy=TRAINED_STRATEGY,
        conda:
            "../../envs/train.yaml"
        threads: 1
        resources:
            gpu=0,
            mem_mb=job_resource("import_model", "mem_mb"),
            runtime=job_resource("import_model", "runtime"),
        params:
            source=imported_model_source,
        shell:
            "tokenprune import-model --source {params.source} --strategy {wildcards.strategy} --k {wildcards.k}"
            " --output {output} > {log} 2>&1"

    ruleorder: untrained_backbone > import_model
