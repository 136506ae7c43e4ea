"""Bad input through the command line: one line naming the offending value, exit status 2,
no traceback, and no output left behind (not even a temporary file)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import TINY_DOCUMENTS, TINY_QRELS, TINY_QUERIES, write_beir_folder
from tokenprune.cli import main
from tokenprune.data import DatasetSpec, PreparedDataset, prepare_dataset
from tokenprune.data.sources import irds_stream, open_collection
from tokenprune.errors import TokenpruneError
from tokenprune.index import build_index
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.negatives import mine_bm25_negatives


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """A prepared tiny collection, its triples, a small model and its index."""
    folder = tmp_path_factory.mktemp("bad-input")
    beir = write_beir_folder(folder / "beir", TINY_DOCUMENTS, TINY_QUERIES, TINY_QRELS)
    spec = DatasetSpec.from_config("tiny", {"beir_folder": str(beir), "splits": ["train", "test"]})
    prepare_dataset(spec, open_collection(spec, None, folder / "irds"), folder / "data", tokenizer)
    dataset = PreparedDataset(folder / "data")
    mine_bm25_negatives(dataset, "train", folder / "triples.parquet", negatives_per_query=1, skip=0)
    model = ColBERT.from_backbone(ColBERTConfig(strategy="first", k=4, dim=16, passage_max_length=32))
    model.save(folder / "model")
    build_index(model, dataset, folder / "index", batch_size=64, chunk_documents=4096, precision="auto")
    return {
        "root": folder,
        "beir": beir,
        "data": folder / "data",
        "triples": folder / "triples.parquet",
        "model": folder / "model",
        "index": folder / "index",
    }


def fails_cleanly(argv: list[str], message: str, output: Path, capsys) -> None:
    """Run ``tokenprune argv``; it must exit 2 with ``message`` in one stderr line and leave ``output`` absent."""
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1, errors
    assert message in errors[0], errors[0]
    assert not output.exists(), f"{output} was left behind"
    leftovers = [path.name for path in output.parent.iterdir() if path.name.startswith(f".{output.name}.")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


INDEX_OPTIONS = ["--batch-size", "4", "--chunk-documents", "8", "--precision", "fp32", "--threads", "1"]


def train_argv(workspace: dict[str, Path], output: Path, *extra: str) -> list[str]:
    # Every option the rule passes is required; the test's own values come first, ``extra`` overrides them.
    return [
        "train",
        "--data",
        str(workspace["data"]),
        "--split",
        "train",
        "--triples",
        str(workspace["triples"]),
        "--k",
        "all",
        "--seed",
        "42",
        "--model-config",
        "{}",
        "--training-config",
        "{}",
        "--checkpoint-dir",
        str(output.parent / "checkpoints"),
        "--threads",
        "1",
        "--output",
        str(output),
        *extra,
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "atention"], "unknown strategy 'atention'"),
        (["--strategy", "first", "--k", "0"], "k must be a positive integer or 'all', got '0'"),
        (["--strategy", "first", "--k", "ten"], "k must be a positive integer or 'all', got 'ten'"),
        (["--strategy", "first", "--k", "2.5"], "k must be a positive integer or 'all', got '2.5'"),
        (["--strategy", "unused", "--k", "5000"], "needs 5000 [unusedN] tokens, but the vocabulary has only 992"),
        (["--strategy", "none", "--model-config", '{"dim": 0}'], "dim must be a positive integer, got 0"),
        (["--strategy", "none", "--model-config", '{"dimension": 64}'], "unknown model setting(s) ['dimension']"),
        (["--strategy", "none", "--model-config", '{"backbone": "/no/such/model"}'], "/no/such/model"),
    ],
    ids=[
        "unknown-strategy",
        "k-zero",
        "k-word",
        "k-fraction",
        "k-beyond-unused",
        "dim-zero",
        "unknown-setting",
        "missing-backbone",
    ],
)
def test_bad_training_arguments(workspace, tmp_path, capsys, extra, message) -> None:
    output = tmp_path / "model"
    fails_cleanly(train_argv(workspace, output, *extra), message, output, capsys)


def test_unknown_measure(workspace, tmp_path, capsys) -> None:
    run = tmp_path / "run.trec"
    run.write_text("q3 Q0 d3 1 1.0 t\n")
    output = tmp_path / "metrics.json"
    fails_cleanly(
        [
            "evaluate",
            "--run",
            str(run),
            "--data",
            str(workspace["data"]),
            "--split",
            "test",
            "--metrics",
            "nDCG@10",
            "nDGC@10",
            "--output",
            str(output),
            "--per-query",
            str(tmp_path / "pq.tsv"),
        ],
        "'nDGC@10'",
        output,
        capsys,
    )
    assert not (tmp_path / "pq.tsv").exists()


def test_split_the_dataset_lacks(workspace, tmp_path, capsys) -> None:
    output = tmp_path / "run.trec"
    fails_cleanly(
        [
            "retrieve",
            "--model",
            str(workspace["model"]),
            "--index",
            str(workspace["index"]),
            "--data",
            str(workspace["data"]),
            "--split",
            "dev",
            "--mode",
            "exact",
            "--depth",
            "10",
            "--query-max-length",
            "16",
            "--threads",
            "1",
            "--output",
            str(output),
        ],
        "has no split 'dev'",
        output,
        capsys,
    )


def test_dataset_folder_missing(workspace, tmp_path, capsys) -> None:
    output = tmp_path / "index"
    fails_cleanly(
        [
            "index",
            "--model",
            str(workspace["model"]),
            "--data",
            str(tmp_path / "nowhere"),
            *INDEX_OPTIONS,
            "--output",
            str(output),
        ],
        f"'{tmp_path / 'nowhere'}' is not a prepared dataset",
        output,
        capsys,
    )


def test_model_path_that_does_not_exist(workspace, tmp_path, capsys) -> None:
    output = tmp_path / "index"
    fails_cleanly(
        [
            "index",
            "--model",
            str(tmp_path / "no-model"),
            "--data",
            str(workspace["data"]),
            *INDEX_OPTIONS,
            "--output",
            str(output),
        ],
        f"'{tmp_path / 'no-model'}' is not a tokenprune model",
        output,
        capsys,
    )


def test_corrupted_model_weights(workspace, tmp_path, capsys) -> None:
    model = tmp_path / "model"
    shutil.copytree(workspace["model"], model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    output = tmp_path / "index"
    fails_cleanly(
        ["index", "--model", str(model), "--data", str(workspace["data"]), *INDEX_OPTIONS, "--output", str(output)],
        f"model folder '{model}' is unreadable or corrupted",
        output,
        capsys,
    )


@pytest.mark.parametrize("damage", ["truncate-vectors", "stats-json"])
def test_corrupted_index(workspace, tmp_path, capsys, damage) -> None:
    index = tmp_path / "index"
    shutil.copytree(workspace["index"], index)
    if damage == "truncate-vectors":
        with open(index / "vectors.f16", "r+b") as vectors:
            vectors.truncate(10)
        message = "vectors.f16 has 10 bytes"
    else:
        (index / "index_stats.json").write_text('{"documents": 3,')
        message = "index_stats.json is corrupted"
    output = tmp_path / "run.trec"
    fails_cleanly(
        [
            "retrieve",
            "--model",
            str(workspace["model"]),
            "--index",
            str(index),
            "--data",
            str(workspace["data"]),
            "--split",
            "test",
            "--mode",
            "exact",
            "--depth",
            "10",
            "--query-max-length",
            "16",
            "--threads",
            "1",
            "--output",
            str(output),
        ],
        message,
        output,
        capsys,
    )


def test_malformed_jsonl_names_file_and_line(workspace, tmp_path, capsys) -> None:
    beir = tmp_path / "beir"
    shutil.copytree(workspace["beir"], beir)
    lines = (beir / "queries.jsonl").read_text().splitlines()
    lines[2] = '{"_id": "q3", "text": "how much sleep"'
    (beir / "queries.jsonl").write_text("\n".join(lines) + "\n")
    output = tmp_path / "data"
    fails_cleanly(
        [
            "prepare-data",
            "--dataset",
            "tiny",
            "--spec",
            json.dumps({"beir_folder": str(beir), "splits": ["test"]}),
            "--irds-home",
            str(tmp_path / "irds"),
            "--backbone",
            "embedded",
            "--output",
            str(output),
        ],
        f"{beir / 'queries.jsonl'}:3: malformed JSON",
        output,
        capsys,
    )


def test_unknown_qrels_ids_fail_when_strict(workspace, tmp_path, capsys) -> None:
    beir = tmp_path / "beir"
    shutil.copytree(workspace["beir"], beir)
    with open(beir / "qrels" / "test.tsv", "a", encoding="utf-8") as qrels:
        qrels.write("q3\td999\t1\r\n")
    output = tmp_path / "data"
    fails_cleanly(
        [
            "prepare-data",
            "--dataset",
            "tiny",
            "--spec",
            json.dumps({"beir_folder": str(beir), "splits": ["test"]}),
            "--irds-home",
            str(tmp_path / "irds"),
            "--backbone",
            "embedded",
            "--strict",
            "--output",
            str(output),
        ],
        "'d999'",
        output,
        capsys,
    )


def test_corrupted_checkpoint(workspace, tmp_path, capsys) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last.pt").write_bytes(b"not a checkpoint")
    output = tmp_path / "model"
    fails_cleanly(
        train_argv(
            workspace,
            output,
            "--strategy",
            "first",
            "--k",
            "4",
            "--model-config",
            '{"dim": 16, "passage_max_length": 32}',
        ),
        f"checkpoint '{checkpoints / 'last.pt'}' is corrupted",
        output,
        capsys,
    )


def test_failed_ir_datasets_download_names_the_dataset_and_the_way_out(monkeypatch) -> None:
    import requests

    def unreachable():
        yield "first item"
        raise requests.exceptions.ConnectionError("Max retries exceeded with url: /msmarcoranking/collection.tar.gz")

    monkeypatch.setenv("IR_DATASETS_HOME", "/data/irds")
    items = irds_stream(unreachable(), "msmarco-passage")
    assert next(items) == "first item"
    with pytest.raises(TokenpruneError) as raised:
        next(items)
    assert str(raised.value) == (
        "ir_datasets could not fetch a file of 'msmarco-passage' (ConnectionError: Max retries exceeded with url: "
        "/msmarcoranking/collection.tar.gz); without network access, put the files it downloads in an offline "
        "folder (docs/troubleshooting.md, 'Offline data') or in its cache under '/data/irds'"
    )


def test_atomic_writes_remove_only_their_own_leftovers(tmp_path) -> None:
    from tokenprune.io import atomic_directory, atomic_file

    (tmp_path / ".cisi.nv3qvwts.tmp").mkdir()
    (tmp_path / ".cisi.nv3qvwts.tmp" / "vectors.f16").write_bytes(b"half")
    (tmp_path / ".cisi.abcd_123.tmp").write_text("half")
    others = [".cisi2.nv3qvwts.tmp", ".cisi.x.nv3qvwts.tmp", "cisi.nv3qvwts.tmp", ".cisi.short.tmp"]
    for name in others:
        (tmp_path / name).write_text("not ours")
    with atomic_directory(tmp_path / "cisi") as folder:
        (folder / "done").write_text("x")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*others, "cisi"])
    (tmp_path / ".table.csv.q1w2e3r4.tmp").write_text("half")
    with atomic_file(tmp_path / "table.csv") as path:
        path.write_text("a,b\n")
    assert not (tmp_path / ".table.csv.q1w2e3r4.tmp").exists() and (tmp_path / "table.csv").read_text() == "a,b\n"
