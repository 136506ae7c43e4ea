"""Data stage: real collections give their published counts; bad input fails cleanly."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import REPO, TINY_DOCUMENTS, TINY_QRELS, TINY_QUERIES, write_beir_folder
from tokenprune.data import DatasetSpec, PreparedDataset, prepare_dataset
from tokenprune.data.sources import open_collection
from tokenprune.errors import TokenpruneError


def prepare(folder: Path, output: Path, tokenizer, splits=("train", "test"), **options) -> dict:
    spec = DatasetSpec.from_config("tiny", {"beir_folder": str(folder), "splits": list(splits), **options})
    return prepare_dataset(spec, open_collection(spec, None, output.parent / "irds"), output, tokenizer)


def test_scifact_counts_from_the_real_files(shared_data: Path, tmp_path: Path, tokenizer) -> None:
    spec = DatasetSpec.from_config(
        "scifact",
        {"irds_id": "beir/scifact", "offline_folder": "scifact", "splits": {"train": "x", "test": "y"}},
    )
    source = open_collection(spec, shared_data, tmp_path / "irds")
    stats = prepare_dataset(spec, source, tmp_path / "scifact", tokenizer, passage_max_length=180)

    assert stats["documents"] == 5183
    assert (stats["splits"]["train"]["queries"], stats["splits"]["train"]["judgments"]) == (809, 919)
    assert (stats["splits"]["test"]["queries"], stats["splits"]["test"]["judgments"]) == (300, 339)
    assert stats["passage_tokens"]["median"] > 180  # most SciFact abstracts exceed the paper's 180 tokens
    prepared = PreparedDataset(tmp_path / "scifact")
    assert len(prepared.queries("test")) == 300
    assert sum(len(docs) for docs in prepared.qrels("train").values()) == 919
    assert json.loads((tmp_path / "scifact" / "stats.json").read_text()) == stats


def test_cranfield_loads_offline_through_ir_datasets(shared_data: Path, tmp_path: Path) -> None:
    """The ir_datasets path, seeded with the shared cran.tar.gz, with Cleverdon's grades mapped to gains."""
    env = {**os.environ, "TOKENPRUNE_DATA_DIR": str(shared_data)}
    output = tmp_path / "cranfield"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenprune.cli",
            "prepare-data",
            "--dataset",
            "cranfield",
            "--config",
            str(REPO / "config.yaml"),
            "--output",
            str(output),
            "--irds-home",
            str(tmp_path / "irds"),
        ],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    stats = json.loads((output / "stats.json").read_text())
    assert stats["source"] == "ir_datasets cranfield"
    assert stats["documents"] == 1400
    assert (stats["splits"]["all"]["queries"], stats["splits"]["all"]["judgments"]) == (225, 1837)
    assert (tmp_path / "irds" / "cranfield" / "cran.tar.gz").resolve() == (
        shared_data / "cranfield" / "cran.tar.gz"
    ).resolve()

    qrels = PreparedDataset(output).qrels("all")
    # cranqrel's first line is "1 184 2": code 2 (high relevance) has gain 5 - 2 = 3; -1 (no interest) has gain 0.
    assert qrels["1"]["184"] == 3
    gains = [gain for docs in qrels.values() for gain in docs.values()]
    assert sorted(set(gains)) == [0, 1, 2, 3, 4]
    assert gains.count(0) == 225 and gains.count(4) == 128  # the file's -1 and 1 counts
    # Its text already starts with the title, so the title is not prepended a second time.
    first = pq.read_table(output / "corpus.parquet").slice(0, 1).to_pylist()[0]
    assert first["doc_id"] == "1"
    assert first["text"].startswith(
        "experimental investigation of the aerodynamics of a wing in a slipstream . an experimental study"
    )
    assert first["text"].count("experimental investigation of the aerodynamics") == 1


