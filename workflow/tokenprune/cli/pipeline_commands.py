"""Sub-commands for the pipeline stages: data, training, indexing, retrieval, evaluation, reference systems."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenprune.cli.registry import Command
from tokenprune.errors import TokenpruneError
from tokenprune.io import json_object
from tokenprune.strategies import STRATEGIES

if TYPE_CHECKING:
    import torch

__all__ = ["COMMANDS"]

log = logging.getLogger("tokenprune")


def _dataset_entry(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dataset's config entry and the whole config, from ``--spec`` JSON or ``--config`` + ``--dataset``."""
    if args.spec:
        return json_object(args.spec, "--spec"), {}
    from tokenprune.config import load_config

    config = load_config(args.config)
    if args.dataset not in config["datasets"]:
        raise TokenpruneError(
            f"dataset {args.dataset!r} is not in {args.config}; choose from {sorted(config['datasets'])}"
        )
    return config["datasets"][args.dataset], config


def _prepare_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="Dataset name (a key of 'datasets' in the config).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config", default="config.yaml", help="Config file to read the dataset from (default: config.yaml)."
    )
    source.add_argument("--spec", help="The dataset's config entry as JSON, instead of reading --config.")
    parser.add_argument("--output", required=True, type=Path, help="Folder to write (replaced atomically).")
    parser.add_argument(
        "--backbone", help="Backbone whose tokenizer measures lengths (default: the config's model.backbone)."
    )
    parser.add_argument("--data-dir", help="Offline data folder (default: $TOKENPRUNE_DATA_DIR, then the config's).")
    parser.add_argument("--irds-home", type=Path, help="IR_DATASETS_HOME (default: the config's irds_home).")
    parser.add_argument("--strict", action="store_true", help="Fail when qrels name unknown queries or documents.")
    parser.add_argument("--passage-max-length", type=int, help="Report the share of passages longer than this.")
    parser.add_argument("--query-max-length", type=int, help="Report the share of queries longer than this.")


def _prepare_data(args: argparse.Namespace) -> None:
    entry, config = _dataset_entry(args)
    if args.spec and not (args.irds_home and args.backbone):
        raise TokenpruneError("--spec needs --irds-home and --backbone (with --config they come from the config)")
    irds_home = (args.irds_home or Path(config["irds_home"])).resolve()
    irds_home.mkdir(parents=True, exist_ok=True)
    # ir_datasets fixes its cache location when first imported.
    os.environ["IR_DATASETS_HOME"] = str(irds_home)

    from tokenprune.backbone import load_tokenizer
    from tokenprune.data import DatasetSpec, prepare_dataset
    from tokenprune.data.sources import offline_data_dir, open_collection

    model = config.get("model", {})
    spec = DatasetSpec.from_config(args.dataset, entry)
    data_dir = offline_data_dir(args.data_dir or config.get("offline_data_dir"))
    source = open_collection(spec, data_dir, irds_home)
    log.info("reading %s", source.description)
    stats = prepare_dataset(
        spec,
        source,
        args.output,
        load_tokenizer(args.backbone or model["backbone"]),
        strict=args.strict or bool(config.get("strict_qrels")),
        passage_max_length=args.passage_max_length or model.get("passage_max_length"),
        query_max_length=args.query_max_length or entry.get("query_max_length") or model.get("query_max_length"),
    )
    splits = ", ".join(
        f"{name}: {s['queries']} queries / {s['judgments']} judgments" for name, s in stats["splits"].items()
    )
    log.info("%s: %d documents; %s", spec.name, stats["documents"], splits)


def _compute_idf_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="Prepared dataset folder (output of prepare-data).")
    parser.add_argument(
        "--backbone", required=True, help="Backbone whose tokenizer defines the vocabulary (model.backbone)."
    )
    parser.add_argument("--output", required=True, type=Path, help="IDF table to write (safetensors).")


