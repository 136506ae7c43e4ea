"""Training on real SciFact triples: the loss falls for every strategy, and interrupted runs resume."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tokenprune.data import DatasetSpec, PreparedDataset, prepare_dataset
from tokenprune.data.sources import open_collection
from tokenprune.errors import TokenpruneError
from tokenprune.idf import compute_idf, load_idf
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.negatives import mine_bm25_negatives
from tokenprune.training import (
    TrainingSettings,
    TripleSampler,
    import_trained,
    learning_rate_factor,
    save_trained,
    train,
)

SMALL_MODEL = {"dim": 32, "query_max_length": 16, "passage_max_length": 40, "projection_init": "random"}


@pytest.fixture(scope="session")
def scifact(shared_data: Path, tmp_path_factory, tokenizer) -> PreparedDataset:
    spec = DatasetSpec.from_config("scifact", {"beir_folder": str(shared_data / "scifact"), "splits": ["train"]})
    folder = tmp_path_factory.mktemp("data") / "scifact"
    prepare_dataset(spec, open_collection(spec, None, folder.parent), folder, tokenizer)
    return PreparedDataset(folder)


@pytest.fixture(scope="session")
def triples(scifact: PreparedDataset, tmp_path_factory) -> Path:
    """BM25-mined triples of the first 16 training pairs: a set small enough to fit in a few dozen steps."""
    folder = tmp_path_factory.mktemp("triples")
    counts = mine_bm25_negatives(scifact, "train", folder / "all.parquet", negatives_per_query=5, skip=0)
    assert counts == {"queries": 809, "pairs": 919, "queries_without_negatives": 0}
    table = pq.read_table(folder / "all.parquet")
    first = table.slice(0, 1).to_pylist()[0]
    assert first["positive_id"] not in first["negative_ids"] and len(first["negative_ids"]) == 5
    pq.write_table(table.slice(0, 16), folder / "small.parquet")
    return folder / "small.parquet"


@pytest.fixture(scope="session")
def idf(scifact: PreparedDataset, tokenizer, tmp_path_factory) -> torch.Tensor:
    path = tmp_path_factory.mktemp("idf") / "idf.safetensors"
    computed = compute_idf(scifact, tokenizer, path)
    assert torch.equal(load_idf(path), computed)
    return computed


class NaiveTripleSampler:
    """The reference: every id and every named passage's text held in Python lists and a dict."""

    def __init__(self, triples: Path, dataset: PreparedDataset, split: str, batch_size: int, seed: int) -> None:
        table = pq.read_table(triples)
        self.query_ids = table.column("query_id").to_pylist()
        self.positive_ids = table.column("positive_id").to_pylist()
        self.negative_ids = table.column("negative_ids").to_pylist()
        self.batch_size, self.seed = batch_size, seed
        self.queries = dataset.queries(split)
        doc_ids, texts = dataset.corpus()
        self.passages = dict(zip(doc_ids, texts, strict=True))

    def batch(self, step: int) -> tuple[list[str], list[str], list[str]]:
        rng = np.random.default_rng([self.seed, step, 1])
        queries, positives, negatives = [], [], []
        for index in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, offset = divmod(index, len(self.query_ids))
            row = int(np.random.default_rng([self.seed, epoch]).permutation(len(self.query_ids))[offset])
            queries.append(self.queries[self.query_ids[row]])
            positives.append(self.passages[self.positive_ids[row]])
            candidates = self.negative_ids[row]
            negatives.append(self.passages[candidates[int(rng.integers(len(candidates)))]])
        return queries, positives, negatives

    def sample_passages(self, count: int) -> list[str]:
        named = sorted(set(self.positive_ids).union(*map(set, self.negative_ids)))
        chosen = np.random.default_rng([self.seed, 2**31]).choice(
            len(named), size=min(count, len(named)), replace=False
        )
        return [self.passages[named[int(index)]] for index in chosen]


def test_sampler_batches_equal_the_naive_reference(scifact: PreparedDataset, tmp_path: Path) -> None:
    counts = mine_bm25_negatives(scifact, "train", tmp_path / "triples.parquet", negatives_per_query=5, skip=0)
    triples = tmp_path / "triples.parquet"
    # Read 100 triples at a time, so the row lookup crosses many slices; 919 triples in steps of 32 cross epochs.
    sampler = TripleSampler(triples, scifact, "train", 32, 7, read_rows=100)
    reference = NaiveTripleSampler(triples, scifact, "train", 32, 7)
    assert len(sampler) == counts["pairs"] == 919
    assert sampler.query_rows.dtype == sampler.positive_rows.dtype == sampler.negative_rows.dtype == np.int32
    for step in (0, 1, 28, 29, 57, 100):
        assert sampler.batch(step) == reference.batch(step), step
    assert sampler.sample_passages(256) == reference.sample_passages(256)


def test_passage_store_returns_each_text_by_row(scifact: PreparedDataset) -> None:
    store = scifact.passage_store()
    doc_ids, texts = scifact.corpus()
    assert len(store) == len(texts) == 5183
    assert [store.text(row) for row in range(len(texts))] == texts
    with pytest.raises(TokenpruneError, match="passage row 5183 is outside the corpus's 5183 passages"):
        store.text(5183)


