"""Reliability: a killed training process resumes, reruns are byte-identical on CPU, and
chunked encoding and search give the results of the unchunked path."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, TOPICS, write_topics_collection
from tokenprune.cli import main
from tokenprune.data import DatasetSpec, PreparedDataset, prepare_dataset
from tokenprune.data.sources import open_collection
from tokenprune.index import PrunedIndex, build_index
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.negatives import mine_bm25_negatives
from tokenprune.search import exact_search

MODEL_CONFIG = json.dumps({"dim": 16, "passage_max_length": 32, "query_max_length": 16})


@pytest.fixture(scope="module")
def collection(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """The tiny study's 16 passages (8 topics + 8 distractors), prepared, with BM25 triples."""
    folder = tmp_path_factory.mktemp("reliability")
    beir = write_topics_collection(folder / "beir")
    spec = DatasetSpec.from_config("tiny", {"beir_folder": str(beir), "splits": ["train", "test"]})
    prepare_dataset(spec, open_collection(spec, None, folder / "irds"), folder / "data", tokenizer)
    mine_bm25_negatives(
        PreparedDataset(folder / "data"), "train", folder / "triples.parquet", negatives_per_query=2, skip=0
    )
    return {"data": folder / "data", "triples": folder / "triples.parquet"}


def train_argv(collection: dict[str, Path], output: Path, checkpoints: Path, training: dict) -> list[str]:
    return [
        "train",
        "--data",
        str(collection["data"]),
        "--split",
        "train",
        "--triples",
        str(collection["triples"]),
        "--strategy",
        "first",
        "--k",
        "4",
        "--seed",
        "3",
        "--model-config",
        MODEL_CONFIG,
        "--training-config",
        json.dumps(training),
        "--checkpoint-dir",
        str(checkpoints),
        "--threads",
        "1",
        "--output",
        str(output),
    ]


@pytest.mark.slow
def test_pipeline_reruns_are_byte_identical_on_cpu(collection, tmp_path, monkeypatch) -> None:
    """Train, index, retrieve and evaluate twice from scratch: every output file is the same, byte for byte."""
    training = {"steps": 4, "batch_size": 2, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2}
    outputs = []
    for attempt in ("first", "second"):
        # Relative paths: the metrics JSON records the run file's path.
        workdir = tmp_path / attempt
        workdir.mkdir()
        monkeypatch.chdir(workdir)
        assert main(train_argv(collection, Path("model"), Path("checkpoints"), training)) == 0
        assert (
            main(
                [
                    "index",
                    "--model",
                    "model",
                    "--data",
                    str(collection["data"]),
                    "--batch-size",
                    "4",
                    "--chunk-documents",
                    "8",
                    "--precision",
                    "fp32",
                    "--threads",
                    "1",
                    "--output",
                    "index",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "retrieve",
                    "--model",
                    "model",
                    "--index",
                    "index",
                    "--data",
                    str(collection["data"]),
                    "--split",
                    "test",
                    "--mode",
                    "exact",
                    "--depth",
                    "1000",
                    "--query-max-length",
                    "16",
                    "--threads",
                    "1",
                    "--output",
                    "run.trec",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "evaluate",
                    "--run",
                    "run.trec",
                    "--data",
                    str(collection["data"]),
                    "--split",
                    "test",
                    "--metrics",
                    "nDCG@10",
                    "RR@10",
                    "--output",
                    "metrics.json",
                    "--per-query",
                    "perquery.tsv",
                ]
            )
            == 0
        )
        outputs.append(workdir)
    files = [
        "model/model.safetensors",
        "checkpoints/last.pt",
        "index/vectors.f16",
        "index/offsets.npy",
        "index/index_stats.json",
        "run.trec",
        "metrics.json",
        "perquery.tsv",
    ]
    for name in files:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
    # The loss log is identical except its wall-clock columns.
    logs = [
        [
            {k: row[k] for k in ("step", "loss", "learning_rate")}
            for row in csv.DictReader((o / "model" / "training_log.csv").read_text().splitlines())
        ]
        for o in outputs
    ]
    assert logs[0] == logs[1] and len(logs[0]) == 4


