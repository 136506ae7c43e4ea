"""Pruned index construction and loading.

An index folder holds::

    vectors.f16          all kept vectors, [vectors, dim] float16, contiguous (memory-mappable)
    offsets.npy          int64 [documents + 1]: document d owns rows offsets[d]:offsets[d+1]
    doc_ids.txt          one document id per line, in index order
    token_ids.i32        int32 [vectors]: token id behind each vector      (diagnostics)
    positions.i16        int16 [vectors]: its position in the passage      (diagnostics)
    index_stats.json     counts, % of the unpruned token count kept, bytes per component

The unpruned token count of a passage is what the baseline ``none`` keeps of
the same truncated passage (real, non-punctuation tokens; inserted
``[unusedN]`` ids excluded), so every index reports its own percentage.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenprune.data import PreparedDataset
from tokenprune.errors import TokenpruneError
from tokenprune.io import atomic_directory, write_json
from tokenprune.model import ColBERT

STATS_FILE = "index_stats.json"
INDEX_COMPONENTS = ("vectors.f16", "offsets.npy", "doc_ids.txt")
DIAGNOSTIC_COMPONENTS = ("token_ids.i32", "positions.i16")


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so padding is small."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.inference_mode()
def build_index(
    model: ColBERT,
    dataset: PreparedDataset,
    output: str | Path,
    *,
    batch_size: int = 64,
    chunk_documents: int = 4096,
) -> dict[str, Any]:
    """Encode a corpus with the model's selection layer and write the index folder atomically.

    Parameters
    ----------
    model
        A trained model (its device is used).
    dataset
        The prepared collection to index; streamed ``chunk_documents`` at a time.
    output
        Index folder to create.
    batch_size
        Passages per forward pass; passages are length-sorted within a chunk.
    chunk_documents
        Documents read, encoded and written per chunk (bounds memory).
    """
    model.eval()
    use_half = model.device.type == "cuda"
    documents = vectors = unpruned = 0
    per_document: list[int] = []
    with atomic_directory(output) as staging:
        with (
            open(staging / "vectors.f16", "wb") as vector_file,
            open(staging / "doc_ids.txt", "w", encoding="utf-8") as id_file,
            open(staging / "token_ids.i32", "wb") as token_file,
            open(staging / "positions.i16", "wb") as position_file,
        ):
            for doc_ids, texts in dataset.corpus_batches(chunk_documents):
                input_ids, attention_mask = model.tokenize_passages(texts)
                lengths = attention_mask.sum(dim=1).tolist()
                kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [None] * len(texts)  # type: ignore[list-item]
                baseline = attention_mask.bool() & ~torch.isin(input_ids, model.punctuation_ids)
                prefix = len(model.selector.prefix_ids())
                baseline[:, 2 : 2 + prefix] = False
                unpruned += int(baseline.sum())
                for batch in length_sorted_batches(lengths, batch_size):
                    width = max(lengths[i] for i in batch)
                    with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_half):
                        encoded = model.encode_passage_ids(input_ids[batch, :width], attention_mask[batch, :width])
                    counts = encoded.mask.sum(dim=1).tolist()
                    # Prune on the device, then copy only the kept vectors back.
                    host_vectors = encoded.vectors[encoded.mask].half().cpu().numpy()
                    host_tokens = encoded.token_ids[encoded.mask].int().cpu().numpy()
                    host_positions = encoded.positions[encoded.mask].short().cpu().numpy()
                    start = 0
                    for row, count in zip(batch, counts, strict=True):
                        kept[row] = (
                            host_vectors[start : start + count],
                            host_tokens[start : start + count],
                            host_positions[start : start + count],
                        )
                        start += count
                for doc_id, (doc_vectors, doc_tokens, doc_positions) in zip(doc_ids, kept, strict=True):
                    vector_file.write(np.ascontiguousarray(doc_vectors).tobytes())
                    token_file.write(doc_tokens.tobytes())
                    position_file.write(doc_positions.tobytes())
                    id_file.write(doc_id + "\n")
                    per_document.append(len(doc_vectors))
                documents += len(doc_ids)
                vectors += sum(len(entry[0]) for entry in kept)
        offsets = np.zeros(documents + 1, dtype=np.int64)
        np.cumsum(per_document, out=offsets[1:])
        np.save(staging / "offsets.npy", offsets)
        component_bytes = {name: (staging / name).stat().st_size for name in INDEX_COMPONENTS + DIAGNOSTIC_COMPONENTS}
        index_bytes = sum(component_bytes[name] for name in INDEX_COMPONENTS)
        stats = {
            "strategy": model.config.strategy,
            "k": model.config.k,
            "dim": model.config.dim,
            "documents": documents,
            "vectors": vectors,
            "vectors_per_document": {
                "mean": round(vectors / max(documents, 1), 3),
                "median": float(statistics.median(per_document)) if per_document else 0.0,
                "max": max(per_document, default=0),
            },
            "unpruned_tokens": unpruned,
            "percent_tokens_kept": round(100.0 * vectors / max(unpruned, 1), 3),
            "bytes": component_bytes,
            "index_bytes": index_bytes,
            "index_mib": round(index_bytes / 2**20, 3),
            "dtype": "float16",
        }
        write_json(staging / STATS_FILE, stats)
    return stats


@dataclass
class PrunedIndex:
    """Read access to an index folder; vectors are memory-mapped, never loaded whole."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not (self.folder / STATS_FILE).is_file():
            raise TokenpruneError(f"{str(self.folder)!r} is not an index (no {STATS_FILE}); run 'tokenprune index' first")
        expected = self.stats["vectors"] * self.stats["dim"] * 2
        actual = (self.folder / "vectors.f16").stat().st_size if (self.folder / "vectors.f16").exists() else -1
        if actual != expected:
            raise TokenpruneError(
                f"index {str(self.folder)!r} is corrupted: vectors.f16 has {actual} bytes, {STATS_FILE} implies {expected}"
            )
        if len(self.offsets) != self.stats["documents"] + 1 or int(self.offsets[-1]) != self.stats["vectors"]:
            raise TokenpruneError(f"index {str(self.folder)!r} is corrupted: offsets.npy does not match {STATS_FILE}")

    @cached_property
    def stats(self) -> dict[str, Any]:
        try:
            return json.loads((self.folder / STATS_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TokenpruneError(f"index {str(self.folder)!r}: {STATS_FILE} is corrupted ({error})") from None

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.load(self.folder / "offsets.npy")

    @cached_property
    def doc_ids(self) -> list[str]:
        return (self.folder / "doc_ids.txt").read_text(encoding="utf-8").splitlines()

    @cached_property
    def vectors(self) -> np.ndarray:
        return np.memmap(self.folder / "vectors.f16", dtype=np.float16, mode="r", shape=(self.stats["vectors"], self.stats["dim"]))

    def __len__(self) -> int:
        return self.stats["documents"]
