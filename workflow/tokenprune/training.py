"""Training ColBERT with the selection layer in the loop.

Each step takes ``batch_size`` (query, positive, hard negative) triples,
scores every query against all ``2 × batch_size`` passages of the batch with
MaxSim over the *kept* passage vectors, and minimises the cross-entropy of the
query's own positive: its hard negative and the other queries' passages are
the negatives. AdamW, linear warm-up then linear decay to zero, gradient
clipping; bf16 autocast where the hardware has it (:mod:`tokenprune.precision`).

A step's batch and dropout noise are pure functions of (seed, step), so a run
resumed from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from tokenprune.config import schema_default
from tokenprune.data import PreparedDataset
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_directory, atomic_file
from tokenprune.model import ColBERT, maxsim
from tokenprune.precision import PRECISIONS, autocast, resolve_precision

if TYPE_CHECKING:
    from tqdm.auto import tqdm

__all__ = [
    "CHECKPOINT_FILE",
    "COUNTING_CHUNK",
    "LOSS_LOG_FILE",
    "LOSS_LOG_COLUMNS",
    "TRIPLES_STAGE_KEYS",
    "RESUMABLE_CHANGES",
    "TrainingSettings",
    "learning_rate_factor",
    "TripleSampler",
    "contrastive_loss",
    "loss_log_text",
    "initialise_projection_pca",
    "initialise_model",
    "train",
    "save_trained",
    "import_trained",
]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"
LOSS_LOG_FILE = "training_log.csv"
# Passages tokenised at a time when counting the training collection for a budget fitted to it.
COUNTING_CHUNK = 2048
LOSS_LOG_COLUMNS = ["step", "loss", "learning_rate", "triples_per_second", "elapsed_seconds"]
# Keys of the config's training section that the triples stage (mine-negatives) reads.
TRIPLES_STAGE_KEYS = frozenset({"negatives_per_query", "negatives_skip", "docpairs_irds_id"})
# Settings that only change how often things are written; they may differ on resume.
RESUMABLE_CHANGES = {"checkpoint_every", "log_every"}


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation settings (config section ``training``, plus the seed)."""

    # Every default but the seed's is the schema's (config section ``training``).
    steps: int = schema_default("training", "steps")
    batch_size: int = schema_default("training", "batch_size")
    learning_rate: float = schema_default("training", "learning_rate")
    warmup_steps: int = schema_default("training", "warmup_steps")
    weight_decay: float = schema_default("training", "weight_decay")
    max_grad_norm: float = schema_default("training", "max_grad_norm")
    checkpoint_every: int = schema_default("training", "checkpoint_every")
    log_every: int = schema_default("training", "log_every")
    precision: str = schema_default("training", "precision")
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise TokenpruneError(f"training.{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise TokenpruneError(f"training.learning_rate must be positive, got {self.learning_rate!r}")
        if self.warmup_steps < 0:
            raise TokenpruneError(f"training.warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.precision not in PRECISIONS:
            raise TokenpruneError(f"training.precision must be one of {list(PRECISIONS)}, got {self.precision!r}")

    @classmethod
    def from_config(cls, section: dict[str, Any], seed: int) -> TrainingSettings:
        """From the config's ``training`` section; the keys of the triples stage are not optimisation settings."""
        known = {field.name for field in fields(cls)} - {"seed"}
        unknown = sorted(set(section) - known - TRIPLES_STAGE_KEYS)
        if unknown:
            raise TokenpruneError(f"unknown training setting(s) {unknown}; known: {sorted(known | TRIPLES_STAGE_KEYS)}")
        return cls(**{key: value for key, value in section.items() if key in known}, seed=seed)


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from 0 to 1 over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class TripleSampler:
    """Deterministic batches of (query, positive, negative) texts, in memory bounded by the triples.

    Epoch ``e`` visits the (query, positive) pairs in the permutation drawn
    from ``(seed, e)``; each pair's negative is drawn from ``(seed, step)``.
    The triples are held as NumPy row numbers (int32 into the corpus and the
    split's queries, about 12 bytes a triple plus 4 per extra negative), and
    passage texts are read from the data stage's memory-mapped
    :class:`~tokenprune.data.store.PassageStore` when a batch needs them, so
    memory does not grow with the corpus.

    Parameters
    ----------
    triples
        Parquet file from :mod:`tokenprune.negatives`.
    dataset, split
        The prepared collection holding the query and passage texts.
    batch_size, seed
        Triples per step, and the seed of every random choice.
    read_rows
        Triples converted to row numbers at a time while reading the file.
    """

    def __init__(
        self,
        triples: str | Path,
        dataset: PreparedDataset,
        split: str,
        batch_size: int,
        seed: int,
        read_rows: int = 1_000_000,
    ) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self._dataset = dataset
        queries = dataset.query_table(split)
        self._query_texts = queries.column("text").combine_chunks()
        rows = _TripleRows(triples, queries.column("query_id"), dataset.doc_ids(), read_rows)
        for kind, where in (("queries", f"split {split!r}"), ("passages", "the corpus")):
            absent = rows.absent[kind]
            if absent:
                raise TokenpruneError(
                    f"triples name {len(absent)} {kind} absent from {where}, e.g. {sorted(absent)[:3]}"
                )
        self.query_rows, self.positive_rows = rows.queries, rows.positives
        self.negative_rows, self.negative_offsets = rows.negatives, rows.negative_offsets
        self._passages = dataset.passage_store()
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.query_rows)

    @property
    def dataset(self) -> PreparedDataset:
        """The prepared collection the triples come from."""
        return self._dataset

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng([self.seed, epoch]).permutation(len(self))}
        return self._permutations[epoch]

    def batch(self, step: int) -> tuple[list[str], list[str], list[str]]:
        """Query, positive and negative texts of ``step``."""
        rng = np.random.default_rng([self.seed, step, 1])
        queries, positives, negatives = [], [], []
        for index in range(step * self.batch_size, (step + 1) * self.batch_size):
            epoch, offset = divmod(index, len(self))
            row = int(self._permutation(epoch)[offset])
            queries.append(self._query_texts[int(self.query_rows[row])].as_py())
            positives.append(self._passages.text(int(self.positive_rows[row])))
            first, end = int(self.negative_offsets[row]), int(self.negative_offsets[row + 1])
            negatives.append(self._passages.text(int(self.negative_rows[first + int(rng.integers(end - first))])))
        return queries, positives, negatives

    def sample_passages(self, count: int) -> list[str]:
        """Up to ``count`` distinct passages the triples name, for initialising the projection."""
        rng = np.random.default_rng([self.seed, 2**31])
        named = np.unique(np.concatenate([self.positive_rows, self.negative_rows]))
        # In the order of their ids, so the sample does not depend on the corpus order.
        by_id = named[pc.sort_indices(self._dataset.doc_ids().take(pa.array(named))).to_numpy()]
        chosen = rng.choice(len(by_id), size=min(count, len(by_id)), replace=False)
        return [self._passages.text(int(by_id[int(index)])) for index in chosen]