@pytest.mark.slow
def test_killed_training_process_resumes_from_its_checkpoint(collection, tmp_path) -> None:
    training = {"steps": 30, "batch_size": 2, "warmup_steps": 1, "log_every": 5, "checkpoint_every": 5}
    checkpoints, output = tmp_path / "checkpoints", tmp_path / "model"
    argv = [sys.executable, "-m", "tokenprune.cli", *train_argv(collection, output, checkpoints, training)]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 300
        while not (checkpoints / "last.pt").is_file() or _checkpoint_step(checkpoints) < 10:
            assert process.poll() is None, "training ended before it could be interrupted"
            assert time.monotonic() < deadline, "no checkpoint at step 10 within 300 s"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    interrupted_at = _checkpoint_step(checkpoints)
    assert 10 <= interrupted_at < 30 and not output.exists()

    # Snakemake reruns the incomplete job with the same command.
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming from {checkpoints / 'last.pt'} at step {interrupted_at}" in result.stderr
    steps = [int(row["step"]) for row in csv.DictReader((output / "training_log.csv").read_text().splitlines())]
    assert steps == [5, 10, 15, 20, 25, 30]
    assert json.loads((output / "training.json").read_text())["resumed_from"] == interrupted_at


def _checkpoint_step(checkpoints: Path) -> int:
    try:
        return int(torch.load(checkpoints / "last.pt", map_location="cpu", weights_only=True)["step"])
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1


def test_chunked_encoding_and_search_equal_the_unchunked_path(collection, tmp_path) -> None:
    """Memory is bounded by chunk sizes; results must not depend on them."""
    torch.manual_seed(0)
    model = ColBERT.from_backbone(ColBERTConfig(strategy="attention", k=5, dim=16, passage_max_length=32)).eval()
    dataset = PreparedDataset(collection["data"])
    # fp32: in bf16, other batch widths round differently (by up to ~1e-2), which would hide a chunking bug.
    build_index(model, dataset, tmp_path / "whole", batch_size=64, chunk_documents=4096, precision="fp32")
    build_index(
        model, dataset, tmp_path / "chunked", batch_size=2, chunk_documents=3, precision="fp32"
    )  # 6 chunks of 16 documents
    whole, chunked = PrunedIndex(tmp_path / "whole"), PrunedIndex(tmp_path / "chunked")
    assert chunked.doc_ids == whole.doc_ids and chunked.offsets.tolist() == whole.offsets.tolist()
    assert np.allclose(np.asarray(chunked.vectors, np.float32), np.asarray(whole.vectors, np.float32), atol=2e-3)
    with torch.inference_mode():
        queries, mask = model.encode_queries([text for _, _, text in TOPICS])
    unchunked = exact_search(queries, mask, whole, depth=16, chunk_vectors=10**9, query_batch=64)
    for index in (whole, chunked):
        small = exact_search(queries, mask, index, depth=16, chunk_vectors=7, query_batch=3)
        assert small.doc_indices.tolist() == unchunked.doc_indices.tolist()
        assert np.allclose(small.scores, unchunked.scores, atol=1e-3)


KILL_AFTER_FIRST_CHUNK = """
import os, signal, sys
import tokenprune.index as index
write_chunk = index._IndexWriter.write_chunk
def write_then_die(self, *args, **kwargs):
    write_chunk(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # no clean-up runs, as when a scheduler kills the job
index._IndexWriter.write_chunk = write_then_die
from tokenprune.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_stage_killed_mid_write_leaves_nothing_once_it_runs_again(collection, tmp_path) -> None:
    """SIGKILL an index job after its first chunk: the rerun removes the killed attempt's temporary folder."""
    model = tmp_path / "model"
    assert (
        main(
            [
                "untrained-model",
                "--backbone",
                "embedded",
                "--query-max-length",
                "16",
                "--passage-max-length",
                "32",
                "--candidate-tokens",
                "content",
                "--output",
                str(model),
            ]
        )
        == 0
    )

    def index_argv(output: Path) -> list[str]:
        return [
            "index",
            "--model",
            str(model),
            "--data",
            str(collection["data"]),
            "--batch-size",
            "4",
            "--chunk-documents",
            "8",
            "--precision",
            "fp32",
            "--threads",
            "1",
            "--output",
            str(output),
        ]

    assert main(index_argv(tmp_path / "clean" / "index")) == 0
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_CHUNK, *index_argv(tmp_path / "killed" / "index")], cwd=REPO
    )
    assert killed.returncode == -signal.SIGKILL
    leftovers = list((tmp_path / "killed").glob(".index.*.tmp"))
    assert len(leftovers) == 1 and (leftovers[0] / "vectors.f16").stat().st_size > 0
    assert not (tmp_path / "killed" / "index").exists()

    assert main(index_argv(tmp_path / "killed" / "index")) == 0
    assert sorted(path.name for path in (tmp_path / "killed").iterdir()) == ["index"]
    for name in ("vectors.f16", "offsets.npy", "doc_ids.txt", "index_stats.json"):
        assert (tmp_path / "killed" / "index" / name).read_bytes() == (
            tmp_path / "clean" / "index" / name
        ).read_bytes(), name