def _compute_idf(args: argparse.Namespace) -> None:
    from tokenprune.backbone import load_tokenizer
    from tokenprune.data import PreparedDataset
    from tokenprune.idf import compute_idf

    idf = compute_idf(PreparedDataset(args.data), load_tokenizer(args.backbone), args.output)
    log.info("IDF of %d vocabulary entries written to %s", idf.numel(), args.output)


def _mine_negatives_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="Prepared dataset folder.")
    parser.add_argument("--split", required=True, help="Split whose queries and qrels to use.")
    parser.add_argument("--negatives-per-query", type=int, required=True, help="Hard negatives kept per query.")
    parser.add_argument("--skip", type=int, required=True, help="Top BM25 ranks to skip before taking negatives.")
    parser.add_argument("--docpairs-irds-id", help="Use this ir_datasets docpairs set instead of mining.")
    parser.add_argument("--irds-home", type=Path, required=True, help="IR_DATASETS_HOME (the config's irds_home).")
    parser.add_argument("--output", required=True, type=Path, help="Triples file to write (parquet).")


def _mine_negatives(args: argparse.Namespace) -> None:
    if args.negatives_per_query <= 0 or args.skip < 0:
        raise TokenpruneError(
            f"--negatives-per-query must be positive and --skip >= 0, got {args.negatives_per_query} and {args.skip}"
        )
    if args.docpairs_irds_id:
        os.environ["IR_DATASETS_HOME"] = str(args.irds_home.resolve())
        from tokenprune.negatives import docpairs_to_triples

        log.info(
            "wrote %d triples from %s", docpairs_to_triples(args.docpairs_irds_id, args.output), args.docpairs_irds_id
        )
        return
    from tokenprune.data import PreparedDataset
    from tokenprune.negatives import mine_bm25_negatives

    mine_bm25_negatives(PreparedDataset(args.data), args.split, args.output, args.negatives_per_query, args.skip)


def _audit_negatives_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="Prepared dataset folder.")
    parser.add_argument("--split", required=True, help="Split whose queries and qrels to audit.")
    parser.add_argument(
        "--model", required=True, help="Model folder that scores the passages (e.g. the untrained backbone)."
    )
    parser.add_argument("--index", required=True, help="That model's unpruned index of the dataset's corpus.")
    parser.add_argument("--depth", type=int, default=50, help="Unjudged BM25 ranks to audit per query.")
    _add_compute_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="CSV to write (one row per rank).")


