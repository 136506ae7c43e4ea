"""MS MARCO sizing: index GB, RAM and time per stage, extrapolated from the growth curve and this machine's rates.

    python benchmarks/msmarco_sizing.py --scale reports/figures/scale_growth_<date>.json \
        --sampler reports/figures/scale_sampler_<date>.json --output reports/figures/msmarco_sizing_<date>.json

It sizes the jobs of ``--collection`` (default msmarco) in ``--config``
(default configs/paper-msmarco.yaml): steps, batch, shards, query length and
ANN lists come from there, the collection's counts from ir_datasets'
metadata. The suggested ``resources`` it prints go into that collection's
``resources`` in the config.

What is measured here, on this machine, when the script runs:

- this CPU's fp32 matrix-product rate (2048³ products, all torch threads);
- the embedded backbone's (all-MiniLM-L6-v2) encoding rate at MS MARCO's
  passage length, in tokens/s, hence the fraction of that rate an encoder
  reaches;
- the data stage (:func:`tokenprune.data.prepare_dataset`) on synthetic BEIR
  folders of 20k and 100k passages: time and peak RSS, fitted linearly.

What is read from ``--scale`` (benchmarks/scale.py at its largest size): bytes
per stored vector, vectors per passage at each selection, seconds per
written vector, exact search's FLOP rate and peak RSS, ANN build seconds per
vector and memory per vector. From ``--sampler``: the sampler's peak RSS per
corpus passage and per triple.

What is assumed, and printed as such: MS MARCO's counts (ir_datasets
metadata), the paper backbone's shape (MiniLM-L12-H384), and for one H100
SXM its datasheet rates (989 TFLOP/s dense fp16/bf16, 64 GB/s PCIe Gen5
host-to-device), of which a 384-wide encoder is assumed to reach 10% (its
products are small), plus 50 ms of fixed cost per training step (kernel
launches, optimiser, batching). Exact search on the GPU is taken as the
slower of its products (at the fraction of peak exact search reaches of
this CPU's product rate) and streaming the index from host memory once. No
GPU has run these stages yet: the H100 figures are arithmetic, and the
suggested resources carry a 3× margin on time and 1.5× on memory, and never ask
for less memory than the schema's default for the stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

# The paper's backbone, microsoft/MiniLM-L12-H384-uncased (not downloadable here): 12 layers, hidden 384, intermediate 1536.
PAPER_SHAPE = {"layers": 12, "hidden": 384, "intermediate": 1536}
# [CLS], [D] and [SEP] around the content tokens of a passage.
SPECIAL_TOKENS = 3
H100_FLOPS = 989e12
H100_HOST_TO_DEVICE = 64e9
GPU_ENCODER_EFFICIENCY = 0.10
STEP_OVERHEAD_SECONDS = 0.05
TIME_MARGIN, MEMORY_MARGIN = 3.0, 1.5
# What a job holds besides its data: Python, torch and the library imported (measured by scale.py's sampler stage:
# 261 MiB), and a CUDA context on a GPU node (about 2 GiB; assumed).
GPU_PROCESS_MIB = 261 + 2048


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def flops_per_token(layers: int, hidden: int, intermediate: int, tokens: int) -> float:
    """Forward FLOPs per token of a BERT encoder: projections, feed-forward, and attention over ``tokens``."""
    dense = 2 * (4 * hidden * hidden + 2 * hidden * intermediate)
    attention = 2 * 2 * tokens * hidden
    return layers * (dense + attention)


def matmul_flops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    started, repeats = time.perf_counter(), 10
    for _ in range(repeats):
        a @ b
    return repeats * 2 * 2048**3 / (time.perf_counter() - started)


def encoder_tokens_per_second(tokens: int) -> tuple[float, dict[str, int]]:
    """The embedded backbone's fp32 forward rate on batches of 64 passages of ``tokens`` tokens."""
    import torch
    from transformers import AutoModel

    from tokenprune.backbone import EMBEDDED_BACKBONE, resolve_backbone

    model = AutoModel.from_pretrained(resolve_backbone(EMBEDDED_BACKBONE)).eval()
    ids = torch.randint(1000, 30000, (64, tokens), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=mask)
        started, repeats = time.perf_counter(), 4
        for _ in range(repeats):
            model(input_ids=ids, attention_mask=mask)
    shape = {
        "layers": model.config.num_hidden_layers,
        "hidden": model.config.hidden_size,
        "intermediate": model.config.intermediate_size,
    }
    return repeats * ids.numel() / (time.perf_counter() - started), shape


