"""Shared fixtures: the real offline collections and small hand-built ones."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TOKENPRUNE_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real collections (``../shared/data`` or ``$TOKENPRUNE_DATA_DIR``)."""
    if not (SHARED_DATA / "scifact" / "corpus.jsonl").is_file():
        pytest.skip(f"real collections not found at {SHARED_DATA}; set TOKENPRUNE_DATA_DIR")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer():
    from tokenprune.backbone import load_tokenizer

    return load_tokenizer("embedded")


def write_beir_folder(
    folder: Path,
    documents: list[dict],
    queries: list[dict],
    qrels: dict[str, list[tuple[str, str, int]]],
) -> Path:
    """Write a small collection in BEIR layout (qrels with BEIR's header and CRLF line ends)."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in documents))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{r}" for q, d, r in rows]
        (folder / "qrels" / f"{split}.tsv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return folder


TINY_DOCUMENTS = [
    {"_id": "d1", "title": "Aspirin", "text": "Aspirin reduces the risk of heart attacks.", "metadata": {}},
    {"_id": "d2", "title": "", "text": "Vitamin C does not cure the common cold.", "metadata": {}},
    {"_id": "d3", "title": "Sleep", "text": "Adults need seven hours of sleep.", "metadata": {}},
]
TINY_QUERIES = [
    {"_id": "q1", "text": "does aspirin prevent heart attacks", "metadata": {}},
    {"_id": "q2", "text": "vitamin c and colds", "metadata": {}},
    {"_id": "q3", "text": "how much sleep", "metadata": {}},
]
TINY_QRELS = {"train": [("q1", "d1", 1), ("q2", "d2", 1)], "test": [("q3", "d3", 2)]}


@pytest.fixture()
def tiny_beir(tmp_path: Path) -> Path:
    return write_beir_folder(tmp_path / "tiny", TINY_DOCUMENTS, TINY_QUERIES, TINY_QRELS)


# Eight topics, each with a relevant passage and an unrelated one; four train queries, four test queries.
TOPICS = [
    (
        "Aspirin",
        "Aspirin reduces the risk of heart attacks in adults with cardiovascular disease.",
        "does aspirin prevent heart attacks",
    ),
    ("Vitamin", "Vitamin C supplements do not cure the common cold but may shorten it.", "vitamin c and colds"),
    ("Sleep", "Adults need about seven hours of sleep each night for good health.", "how much sleep do adults need"),
    ("Coffee", "Moderate coffee drinking is associated with lower mortality.", "is coffee bad for health"),
    (
        "Exercise",
        "Regular aerobic exercise lowers blood pressure in hypertensive patients.",
        "exercise and blood pressure",
    ),
    ("Smoking", "Smoking tobacco is the leading cause of lung cancer worldwide.", "what causes lung cancer"),
    ("Sugar", "High sugar intake increases the risk of type 2 diabetes.", "sugar and diabetes risk"),
    ("Vaccine", "Measles vaccination provides long lasting immunity in children.", "measles vaccine immunity"),
]


def write_topics_collection(folder: Path) -> Path:
    """The 8 topics as a BEIR folder: 16 passages (each topic's and an unrelated one), train q0–q3, test q4–q7."""
    documents, queries, qrels = [], [], {"train": [], "test": []}
    for i, (title, text, query) in enumerate(TOPICS):
        documents.append({"_id": f"d{i}", "title": title, "text": text})
        documents.append(
            {"_id": f"x{i}", "title": "", "text": f"An unrelated note number {i} about weather, trains and music."}
        )
        queries.append({"_id": f"q{i}", "text": query})
        qrels["train" if i < 4 else "test"].append((f"q{i}", f"d{i}", 1))
    return write_beir_folder(folder, documents, queries, qrels)


def fake_nvidia_smi(folder: Path, listing: str, exit_code: int = 0) -> Path:
    """A folder holding an ``nvidia-smi`` that prints ``listing`` for ``-L`` and exits with ``exit_code``."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    # printf is a shell builtin: the tests put only this folder on PATH.
    script.write_text(f"#!/bin/sh\nprintf '%s' '{listing}'\nexit {exit_code}\n")
    script.chmod(0o755)
    return folder


def workflow_command(workdir: Path, config: Path) -> list[str]:
    """``snakemake`` on the repository's Snakefile, run in ``workdir`` with ``config``; add the cores and targets."""
    return [
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(config),
    ]


def tiny_study(folder: Path) -> Path:
    """A BEIR folder and a config for a study that runs in a minute or two on a CPU."""
    data = write_topics_collection(folder / "collection")
    config = {
        "datasets": {"tiny": {"beir_folder": str(data), "splits": ["train", "test"]}},
        "train": {"dataset": "tiny", "split": "train"},
        "evaluate": [{"dataset": "tiny", "split": "test"}],
        "model": {"dim": 16, "passage_max_length": 32, "query_max_length": 16},
        "strategies": ["none", "first", "attention"],
        "k": [4],
        "training": {"steps": 2, "batch_size": 2, "warmup_steps": 1, "negatives_per_query": 2, "checkpoint_every": 2},
        # Two shard jobs per index (8 documents each), merged: the sharded path runs end to end.
        "indexing": {"shards": 2, "chunk_documents": 8},
        "metrics": ["nDCG@10", "RR@10"],
        "seeds": [1],
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def tiny_report(tmp_path_factory) -> Path:
    """The tiny study run locally into its HTML report, once per test session; the folder it ran in.

    Shared by the report tests and the SLURM test, which compares its metrics with these.
    """
    tmp_path = tmp_path_factory.mktemp("tiny-study")
    config = tiny_study(tmp_path)
    workflow = workflow_command(tmp_path, config)
    run = subprocess.run([*workflow, "--cores", "2", "--quiet", "all"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    report = subprocess.run([*workflow, "--report", "reports/report.html"], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr[-3000:]
    return tmp_path