def _audit_negatives(args: argparse.Namespace) -> None:
    from tokenprune.data import PreparedDataset
    from tokenprune.index import PrunedIndex
    from tokenprune.io import atomic_file
    from tokenprune.model import ColBERT
    from tokenprune.negatives import audit_negatives

    if args.depth <= 0:
        raise TokenpruneError(f"--depth must be positive, got {args.depth}")
    model = ColBERT.load(args.model, device=_compute_device(args))
    table = audit_negatives(PreparedDataset(args.data), args.split, model, PrunedIndex(args.index), args.depth)
    with atomic_file(args.output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    for first, last in ((1, 5), (6, 10), (11, 20), (21, 30), (31, args.depth)):
        rows = table[(table["rank"] >= first) & (table["rank"] <= last)]
        if len(rows):
            log.info("unjudged ranks %d-%d: %.1f%% suspects", first, last, 100 * rows["suspect_share"].mean())


def _match_budget_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", required=True, help="An unpruned index of the collection (e.g. the untrained backbone's)."
    )
    parser.add_argument(
        "--percent",
        required=True,
        type=float,
        nargs="+",
        help="Shares of the tokens to keep, e.g. 73 15 (the paper's).",
    )
    parser.add_argument("--output", type=Path, help="JSON to write: per share, its k and the share that k keeps.")


def _match_budget(args: argparse.Namespace) -> None:
    import numpy as np

    from tokenprune.index import PrunedIndex, k_for_percent, percent_kept_at
    from tokenprune.io import write_json

    index = PrunedIndex(args.index)
    if index.stats.get("k") not in (None, "all"):
        raise TokenpruneError(
            f"index {str(args.index)!r} keeps k={index.stats['k']} vectors a passage; give an unpruned one (k all)"
        )
    candidates = np.diff(index.offsets)
    budgets = []
    for percent in args.percent:
        k = k_for_percent(candidates, percent)
        budgets.append({"percent": percent, "k": k, "percent_kept": round(percent_kept_at(candidates, k), 3)})
        print(f"{percent:g}% of the tokens: k = {k} (keeps {budgets[-1]['percent_kept']:.1f}%)")
    if args.output:
        write_json(args.output, {"index": str(args.index), "passages": int(len(candidates)), "budgets": budgets})


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="Prepared dataset folder of the training collection.")
    parser.add_argument("--split", required=True, help="Split the triples' queries come from (train.split).")
    parser.add_argument("--triples", required=True, help="Triples file from mine-negatives.")
    parser.add_argument("--idf", help="IDF table from compute-idf (strategy idf only).")
    parser.add_argument(
        "--strategy", required=True, help=f"The selection in the training loop: {', '.join(STRATEGIES)}."
    )
    parser.add_argument("--k", required=True, help="Vectors kept per passage; 'all' for the baseline 'none'.")
    parser.add_argument("--seed", type=int, required=True, help="Seed of sampling, dropout and initialisation.")
    parser.add_argument("--model-config", required=True, help="The config's 'model' section as JSON.")
    parser.add_argument("--training-config", required=True, help="The config's 'training' section as JSON.")
    parser.add_argument("--checkpoint-dir", required=True, type=Path, help="Where checkpoints and the loss log live.")
    _add_compute_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="Model folder to write.")


def _add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="auto (a free GPU when present, else the CPU), cpu or cuda[:N]."
    )
    parser.add_argument(
        "--threads",
        type=int,
        required=True,
        help="CPU threads for torch, and for faiss where the stage uses it (the rules: 1 per CPU job).",
    )


def _compute_device(args: argparse.Namespace) -> torch.device:
    """The device of --device, with torch's CPU threads capped by --threads."""
    from tokenprune.devices import resolve_device

    return resolve_device(args.device, args.threads)


def _train(args: argparse.Namespace) -> None:
    import torch

    from tokenprune.data import PreparedDataset
    from tokenprune.idf import load_idf
    from tokenprune.model import ColBERT, ColBERTConfig, parse_k
    from tokenprune.training import TrainingSettings, TripleSampler, save_trained, train

    device = _compute_device(args)
    settings = TrainingSettings.from_config(json_object(args.training_config, "--training-config"), seed=args.seed)
    model_settings = json_object(args.model_config, "--model-config")
    config = ColBERTConfig.from_dict({**model_settings, "strategy": args.strategy, "k": parse_k(args.k)})
    if config.strategy == "idf" and not args.idf:
        raise TokenpruneError("strategy 'idf' needs --idf (the output of 'tokenprune compute-idf')")
    torch.manual_seed(args.seed)
    model = ColBERT.from_backbone(config, idf=load_idf(args.idf) if args.idf else None).to(device)
    sampler = TripleSampler(args.triples, PreparedDataset(args.data), args.split, settings.batch_size, settings.seed)
    log.info(
        "training %s (k=%s) for %d steps on %d triples, device %s, precision %s",
        config.strategy,
        config.k,
        settings.steps,
        len(sampler),
        model.device,
        settings.precision,
    )
    summary = train(model, sampler, settings, args.checkpoint_dir)
    save_trained(model, summary, settings, args.output)
    log.info(
        "loss %s -> %s in %.0f s; model written to %s",
        summary["first_loss"],
        summary["final_loss"],
        summary["seconds"],
        args.output,
    )


