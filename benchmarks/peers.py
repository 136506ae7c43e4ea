"""tokenprune and PyLate side by side on SciFact: encoding, index build, index bytes, search speed and effectiveness.

PyLate 1.2 pins transformers <= 4.56.2 and tokenprune runs on 5.x, so PyLate
runs in its own environment, made once (benchmarks/README.md, "Peers")::

    python -m venv .venv-pylate && .venv-pylate/bin/pip install torch==2.13.0 pylate==1.2.0
    python benchmarks/peers.py --work /tmp/peers

Both systems use the same ColBERT model: PyLate saves one on the embedded
all-MiniLM-L6-v2 (128-d projection, ColBERT's ``[unused0]``/``[unused1]``
markers, queries padded with ``[MASK]`` to 32 tokens and attending to them),
and tokenprune reads that folder as its backbone with the settings that give
PyLate's vectors exactly (``candidate_tokens: no_punctuation``,
``query_expansion: true``; benchmarks/pylate_check.py). Both read the same
passage texts (SciFact as tokenprune prepares it), at 180 word pieces,
in fp32 (this CPU has no native bf16), on the same number of threads.

Every measurement runs in a fresh process per system and repetition, the two
systems alternating (which goes first alternates too); the table gives the
median of the repetitions and the ratio tokenprune / PyLate (for rates, above
1 means tokenprune is faster; for seconds and bytes, below 1 means it takes
less). Model loading is not timed; query encoding is part of search. Effectiveness is ir_measures on each system's depth-1000 run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYLATE_PYTHON = REPO / ".venv-pylate" / "bin" / "python"
QUERY_LENGTH, DOCUMENT_LENGTH, BATCH_SIZE, DEPTH = 32, 180, 32, 1000
ENCODED_PASSAGES = 1024
TASKS = ("encode", "index", "search")
MEASURES = ("nDCG@10", "R@100")


# ---------------------------------------------------------------- shared inputs


def prepare_inputs(work: Path, passages: int | None) -> None:
    """SciFact as tokenprune prepares it, written as plain JSON lines both environments read (tokenprune side).

    ``passages`` keeps only the first passages of the corpus (a quick check of the script, not a measurement).
    """
    import shutil

    from tokenprune.backbone import load_tokenizer
    from tokenprune.data import DatasetSpec, PreparedDataset, prepare_dataset
    from tokenprune.data.sources import open_collection

    folder = Path(os.environ["TOKENPRUNE_DATA_DIR"]) / "scifact"
    if passages is not None:
        shutil.copytree(folder, work / "scifact", ignore=shutil.ignore_patterns("corpus.jsonl"))
        with (
            open(folder / "corpus.jsonl", encoding="utf-8") as source,
            open(work / "scifact" / "corpus.jsonl", "w", encoding="utf-8") as subset,
        ):
            subset.writelines(line for _, line in zip(range(passages), source, strict=False))
        folder = work / "scifact"
    spec = DatasetSpec.from_config("scifact", {"beir_folder": str(folder), "splits": ["test"]})
    prepare_dataset(spec, open_collection(spec, None, work / "irds"), work / "prepared", load_tokenizer("embedded"))
    dataset = PreparedDataset(work / "prepared")
    doc_ids, texts = dataset.corpus()
    with open(work / "passages.jsonl", "w", encoding="utf-8") as out:
        for doc_id, text in zip(doc_ids, texts, strict=True):
            out.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    queries = dataset.queries("test")
    (work / "queries.json").write_text(json.dumps(queries))
    (work / "qrels.txt").write_text(dataset.qrels_path("test").read_text())


def read_inputs(work: Path) -> tuple[list[str], list[str], dict[str, str]]:
    rows = [json.loads(line) for line in (work / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
    return [row["id"] for row in rows], [row["text"] for row in rows], json.loads((work / "queries.json").read_text())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def write_run(path: Path, query_ids: list[str], ranked: list[list[tuple[str, float]]], tag: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for query_id, documents in zip(query_ids, ranked, strict=True):
            for rank, (doc_id, score) in enumerate(documents, start=1):
                out.write(f"{query_id} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


# ---------------------------------------------------------------- tokenprune side


def tokenprune_model(work: Path):  # noqa: ANN201
    from tokenprune.model import ColBERT, ColBERTConfig

    settings = {
        "dim": 128,
        "normalize": True,
        "query_expansion": True,
        "candidate_tokens": "no_punctuation",
        "query_max_length": QUERY_LENGTH,
        "passage_max_length": DOCUMENT_LENGTH,
    }
    return ColBERT.from_backbone(ColBERTConfig(backbone=str(work / "model"), **settings)).eval()


def tokenprune_task(task: str, work: Path, out: Path) -> dict[str, float]:
    import torch

    from tokenprune.compression import compress_index
    from tokenprune.data import PreparedDataset
    from tokenprune.index import PrunedIndex, build_index, length_sorted_batches
    from tokenprune.search import encode_query_set, exact_search

    model = tokenprune_model(work)
    doc_ids, texts, queries = read_inputs(work)
    if task == "encode":
        # As tokenprune encodes a collection (and sentence-transformers, under PyLate, too): tokenised at once,
        # then in batches of similar length, each padded to its own longest passage.
        sample = texts[:ENCODED_PASSAGES]
        start = time.perf_counter()
        with torch.inference_mode():
            input_ids, attention_mask = model.tokenize_passages(sample)
            lengths = attention_mask.sum(dim=1).tolist()
            for batch in length_sorted_batches(lengths, BATCH_SIZE):
                width = max(lengths[row] for row in batch)
                model.encode_passage_ids(input_ids[batch, :width], attention_mask[batch, :width])
        return {"passages_per_second": len(sample) / (time.perf_counter() - start)}
    if task == "index":
        start = time.perf_counter()
        build_index(
            model,
            PreparedDataset(work / "prepared"),
            out / "index",
            batch_size=BATCH_SIZE,
            chunk_documents=1024,
            precision="fp32",
        )
        built = time.perf_counter() - start
        compress_index(out / "index", out / "index-2bit", bits=2, centroids=1024, sample_vectors=65536)
        compressed = time.perf_counter() - start - built
        return {
            "index_seconds": built,
            "index_bytes": folder_bytes(out / "index"),
            "stored_bytes": PrunedIndex(out / "index").stats["index_bytes"],
            "vectors": PrunedIndex(out / "index").stats["vectors"],
            "compress_seconds": compressed,
            "compressed_bytes": folder_bytes(out / "index-2bit"),
        }
    query_ids = list(queries)
    result = {}
    for name, folder in (
        ("exact", out.parent.parent / "index" / out.name / "index"),
        ("exact_2bit", out.parent.parent / "index" / out.name / "index-2bit"),
    ):
        index = PrunedIndex(folder)
        start = time.perf_counter()
        vectors, mask = encode_query_set(model, [queries[q] for q in query_ids])
        ranking = exact_search(vectors, mask, index, depth=DEPTH)
        result[f"{name}_queries_per_second"] = len(query_ids) / (time.perf_counter() - start)
        ranked = [
            [(index.doc_ids[d], float(s)) for d, s in zip(row_ids, row_scores, strict=True) if d >= 0]
            for row_ids, row_scores in zip(ranking.doc_indices, ranking.scores, strict=True)
        ]
        write_run(out / f"{name}.trec", query_ids, ranked, f"tokenprune-{name}")
    return result


# ---------------------------------------------------------------- PyLate side


def pylate_task(task: str, work: Path, out: Path) -> dict[str, float]:
    from pylate import indexes, models, retrieve

    model = models.ColBERT(model_name_or_path=str(work / "model"), device="cpu", document_length=DOCUMENT_LENGTH)
    doc_ids, texts, queries = read_inputs(work)
    if task == "warm-up":
        # PLAID compiles its C++ extensions on first use (minutes): not part of any measurement.
        embeddings = model.encode(texts[:64], is_query=False, batch_size=BATCH_SIZE, show_progress_bar=False)
        index = indexes.PLAID(index_folder=str(out / "plaid"), index_name="warm-up", override=True)
        index.add_documents(documents_ids=doc_ids[:64], documents_embeddings=embeddings)
        query = model.encode([next(iter(queries.values()))], is_query=True, show_progress_bar=False)
        retrieve.ColBERT(index=index).retrieve(queries_embeddings=query, k=10)
        return {}
    if task == "encode":
        sample = texts[:ENCODED_PASSAGES]
        start = time.perf_counter()
        model.encode(sample, is_query=False, batch_size=BATCH_SIZE, show_progress_bar=False)
        return {"passages_per_second": len(sample) / (time.perf_counter() - start)}
    if task == "index":
        start = time.perf_counter()
        embeddings = model.encode(texts, is_query=False, batch_size=BATCH_SIZE, show_progress_bar=False)
        encoded = time.perf_counter() - start
        index = indexes.PLAID(index_folder=str(out / "plaid"), index_name="scifact", override=True)
        index.add_documents(documents_ids=doc_ids, documents_embeddings=embeddings)
        return {
            "index_seconds": time.perf_counter() - start,
            "encode_seconds": encoded,
            "index_bytes": folder_bytes(out / "plaid"),
            "vectors": int(sum(len(e) for e in embeddings)),
        }
    index = indexes.PLAID(
        index_folder=str(out.parent.parent / "index" / out.name / "plaid"), index_name="scifact", override=False
    )
    retriever = retrieve.ColBERT(index=index)
    query_ids = list(queries)
    start = time.perf_counter()
    embeddings = model.encode(
        [queries[q] for q in query_ids], is_query=True, batch_size=BATCH_SIZE, show_progress_bar=False
    )
    results = retriever.retrieve(queries_embeddings=embeddings, k=DEPTH)
    seconds = time.perf_counter() - start
    write_run(
        out / "plaid.trec",
        query_ids,
        [[(r["id"], float(r["score"])) for r in rows] for rows in results],
        "pylate-plaid",
    )
    return {"plaid_queries_per_second": len(query_ids) / seconds}


def pylate_save_model(work: Path) -> None:
    """PyLate's own ColBERT on the embedded backbone, as in benchmarks/pylate_check.py."""
    from pylate import models

    backbone = (work / "backbone.txt").read_text()
    model = models.ColBERT(
        model_name_or_path=backbone,
        embedding_size=128,
        device="cpu",
        query_prefix="[unused0]",
        document_prefix="[unused1]",
        attend_to_expansion_tokens=True,
        query_length=QUERY_LENGTH,
        document_length=DOCUMENT_LENGTH,
    )
    model.save(str(work / "model"))