def test_small_beir_folder_round_trips(tiny_beir: Path, tmp_path: Path, tokenizer) -> None:
    stats = prepare(tiny_beir, tmp_path / "out", tokenizer)
    prepared = PreparedDataset(tmp_path / "out")

    ids, texts = prepared.corpus()
    assert ids == ["d1", "d2", "d3"]
    assert texts[0] == "Aspirin Aspirin reduces the risk of heart attacks."  # title + text
    assert texts[1] == "Vitamin C does not cure the common cold."  # empty title skipped
    assert prepared.queries("train") == {"q1": "does aspirin prevent heart attacks", "q2": "vitamin c and colds"}
    assert prepared.queries("test") == {"q3": "how much sleep"}
    assert prepared.qrels("test") == {"q3": {"d3": 2}}
    assert stats["splits"]["train"] == {
        "queries": 2,
        "judgments": 2,
        "relevant_judgments": 2,
        "unknown_query_judgments": 0,
        "unknown_document_judgments": 0,
        # does as ##pi ##rin prevent heart attacks (7); vitamin c and cold ##s (5)
        "query_tokens": {"mean": 6.0, "median": 6.0, "max": 7},
    }
    assert [batch[0] for batch in prepared.corpus_batches(batch_size=2)] == [["d1", "d2"], ["d3"]]


def test_corpus_is_written_in_batches(tiny_beir: Path, tmp_path: Path, tokenizer) -> None:
    spec = DatasetSpec.from_config("tiny", {"beir_folder": str(tiny_beir), "splits": ["train"]})
    prepare_dataset(spec, open_collection(spec, None, tmp_path), tmp_path / "out", tokenizer, batch_size=2)
    assert pq.ParquetFile(tmp_path / "out" / "corpus.parquet").metadata.num_rows == 3
    assert pq.ParquetFile(tmp_path / "out" / "corpus.parquet").metadata.num_row_groups == 2


def assert_no_output(output: Path) -> None:
    assert not output.exists()
    assert not [path for path in output.parent.iterdir() if path.name.startswith(f".{output.name}.")]


def test_missing_folder(tmp_path: Path, tokenizer) -> None:
    with pytest.raises(TokenpruneError, match="'/nonexistent/beir' does not exist"):
        prepare(Path("/nonexistent/beir"), tmp_path / "out", tokenizer)


def test_missing_split_names_the_available_ones(tiny_beir: Path, tmp_path: Path, tokenizer) -> None:
    with pytest.raises(
        TokenpruneError, match=r"split 'dev' needs qrels/dev.tsv .*available splits: \['test', 'train'\]"
    ):
        prepare(tiny_beir, tmp_path / "out", tokenizer, splits=["train", "dev"])
    assert_no_output(tmp_path / "out")


def test_malformed_json_line_names_file_and_line(tmp_path: Path, tokenizer) -> None:
    folder = write_beir_folder(tmp_path / "bad", TINY_DOCUMENTS, TINY_QUERIES, TINY_QRELS)
    corpus = folder / "corpus.jsonl"
    lines = corpus.read_text().splitlines()
    lines[1] = lines[1][:-1]  # drop the closing brace of the second document
    corpus.write_text("\n".join(lines) + "\n")
    with pytest.raises(TokenpruneError, match=rf"{corpus}:2: malformed JSON"):
        prepare(folder, tmp_path / "out", tokenizer)
    assert_no_output(tmp_path / "out")


def test_duplicate_document_id(tmp_path: Path, tokenizer) -> None:
    folder = write_beir_folder(tmp_path / "dup", [*TINY_DOCUMENTS, TINY_DOCUMENTS[1]], TINY_QUERIES, TINY_QRELS)
    with pytest.raises(TokenpruneError, match="duplicate document id 'd2'"):
        prepare(folder, tmp_path / "out", tokenizer)
    assert_no_output(tmp_path / "out")


