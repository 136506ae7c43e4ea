"""Benchmarks of the pipeline's hot paths, each against a straightforward reference run in the same process.

    python benchmarks/run.py --model results/models/scifact/first/k50/seed42 \\
        --data resources/data/scifact --split test --output benchmarks/results/cpu.json

Four stages, each timed for tokenprune's own code path and for a plain
reference doing the same work the obvious way, with the results checked equal:

- encoding: ``build_index`` (length-sorted batches, ``inference_mode``, fp16 on
  GPU and bf16 on CPUs with native bf16, pruning on the device) vs a Hugging
  Face-style loop (every passage padded
  to the maximum length, fp32, ``no_grad``, kept vectors copied per passage);
- training: ``contrastive_loss`` steps (dynamic padding, bf16 where native) vs
  the same steps with fixed padding in fp32;
- exact MaxSim: ``exact_search`` (packed query tokens, documents padded per
  chunk, one matrix product and a max) vs scoring document by document;
- ANN: faiss IVF-PQ candidates + exact re-rank (``ann_search``) vs exact
  search, with the recall of the exact top 10 and 100;
- pooling: the Ward clustering of ``pool`` on the model's own passage
  vectors, SciPy per passage (the CPU default) vs the batched tensor loop
  (the accelerator default), with the partitions checked equal.

The JSON output records the hardware, the library versions and the settings.
Timings are wall-clock seconds of the best of ``--repeats`` runs; nothing here
is asserted, the numbers are read by people (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenprune.attention import ParallelDropout, swap_dropout
from tokenprune.config import schema_defaults
from tokenprune.data import PreparedDataset
from tokenprune.devices import resolve_device
from tokenprune.index import PrunedIndex, build_index
from tokenprune.model import ColBERT, maxsim
from tokenprune.pooling import cosine_profiles, ward_clusters
from tokenprune.precision import autocast, resolve_precision
from tokenprune.search import ann_search, build_ann_index, encode_query_set, exact_search
from tokenprune.selection import candidate_mask


def best_time(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` runs (seconds) and the last run's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        began = time.perf_counter()
        result = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - began)
    return best, result


def pad_to(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a tokenised batch to ``width`` columns (what a fixed-length tokenizer call gives)."""
    extra = width - input_ids.shape[1]
    return (
        torch.nn.functional.pad(input_ids, (0, extra), value=pad_id),
        torch.nn.functional.pad(attention_mask, (0, extra), value=0),
    )


@contextlib.contextmanager
def plain_backbone(model: ColBERT) -> Iterator[None]:
    """Hugging Face's own SDPA attention and ``nn.Dropout`` in the backbone, for the references."""
    config = model.backbone.config
    implementation = config._attn_implementation
    swap_dropout(model.backbone, torch.nn.Dropout)
    config._attn_implementation = "sdpa"
    try:
        yield
    finally:
        config._attn_implementation = implementation
        swap_dropout(model.backbone, ParallelDropout)


# ---------------------------------------------------------------- encoding


def reference_encode(model: ColBERT, texts: list[str], batch_size: int) -> list[np.ndarray]:
    """Fixed padding to the maximum length, corpus order, fp32, one host copy per passage."""
    vectors = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            input_ids, attention_mask = model.tokenize_passages(texts[start : start + batch_size])
            input_ids, attention_mask = pad_to(
                input_ids, attention_mask, model.config.passage_max_length, model.tokenizer.pad_token_id
            )
            encoded = model.encode_passage_ids(input_ids, attention_mask)
            for row in range(len(encoded.vectors)):
                vectors.append(encoded.vectors[row][encoded.mask[row]].float().cpu().numpy())
    return vectors