def stage_prepare(passages: int) -> dict[str, float]:
    """Time and peak RSS of the data stage on a synthetic BEIR folder of ``passages`` passages of ~60 words."""
    from transformers import AutoTokenizer

    from tokenprune.backbone import EMBEDDED_BACKBONE, resolve_backbone
    from tokenprune.data import DatasetSpec, prepare_dataset
    from tokenprune.data.sources import open_collection

    rng = np.random.default_rng(0)
    words = np.array(["protein", "cell", "study", "risk", "patients", "effect", "gene", "model", "rate", "dose"] * 20)
    folder = Path(tempfile.mkdtemp(prefix="tokenprune-sizing-"))
    (folder / "qrels").mkdir()
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for number in range(passages):
            text = " ".join(rng.choice(words, 60)) + f" {number}"
            corpus.write(json.dumps({"_id": f"d{number}", "title": "", "text": text}) + "\n")
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q0", "text": "protein risk"}) + "\n")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\n")
    spec = DatasetSpec(name="synthetic", splits={"train": "train"}, beir_folder=str(folder), document_fields=("text",))
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(EMBEDDED_BACKBONE))
    started = time.perf_counter()
    prepare_dataset(spec, open_collection(spec, None, folder / "irds"), folder / "prepared", tokenizer)
    return {"passages": passages, "seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib()}


def run_in_subprocess(passages: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--prepare-stage", str(passages)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the data stage failed on {passages} synthetic passages:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def linear_fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(intercept, slope) of a straight line through measured (size, value) points."""
    sizes, values = map(np.array, zip(*points, strict=True))
    slope, intercept = np.polyfit(sizes, values, 1)
    return float(intercept), float(slope)


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def study_settings(config_path: Path, collection: str) -> dict[str, Any]:
    """What the extrapolation needs of the study: the preset's settings, and the collection's counts from ir_datasets."""
    import importlib.resources

    import yaml

    from tokenprune.config import validate_config

    config = validate_config(yaml.safe_load(config_path.read_text(encoding="utf-8")))
    dataset = config["datasets"][collection]
    metadata = json.loads((importlib.resources.files("ir_datasets") / "etc" / "metadata.json").read_text())
    splits = {name: irds_id for name, irds_id in dataset["splits"].items()}
    searched = next(
        split
        for collection_name, split in ((e["dataset"], e["split"]) for e in config["evaluate"])
        if collection_name == collection
    )
    return {
        "passages": metadata[dataset["irds_id"]]["docs"]["count"],
        "dev_queries": metadata[splits[searched]]["queries"]["count"],
        "triples": metadata[config["training"]["docpairs_irds_id"]]["docpairs"]["count"],
        "steps": config["training"]["steps"],
        "batch_size": config["training"]["batch_size"],
        "shards": dataset.get("index_shards", config["indexing"]["shards"]),
        "query_tokens": config["model"]["query_max_length"],
        "dim": config["model"]["dim"],
        "nlist": config["retrieval"]["ann"]["nlist"],
        "nprobe": config["retrieval"]["ann"]["nprobe"],
    }


def extrapolate(
    scale: dict[str, Any], sampler: dict[str, Any], rates: dict[str, Any], study: dict[str, Any]
) -> dict[str, Any]:
    from tokenprune.config import schema_defaults

    rows = {row["index"]: row for row in scale["rows"] if row["passages"] == max(r["passages"] for r in scale["rows"])}
    largest = rows["unpruned"]["passages"]
    content_tokens = rows["unpruned"]["write"]["vectors"] / largest
    tokens = content_tokens + SPECIAL_TOKENS
    cpu_flops, encoder_rate = rates["matmul_flops"], rates["encoder_tokens_per_second"]
    encoder_fraction = encoder_rate * flops_per_token(**rates["encoder_shape"], tokens=round(tokens)) / cpu_flops
    paper_flops = flops_per_token(**PAPER_SHAPE, tokens=round(tokens))
    passages, shards = study["passages"], study["shards"]
    encode_tokens = passages * tokens
    encode_cpu = encode_tokens * paper_flops / (encoder_fraction * cpu_flops)
    encode_gpu = encode_tokens * paper_flops / (GPU_ENCODER_EFFICIENCY * H100_FLOPS)
    per_index: dict[str, dict[str, float]] = {}
    for name, row in rows.items():
        if name not in ("unpruned", "k50", "k10"):
            continue
        write, exact = row["write"], row["exact"]
        vectors = write["vectors"] / largest * passages
        queries = scale["settings"]["queries"]
        # scale.py's queries have 32 tokens and its vectors 128 dimensions.
        search_flops = 2 * 128 * 32 * write["vectors"] * queries / exact["seconds"]
        dev_flops = 2 * study["dim"] * study["query_tokens"] * vectors * study["dev_queries"]
        index_bytes = write["index_bytes"] / write["vectors"] * vectors
        entry = {
            "vectors": vectors,
            "index_gb": index_bytes / 1e9,
            "diagnostics_gb": 6 * vectors / 1e9,  # token ids (int32) and positions (int16) beside the index
            "write_cpu_hours": write["seconds"] / write["vectors"] * vectors / 3600,
            "write_peak_rss_mib": write["peak_rss_mib"],
            "exact_cpu_flops": search_flops,
            "exact_dev_cpu_hours": dev_flops / search_flops / 3600,
            "exact_dev_h100_minutes": max(
                dev_flops / (search_flops / cpu_flops * H100_FLOPS), index_bytes / H100_HOST_TO_DEVICE
            )
            / 60,
            "exact_index_pass_h100_minutes": index_bytes / H100_HOST_TO_DEVICE / 60,
            "exact_peak_rss_mib": exact["peak_rss_mib"],
        }
        per_index[name] = entry
    # ANN: seconds and MiB per added vector from the two largest measured k=10 points (the k-means sample is capped).
    ann_points = sorted((r["write"]["vectors"], r["ann"]) for r in scale["rows"] if r["index"] == "k10" and "ann" in r)
    (small_vectors, small), (large_vectors, large) = ann_points[-2], ann_points[-1]
    ann_seconds_per_vector = (large["build_seconds"] - small["build_seconds"]) / (large_vectors - small_vectors)
    ann_mib_per_vector = (large["peak_rss_mib"] - small["peak_rss_mib"]) / (large_vectors - small_vectors)
    # Each added vector is compared with every list centre, then PQ-coded against 256 centres per sub-vector:
    # a build with more lists than scale.py's costs about (nlist + 256) / (its nlist + 256) times as much.
    lists_factor = (study["nlist"] + 256) / (large["nlist"] + 256)
    # ANN search scans nprobe / nlist of the codes for each query token: its measured rate in codes/s (scale.py searched
    # with the schema's nprobe), applied to the study's share of the vectors.
    scanned = 32 * large_vectors * min(1.0, schema_defaults("retrieval.ann")["nprobe"] / large["nlist"])
    codes_per_second = scanned * large["queries_per_second"]
    for entry in per_index.values():
        entry["ann_dev_cpu_hours"] = (
            study["dev_queries"]
            * study["query_tokens"]
            * entry["vectors"]
            * min(1.0, study["nprobe"] / study["nlist"])
            / codes_per_second
            / 3600
        )
        entry["ann_build_cpu_hours"] = (
            lists_factor * (large["build_seconds"] + ann_seconds_per_vector * (entry["vectors"] - large_vectors)) / 3600
        )
        entry["ann_build_peak_gib"] = (
            large["peak_rss_mib"] + ann_mib_per_vector * (entry["vectors"] - large_vectors)
        ) / 1024
    # The sampler: peak RSS against corpus passages (at 1M triples) and against triples (at the largest corpus).
    runs = [row["sampler"] | {"passages": row["passages"]} for run in sampler["runs"] for row in run["rows"]]
    at_one_million = [(r["passages"], r["peak_rss_mib"]) for r in runs if r["triples"] == 1_000_000]
    base, per_passage = linear_fit(at_one_million)
    largest_corpus = max(r["passages"] for r in runs)
    by_triples = [(r["triples"], r["peak_rss_mib"]) for r in runs if r["passages"] == largest_corpus]
    _, per_triple = linear_fit(by_triples)
    sampler_mib = base + per_passage * passages + per_triple * (study["triples"] - 1_000_000)
    # Training: a forward pass of the 2 passages and the query of each triple, the backward pass about twice that.
    query_tokens = study["query_tokens"]
    step_flops = (
        3
        * study["batch_size"]
        * (2 * tokens * paper_flops + query_tokens * flops_per_token(**PAPER_SHAPE, tokens=query_tokens))
    )
    train_gpu = study["steps"] * (step_flops / (GPU_ENCODER_EFFICIENCY * H100_FLOPS) + STEP_OVERHEAD_SECONDS)
    prepare_base, prepare_per_passage = linear_fit([(r["passages"], r["seconds"]) for r in rates["prepare"]])
    # An index job tokenises its passages on the host as the data stage does (which also writes them): an upper bound.
    host_hours = prepare_per_passage * passages / 3600
    rss_base, rss_per_passage = linear_fit([(r["passages"], r["peak_rss_mib"]) for r in rates["prepare"]])
    totals = {
        "passages": passages,
        "content_tokens_per_passage": content_tokens,
        "encoder_fraction_of_matmul": encoder_fraction,
        "host_tokenise_cpu_hours": host_hours,
        "paper_forward_gflop_per_passage": paper_flops * tokens / 1e9,
        "encode_cpu_hours": encode_cpu / 3600,
        "encode_h100_minutes": encode_gpu / 60,
        "prepare_cpu_minutes": (prepare_base + prepare_per_passage * passages) / 60,
        "prepare_peak_gib": (rss_base + rss_per_passage * passages) / 1024,
        "sampler_peak_gib": sampler_mib / 1024,
        "train_h100_hours": train_gpu / 3600,
    }
    selected = per_index["unpruned"]
    # The post-hoc pass writes the unpruned model's own index and first, idf and attention at k=50 and k=10.
    posthoc_write_hours = selected["write_cpu_hours"] + 3 * (
        per_index["k50"]["write_cpu_hours"] + per_index["k10"]["write_cpu_hours"]
    )
    resources = {
        "prepare_data": {
            "mem_mb": round_up(totals["prepare_peak_gib"] * 1024 * MEMORY_MARGIN, 1000),
            "runtime": round_up(totals["prepare_cpu_minutes"] * TIME_MARGIN, 30),
        },
        "train": {
            "mem_mb": round_up((sampler_mib + GPU_PROCESS_MIB) * MEMORY_MARGIN, 1000),
            "runtime": round_up(totals["train_h100_hours"] * 60 * TIME_MARGIN, 60),
        },
        "index": {
            "mem_mb": round_up((selected["write_peak_rss_mib"] + GPU_PROCESS_MIB) * MEMORY_MARGIN, 1000),
            "runtime": round_up(
                (encode_gpu / 60 + (host_hours + selected["write_cpu_hours"]) * 60) / shards * TIME_MARGIN, 30
            ),
        },
        "posthoc_index": {
            "mem_mb": round_up((selected["write_peak_rss_mib"] + GPU_PROCESS_MIB) * MEMORY_MARGIN, 1000),
            "runtime": round_up((encode_gpu / 60 + (host_hours + posthoc_write_hours) * 60) / shards * TIME_MARGIN, 30),
        },
        "ann_index": {
            "mem_mb": round_up(selected["ann_build_peak_gib"] * 1024 * MEMORY_MARGIN, 1000),
            "runtime": round_up(selected["ann_build_cpu_hours"] * 60 * TIME_MARGIN, 60),
        },
        # Exact search holds one chunk at a time; ANN search holds the whole faiss index (as its build does).
        # A retrieval job searches exactly on the GPU, or with faiss on the CPU cores (rates of this CPU's 2 threads).
        "retrieve": {
            "mem_mb": round_up(
                max(selected["exact_peak_rss_mib"] + GPU_PROCESS_MIB, selected["ann_build_peak_gib"] * 1024)
                * MEMORY_MARGIN,
                1000,
            ),
            "runtime": round_up(
                max(selected["exact_dev_h100_minutes"], selected["ann_dev_cpu_hours"] * 60) * TIME_MARGIN, 30
            ),
        },
    }
    # The schema's memory defaults are floors: what the fits cannot see (the data stage's id set, say) stays covered.
    for stage, values in resources.items():
        values["mem_mb"] = max(values["mem_mb"], schema_defaults(f"resources.{stage}")["mem_mb"])
    return {"totals": totals, "indexes": per_index, "resources": resources}


def markdown(result: dict[str, Any]) -> str:
    totals, indexes = result["totals"], result["indexes"]
    lines = [
        f"MS MARCO: {totals['passages']:,} passages of {totals['content_tokens_per_passage']:.1f} content tokens "
        f"({totals['paper_forward_gflop_per_passage']:.2f} GFLOP per MiniLM-L12 forward pass); here the encoder reaches "
        f"{totals['encoder_fraction_of_matmul']:.0%} of this CPU's matrix-product rate "
        f"({result['rates']['matmul_flops'] / 1e9:.0f} GFLOP/s, measured).",
        "",
        "| index | vectors | index GB (+ diagnostics) | write, CPU h | exact search of dev, CPU h | exact, H100 min "
        "| ANN build, CPU h | ANN build peak GiB | ANN search of dev, CPU h |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in indexes.items():
        lines.append(
            f"| {name} | {entry['vectors'] / 1e6:,.0f}M | {entry['index_gb']:,.1f} (+{entry['diagnostics_gb']:.1f}) "
            f"| {entry['write_cpu_hours']:.2f} | {entry['exact_dev_cpu_hours']:,.0f} | {entry['exact_dev_h100_minutes']:.1f} "
            f"| {entry['ann_build_cpu_hours']:.1f} | {entry['ann_build_peak_gib']:.1f} | {entry['ann_dev_cpu_hours']:.1f} |"
        )
    lines += [
        "",
        f"Encoding the corpus once: {totals['encode_cpu_hours']:,.0f} h on this CPU, {totals['encode_h100_minutes']:.0f} min "
        f"on one H100 (tokenising it on the host: {totals['host_tokenise_cpu_hours']:.1f} h of this CPU); data stage {totals['prepare_cpu_minutes']:.0f} min, {totals['prepare_peak_gib']:.1f} GiB; training "
        f"{totals['train_h100_hours']:.1f} h on one H100; the sampler {totals['sampler_peak_gib']:.1f} GiB.",
        "",
        "| stage | mem_mb | runtime (min) |",
        "|---|---|---|",
        *(f"| {stage} | {values['mem_mb']} | {values['runtime']} |" for stage, values in result["resources"].items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepare-stage", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=Path, required=False, help="benchmarks/scale.py output with its largest size.")
    parser.add_argument(
        "--sampler", type=Path, required=False, help="The sampler measurements (scale.py --measure sampler)."
    )
    parser.add_argument("--config", type=Path, default=Path("configs/paper-msmarco.yaml"), help="The study to size.")
    parser.add_argument("--collection", default="msmarco", help="Its collection to size (a key of its datasets).")
    parser.add_argument("--prepare-sizes", type=int, nargs=2, default=[20_000, 100_000])
    parser.add_argument(
        "--rates-from", type=Path, help="Reuse the rates an earlier run of this script measured (its JSON)."
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/msmarco_sizing.json"))
    options = parser.parse_args()
    if options.prepare_stage:
        print(json.dumps(stage_prepare(options.prepare_stage)))
        return
    if options.scale is None or options.sampler is None:
        parser.error("--scale and --sampler are required")
    import torch

    if options.rates_from:
        earlier = json.loads(options.rates_from.read_text())
        rates = earlier["rates"] | {"measured": earlier.get("date"), "from": str(options.rates_from)}
    else:
        rates = {"matmul_flops": matmul_flops()}
        rates["encoder_tokens_per_second"], rates["encoder_shape"] = encoder_tokens_per_second(71)
        rates["prepare"] = [run_in_subprocess(size) for size in options.prepare_sizes]
    study = study_settings(options.config, options.collection)
    result = extrapolate(json.loads(options.scale.read_text()), json.loads(options.sampler.read_text()), rates, study)
    result = {
        "date": date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "scale": str(options.scale),
        "sampler": str(options.sampler),
        "config": str(options.config),
        "study": study,
        "rates": rates,
        **result,
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()