def _initial_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="Prepared dataset folder of the training collection.")
    parser.add_argument("--split", required=True, help="Split the triples' queries come from.")
    parser.add_argument(
        "--triples", required=True, help="Triples file from mine-negatives (its passages initialise the projection)."
    )
    parser.add_argument("--seed", type=int, required=True, help="The training seed whose initialisation to save.")
    parser.add_argument("--model-config", required=True, help="The config's 'model' section as JSON.")
    parser.add_argument("--threads", type=int, required=True, help="CPU threads for torch (the rules: 1 per CPU job).")
    parser.add_argument("--output", required=True, type=Path, help="Model folder to write.")


def _initial_model(args: argparse.Namespace) -> None:
    import torch

    from tokenprune.data import PreparedDataset
    from tokenprune.devices import cap_cpu_threads
    from tokenprune.model import ColBERT, ColBERTConfig
    from tokenprune.training import TripleSampler, initialise_model

    config = ColBERTConfig.from_dict(
        {**json_object(args.model_config, "--model-config"), "strategy": "none", "k": None}
    )
    # Always the CPU, as training's initialisation is saved from CPU tensors; only the thread count is chosen.
    cap_cpu_threads(args.threads)
    torch.manual_seed(args.seed)
    model = ColBERT.from_backbone(config)
    recorded = initialise_model(
        model, TripleSampler(args.triples, PreparedDataset(args.data), args.split, 1, args.seed)
    )
    model.save(
        args.output, extra_files={"initialisation.json": json.dumps({"seed": args.seed, **recorded}, indent=2) + "\n"}
    )
    log.info("step-0 model (seed %d) written to %s", args.seed, args.output)


def _import_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, type=Path, help="Model folder to import.")
    parser.add_argument("--strategy", required=True, help="The strategy the folder must hold.")
    parser.add_argument("--k", required=True, help="The k it must hold ('all' for the baseline).")
    parser.add_argument("--output", required=True, type=Path, help="Model folder to write.")


def _import_model(args: argparse.Namespace) -> None:
    from tokenprune.model import parse_k
    from tokenprune.training import import_trained

    model = import_trained(args.source, args.output, strategy=args.strategy, k=parse_k(args.k))
    log.info(
        "imported %s (k=%s, backbone %s) from %s",
        model.config.strategy,
        model.config.k,
        model.config.backbone,
        args.source,
    )


def _index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Model folder (from train or untrained-model).")
    parser.add_argument("--data", required=True, help="Prepared dataset folder of the corpus to index.")
    parser.add_argument("--batch-size", type=int, required=True, help="Passages per forward pass.")
    parser.add_argument("--chunk-documents", type=int, required=True, help="Documents read and length-sorted together.")
    parser.add_argument("--shards", type=int, default=1, help="Split the corpus into this many shards ...")
    parser.add_argument(
        "--shard", type=int, default=0, help="... and encode only this one (0-based); merge with merge-index."
    )
    parser.add_argument(
        "--precision",
        required=True,
        help="auto (fp16 on GPU, bf16 on CPUs with native bf16, else fp32), fp32, bf16 or fp16.",
    )
    parser.add_argument(
        "--idf", help="IDF table for the idf strategy at indexing, replacing the model's own (training) table."
    )
    _add_compute_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="Index folder to write.")


def _index_job(args: argparse.Namespace) -> tuple[Any, Any, tuple[int, int], dict[str, Any]]:
    """The model, dataset, document range and encoding options of an index command (arguments checked)."""
    from tokenprune.data import PreparedDataset
    from tokenprune.index import shard_ranges
    from tokenprune.model import ColBERT

    for option, value in (
        ("--batch-size", args.batch_size),
        ("--chunk-documents", args.chunk_documents),
        ("--shards", args.shards),
    ):
        if value <= 0:
            raise TokenpruneError(f"{option} must be positive, got {value}")
    if not 0 <= args.shard < args.shards:
        raise TokenpruneError(f"--shard {args.shard} is not one of the {args.shards} shards (0 to {args.shards - 1})")
    dataset = PreparedDataset(args.data)
    document_range = shard_ranges(dataset.documents, args.shards, args.chunk_documents)[args.shard]
    model = ColBERT.load(args.model, device=_compute_device(args))
    options = {
        "batch_size": args.batch_size,
        "chunk_documents": args.chunk_documents,
        "document_range": document_range,
        "precision": args.precision,
    }
    return model, dataset, document_range, options