def test_sampler_names_ids_absent_from_the_collection(scifact: PreparedDataset, tmp_path: Path) -> None:
    rows = {
        "query_id": ["0", "nope-q"],
        "positive_id": ["31715818", "31715818"],
        "negative_ids": [["gone-1"], ["gone-2"]],
    }
    pq.write_table(pa.table(rows), tmp_path / "bad.parquet")
    with pytest.raises(TokenpruneError, match=r"triples name 1 queries absent from split 'train', e.g. \['nope-q'\]"):
        TripleSampler(tmp_path / "bad.parquet", scifact, "train", 2, 0)
    rows["query_id"] = ["0", "0"]
    pq.write_table(pa.table(rows), tmp_path / "bad.parquet")
    with pytest.raises(
        TokenpruneError, match=r"triples name 2 passages absent from the corpus, e.g. \['gone-1', 'gone-2'\]"
    ):
        TripleSampler(tmp_path / "bad.parquet", scifact, "train", 2, 0)


def test_idf_table_matches_document_frequencies(idf: torch.Tensor, tokenizer) -> None:
    # "the" is in almost every abstract, a rare word in few: idf orders them.
    the, rare = tokenizer.convert_tokens_to_ids(["the", "thrombocytopenia"])
    assert idf[the] < 0.1 < 3.0 < idf[rare]
    assert idf.max() == pytest.approx(torch.log(torch.tensor(5184.0)).item())  # unseen tokens: ln((1 + N) / 1)


def test_learning_rate_schedule() -> None:
    assert [round(learning_rate_factor(s, 4, 12), 3) for s in range(12)] == [
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
        0.875,
        0.75,
        0.625,
        0.5,
        0.375,
        0.25,
        0.125,
    ]


def window_means(log_rows: list[dict]) -> tuple[float, float]:
    losses = [float(row["loss"]) for row in log_rows]
    return sum(losses[:2]) / 2, sum(losses[-2:]) / 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "k"), [("none", None), ("first", 8), ("idf", 8), ("unused", 8), ("attention", 8), ("pool", 8)]
)
def test_loss_falls_clearly_for_every_strategy(scifact, triples, idf, tmp_path, strategy, k) -> None:
    torch.manual_seed(0)
    model = ColBERT.from_backbone(ColBERTConfig(strategy=strategy, k=k, **SMALL_MODEL), idf=idf)
    settings = TrainingSettings(
        steps=60, batch_size=4, learning_rate=1e-4, warmup_steps=5, log_every=5, checkpoint_every=60, seed=0
    )
    sampler = TripleSampler(triples, scifact, "train", settings.batch_size, settings.seed)
    summary = train(model, sampler, settings, tmp_path / "checkpoints", progress=False)
    first, last = window_means(summary["loss_log"])
    assert summary["steps"] == 60
    assert last < 0.5 * first, f"{strategy}: loss {first:.3f} -> {last:.3f}"


@pytest.mark.slow
def test_interrupted_training_resumes_from_its_checkpoint(scifact, triples, tmp_path) -> None:
    settings = TrainingSettings(
        steps=12, batch_size=2, learning_rate=5e-5, warmup_steps=2, log_every=2, checkpoint_every=4, seed=3
    )
    config = ColBERTConfig(strategy="first", k=6, **SMALL_MODEL)

    def fresh() -> ColBERT:
        torch.manual_seed(3)
        return ColBERT.from_backbone(config)

    sampler = TripleSampler(triples, scifact, "train", settings.batch_size, settings.seed)
    uninterrupted = fresh()
    reference = train(uninterrupted, sampler, settings, tmp_path / "reference", progress=False)

    interrupted = fresh()
    partial = train(interrupted, sampler, settings, tmp_path / "resumed", stop_after=6, progress=False)
    assert partial["steps"] == 6
    with open(tmp_path / "resumed" / "training_log.csv") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [2, 4, 6]

    resumed = train(fresh(), sampler, settings, tmp_path / "resumed", progress=False)
    assert resumed["resumed_from"] == 6 and resumed["steps"] == 12
    assert [row["step"] for row in resumed["loss_log"]] == [2, 4, 6, 8, 10, 12]
    # Same batches, same dropout, same optimiser state: the resumed run equals the uninterrupted one.
    assert [row["loss"] for row in resumed["loss_log"]] == pytest.approx(
        [row["loss"] for row in reference["loss_log"]], rel=1e-4
    )


class Killed(Exception):
    """Stands for SIGKILL in the middle of a checkpoint."""


