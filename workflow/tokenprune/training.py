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
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from tokenprune.data import PreparedDataset
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_directory, atomic_file
from tokenprune.model import ColBERT, maxsim
from tokenprune.precision import PRECISIONS, autocast, resolve_precision

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "last.pt"
LOSS_LOG_FILE = "training_log.csv"
LOSS_LOG_COLUMNS = ["step", "loss", "learning_rate", "triples_per_second", "elapsed_seconds"]
# Settings that only change how often things are written; they may differ on resume.
RESUMABLE_CHANGES = {"checkpoint_every", "log_every"}


@dataclass(frozen=True)
class TrainingSettings:
    """Optimisation settings (config section ``training``, plus the seed)."""

    steps: int = 150
    batch_size: int = 8
    learning_rate: float = 2e-5
    warmup_steps: int = 15
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    checkpoint_every: int = 50
    log_every: int = 10
    precision: str = "auto"
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
        """From the config's ``training`` section; keys of the triples stage are ignored."""
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in section.items() if key in known}, seed=seed)


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from 0 to 1 over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


class TripleSampler:
    """Deterministic batches of (query, positive, negative) texts.

    Epoch ``e`` visits the (query, positive) pairs in the permutation drawn
    from ``(seed, e)``; each pair's negative is drawn from ``(seed, step)``.

    Parameters
    ----------
    triples
        Parquet file from :mod:`tokenprune.negatives`.
    dataset, split
        The prepared collection holding the query and passage texts.
    batch_size, seed
        Triples per step, and the seed of every random choice.
    """

    def __init__(self, triples: str | Path, dataset: PreparedDataset, split: str, batch_size: int, seed: int) -> None:
        table = pq.read_table(triples)
        if table.num_rows == 0:
            raise TokenpruneError(f"triples file {str(triples)!r} is empty")
        self.query_ids = table.column("query_id").to_pylist()
        self.positive_ids = table.column("positive_id").to_pylist()
        self.negative_ids = table.column("negative_ids").to_pylist()
        self.batch_size = batch_size
        self.seed = seed
        self.queries = dataset.queries(split)
        missing = sorted(set(self.query_ids) - set(self.queries))
        if missing:
            raise TokenpruneError(f"triples name {len(missing)} queries absent from split {split!r}, e.g. {missing[:3]}")
        needed = set(self.positive_ids).union(*map(set, self.negative_ids))
        # Keep only the passages the triples use, so the corpus is streamed rather than held.
        self.passages: dict[str, str] = {}
        for doc_ids, texts in dataset.corpus_batches():
            self.passages.update((d, t) for d, t in zip(doc_ids, texts, strict=True) if d in needed)
        absent = needed - set(self.passages)
        if absent:
            raise TokenpruneError(f"triples name {len(absent)} passages absent from the corpus, e.g. {sorted(absent)[:3]}")
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.query_ids)

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
            queries.append(self.queries[self.query_ids[row]])
            positives.append(self.passages[self.positive_ids[row]])
            candidates = self.negative_ids[row]
            negatives.append(self.passages[candidates[int(rng.integers(len(candidates)))]])
        return queries, positives, negatives

    def sample_passages(self, count: int) -> list[str]:
        """Up to ``count`` distinct passages, for initialising the projection."""
        rng = np.random.default_rng([self.seed, 2**31])
        ids = sorted(self.passages)
        chosen = rng.choice(len(ids), size=min(count, len(ids)), replace=False)
        return [self.passages[ids[int(index)]] for index in chosen]


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
    return [row for row in rows if row["step"] <= up_to_step]