def _log_index(document_range: tuple[int, int], stats: dict[str, Any]) -> None:
    log.info(
        "%s k=%s (%s), documents [%d, %d): %d vectors (%.1f%% of the unpruned tokens), %.1f MiB, encoded in %s",
        stats["strategy"],
        stats["k"],
        stats["selection"],
        *document_range,
        stats["vectors"],
        stats["percent_tokens_kept"],
        stats["index_mib"],
        stats["encoding_precision"],
    )


def _index(args: argparse.Namespace) -> None:
    from tokenprune.idf import load_idf
    from tokenprune.index import build_index

    model, dataset, document_range, options = _index_job(args)
    if args.idf:
        model.use_idf(load_idf(args.idf))
    _log_index(document_range, build_index(model, dataset, args.output, **options))


def _posthoc_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Model folder of an unpruned model (strategy none).")
    parser.add_argument("--data", required=True, help="Prepared dataset folder of the corpus to index.")
    parser.add_argument(
        "--selection",
        required=True,
        nargs=3,
        action="append",
        metavar=("STRATEGY", "K", "OUTPUT"),
        help="A selection applied at indexing and the index folder it writes; repeat for each.",
    )
    parser.add_argument("--idf", help="IDF table (needed when a selection is idf).")
    parser.add_argument(
        "--own-index", type=Path, help="Also write the model's own, unpruned index here, from the same encoding pass."
    )
    parser.add_argument("--batch-size", type=int, required=True, help="Passages per forward pass.")
    parser.add_argument("--chunk-documents", type=int, required=True, help="Documents read and length-sorted together.")
    parser.add_argument("--shards", type=int, default=1, help="Split the corpus into this many shards ...")
    parser.add_argument("--shard", type=int, default=0, help="... and encode only this one (0-based).")
    parser.add_argument("--precision", required=True, help="auto, fp32, bf16 or fp16.")
    _add_compute_arguments(parser)


def _posthoc_index(args: argparse.Namespace) -> None:
    from tokenprune.idf import load_idf
    from tokenprune.index import build_posthoc_indexes
    from tokenprune.model import parse_k
    from tokenprune.selection import TokenSelector, make_selector

    model, dataset, document_range, options = _index_job(args)
    if model.config.strategy != "none":
        raise TokenpruneError(
            f"--model {args.model!r} was trained with strategy {model.config.strategy!r}; "
            "post-hoc selections prune an unpruned model (strategy none)"
        )
    idf = load_idf(args.idf) if args.idf else None
    selections: dict[str | Path, TokenSelector] = {
        Path(output): make_selector(strategy, parse_k(k), idf=idf, unused_ids=model.unused_ids)
        for strategy, k, output in args.selection
    }
    for stats in build_posthoc_indexes(model, dataset, selections, own_index=args.own_index, **options):
        _log_index(document_range, stats)


def _merge_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard-dirs", required=True, nargs="+", type=Path, help="Shard index folders, in shard order."
    )
    parser.add_argument("--output", required=True, type=Path, help="Index folder to write.")


def _merge_index(args: argparse.Namespace) -> None:
    from tokenprune.index import merge_index_shards

    stats = merge_index_shards(args.shard_dirs, args.output)
    log.info(
        "%d shards: %d documents, %d vectors (%.1f%% of the unpruned tokens), %.1f MiB",
        stats["shards"],
        stats["documents"],
        stats["vectors"],
        stats["percent_tokens_kept"],
        stats["index_mib"],
    )