def test_unknown_ids_in_qrels_warn_or_fail_when_strict(tmp_path: Path, tokenizer, caplog) -> None:
    qrels = {"train": [("q1", "d1", 1), ("q1", "d404", 1), ("q404", "d2", 1)], "test": TINY_QRELS["test"]}
    folder = write_beir_folder(tmp_path / "unknown", TINY_DOCUMENTS, TINY_QUERIES, qrels)
    spec = DatasetSpec.from_config("tiny", {"beir_folder": str(folder), "splits": ["train", "test"]})

    with pytest.raises(TokenpruneError, match=r"1 judgments name 1 unknown queries \(e.g. 'q404'\)"):
        prepare_dataset(spec, open_collection(spec, None, tmp_path), tmp_path / "strict", tokenizer, strict=True)
    assert_no_output(tmp_path / "strict")

    with caplog.at_level(logging.WARNING):
        stats = prepare_dataset(spec, open_collection(spec, None, tmp_path), tmp_path / "lenient", tokenizer)
    assert "unknown documents (e.g. 'd404')" in caplog.text
    train = stats["splits"]["train"]
    assert (train["unknown_query_judgments"], train["unknown_document_judgments"]) == (1, 1)
    # The unknown query's judgment is dropped (it cannot be run); the unknown document's is kept.
    assert PreparedDataset(tmp_path / "lenient").qrels("train") == {"q1": {"d1": 1, "d404": 1}}


def test_empty_corpus(tmp_path: Path, tokenizer) -> None:
    folder = write_beir_folder(tmp_path / "empty", [], TINY_QUERIES, TINY_QRELS)
    with pytest.raises(TokenpruneError, match="the corpus is empty"):
        prepare(folder, tmp_path / "out", tokenizer)
    assert_no_output(tmp_path / "out")


def test_empty_passages_are_named_and_kept(tmp_path: Path, tokenizer, caplog) -> None:
    documents = [*TINY_DOCUMENTS, {"_id": "d4", "title": "", "text": "  "}, {"_id": "d5", "title": "", "text": ""}]
    folder = write_beir_folder(tmp_path / "empty-passages", documents, TINY_QUERIES, TINY_QRELS)
    with caplog.at_level(logging.WARNING):
        stats = prepare(folder, tmp_path / "out", tokenizer)
    assert "2 documents have no text (e.g. 'd4', 'd5')" in caplog.text
    assert stats["empty_documents"] == 2 and stats["documents"] == 5


def test_unmapped_relevance_code(tiny_beir: Path, tmp_path: Path, tokenizer) -> None:
    with pytest.raises(TokenpruneError, match=r"relevance code 2 is not in relevance_gain \(mapped codes: \[0, 1\]\)"):
        prepare(tiny_beir, tmp_path / "out", tokenizer, relevance_gain={"0": 0, "1": 1})
    assert_no_output(tmp_path / "out")


def test_unknown_irds_id(tmp_path: Path) -> None:
    spec = DatasetSpec.from_config("x", {"irds_id": "no-such-collection", "splits": {"test": "no-such-collection"}})
    with pytest.raises(TokenpruneError, match="'no-such-collection' is not an ir_datasets id"):
        open_collection(spec, None, tmp_path)


def test_cli_reports_errors_in_one_line(tmp_path: Path) -> None:
    spec = json.dumps({"beir_folder": str(tmp_path / "missing"), "splits": ["test"]})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenprune.cli",
            "prepare-data",
            "--dataset",
            "x",
            "--spec",
            spec,
            "--irds-home",
            str(tmp_path / "irds"),
            "--backbone",
            "embedded",
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert (
        f"tokenprune prepare-data: error: dataset 'x': BEIR folder '{tmp_path / 'missing'}' does not exist"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("name", "documents", "queries", "judgments"),
    [("med", 1033, 30, 696), ("adi", 82, 35, 170), ("vaswani", 11429, 93, 2083)],
)
def test_classic_collections_from_their_original_files(
    shared_data, tmp_path, tokenizer, name, documents, queries, judgments
) -> None:
    spec = DatasetSpec.from_config(name, {"classic": name, "offline_folder": name, "splits": ["all"]})
    stats = prepare_dataset(spec, open_collection(spec, shared_data, tmp_path), tmp_path / name, tokenizer)
    assert stats["documents"] == documents
    assert (stats["splits"]["all"]["queries"], stats["splits"]["all"]["judgments"]) == (queries, judgments)
    assert stats["splits"]["all"]["unknown_document_judgments"] == 0 and stats["empty_documents"] == 0