def test_a_kill_between_the_log_and_the_checkpoint_loses_no_log_row(scifact, triples, tmp_path, monkeypatch) -> None:
    import tokenprune.training as training

    settings = TrainingSettings(
        steps=6, batch_size=2, learning_rate=5e-5, warmup_steps=1, log_every=2, checkpoint_every=2, seed=3
    )
    config = ColBERTConfig(strategy="first", k=6, **SMALL_MODEL)
    sampler = TripleSampler(triples, scifact, "train", settings.batch_size, settings.seed)
    written = {"log": training._write_loss_log, "checkpoint": training._save_checkpoint}
    writes: list[str] = []

    def dies_after_the_first_write_of_step_4(name: str):
        def write(*args, **kwargs):
            step = args[1][-1]["step"] if name == "log" else args[1]
            if step == 4 and writes:
                raise Killed
            if step == 4:
                writes.append(name)
            return written[name](*args, **kwargs)

        return write

    monkeypatch.setattr(training, "_write_loss_log", dies_after_the_first_write_of_step_4("log"))
    monkeypatch.setattr(training, "_save_checkpoint", dies_after_the_first_write_of_step_4("checkpoint"))
    with pytest.raises(Killed):
        train(ColBERT.from_backbone(config), sampler, settings, tmp_path, progress=False)
    monkeypatch.undo()
    resumed = train(ColBERT.from_backbone(config), sampler, settings, tmp_path, progress=False)
    assert [row["step"] for row in resumed["loss_log"]] == [2, 4, 6]
    with open(tmp_path / "training_log.csv") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == [2, 4, 6]


def test_resuming_with_other_settings_is_refused(scifact, triples, tmp_path) -> None:
    config = ColBERTConfig(strategy="first", k=6, **SMALL_MODEL)
    sampler = TripleSampler(triples, scifact, "train", 2, 0)
    train(
        ColBERT.from_backbone(config),
        sampler,
        TrainingSettings(steps=2, batch_size=2, seed=0),
        tmp_path,
        progress=False,
    )
    with pytest.raises(TokenpruneError, match=r"other settings \(training.learning_rate\)"):
        train(
            ColBERT.from_backbone(config),
            sampler,
            TrainingSettings(steps=2, batch_size=2, seed=0, learning_rate=1e-3),
            tmp_path,
            progress=False,
        )


def test_corrupted_checkpoint_is_detected(scifact, triples, tmp_path) -> None:
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    sampler = TripleSampler(triples, scifact, "train", 2, 0)
    with pytest.raises(TokenpruneError, match="checkpoint .*last.pt' is corrupted .* delete it to restart"):
        train(
            ColBERT.from_backbone(ColBERTConfig(**SMALL_MODEL)),
            sampler,
            TrainingSettings(steps=2, batch_size=2),
            tmp_path,
            progress=False,
        )


def test_trained_model_folder_is_self_contained(scifact, triples, idf, tmp_path) -> None:
    model = ColBERT.from_backbone(ColBERTConfig(strategy="idf", k=5, **SMALL_MODEL), idf=idf)
    settings = TrainingSettings(steps=2, batch_size=2, log_every=1)
    summary = train(model, TripleSampler(triples, scifact, "train", 2, 0), settings, tmp_path / "ck", progress=False)
    save_trained(model, summary, settings, tmp_path / "model")
    record = json.loads((tmp_path / "model" / "training.json").read_text())
    assert record["steps"] == 2 and record["settings"]["batch_size"] == 2
    assert (tmp_path / "model" / "training_log.csv").read_text().startswith("step,loss,learning_rate")
    reloaded = ColBERT.load(tmp_path / "model")
    assert torch.equal(reloaded.idf, idf)

    # A zero-shot study imports the folder instead of training: same files, loss log included.
    import_trained(tmp_path / "model", tmp_path / "imported", strategy="idf", k=5)
    assert sorted(p.name for p in (tmp_path / "imported").iterdir()) == sorted(
        p.name for p in (tmp_path / "model").iterdir()
    )
    assert (tmp_path / "imported" / "training_log.csv").read_bytes() == (
        tmp_path / "model" / "training_log.csv"
    ).read_bytes()
    with pytest.raises(TokenpruneError, match="holds strategy 'idf' with k=5, but its path asks for 'idf' with k=10"):
        import_trained(tmp_path / "model", tmp_path / "wrong", strategy="idf", k=10)
    with pytest.raises(TokenpruneError, match="model folder '.*nowhere' does not exist; check train.models_dir"):
        import_trained(tmp_path / "nowhere", tmp_path / "wrong", strategy="idf", k=5)
    assert not (tmp_path / "wrong").exists()


def test_cli_refuses_unused_k_beyond_supply_without_traceback(scifact, triples, tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenprune.cli",
            "train",
            "--data",
            str(scifact.folder),
            "--split",
            "train",
            "--triples",
            str(triples),
            "--strategy",
            "unused",
            "--k",
            "5000",
            "--seed",
            "1",
            "--model-config",
            "{}",
            "--training-config",
            "{}",
            "--checkpoint-dir",
            str(tmp_path / "ck"),
            "--threads",
            "1",
            "--output",
            str(tmp_path / "model"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "strategy 'unused' with k=5000 needs 5000 [unusedN] tokens, but the vocabulary has only 992" in result.stderr
    assert not (tmp_path / "model").exists()