def _ann_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="Pruned index folder.")
    parser.add_argument("--nlist", type=int, required=True, help="Inverted lists (capped at vectors / 39).")
    parser.add_argument("--m", type=int, required=True, help="PQ sub-quantisers (must divide dim).")
    parser.add_argument("--nbits", type=int, required=True, help="Bits per PQ code.")
    parser.add_argument("--flat", action="store_true", help="IVF-Flat (exact codes) instead of IVF-PQ.")
    _add_compute_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="faiss index file to write.")


def _ann_index(args: argparse.Namespace) -> None:
    from tokenprune.devices import cap_cpu_threads
    from tokenprune.faiss_support import choose_faiss_placement
    from tokenprune.index import PrunedIndex
    from tokenprune.search import build_ann_index, save_ann_index

    device = _compute_device(args)
    cap_cpu_threads(args.threads, faiss=True)
    placement = choose_faiss_placement(device)
    ann = build_ann_index(
        PrunedIndex(args.index), nlist=args.nlist, m=args.m, nbits=args.nbits, flat=args.flat, placement=placement
    )
    save_ann_index(ann, args.output)
    log.info("ANN index with nlist=%d written to %s", ann.nlist, args.output)


def _compress_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", required=True, help="Float16 index folder to compress.")
    parser.add_argument("--bits", type=int, required=True, help="Bits per dimension of the residual codes (1-8).")
    parser.add_argument(
        "--centroids",
        required=True,
        help="Coarse centroids (capped at the vectors), or 'plaid': 2**floor(log2(16 sqrt(vectors))), PLAID's rule.",
    )
    parser.add_argument("--sample-vectors", type=int, required=True, help="Vectors sampled to train the codec.")
    parser.add_argument("--threads", type=int, required=True, help="CPU threads for faiss (the rules: 1 per CPU job).")
    parser.add_argument("--output", required=True, type=Path, help="Compressed index folder to write.")


def _compress_index(args: argparse.Namespace) -> None:
    from tokenprune.compression import compress_index
    from tokenprune.devices import cap_cpu_threads

    cap_cpu_threads(args.threads, faiss=True)
    compress_index(
        args.index, args.output, bits=args.bits, centroids=args.centroids, sample_vectors=args.sample_vectors
    )


def _retrieve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Model folder (encodes the queries).")
    parser.add_argument("--index", required=True, help="Pruned index folder.")
    parser.add_argument("--data", required=True, help="Prepared dataset folder (queries).")
    parser.add_argument("--split", required=True, help="Split whose queries to run.")
    parser.add_argument("--mode", choices=["exact", "ann"], required=True)
    parser.add_argument("--ann-index", help="faiss index file (mode ann).")
    parser.add_argument("--nprobe", type=int, help="Inverted lists probed per query token (mode ann).")
    parser.add_argument("--candidates-per-token", type=int, help="Nearest vectors per query token (mode ann).")
    parser.add_argument("--depth", type=int, required=True, help="Documents per query in the run.")
    parser.add_argument(
        "--query-max-length",
        type=int,
        required=True,
        help="Query length in word pieces (the dataset's query_max_length, else model.query_max_length).",
    )
    _add_compute_arguments(parser)
    parser.add_argument("--output", required=True, type=Path, help="TREC run file to write.")