class _TripleRows:
    """The triples file as row numbers: read in slices, each slice's ids looked up by Arrow's hash join."""

    def __init__(self, triples: str | Path, query_ids: pa.ChunkedArray, doc_ids: pa.ChunkedArray, read_rows: int):
        queries, positives, negatives, counts = [], [], [], []
        self.absent: dict[str, set[str]] = {"queries": set(), "passages": set()}
        file = pq.ParquetFile(triples)
        if file.metadata.num_rows == 0:
            raise TokenpruneError(f"triples file {str(triples)!r} is empty")
        query_ids, doc_ids = query_ids.combine_chunks(), doc_ids.combine_chunks()
        for part in file.iter_batches(batch_size=read_rows, columns=["query_id", "positive_id", "negative_ids"]):
            negative_lists = part.column("negative_ids")
            queries.append(self._rows(part.column("query_id"), query_ids, "queries"))
            positives.append(self._rows(part.column("positive_id"), doc_ids, "passages"))
            negatives.append(self._rows(negative_lists.flatten(), doc_ids, "passages"))
            counts.append(pc.list_value_length(negative_lists).to_numpy(zero_copy_only=False))
        self.queries = np.concatenate(queries)
        self.positives = np.concatenate(positives)
        self.negatives = np.concatenate(negatives)
        self.negative_offsets = np.concatenate([[0], np.cumsum(np.concatenate(counts), dtype=np.int64)])

    def _rows(self, ids: pa.Array, known: pa.Array, kind: str) -> np.ndarray:
        rows = pc.index_in(ids, value_set=known)
        if rows.null_count:
            self.absent[kind].update(ids.filter(rows.is_null()).to_pylist())
            rows = rows.fill_null(0)
        return rows.to_numpy(zero_copy_only=False).astype(np.int32)