# ---------------------------------------------------------------- orchestration


def run_side(side: str, task: str, work: Path, repetition: int, threads: int) -> dict[str, float]:
    """One measurement in a fresh process of ``side``'s environment; returns what it wrote."""
    out = work / "results" / task / f"{side}-rep{repetition}"
    out.mkdir(parents=True, exist_ok=True)
    python = sys.executable if side == "tokenprune" else str(PYLATE_PYTHON)
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [
        python,
        __file__,
        "--work",
        str(work),
        "--side",
        side,
        "--task",
        task,
        "--out",
        str(out),
        "--threads",
        str(threads),
    ]
    subprocess.run(command, check=True, env=environment)
    return json.loads((out / "measures.json").read_text())


def effectiveness(work: Path, run: Path) -> dict[str, float]:
    import ir_measures

    measures = [ir_measures.parse_measure(name) for name in MEASURES]
    values = ir_measures.calc_aggregate(
        measures, ir_measures.read_trec_qrels(str(work / "qrels.txt")), ir_measures.read_trec_run(str(run))
    )
    return {str(measure): float(value) for measure, value in values.items()}


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def report(work: Path, measured: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, object]:
    """Medians, ratios and effectiveness as one JSON-able summary, and the Markdown table."""
    ours, theirs = measured["tokenprune"], measured["pylate"]
    first_search = work / "results" / "search"
    quality = {
        "tokenprune exact (fp16)": effectiveness(work, first_search / "tokenprune-rep0" / "exact.trec"),
        "tokenprune exact (2-bit codes)": effectiveness(work, first_search / "tokenprune-rep0" / "exact_2bit.trec"),
        "PyLate PLAID (2-bit)": effectiveness(work, first_search / "pylate-rep0" / "plaid.trec"),
    }
    rows = [
        (
            "encoding 1,024 passages (passages/s)",
            median(ours["encode"], "passages_per_second"),
            median(theirs["encode"], "passages_per_second"),
        ),
        (
            "encode + build the index, whole corpus (s)",
            median(ours["index"], "index_seconds"),
            median(theirs["index"], "index_seconds"),
        ),
        (
            "index on disk (MB), fp16 / PLAID",
            median(ours["index"], "index_bytes") / 1e6,
            median(theirs["index"], "index_bytes") / 1e6,
        ),
        (
            "index on disk (MB), 2-bit codes / PLAID",
            median(ours["index"], "compressed_bytes") / 1e6,
            median(theirs["index"], "index_bytes") / 1e6,
        ),
        (
            "search at depth 1000, queries encoded (queries/s), exact fp16 / PLAID",
            median(ours["search"], "exact_queries_per_second"),
            median(theirs["search"], "plaid_queries_per_second"),
        ),
        (
            "search (queries/s), exact on 2-bit codes / PLAID",
            median(ours["search"], "exact_2bit_queries_per_second"),
            median(theirs["search"], "plaid_queries_per_second"),
        ),
    ]
    lines = ["| measurement | tokenprune | PyLate | tokenprune / PyLate |", "|---|---|---|---|"]
    lines += [f"| {name} | {a:.4g} | {b:.4g} | {a / b:.2f}× |" for name, a, b in rows]
    lines += ["", "| system | " + " | ".join(MEASURES) + " |", "|---|" + "---|" * len(MEASURES)]
    lines += [
        f"| {name} | " + " | ".join(f"{values[m]:.4f}" for m in MEASURES) + " |" for name, values in quality.items()
    ]
    return {"rows": rows, "effectiveness": quality, "markdown": "\n".join(lines), "raw": measured}