def _retrieve(args: argparse.Namespace) -> None:
    import time

    from tokenprune.data import PreparedDataset
    from tokenprune.devices import cap_cpu_threads
    from tokenprune.faiss_support import choose_faiss_placement
    from tokenprune.index import PrunedIndex
    from tokenprune.model import ColBERT
    from tokenprune.search import ann_search, encode_query_set, exact_search, load_ann_index, write_trec_run

    if args.depth <= 0:
        raise TokenpruneError(f"--depth must be positive, got {args.depth}")
    model = ColBERT.load(args.model, device=_compute_device(args)).eval()
    index = PrunedIndex(args.index)
    if args.mode == "ann" or index.is_compressed:
        # faiss probes the ANN index and decodes compressed rows on a thread pool of its own.
        cap_cpu_threads(args.threads, faiss=True)
    queries = PreparedDataset(args.data).queries(args.split)
    query_ids = list(queries)
    began = time.perf_counter()
    query_vectors, query_mask = encode_query_set(
        model, [queries[q] for q in query_ids], max_length=args.query_max_length
    )
    if args.mode == "exact":
        ranking = exact_search(query_vectors, query_mask, index, args.depth)
        backend = "torch-" + str(query_vectors.device.type)
    else:
        missing = [
            option
            for option, value in (
                ("--ann-index", args.ann_index),
                ("--nprobe", args.nprobe),
                ("--candidates-per-token", args.candidates_per_token),
            )
            if value is None
        ]
        if missing:
            raise TokenpruneError(f"--mode ann needs {', '.join(missing)} (the index from 'tokenprune ann-index')")
        placement = choose_faiss_placement(query_vectors.device)
        ranking = ann_search(
            query_vectors,
            query_mask,
            index,
            load_ann_index(args.ann_index),
            args.depth,
            candidates_per_token=args.candidates_per_token,
            nprobe=args.nprobe,
            placement=placement,
        )
        backend = f"{placement.backend} ({placement.reason})"
    elapsed = time.perf_counter() - began
    write_trec_run(
        args.output, query_ids, ranking, index.doc_ids, tag=f"tokenprune-{model.config.strategy}-{args.mode}"
    )
    log.info(
        "%d queries in %.2f s (%.1f queries/s) with %s", len(query_ids), elapsed, len(query_ids) / elapsed, backend
    )


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="TREC run file.")
    parser.add_argument("--data", required=True, help="Prepared dataset folder (qrels).")
    parser.add_argument("--split", required=True, help="Split whose qrels to use.")
    parser.add_argument("--metrics", nargs="+", required=True, help="ir_measures names, e.g. nDCG@10 RR@10.")
    parser.add_argument("--output", required=True, type=Path, help="Aggregate JSON to write.")
    parser.add_argument("--per-query", required=True, type=Path, help="Per-query TSV to write.")


def _evaluate(args: argparse.Namespace) -> None:
    from tokenprune.data import PreparedDataset
    from tokenprune.evaluation import evaluate_run, parse_measures

    values = evaluate_run(
        args.run,
        PreparedDataset(args.data).qrels_path(args.split),
        parse_measures(args.metrics),
        args.output,
        args.per_query,
    )
    log.info("%s", ", ".join(f"{name} {value:.4f}" for name, value in values.items()))


def _bm25_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="Prepared dataset folder.")
    parser.add_argument("--split", required=True, help="Split whose queries to run.")
    parser.add_argument("--depth", type=int, required=True, help="Documents per query.")
    parser.add_argument("--output", required=True, type=Path, help="TREC run file to write.")


def _bm25(args: argparse.Namespace) -> None:
    from tokenprune.data import PreparedDataset
    from tokenprune.reference_systems import bm25_run

    bm25_run(PreparedDataset(args.data), args.split, args.output, args.depth)


def _untrained_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, help="Backbone name, Hugging Face id or path (model.backbone).")
    parser.add_argument("--query-max-length", type=int, required=True, help="Query length in word pieces.")
    parser.add_argument("--passage-max-length", type=int, required=True, help="Passage length in word pieces.")
    parser.add_argument(
        "--candidate-tokens", required=True, help="content, no_punctuation or all (model.candidate_tokens)."
    )
    parser.add_argument("--output", required=True, type=Path, help="Model folder to write.")


def _untrained(args: argparse.Namespace) -> None:
    from tokenprune.reference_systems import untrained_model

    untrained_model(
        args.backbone,
        args.output,
        query_max_length=args.query_max_length,
        passage_max_length=args.passage_max_length,
        candidate_tokens=args.candidate_tokens,
    )