def contrastive_loss(model: ColBERT, queries: list[str], positives: list[str], negatives: list[str]) -> torch.Tensor:
    """Cross-entropy of each query's positive among all passages of the batch."""
    query_vectors, query_mask = model.encode_queries(queries)
    passages = model.encode_passages(positives + negatives)
    scores = maxsim(query_vectors, query_mask, passages)
    return F.cross_entropy(scores.float(), torch.arange(len(queries), device=scores.device))


def _fingerprint(model: ColBERT, settings: TrainingSettings) -> dict[str, Any]:
    varying = {key: value for key, value in asdict(settings).items() if key not in RESUMABLE_CHANGES}
    return {"model": asdict(model.config), "training": varying}


def _load_checkpoint(path: Path, model: ColBERT, fingerprint: dict[str, Any]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=model.device, weights_only=True)
        stored = state["fingerprint"]
    except Exception as error:  # noqa: BLE001 - torch raises many types for a damaged file
        raise TokenpruneError(
            f"checkpoint {str(path)!r} is corrupted ({type(error).__name__}: {str(error).splitlines()[0][:120]}); "
            "delete it to restart from step 0"
        ) from None
    if stored != fingerprint:
        differing = sorted(
            f"{section}.{key}"
            for section in fingerprint
            for key in set(fingerprint[section]) | set(stored.get(section, {}))
            if fingerprint[section].get(key) != stored.get(section, {}).get(key)
        )
        raise TokenpruneError(
            f"checkpoint {str(path)!r} was written with other settings ({', '.join(differing)}); "
            "delete it to restart, or restore those settings to resume"
        )
    return state


