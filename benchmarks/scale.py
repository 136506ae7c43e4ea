"""How indexing, exact search and ANN search grow with the corpus: the growth curve behind the MS MARCO sizing.

    python benchmarks/scale.py                                   # 10k, 100k and 1M passages
    python benchmarks/scale.py --sizes 10000 100000 --output benchmarks/results/scale_small.json

Per corpus size and per index (unpruned, k=50, k=10), each stage runs in a
fresh process so its peak RSS is its own:

- **write**: an index of generated vectors written with
  :func:`tokenprune.index.write_vectors_index` (time, peak RSS, bytes). The
  encoder is left out on purpose: its cost is linear in passages and measured
  on the real backbone by benchmarks/run.py; here it would only hide how the
  index files behave.
- **exact**: :func:`tokenprune.search.exact_search` of ``--queries`` queries of
  32 tokens at depth 1000 (queries/s, peak RSS).
- **ann**: :func:`tokenprune.search.build_ann_index` with the schema's
  ``retrieval.ann`` settings (build time, peak RSS), then
  :func:`tokenprune.search.ann_search` (queries/s) and its recall@10 against
  the exact top 10 of the same queries. Skipped above ``--ann-max-vectors``.
- **sampler**: the training sampler over a triples file of
  ``--triples-rows`` rows naming passages of the corpus (peak RSS of building
  it and drawing 200 batches, in a process that did not write the data),
  once per size: it must not grow with the corpus.

Vectors are drawn around 4,096 random unit centres (noise 0.35, then
normalised), so that ANN lists and PQ codes behave as on clustered real
vectors rather than on uniform noise. Passage lengths follow MS MARCO's:
``--mean-tokens`` (default 68 content tokens, the paper's 73% kept at k=50)
with a spread of ±40%.

The JSON output holds every measurement, the hardware and the date; the
log-log figure and the fitted slopes come with ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

DIM = 128
CENTRES = 4096
QUERY_TOKENS = 32
SELECTIONS = {"unpruned": None, "k50": 50, "k10": 10}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def passage_lengths(passages: int, mean_tokens: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(1, rng.integers(int(mean_tokens * 0.6), int(mean_tokens * 1.4) + 1, passages))


def centres(seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 1])
    points = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def clustered(count: int, rng: np.random.Generator, points: np.ndarray) -> np.ndarray:
    vectors = points[rng.integers(0, CENTRES, count)] + 0.35 * rng.standard_normal((count, DIM)).astype(
        np.float32
    ) / np.sqrt(DIM)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float16)


def stage_write(args: dict[str, Any]) -> dict[str, Any]:
    from tokenprune.index import write_vectors_index

    lengths = passage_lengths(args["passages"], args["mean_tokens"], args["seed"])
    kept = lengths if args["k"] is None else np.minimum(lengths, args["k"])
    points, rng = centres(args["seed"]), np.random.default_rng([args["seed"], 2])

    def chunks():
        # Generated 2,000 passages at a time, so the generator's own arrays stay small next to the writer's.
        for first in range(0, len(kept), 2_000):
            counts = kept[first : first + 2_000]
            vectors = clustered(int(counts.sum()), rng, points)
            yield [str(d) for d in range(first, first + len(counts))], np.split(vectors, np.cumsum(counts)[:-1])

    started = time.perf_counter()
    stats = write_vectors_index(args["index"], chunks(), dim=DIM, k=args["k"], unpruned_tokens=int(lengths.sum()))
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": peak_rss_mib(),
        "vectors": stats["vectors"],
        "index_bytes": stats["index_bytes"],
    }


def queries(count: int, seed: int):
    import torch

    vectors = clustered(count * QUERY_TOKENS, np.random.default_rng([seed, 3]), centres(seed))
    return torch.from_numpy(vectors.astype(np.float32)).reshape(count, QUERY_TOKENS, DIM), torch.ones(
        count, QUERY_TOKENS, dtype=torch.bool
    )


def stage_exact(args: dict[str, Any]) -> dict[str, Any]:
    from tokenprune.index import PrunedIndex
    from tokenprune.search import exact_search

    index = PrunedIndex(args["index"])
    query_vectors, mask = queries(args["queries"], args["seed"])
    started = time.perf_counter()
    ranking = exact_search(query_vectors, mask, index, depth=1000)
    seconds = time.perf_counter() - started
    np.save(args["top10"], ranking.doc_indices[:, :10])
    return {"seconds": seconds, "queries_per_second": args["queries"] / seconds, "peak_rss_mib": peak_rss_mib()}


def stage_ann(args: dict[str, Any]) -> dict[str, Any]:
    from tokenprune.config import schema_defaults
    from tokenprune.index import PrunedIndex
    from tokenprune.search import ann_search, build_ann_index

    settings = schema_defaults("retrieval.ann")
    index = PrunedIndex(args["index"])
    started = time.perf_counter()
    ann = build_ann_index(index, nlist=settings["nlist"], m=settings["m"], nbits=settings["nbits"])
    built = time.perf_counter() - started
    query_vectors, mask = queries(args["queries"], args["seed"])
    started = time.perf_counter()
    ranking = ann_search(
        query_vectors,
        mask,
        index,
        ann,
        depth=1000,
        candidates_per_token=settings["candidates_per_token"],
        nprobe=settings["nprobe"],
    )
    seconds = time.perf_counter() - started
    exact_top = np.load(args["top10"])
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ranking.doc_indices[:, :10], exact_top, strict=True)])
    return {
        "build_seconds": built,
        "peak_rss_mib": peak_rss_mib(),
        "queries_per_second": args["queries"] / seconds,
        "recall_at_10": float(recall),
        "nlist": int(ann.nlist),
    }


def stage_sampler_data(args: dict[str, Any]) -> dict[str, Any]:
    """A prepared dataset of ``passages`` synthetic passages and a triples file of ``triples_rows`` rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tokenprune.data.store import PASSAGE_OFFSETS, PASSAGE_TEXTS

    folder, passages, rows = Path(args["data"]), args["passages"], args["triples_rows"]
    # Written directly, in the data stage's layout: ids "p<row>", texts of 60 words, 100k queries.
    (folder / "queries").mkdir(parents=True)
    encoded = " ".join(["passage text"] * 30).encode()
    with open(folder / PASSAGE_TEXTS, "wb") as texts:
        for first in range(0, passages, 100_000):
            texts.write(encoded * min(100_000, passages - first))
    (np.arange(passages + 1, dtype="<i8") * len(encoded)).tofile(folder / PASSAGE_OFFSETS)
    with pq.ParquetWriter(
        folder / "corpus.parquet", pa.schema([("doc_id", pa.string()), ("text", pa.string())])
    ) as corpus:
        for first in range(0, passages, 100_000):
            ids = [f"p{row}" for row in range(first, min(passages, first + 100_000))]
            corpus.write_table(pa.table({"doc_id": ids, "text": [encoded.decode()] * len(ids)}))
    query_count = 100_000
    pq.write_table(
        pa.table({"query_id": [f"q{q}" for q in range(query_count)], "text": ["a query"] * query_count}),
        folder / "queries" / "train.parquet",
    )
    (folder / "stats.json").write_text(
        json.dumps({"dataset": "synthetic", "documents": passages, "splits": {"train": {}}})
    )
    rng = np.random.default_rng(args["seed"])
    schema = pa.schema(
        [("query_id", pa.string()), ("positive_id", pa.string()), ("negative_ids", pa.list_(pa.string()))]
    )
    with pq.ParquetWriter(folder / "triples.parquet", schema) as triples:
        for first in range(0, rows, 500_000):
            count = min(500_000, rows - first)
            picked = rng.integers(0, passages, (count, 2))
            triples.write_table(
                pa.table(
                    {
                        "query_id": [f"q{q}" for q in rng.integers(0, query_count, count)],
                        "positive_id": [f"p{p}" for p in picked[:, 0]],
                        "negative_ids": [[f"p{n}"] for n in picked[:, 1]],
                    },
                    schema=schema,
                )
            )
    return {"triples_bytes": (folder / "triples.parquet").stat().st_size}