def test_smart_reader_on_a_hand_made_file(tmp_path: Path) -> None:
    from tokenprune.data.classic import read_npl_records, read_smart_records

    (tmp_path / "docs").write_text(
        ".I 7\r\n.T\r\nA title\r\n.A\r\nSomeone\r\n.W\r\nfirst line\r\nsecond line\r\n.I 9\r\n.W\r\nonly text\r\n"
    )
    assert list(read_smart_records(tmp_path / "docs")) == [
        ("7", {"title": "A title", "author": "Someone", "text": "first line second line"}),
        ("9", {"text": "only text"}),
    ]
    (tmp_path / "npl").write_text("1\nsome text\nmore\n   /\n2\nother\n/\n")
    assert list(read_npl_records(tmp_path / "npl")) == [("1", "some text more"), ("2", "other")]
    (tmp_path / "bad").write_text("1\nunterminated\n")
    with pytest.raises(TokenpruneError, match="not terminated by '/'"):
        list(read_npl_records(tmp_path / "bad"))


def test_a_registered_source_kind_reads_the_datasets_it_applies_to(monkeypatch, tmp_path) -> None:
    """A new kind of source is one registered opener: open_collection picks it before the ir_datasets fallback."""
    from tokenprune.data import sources
    from tokenprune.data.spec import DatasetSpec

    monkeypatch.setattr(sources, "SOURCE_KINDS", list(sources.SOURCE_KINDS))
    opened = []

    @sources.register_source("lines file", ("lines_file",), lambda spec, offline: "lines_file" in spec.extra)
    def open_lines(spec, offline, irds_home):
        opened.append(spec.extra["lines_file"])
        return "a source"

    assert [kind.name for kind in sources.SOURCE_KINDS][-2:] == ["lines file", sources.IRDS_KIND]
    assert "lines_file" in sources.source_keys()
    spec = DatasetSpec.from_config("mine", {"lines_file": "docs.txt", "splits": ["test"]})
    assert sources.open_collection(spec, None, tmp_path) == "a source" and opened == ["docs.txt"]
    # A spec of no kind at all names every key that would select one.
    with pytest.raises(TokenpruneError, match="set one of 'beir_folder', 'classic', 'irds_id', 'lines_file'"):
        sources.open_collection(DatasetSpec.from_config("none", {"splits": ["test"]}), None, tmp_path)


def test_an_idf_table_is_written_byte_for_byte_the_same_each_time(tiny_beir: Path, tmp_path: Path, tokenizer) -> None:
    """safetensors writes several metadata entries in hash order; the table keeps one, so reruns are identical."""
    import json

    from safetensors import safe_open

    from tokenprune.idf import compute_idf

    prepare(tiny_beir, tmp_path / "data", tokenizer)
    dataset = PreparedDataset(tmp_path / "data")
    written = []
    for attempt in range(4):
        compute_idf(dataset, tokenizer, tmp_path / f"idf{attempt}.safetensors")
        written.append((tmp_path / f"idf{attempt}.safetensors").read_bytes())
    assert len(set(written)) == 1
    with safe_open(str(tmp_path / "idf0.safetensors"), "pt") as table:
        assert json.loads(table.metadata()["tokenprune_counts"]) == {"documents": 3, "vocabulary": len(tokenizer)}