def _read_loss_log(path: Path, up_to_step: int) -> list[dict[str, Any]]:
    """Rows of an existing loss log at or before ``up_to_step`` (later rows are redone on resume)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [
            {
                "step": int(row["step"]),
                "loss": float(row["loss"]),
                "learning_rate": row["learning_rate"],
                "triples_per_second": float(row["triples_per_second"]),
                "elapsed_seconds": float(row["elapsed_seconds"]),
            }
            for row in csv.DictReader(handle)
        ]
    return [row for row in rows if int(row["step"]) <= up_to_step]


def _write_loss_log(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(loss_log_text(rows), encoding="utf-8")


def loss_log_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOSS_LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@torch.no_grad()
def initialise_projection_pca(model: ColBERT, texts: list[str], batch_size: int = 32) -> float:
    """Set ``model``'s projection to the top principal directions of the backbone's passage token vectors.

    The directions are those of the uncentred second moment, so inner
    products between projected vectors approximate the backbone's own:
    training starts from the untrained backbone's late-interaction
    ranking instead of a random 128-d view of it. The projection is then
    scaled so projected token vectors have unit root-mean-square norm:
    a uniform scale leaves every ranking unchanged, but the backbone's raw
    norms make MaxSim scores so large that the softmax of the loss
    saturates (initial loss above 20 and vanishing gradients on SciFact).
    Rows beyond the hidden size (``dim > hidden``) keep their random
    initialisation.

    Returns
    -------
    float
        Share of the second moment's energy the projection keeps.
    """
    was_training = model.training
    model.eval()
    hidden_size = model.projection.in_features
    moment = torch.zeros(hidden_size, hidden_size, dtype=torch.float64, device=model.device)
    tokens_seen = 0
    for start in range(0, len(texts), batch_size):
        input_ids, attention_mask = model.tokenize_passages(texts[start : start + batch_size])
        hidden = model.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        tokens = hidden[attention_mask.bool()].double()
        moment += tokens.T @ tokens
        tokens_seen += tokens.shape[0]
    eigenvalues, eigenvectors = torch.linalg.eigh(moment)
    rows = min(model.config.dim, hidden_size)
    top = eigenvectors[:, -rows:].flip(-1).T
    mean_squared_norm = float(eigenvalues[-rows:].sum()) / max(tokens_seen, 1)
    model.projection.weight[:rows] = (top / mean_squared_norm**0.5).to(model.projection.weight.dtype)
    model.train(was_training)
    return float(eigenvalues[-rows:].sum() / eigenvalues.sum())


def initialise_model(model: ColBERT, sampler: TripleSampler) -> dict[str, Any]:
    """Bring a fresh model to step 0 of training: the PCA projection, when configured, from the sampler's passages.

    Training calls this before its first step, and the study's "step 0" row
    evaluates exactly this state. Returns what it recorded (the projection's
    share of the token vectors' energy).
    """
    if model.projection_from_backbone:
        log.info("projection: the PyLate model's own (%s), fine-tuned as it is", model.config.backbone)
        return {}
    if model.config.projection_init != "pca":
        return {}
    energy = initialise_projection_pca(model, sampler.sample_passages(256))
    log.info("projection initialised with PCA (keeps %.1f%% of the token vectors' energy)", 100 * energy)
    return {"projection_energy": round(energy, 4)}


def train(
    model: ColBERT,
    sampler: TripleSampler,
    settings: TrainingSettings,
    checkpoint_dir: str | Path,
    *,
    stop_after: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` in place, checkpointing to ``checkpoint_dir`` and resuming from it.

    Parameters
    ----------
    model
        A model from :meth:`ColBERT.from_backbone` (already on its device).
    sampler
        Source of training batches.
    settings
        Optimisation settings.
    checkpoint_dir
        Holds ``last.pt`` and ``training_log.csv``; an existing checkpoint with
        the same settings is resumed, one with other settings is refused.
    stop_after
        Stop (after checkpointing) once this step is reached, as an
        interruption would; for tests.
    progress
        Show a progress bar with the loss and throughput.

    Returns
    -------
    dict
        Summary: steps, resumed_from, seconds, final loss window, device.
    """
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = checkpoint_dir / CHECKPOINT_FILE
    log_path = checkpoint_dir / LOSS_LOG_FILE
    fingerprint = _fingerprint(model, settings)
    device = model.device
    precision = resolve_precision(settings.precision, device, "training")
    optimizer, scheduler = _optimiser(model, settings)
    summary: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "precision": precision}
    # A budget fitted to a collection (attention_var, pool_var) trains with the training collection's mean.
    model.fit_selectors((texts for _, texts in sampler.dataset.corpus_batches(COUNTING_CHUNK)), [model.selector])
    summary.update(model.selector.fitted())
    if checkpoint_path.is_file():
        start = _resume(checkpoint_path, model, optimizer, scheduler, fingerprint)
    else:
        start = 0
        summary.update(initialise_model(model, sampler))
    summary["resumed_from"] = start
    loss_log = _LossLog(_read_loss_log(log_path, start), settings.batch_size)

    if device.type == "cpu":
        # Saturated softmax gradients underflow to denormals, which are very slow on x86 CPUs.
        torch.set_flush_denormal(True)
    model.train()
    bar = _progress_bar(model.config.strategy, start, settings.steps, enabled=progress)
    last = start
    for step in bar:
        loss_log.add(_training_step(model, sampler, settings, step, optimizer, scheduler, precision))
        last = step + 1
        if last % settings.log_every == 0 or last == settings.steps:
            bar.set_postfix(loss_log.close_window(last, float(scheduler.get_last_lr()[0])))
        if last % settings.checkpoint_every == 0 or last == settings.steps or last == stop_after:
            # The log first: a kill between the two writes then leaves rows past the checkpoint, which
            # resuming drops and redoes; the other order would lose the rows of the checkpoint's window.
            _write_loss_log(log_path, loss_log.rows)
            _save_checkpoint(checkpoint_path, last, model, optimizer, scheduler, fingerprint)
        if last == stop_after:
            break
    bar.close()
    model.eval()
    rows = loss_log.rows
    summary.update(
        steps=last,
        seconds=round(time.perf_counter() - loss_log.began, 1),
        final_loss=rows[-1]["loss"] if rows else None,
        first_loss=rows[0]["loss"] if rows else None,
        loss_log=rows,
    )
    return summary


def _progress_bar(strategy: str, start: int, steps: int, *, enabled: bool) -> tqdm[int]:
    """Loss and throughput on stderr: every second on a terminal, every 30 s into a job's log."""
    from tqdm.auto import tqdm

    return tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc=f"train {strategy}",
        disable=not enabled,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
    )