def bench_encoding(
    model: ColBERT, dataset: PreparedDataset, passages: int, batch_size: int, repeats: int, precision: str
) -> dict[str, Any]:
    documents = min(passages, dataset.documents)
    _, texts = next(dataset.corpus_batches(documents))
    tokens = int(sum(model.tokenize_passages(texts[i : i + 256])[1].sum() for i in range(0, documents, 256)))
    with tempfile.TemporaryDirectory() as folder:
        ours_seconds, stats = best_time(
            lambda: build_index(
                model,
                dataset,
                Path(folder) / "index",
                batch_size=batch_size,
                chunk_documents=4096,
                document_range=(0, documents),
                precision=precision,
            ),
            repeats,
        )
        index = PrunedIndex(Path(folder) / "index")
        ours = [
            np.asarray(index.vectors[index.offsets[d] : index.offsets[d + 1]], dtype=np.float32)
            for d in range(documents)
        ]
    with plain_backbone(model):
        reference_seconds, reference = best_time(lambda: reference_encode(model, texts, batch_size), repeats)
    equal = all(
        a.shape == b.shape and np.allclose(a, b, atol=2e-2, rtol=1e-2) for a, b in zip(ours, reference, strict=True)
    )
    max_difference = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference, strict=True) if a.size)
    return {
        "passages": documents,
        "tokens": tokens,
        "ours": {
            "seconds": ours_seconds,
            "passages_per_s": documents / ours_seconds,
            "tokens_per_s": tokens / ours_seconds,
            "precision": stats["encoding_precision"],
        },
        "reference": {
            "seconds": reference_seconds,
            "passages_per_s": documents / reference_seconds,
            "tokens_per_s": tokens / reference_seconds,
        },
        "speedup": reference_seconds / ours_seconds,
        "equal_results": equal,
        "max_abs_difference": max_difference,
        "note": "ours includes tokenisation and writing the index files; equal = same kept vectors up to 16-bit rounding",
    }


# ---------------------------------------------------------------- training


def bench_training(
    model: ColBERT, dataset: PreparedDataset, split: str, steps: int, batch_size: int, repeats: int, precision: str
) -> dict[str, Any]:
    queries_by_id = dataset.queries(split)
    qrels = dataset.qrels(split)
    doc_ids, texts = dataset.corpus()
    text_of = dict(zip(doc_ids, texts, strict=True))
    judged = [
        (queries_by_id[q], text_of[d]) for q, docs in qrels.items() for d in docs if d in text_of and q in queries_by_id
    ]
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(steps):
        rows = rng.choice(len(judged), size=batch_size, replace=len(judged) < batch_size)
        negatives = [texts[int(i)] for i in rng.integers(len(texts), size=batch_size)]
        batches.append(([judged[r][0] for r in rows], [judged[r][1] for r in rows], negatives))
    initial = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    precision = resolve_precision(precision, model.device, "training")

    def scores_of(batch: tuple[list[str], list[str], list[str]], fixed_padding: bool) -> torch.Tensor:
        queries, positives, negatives = batch
        with autocast(model.device, "fp32" if fixed_padding else precision):
            if fixed_padding:
                q_ids, q_mask = model.tokenize_queries(queries)
                q_ids, q_mask = pad_to(q_ids, q_mask, model.config.query_max_length, model.tokenizer.pad_token_id)
                hidden = model.backbone(input_ids=q_ids, attention_mask=q_mask).last_hidden_state
                query_vectors, query_mask = model._project(hidden, normalize=model.config.normalize), q_mask.bool()
                p_ids, p_mask = model.tokenize_passages(positives + negatives)
                p_ids, p_mask = pad_to(p_ids, p_mask, model.config.passage_max_length, model.tokenizer.pad_token_id)
                passages = model.encode_passage_ids(p_ids, p_mask)
            else:
                query_vectors, query_mask = model.encode_queries(queries)
                passages = model.encode_passages(positives + negatives)
            return maxsim(query_vectors, query_mask, passages).float()

    def loss_of(batch: tuple[list[str], list[str], list[str]], fixed_padding: bool) -> torch.Tensor:
        scores = scores_of(batch, fixed_padding)
        return torch.nn.functional.cross_entropy(scores, torch.arange(scores.shape[0], device=scores.device))

    def run(fixed_padding: bool) -> None:
        model.load_state_dict(initial)
        model.train()
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=2e-5, fused=not fixed_padding and model.device.type in ("cpu", "cuda")
        )
        for step, batch in enumerate(batches):
            torch.manual_seed(step)
            loss = loss_of(batch, fixed_padding)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    # Equal results: without dropout, padding changes nothing but the work; 16-bit products round the scores.
    model.eval()
    with torch.no_grad():
        ours_scores, reference_scores = (scores_of(batches[0], fixed_padding) for fixed_padding in (False, True))
        first_losses = [float(loss_of(batches[0], fixed_padding)) for fixed_padding in (False, True)]
    relative_difference = float(((ours_scores - reference_scores).abs() / reference_scores.abs().clamp(min=1e-6)).max())
    run(fixed_padding=False)  # warm-up: allocator, thread pools, autotuning
    ours_seconds, _ = best_time(lambda: run(fixed_padding=False), repeats)
    with plain_backbone(model):
        reference_seconds, _ = best_time(lambda: run(fixed_padding=True), repeats)
    model.load_state_dict(initial)
    model.eval()
    triples = steps * batch_size
    tolerance = 1e-4 if precision == "fp32" else 1e-2
    return {
        "steps": steps,
        "batch_size": batch_size,
        "ours": {"seconds": ours_seconds, "triples_per_s": triples / ours_seconds, "precision": precision},
        "reference": {"seconds": reference_seconds, "triples_per_s": triples / reference_seconds},
        "speedup": reference_seconds / ours_seconds,
        "first_batch_loss_without_dropout": {"ours": first_losses[0], "reference": first_losses[1]},
        "first_batch_scores_max_relative_difference": relative_difference,
        "equal_results": relative_difference <= tolerance
        and bool(torch.equal(ours_scores.argmax(dim=1), reference_scores.argmax(dim=1))),
        "note": (
            f"equal = without dropout, the first batch's MaxSim scores agree within {tolerance:g} (relative) "
            "and every query's best passage is the same (padding is masked out)"
        ),
    }


