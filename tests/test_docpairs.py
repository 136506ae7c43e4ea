"""The docpairs route, end to end: a tiny MS MARCO passage collection in the file layout ir_datasets
downloads, read through ir_datasets' own msmarco-passage loaders (train/triples-small docpairs included)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import workflow_command

# Words the backbone's vocabulary holds whole, so every passage is a few distinct word pieces.
WORDS = [
    "apple",
    "river",
    "engine",
    "violin",
    "desert",
    "harbor",
    "glacier",
    "lantern",
    "orchard",
    "piano",
    "canyon",
    "meadow",
    "rocket",
    "saddle",
    "tunnel",
    "volcano",
    "whistle",
    "anchor",
    "bakery",
    "castle",
    "dolphin",
    "falcon",
    "garden",
    "island",
    "jungle",
    "kettle",
    "ladder",
    "mirror",
    "needle",
    "ocean",
    "pepper",
    "quarry",
    "ribbon",
    "spider",
    "thunder",
    "umbrella",
    "valley",
    "wagon",
    "yacht",
    "zebra",
]
PASSAGES, TRAIN_QUERIES, DEV_QUERIES = 300, 40, 20


def passage_words(pid: int) -> tuple[str, str, str]:
    """Three words of passage ``pid``: no two passages share the first two."""
    n = len(WORDS)
    return WORDS[pid % n], WORDS[pid // n], WORDS[(3 * pid + 5) % n]


def write_msmarco_passage(irds_home: Path) -> dict[str, list[tuple[str, str, str]]]:
    """The cache files ir_datasets reads for msmarco-passage, its train split with triples-small, and dev/small.

    Query ``q`` (id ``1000 + q``) asks for passage ``pid = 5 q``; its docpairs pair that passage with the next
    five passages as negatives. Returns the docpairs written, by split name ``train``.
    """
    base = irds_home / "msmarco-passage"
    (base / "train").mkdir(parents=True)
    (base / "dev" / "small").mkdir(parents=True)
    # ir_datasets re-extracts a collection.tsv that lacks the version mark its own download leaves.
    (base / "irds_version.txt").write_text("v2")
    with open(base / "collection.tsv", "w", encoding="utf-8") as collection:
        for pid in range(PASSAGES):
            first, second, third = passage_words(pid)
            collection.write(f"{pid}\tThis passage is about the {first} and the {second}, seen from a {third}.\n")
    docpairs = []
    for folder, queries in (
        ("train", range(TRAIN_QUERIES)),
        ("dev/small", range(TRAIN_QUERIES, TRAIN_QUERIES + DEV_QUERIES)),
    ):
        with (
            open(base / folder / "queries.tsv", "w", encoding="utf-8") as texts,
            open(base / folder / "qrels", "w") as qrels,
        ):
            for q in queries:
                pid = 5 * q
                first, second, _ = passage_words(pid)
                texts.write(f"{1000 + q}\twhat is said about the {first} and the {second}\n")
                qrels.write(f"{1000 + q}\t0\t{pid}\t1\n")
                if folder == "train":
                    docpairs += [(str(1000 + q), str(pid), str(pid + offset)) for offset in range(1, 6)]
    with open(base / "train" / "small.triples.qidpid.tsv", "w", encoding="utf-8") as triples:
        triples.writelines("\t".join(row) + "\n" for row in docpairs)
    return {"train": docpairs}


@pytest.mark.slow
def test_docpairs_route_runs_from_ir_datasets_files_to_metrics(tmp_path: Path) -> None:
    irds_home = tmp_path / "ir_datasets"
    docpairs = write_msmarco_passage(irds_home)["train"]
    config = {
        "irds_home": str(irds_home),
        "datasets": {
            "msmarco": {
                "irds_id": "msmarco-passage",
                "splits": {"train": "msmarco-passage/train", "dev": "msmarco-passage/dev/small"},
                "document_fields": ["text"],
            }
        },
        "train": {"dataset": "msmarco", "split": "train"},
        "evaluate": [{"dataset": "msmarco", "split": "dev"}],
        "model": {"dim": 16, "passage_max_length": 24, "query_max_length": 16},
        "strategies": ["none", "first"],
        "k": [4],
        "controls": {"posthoc_strategies": ["idf"], "step0": False},
        "training": {
            "steps": 4,
            "batch_size": 4,
            "warmup_steps": 1,
            "checkpoint_every": 4,
            "docpairs_irds_id": "msmarco-passage/train/triples-small",
        },
        "metrics": ["nDCG@10", "RR@10"],
        "seeds": [1],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [*workflow_command(tmp_path, tmp_path / "config.yaml"), "--cores", "2", "--quiet", "all"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]

    # The data stage read the collection and both splits through ir_datasets.
    stats = json.loads((tmp_path / "resources" / "data" / "msmarco" / "stats.json").read_text())
    assert stats["source"] == "ir_datasets msmarco-passage" and stats["documents"] == PASSAGES
    assert {split: counts["queries"] for split, counts in stats["splits"].items()} == {
        "train": TRAIN_QUERIES,
        "dev": DEV_QUERIES,
    }
    # The triples are the docpairs file, row for row, not BM25-mined negatives.
    triples = pq.read_table(tmp_path / "results" / "triples" / "msmarco" / "train.parquet").to_pylist()
    assert [(row["query_id"], row["positive_id"], *row["negative_ids"]) for row in triples] == docpairs
    # Both trained models and the post-hoc control were searched and evaluated on dev/small.
    table = pd.read_csv(tmp_path / "results" / "summary" / "msmarco" / "dev.exact" / "comparison.csv")
    assert {"ColBERT (no pruning)", "first", "idf (post-hoc)", "BM25"} <= set(table["method"])
    assert table["nDCG@10"].between(0, 1).all()
    per_query = (
        tmp_path / "results" / "metrics" / "msmarco" / "none" / "kall" / "seed1" / "msmarco" / "dev.exact.perquery.tsv"
    )
    assert pd.read_csv(per_query, sep="\t")["query_id"].nunique() == DEV_QUERIES
    # The qrels' ids are the corpus's: BM25 mostly ranks first the one passage holding both of a query's words
    # (0.69 here; the third words of other passages tie some). A ranking blind to the ids scores about 0.02.
    assert table.loc[table["method"] == "BM25", "RR@10"].item() > 0.5