def _optimiser(
    model: ColBERT, settings: TrainingSettings
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with linear warm-up and decay."""
    # The fused kernel updates all parameters in one pass (on the CPU too: a fifth of the foreach time).
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
        fused=model.device.type in ("cpu", "cuda"),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, settings.warmup_steps, settings.steps)
    )
    return optimizer, scheduler


def _resume(
    checkpoint_path: Path,
    model: ColBERT,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fingerprint: dict[str, Any],
) -> int:
    """Restore model, optimiser and schedule from a checkpoint of the same run; return its step."""
    state = _load_checkpoint(checkpoint_path, model, fingerprint)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    start = int(state["step"])
    log.info("resuming from %s at step %d", checkpoint_path, start)
    return start


def _training_step(
    model: ColBERT,
    sampler: TripleSampler,
    settings: TrainingSettings,
    step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: str,
) -> float:
    """One optimisation step on the batch of ``step``; returns its loss."""
    # Dropout noise as a function of (seed, step) makes a resumed run identical to an uninterrupted one.
    torch.manual_seed(settings.seed * 1_000_003 + step)
    queries, positives, negatives = sampler.batch(step)
    with autocast(model.device, precision):
        loss = contrastive_loss(model, queries, positives, negatives)
    if not torch.isfinite(loss):
        raise TokenpruneError(f"loss became {loss.item()} at step {step + 1}; lower training.learning_rate")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


class _LossLog:
    """The rows of ``training_log.csv``: mean loss and throughput over each window of steps."""

    def __init__(self, rows: list[dict[str, Any]], batch_size: int) -> None:
        self.rows = rows
        self.batch_size = batch_size
        self.window: list[float] = []
        self.began = self.window_start = time.perf_counter()

    def add(self, loss: float) -> None:
        self.window.append(loss)

    def close_window(self, step: int, learning_rate: float) -> dict[str, str]:
        """Append the row of the steps since the last one; return what the progress bar shows."""
        now = time.perf_counter()
        rate = len(self.window) * self.batch_size / (now - self.window_start)
        mean = float(np.mean(self.window))
        self.rows.append(
            {
                "step": step,
                "loss": round(mean, 6),
                "learning_rate": f"{learning_rate:.3e}",
                "triples_per_second": round(rate, 2),
                "elapsed_seconds": round(now - self.began, 1),
            }
        )
        self.window, self.window_start = [], now
        return {"loss": f"{mean:.4f}", "triples_s": f"{rate:.1f}"}


def _save_checkpoint(
    path: Path,
    step: int,
    model: ColBERT,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    fingerprint: dict[str, Any],
) -> None:
    # Saved through a file object: torch.save names the archive after a path, and the
    # temporary path is random, so a reran checkpoint would differ byte for byte.
    state = {
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "fingerprint": fingerprint,
    }
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


def save_trained(model: ColBERT, summary: dict[str, Any], settings: TrainingSettings, output: str | Path) -> None:
    """Save the model with its loss log and a training summary (``training.json``)."""
    rows = summary.pop("loss_log")
    record = {"settings": asdict(settings), **summary}
    model.save(
        output, extra_files={LOSS_LOG_FILE: loss_log_text(rows), "training.json": json.dumps(record, indent=2) + "\n"}
    )


def import_trained(source: str | Path, output: str | Path, *, strategy: str, k: int | None) -> ColBERT:
    """Copy a model trained elsewhere into the pipeline's model folder, after checking it loads and matches.

    Zero-shot studies evaluate models a previous run trained (its
    ``results/models``) without training again; the copy keeps the loss log, so
    the training figures still work.

    Parameters
    ----------
    source
        A model folder written by :func:`save_trained` (or ``ColBERT.save``).
    output
        Model folder to create, atomically.
    strategy, k
        What the pipeline expects this folder to hold.

    Raises
    ------
    TokenpruneError
        If ``source`` is not a readable model, or holds another strategy or k.
    """
    source = Path(source)
    if not source.is_dir():
        raise TokenpruneError(f"model folder {str(source)!r} does not exist; check train.models_dir")
    model = ColBERT.load(source)
    if (model.config.strategy, model.config.k) != (strategy, k):
        raise TokenpruneError(
            f"model folder {str(source)!r} holds strategy {model.config.strategy!r} with k={model.config.k}, "
            f"but its path asks for {strategy!r} with k={k}"
        )
    with atomic_directory(output) as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True)
    return model