def orchestrate(work: Path, repetitions: int, threads: int, passages: int | None, first_repetition: int = 0) -> None:
    work.mkdir(parents=True, exist_ok=True)
    if not PYLATE_PYTHON.exists():
        sys.exit(f"PyLate's environment is missing: {PYLATE_PYTHON} (set-up in benchmarks/README.md, 'Peers')")
    if not (work / "passages.jsonl").exists():
        prepare_inputs(work, passages)
    if not (work / "model").exists():
        from tokenprune.backbone import EMBEDDED_BACKBONE, resolve_backbone

        (work / "backbone.txt").write_text(resolve_backbone(EMBEDDED_BACKBONE))
        subprocess.run(
            [str(PYLATE_PYTHON), __file__, "--work", str(work), "--side", "pylate", "--task", "save-model"], check=True
        )
    run_side("pylate", "warm-up", work, first_repetition, threads)
    for repetition in range(first_repetition, first_repetition + repetitions):
        order = ("tokenprune", "pylate") if repetition % 2 == 0 else ("pylate", "tokenprune")
        for task in TASKS:
            for side in order:
                print(side, task, repetition, run_side(side, task, work, repetition, threads), flush=True)
    write_report(work)


def write_report(work: Path) -> None:
    """Aggregate every completed measurement under ``work`` (both systems, every task) into peers.json and a table."""
    measured: dict[str, dict[str, list[dict[str, float]]]] = {
        side: {task: [] for task in TASKS} for side in ("tokenprune", "pylate")
    }
    for side in measured:
        for task in TASKS:
            for path in sorted((work / "results" / task).glob(f"{side}-rep*/measures.json")):
                measured[side][task].append(json.loads(path.read_text()))
    summary = report(work, measured)
    summary["repetitions"] = {
        side: {task: len(rows) for task, rows in tasks.items()} for side, tasks in measured.items()
    }
    (work / "peers.json").write_text(json.dumps(summary, indent=2))
    print(summary["markdown"])
    print("repetitions:", summary["repetitions"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="Working folder (inputs, indexes, runs, peers.json).")
    parser.add_argument(
        "--repetitions", type=int, default=3, help="Repetitions per system and task; the median is reported."
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both systems.")
    parser.add_argument(
        "--passages", type=int, help="Only the first passages of SciFact: checks the script, measures nothing."
    )
    parser.add_argument("--report-only", action="store_true", help="Only aggregate the measurements already in --work.")
    parser.add_argument(
        "--first-repetition",
        type=int,
        default=0,
        help="Number of the first repetition: runs on several cores at once write disjoint repetitions.",
    )
    parser.add_argument("--side", choices=["tokenprune", "pylate"], help=argparse.SUPPRESS)
    parser.add_argument("--task", choices=[*TASKS, "save-model", "warm-up"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.side is None and options.report_only:
        write_report(options.work)
        return
    if options.side is None:
        orchestrate(options.work, options.repetitions, options.threads, options.passages, options.first_repetition)
        return
    import torch

    torch.set_num_threads(options.threads)
    if options.task == "save-model":
        pylate_save_model(options.work)
        return
    task = tokenprune_task if options.side == "tokenprune" else pylate_task
    measures = task(options.task, options.work, options.out)
    (options.out / "measures.json").write_text(json.dumps(measures))


if __name__ == "__main__":
    main()