def stage_sampler(args: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS of building the training sampler and drawing 200 batches of 32, in a process that did nothing else."""
    from tokenprune.data import PreparedDataset
    from tokenprune.training import TripleSampler

    before = peak_rss_mib()
    started = time.perf_counter()
    sampler = TripleSampler(
        Path(args["data"]) / "triples.parquet", PreparedDataset(args["data"]), "train", 32, args["seed"]
    )
    built = time.perf_counter() - started
    for step in range(200):
        sampler.batch(step)
    return {
        "build_seconds": built,
        "peak_rss_mib": peak_rss_mib(),
        "rss_after_imports_mib": before,
        "triples": len(sampler),
    }


STAGES = {
    "write": stage_write,
    "exact": stage_exact,
    "ann": stage_ann,
    "sampler_data": stage_sampler_data,
    "sampler": stage_sampler,
}


def run_stage(stage: str, args: dict[str, Any]) -> dict[str, Any]:
    """One stage in a fresh interpreter: its peak RSS is not inflated by earlier stages."""
    done = subprocess.run(
        [sys.executable, __file__, "--stage", stage, json.dumps(args)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"stage {stage} failed for {args}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_size(passages: int, options: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    rows = []
    selections = {name: SELECTIONS[name] for name in options.selections}
    for name, k in selections.items() if options.measure in ("all", "indexes") else ():
        index = work / f"{passages}_{name}"
        common = {
            "passages": passages,
            "seed": options.seed,
            "index": str(index),
            "queries": options.queries,
            "top10": str(work / f"{passages}_{name}_top10.npy"),
        }
        row: dict[str, Any] = {"passages": passages, "index": name}
        row["write"] = run_stage("write", {**common, "k": k, "mean_tokens": options.mean_tokens})
        row["exact"] = run_stage("exact", common)
        if row["write"]["vectors"] <= options.ann_max_vectors:
            row["ann"] = run_stage("ann", common)
        print(json.dumps(row), flush=True)
        rows.append(row)
        shutil.rmtree(index)
    if options.measure == "indexes":
        return rows
    data = {
        "passages": passages,
        "triples_rows": options.triples_rows,
        "seed": options.seed,
        "data": str(work / f"{passages}_data"),
    }
    run_stage("sampler_data", data)
    sampler = run_stage("sampler", data)
    print(json.dumps({"passages": passages, "sampler": sampler}), flush=True)
    shutil.rmtree(work / f"{passages}_data")
    rows.append({"passages": passages, "index": "sampler", "sampler": sampler})
    return rows


def fitted_slopes(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Least-squares slope of log(measure) on log(passages), per index and measure (1 = linear growth)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for stage, key in (
            ("write", "seconds"),
            ("write", "index_bytes"),
            ("write", "peak_rss_mib"),
            ("exact", "seconds"),
            ("exact", "peak_rss_mib"),
            ("ann", "build_seconds"),
            ("ann", "peak_rss_mib"),
            ("sampler", "peak_rss_mib"),
        ):
            if stage in row:
                series.setdefault(f"{row['index']} {stage} {key}", []).append((row["passages"], row[stage][key]))
    return {
        name: float(np.polyfit(np.log(sizes), np.log(values), 1)[0])
        for name, points in series.items()
        if len({size for size, _ in points}) > 1
        for sizes, values in [tuple(map(np.array, zip(*points, strict=True)))]
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("write", "seconds", "index write (s)"),
        ("write", "index_bytes", "index bytes"),
        ("exact", "seconds", "exact search (s)"),
        ("exact", "peak_rss_mib", "exact search peak RSS (MiB)"),
        ("ann", "build_seconds", "ANN build (s)"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for axis, (stage, key, title) in zip(axes, panels, strict=True):
        for name in SELECTIONS:
            points = [(row["passages"], row[stage][key]) for row in rows if row["index"] == name and stage in row]
            if points:
                axis.loglog(*zip(*points, strict=True), marker="o", label=name)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("passages")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=sorted(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("stage_args", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--mean-tokens", type=int, default=68)
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--triples-rows", type=int, default=1_000_000)
    parser.add_argument("--ann-max-vectors", type=int, default=20_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", choices=["all", "indexes", "sampler"], default="all")
    parser.add_argument(
        "--selections", nargs="+", choices=list(SELECTIONS), default=list(SELECTIONS), help="Indexes to measure."
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="Where the indexes are written (default: a temporary folder)."
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/scale.json"))
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/results/scale.png"))
    options = parser.parse_args()
    if options.stage:
        print(json.dumps(STAGES[options.stage](json.loads(options.stage_args))))
        return
    import torch

    work = Path(tempfile.mkdtemp(prefix="tokenprune-scale-", dir=options.work_dir))
    try:
        rows = [row for size in options.sizes for row in measure_size(size, options, work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "date": date.today().isoformat(),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(options).items() if k not in ("stage", "stage_args")},
        "rows": rows,
        "slopes": fitted_slopes(rows),
    }
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=1, default=str))
    if any(row["index"] in SELECTIONS for row in rows):
        plot([row for row in rows if row["index"] in SELECTIONS], options.plot)
    print(json.dumps(result["slopes"], indent=1))


if __name__ == "__main__":
    main()