def _export_pylate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="tokenprune model folder (from train, initial-model or untrained-model)."
    )
    parser.add_argument("--output", required=True, type=Path, help="PyLate ColBERT folder to write.")


def _export_pylate(args: argparse.Namespace) -> None:
    from tokenprune.model import ColBERT
    from tokenprune.pylate_format import write_pylate_folder

    settings = write_pylate_folder(ColBERT.load(args.model), args.output)
    log.info(
        "wrote %s for PyLate: %s",
        args.output,
        json.dumps({key: value for key, value in settings.items() if key != "skiplist_words"}),
    )


#: The sub-commands of this module, in the order ``tokenprune --help`` lists them.
COMMANDS = [
    Command(
        "prepare-data",
        "Normalise a collection (BEIR folder or ir_datasets id) and write its statistics.",
        _prepare_data_arguments,
        _prepare_data,
    ),
    Command(
        "compute-idf",
        "IDF of every vocabulary entry over a prepared corpus (for the idf strategy).",
        _compute_idf_arguments,
        _compute_idf,
    ),
    Command(
        "mine-negatives",
        "Training triples: BM25 hard negatives for a split's judged queries, or ir_datasets docpairs.",
        _mine_negatives_arguments,
        _mine_negatives,
    ),
    Command(
        "audit-negatives",
        "Per BM25 rank of the unjudged passages: how often a model scores them above the judged positive.",
        _audit_negatives_arguments,
        _audit_negatives,
    ),
    Command(
        "match-budget",
        "The k that keeps a given share of a collection's tokens (from an unpruned index).",
        _match_budget_arguments,
        _match_budget,
    ),
    Command(
        "train",
        "Train ColBERT with a selection strategy in the loop (resumes from --checkpoint-dir).",
        _train_arguments,
        _train,
    ),
    Command(
        "initial-model",
        "The model as training initialises it, before any step (the study's 'step 0' row).",
        _initial_model_arguments,
        _initial_model,
    ),
    Command(
        "import-model",
        "Copy a model trained elsewhere (e.g. a previous run's results/models) into the pipeline.",
        _import_model_arguments,
        _import_model,
    ),
    Command(
        "index",
        "Encode a corpus (or one shard of it) with a model's selection layer into a pruned index.",
        _index_arguments,
        _index,
    ),
    Command(
        "posthoc-index",
        "Prune an unpruned model's vectors at indexing only: several selections from one encoding pass.",
        _posthoc_index_arguments,
        _posthoc_index,
    ),
    Command(
        "merge-index",
        "Join shard indexes (from index --shard) into one sharded index folder, without copying vectors.",
        _merge_index_arguments,
        _merge_index,
    ),
    Command(
        "ann-index",
        "Build a faiss IVF-PQ (or IVF-Flat) index over every vector of a pruned index.",
        _ann_index_arguments,
        _ann_index,
    ),
    Command(
        "compress-index",
        "Store an index as residual codes (coarse centroid + a few bits per dimension), decoded at search.",
        _compress_index_arguments,
        _compress_index,
    ),
    Command(
        "retrieve",
        "Rank a split's queries against a pruned index (exact MaxSim, or ANN + exact re-rank).",
        _retrieve_arguments,
        _retrieve,
    ),
    Command(
        "evaluate",
        "Evaluate a TREC run with ir_measures (aggregate JSON + per-query TSV).",
        _evaluate_arguments,
        _evaluate,
    ),
    Command("bm25", "BM25 reference run (bm25s) for a split's queries.", _bm25_arguments, _bm25),
    Command(
        "untrained-model",
        "Save the backbone, untrained, as a ColBERT model (normalised token vectors, no pruning).",
        _untrained_arguments,
        _untrained,
    ),
    Command(
        "export-pylate",
        "Write a model as a PyLate ColBERT folder (transformer, Dense projection, [Q]/[D] settings).",
        _export_pylate_arguments,
        _export_pylate,
    ),
]