def _write_loss_log(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(loss_log_text(rows), encoding="utf-8")


def loss_log_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOSS_LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def initialise_model(model: ColBERT, sampler: TripleSampler) -> dict[str, Any]:
    """Bring a fresh model to step 0 of training: the PCA projection, when configured, from the sampler's passages.

    Training calls this before its first step, and the study's "step 0" row
    evaluates exactly this state. Returns what it recorded (the projection's
    share of the token vectors' energy).
    """
    if model.config.projection_init != "pca":
        return {}
    energy = model.initialise_projection_pca(sampler.sample_passages(256))
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
    from tqdm.auto import tqdm

    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = checkpoint_dir / CHECKPOINT_FILE
    log_path = checkpoint_dir / LOSS_LOG_FILE
    fingerprint = _fingerprint(model, settings)
    device = model.device
    precision = resolve_precision(settings.precision, device, "training")

    # The fused kernel updates all parameters in one pass (on the CPU too: a fifth of the foreach time).
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, fused=device.type in ("cpu", "cuda")
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, settings.warmup_steps, settings.steps)
    )
    start = 0
    summary: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(), "precision": precision}
    if checkpoint_path.is_file():
        state = _load_checkpoint(checkpoint_path, model, fingerprint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        log.info("resuming from %s at step %d", checkpoint_path, start)
    else:
        summary.update(initialise_model(model, sampler))
    summary["resumed_from"] = start
    rows = _read_loss_log(log_path, start)

    if device.type == "cpu":
        # Saturated softmax gradients underflow to denormals, which are very slow on x86 CPUs.
        torch.set_flush_denormal(True)
    model.train()
    window: list[float] = []
    began = time.perf_counter()
    window_start = began
    bar = tqdm(
        range(start, settings.steps), initial=start, total=settings.steps, desc=f"train {model.config.strategy}",
        disable=not progress, mininterval=1.0 if sys.stderr.isatty() else 30.0, file=sys.stderr,
    )  # fmt: skip
    last = start
    for step in bar:
        # Dropout noise as a function of (seed, step) makes a resumed run identical to an uninterrupted one.
        torch.manual_seed(settings.seed * 1_000_003 + step)
        queries, positives, negatives = sampler.batch(step)
        with autocast(device, precision):
            loss = contrastive_loss(model, queries, positives, negatives)
        if not torch.isfinite(loss):
            raise TokenpruneError(f"loss became {loss.item()} at step {step + 1}; lower training.learning_rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window.append(loss.item())
        last = step + 1

        if last % settings.log_every == 0 or last == settings.steps:
            now = time.perf_counter()
            rate = len(window) * settings.batch_size / (now - window_start)
            rows.append(
                {
                    "step": last,
                    "loss": round(float(np.mean(window)), 6),
                    "learning_rate": f"{scheduler.get_last_lr()[0]:.3e}",
                    "triples_per_second": round(rate, 2),
                    "elapsed_seconds": round(now - began, 1),
                }
            )
            bar.set_postfix(loss=f"{np.mean(window):.4f}", triples_s=f"{rate:.1f}")
            window, window_start = [], now
        if last % settings.checkpoint_every == 0 or last == settings.steps or last == stop_after:
            # Saved through a file object: torch.save names the archive after a path, and the
            # temporary path is random, so a reran checkpoint would differ byte for byte.
            with atomic_file(checkpoint_path) as tmp, open(tmp, "wb") as handle:
                torch.save(
                    {
                        "step": last,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "fingerprint": fingerprint,
                    },
                    handle,
                )
            _write_loss_log(log_path, rows)
        if last == stop_after:
            break
    bar.close()
    model.eval()
    summary.update(
        steps=last,
        seconds=round(time.perf_counter() - began, 1),
        final_loss=rows[-1]["loss"] if rows else None,
        first_loss=rows[0]["loss"] if rows else None,
        loss_log=rows,
    )
    return summary


def save_trained(model: ColBERT, summary: dict[str, Any], settings: TrainingSettings, output: str | Path) -> None:
    """Save the model with its loss log and a training summary (``training.json``)."""
    rows = summary.pop("loss_log")
    record = {"settings": asdict(settings), **summary}
    model.save(output, extra_files={LOSS_LOG_FILE: loss_log_text(rows), "training.json": json.dumps(record, indent=2) + "\n"})


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