# ---------------------------------------------------------------- retrieval


def encode_queries(
    model: ColBERT, dataset: PreparedDataset, split: str, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    vectors, mask = encode_query_set(model, list(dataset.queries(split).values())[:count])
    return vectors.float(), mask


def reference_search(
    queries: torch.Tensor, query_mask: torch.Tensor, index: PrunedIndex, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Document by document: every query against one document's vectors at a time."""
    weights = query_mask.float()
    scores = torch.empty(queries.shape[0], len(index), device=queries.device)
    with torch.inference_mode():
        for document in range(len(index)):
            start, stop = int(index.offsets[document]), int(index.offsets[document + 1])
            vectors = torch.from_numpy(np.asarray(index.vectors[start:stop], dtype=np.float32)).to(queries.device)
            best = (
                (queries @ vectors.T).max(dim=-1).values
                if stop > start
                else torch.full(queries.shape[:2], float("-inf"), device=queries.device)
            )
            scores[:, document] = (best * weights).sum(dim=-1)
        top = scores.topk(min(depth, len(index)), dim=1)
    return top.values.cpu().numpy(), top.indices.cpu().numpy()


def bench_retrieval(
    model: ColBERT, index: PrunedIndex, dataset: PreparedDataset, split: str, queries: int, repeats: int, nlist: int
) -> dict[str, Any]:
    query_vectors, query_mask = encode_queries(model, dataset, split, queries)
    count = query_vectors.shape[0]
    vector_bytes = index.stats["bytes"]["vectors.f16"]
    ours_seconds, ours = best_time(lambda: exact_search(query_vectors, query_mask, index, depth=100), repeats)
    reference_seconds, (reference_scores, reference_indices) = best_time(
        lambda: reference_search(query_vectors, query_mask, index, 100), 1
    )
    exact = {
        "queries": count,
        "index_vectors": index.stats["vectors"],
        "index_vector_bytes": vector_bytes,
        "ours": {
            "seconds": ours_seconds,
            "queries_per_s": count / ours_seconds,
            "effective_GB_per_s": count * vector_bytes / ours_seconds / 1e9,
        },
        "reference": {"seconds": reference_seconds, "queries_per_s": count / reference_seconds},
        "speedup": reference_seconds / ours_seconds,
        "equal_results": bool(
            np.array_equal(ours.doc_indices[:, :10], reference_indices[:, :10])
            and np.allclose(ours.scores, reference_scores, atol=1e-3, rtol=1e-4)
        ),
        "note": "effective GB/s = queries x index vector bytes / seconds (each query scores every stored byte once)",
    }
    # The study's default ANN settings (the schema owns them); --nlist overrides the list count.
    settings = schema_defaults("retrieval.ann")
    build_seconds, ann = best_time(
        lambda: build_ann_index(index, nlist=nlist, m=settings["m"], nbits=settings["nbits"]), 1
    )
    search = {"candidates_per_token": settings["candidates_per_token"], "nprobe": settings["nprobe"]}
    ann_seconds, approximate = best_time(
        lambda: ann_search(query_vectors, query_mask, index, ann, depth=100, **search), repeats
    )

    def recall(depth: int) -> float:
        return float(
            np.mean(
                [
                    len(set(a[:depth]) & set(e[:depth])) / depth
                    for a, e in zip(approximate.doc_indices, ours.doc_indices, strict=True)
                ]
            )
        )

    ann_result = {
        "nlist": ann.nlist,
        "m": settings["m"],
        "nbits": settings["nbits"],
        **search,
        "build_seconds": build_seconds,
        "ours": {"seconds": ann_seconds, "queries_per_s": count / ann_seconds},
        "reference_exact": {"seconds": ours_seconds, "queries_per_s": count / ours_seconds},
        "speedup_vs_exact": ours_seconds / ann_seconds,
        "recall_of_exact_top10": recall(10),
        "recall_of_exact_top100": recall(100),
    }
    return {"exact_maxsim": exact, "ann": ann_result}


# ---------------------------------------------------------------- pooling


def bench_pooling(
    model: ColBERT,
    dataset: PreparedDataset,
    passages: int,
    batch_size: int,
    budgets: list[int],
    repeats: int,
    precision: str,
) -> dict[str, Any]:
    """``pool``'s clustering alone, both backends, on the cosine profiles of ``passages`` encoded passages."""
    _, texts = next(dataset.corpus_batches(min(passages, dataset.documents)))
    batches = []
    with torch.inference_mode(), autocast(model.device, resolve_precision(precision, model.device, "encoding")):
        for start in range(0, len(texts), batch_size):
            input_ids, attention_mask = model.tokenize_passages(texts[start : start + batch_size])
            vectors, batch = model.encode_passage_tokens(input_ids, attention_mask, with_attention=False)
            members = candidate_mask(batch, model.config.candidate_tokens)
            batches.append((cosine_profiles(vectors.float(), members), members))
    results: dict[str, Any] = {
        "passages": len(texts),
        "batch_size": batch_size,
        "candidates_per_passage": float(sum(int(members.sum()) for _, members in batches) / len(texts)),
    }
    for budget in budgets:
        timings, labels = {}, {}
        for backend in ("scipy", "tensor"):
            seconds, labels[backend] = best_time(
                lambda backend=backend, budget=budget: [
                    ward_clusters(profiles, members, budget, backend) for profiles, members in batches
                ],
                repeats,
            )
            timings[backend] = {"seconds": seconds, "ms_per_passage": 1e3 * seconds / len(texts)}
        results[f"k{budget}"] = {
            **timings,
            "tensor_over_scipy": timings["tensor"]["seconds"] / timings["scipy"]["seconds"],
            "equal_partitions": all(torch.equal(a, b) for a, b in zip(labels["scipy"], labels["tensor"], strict=True)),
        }
    results["note"] = (
        "clustering only (profiles computed once, outside the timings); equal = the same labels for every passage"
    )
    return results


def environment() -> dict[str, Any]:
    import faiss
    import transformers

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "faiss": faiss.__version__,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="Model folder (trained or untrained).")
    parser.add_argument("--data", required=True, type=Path, help="Prepared dataset folder.")
    parser.add_argument("--split", default="test", help="Split whose queries are searched.")
    parser.add_argument("--train-split", default="train", help="Split whose judged pairs make training batches.")
    parser.add_argument("--passages", type=int, default=1024, help="Passages encoded by the encoding benchmark.")
    parser.add_argument("--queries", type=int, default=300, help="Queries searched.")
    parser.add_argument("--training-steps", type=int, default=5, help="Training steps timed.")
    parser.add_argument("--batch-size", type=int, default=64, help="Passages per forward pass when encoding.")
    parser.add_argument("--training-batch-size", type=int, default=8, help="Triples per training step.")
    parser.add_argument("--repeats", type=int, default=2, help="Runs per timing; the fastest counts.")
    parser.add_argument(
        "--nlist",
        type=int,
        default=schema_defaults("retrieval.ann")["nlist"],
        help="IVF lists of the ANN index (capped at vectors / 39).",
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        default=["encoding", "training", "retrieval"],
        choices=["encoding", "training", "retrieval", "pooling"],
    )
    parser.add_argument(
        "--pool-k", type=int, nargs="+", default=[10, 50], help="Cluster budgets of the pooling benchmark."
    )
    parser.add_argument("--index", type=Path, help="The model's index of --data (default: build one first).")
    parser.add_argument(
        "--precision", default="auto", help="Our encoding and training precision (the references stay fp32)."
    )
    parser.add_argument(
        "--device", default="auto", help="auto (a free GPU when present, else the CPU), cpu or cuda[:N]."
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads for torch (default: all cores; the workflow's CPU jobs use 1).",
    )
    parser.add_argument("--output", type=Path, help="JSON file to write (default: print only).")
    args = parser.parse_args()

    device = resolve_device(args.device, args.threads)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    model = ColBERT.load(args.model, device=device).eval()
    dataset = PreparedDataset(args.data)
    results: dict[str, Any] = {
        "environment": environment(),
        "settings": {
            **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "strategy": model.config.strategy,
            "k": model.config.k,
        },
    }
    if "encoding" in args.stages:
        results["encoding"] = bench_encoding(
            model, dataset, args.passages, args.batch_size, args.repeats, args.precision
        )
        print(
            f"encoding: {results['encoding']['ours']['passages_per_s']:.1f} passages/s, {results['encoding']['speedup']:.2f}x the reference, equal={results['encoding']['equal_results']}"
        )
    if "training" in args.stages:
        results["training"] = bench_training(
            model,
            dataset,
            args.train_split,
            args.training_steps,
            args.training_batch_size,
            args.repeats,
            args.precision,
        )
        print(
            f"training: {results['training']['ours']['triples_per_s']:.2f} triples/s, {results['training']['speedup']:.2f}x the reference, equal={results['training']['equal_results']}"
        )
    if "retrieval" in args.stages:
        with tempfile.TemporaryDirectory() as folder:
            index_folder = args.index
            if index_folder is None:
                index_folder = Path(folder) / "index"
                build_index(
                    model,
                    dataset,
                    index_folder,
                    batch_size=args.batch_size,
                    chunk_documents=4096,
                    precision=args.precision,
                )
            results.update(
                bench_retrieval(
                    model, PrunedIndex(index_folder), dataset, args.split, args.queries, args.repeats, args.nlist
                )
            )
        exact, ann = results["exact_maxsim"], results["ann"]
        print(
            f"exact MaxSim: {exact['ours']['queries_per_s']:.1f} queries/s ({exact['ours']['effective_GB_per_s']:.2f} GB/s effective), {exact['speedup']:.1f}x the reference, equal={exact['equal_results']}"
        )
        print(
            f"ANN: {ann['ours']['queries_per_s']:.1f} queries/s, {ann['speedup_vs_exact']:.2f}x exact, recall of the exact top 10: {ann['recall_of_exact_top10']:.3f}"
        )
    if "pooling" in args.stages:
        results["pooling"] = bench_pooling(
            model, dataset, args.passages, args.batch_size, args.pool_k, args.repeats, args.precision
        )
        for budget in args.pool_k:
            row = results["pooling"][f"k{budget}"]
            print(
                f"pooling k={budget}: SciPy {row['scipy']['ms_per_passage']:.2f} ms/passage, "
                f"tensor {row['tensor']['ms_per_passage']:.2f} ({row['tensor_over_scipy']:.1f}x), equal={row['equal_partitions']}"
            )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
