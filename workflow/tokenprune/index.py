"""Pruned index construction and loading.

An index folder holds::

    vectors.f16          all kept vectors, [vectors, dim] float16, contiguous (memory-mappable)
    offsets.npy          int64 [documents + 1]: document d owns rows offsets[d]:offsets[d+1]
    doc_ids.txt          one document id per line, in index order
    token_ids.i32        int32 [vectors]: token id behind each vector      (diagnostics)
    positions.i16        int16 [vectors]: its position in the passage      (diagnostics)
    index_stats.json     counts, % of the unpruned token count kept, bytes per component

The unpruned token count of a passage is what the baseline ``none`` keeps of
the same truncated passage: its candidate tokens under the model's
``candidate_tokens`` rule, inserted ``[unusedN]`` ids excluded. Every
selection spends its ``k`` slots on those same candidates (``unused`` on its
inserted ids), so every index reports a comparable percentage.

Large corpora are encoded as shards (:func:`shard_ranges`, one job each) and
joined by :func:`merge_index_shards` into a *sharded* index folder::

    manifest.json        the shards in document order, with their document and vector counts
    offsets.npy          global offsets over all shards, as above
    doc_ids.txt          all document ids, in index order
    index_stats.json     the statistics of the whole index
    shards/00000/        vectors.f16, token_ids.i32, positions.i16 of the first shard, ...

The shard files are hard links to the shard jobs' outputs (copies across file
systems), so merging moves no vector data. :class:`PrunedIndex` reads both
layouts; search streams one shard at a time and never holds the whole index.

A *compressed* index (:mod:`tokenprune.compression`) stores codes instead of
``vectors.f16``::

    codes.u8             uint8 [vectors, code bytes]: each vector's coarse centroid and residual codes
    codec.faiss          the trained faiss codec that decodes them

and its ``index_stats.json`` has a ``compression`` entry. :class:`PrunedIndex`
decodes the rows it reads, so exact search re-scores with the decoded vectors.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenprune.data import PreparedDataset
from tokenprune.errors import TokenpruneError
from tokenprune.faiss_support import import_faiss
from tokenprune.io import atomic_directory, write_json
from tokenprune.model import ColBERT
from tokenprune.precision import autocast, resolve_precision
from tokenprune.selection import PassageVectors, TokenSelector, candidate_mask
from tokenprune.strategies import POSTHOC_STRATEGIES

__all__ = [
    "STATS_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "INDEX_COMPONENTS",
    "DIAGNOSTIC_COMPONENTS",
    "VECTOR_COMPONENTS",
    "CODES_FILE",
    "CODEC_FILE",
    "COMPRESSED_COMPONENTS",
    "percent_kept_at",
    "k_for_percent",
    "length_sorted_batches",
    "boundaries",
    "shard_ranges",
    "build_index",
    "build_posthoc_indexes",
    "write_vectors_index",
    "build_indexes",
    "merge_index_shards",
    "ConcatenatedVectors",
    "PrunedIndex",
]

STATS_FILE = "index_stats.json"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "tokenprune-sharded-index/1"
INDEX_COMPONENTS = ("vectors.f16", "offsets.npy", "doc_ids.txt")
DIAGNOSTIC_COMPONENTS = ("token_ids.i32", "positions.i16")
# Per-vector files, split across shards in a sharded index.
VECTOR_COMPONENTS = ("vectors.f16",) + DIAGNOSTIC_COMPONENTS
CODES_FILE = "codes.u8"
CODEC_FILE = "codec.faiss"
# What a compressed index stores in place of vectors.f16.
COMPRESSED_COMPONENTS = (CODES_FILE, CODEC_FILE, "offsets.npy", "doc_ids.txt")


def percent_kept_at(candidates: np.ndarray, k: int) -> float:
    """% of the candidate tokens a budget of k keeps, given each passage's candidate count."""
    candidates = np.asarray(candidates, dtype=np.int64)
    return 100.0 * float(np.minimum(candidates, k).sum()) / max(int(candidates.sum()), 1)


def k_for_percent(candidates: np.ndarray, percent: float) -> int:
    """The smallest k that keeps at least ``percent`` % of the candidate tokens of these passages.

    ``candidates`` holds each passage's candidate-token count: the vectors per
    passage of an unpruned index (every model of a study shares them, since
    they depend on the tokenizer, the candidate rule and the passage length
    only). Matching the paper's operating points on another collection: 73%
    (its k=50 on MS MARCO) and 15% (its k=10).
    """
    if not 0 < percent <= 100:
        raise TokenpruneError(f"percent {percent!r} is not a share of tokens; choose a value in (0, 100], e.g. 73")
    candidates = np.asarray(candidates, dtype=np.int64)
    if candidates.size == 0 or candidates.sum() == 0:
        raise TokenpruneError("no candidate tokens to share out: the index holds no vectors")
    low, high = 1, int(candidates.max())
    while low < high:  # the share grows with k: bisect for the first k that reaches the target
        middle = (low + high) // 2
        if percent_kept_at(candidates, middle) >= percent - 1e-9:
            high = middle
        else:
            low = middle + 1
    return low


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so padding is small."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def boundaries(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[0, c0, c0 + c1, …]``: where each of consecutive runs of ``counts`` items starts, plus the total."""
    bounds = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    return bounds


def shard_ranges(documents: int, shards: int, chunk_documents: int) -> list[tuple[int, int]]:
    """Contiguous document ranges ``[start, stop)``, one per shard, covering ``documents``.

    Shards are cut on multiples of ``chunk_documents``, the unit in which
    :func:`build_index` reads and length-sorts passages, so every passage is
    batched with the same neighbours as in an unsharded run and a sharded index
    holds byte-identical vectors. Shards differ by at most one chunk; with more
    shards than chunks some are empty.

    Raises
    ------
    TokenpruneError
        If ``shards`` or ``chunk_documents`` is not positive.
    """
    if shards <= 0 or chunk_documents <= 0:
        raise TokenpruneError(f"shards and chunk_documents must be positive, got {shards} and {chunk_documents}")
    chunks = -(-documents // chunk_documents)
    cuts = [min(documents, (shard * chunks // shards) * chunk_documents) for shard in range(shards + 1)]
    return list(zip(cuts[:-1], cuts[1:], strict=True))


def _index_stats(
    selection: dict[str, Any], per_document: Sequence[int] | np.ndarray, unpruned: int, component_bytes: dict[str, int]
) -> dict[str, Any]:
    """``index_stats.json`` of an index whose documents hold ``per_document`` vectors (``selection``: strategy, k, dim)."""
    documents, vectors = len(per_document), int(np.sum(per_document, dtype=np.int64))
    index_bytes = sum(component_bytes[name] for name in INDEX_COMPONENTS)
    return {
        "strategy": selection["strategy"],
        "k": selection["k"],
        "dim": selection["dim"],
        "documents": documents,
        "vectors": vectors,
        "vectors_per_document": {
            "mean": round(vectors / max(documents, 1), 3),
            "median": float(np.median(per_document)) if documents else 0.0,
            "max": int(np.max(per_document)) if documents else 0,
        },
        "unpruned_tokens": unpruned,
        "percent_tokens_kept": round(100.0 * vectors / max(unpruned, 1), 3),
        "bytes": component_bytes,
        "index_bytes": index_bytes,
        "index_mib": round(index_bytes / 2**20, 3),
        "dtype": "float16",
    }


def build_index(
    model: ColBERT,
    dataset: PreparedDataset,
    output: str | Path,
    *,
    batch_size: int,
    chunk_documents: int,
    precision: str,
    document_range: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Encode a corpus (or one shard of it) with the model's selection layer and write the index folder atomically.

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
    document_range
        Encode only documents ``[start, stop)`` (a shard, see
        :func:`shard_ranges`); ``start`` should be a multiple of
        ``chunk_documents`` for the shard to batch exactly as the whole corpus does.
    precision
        The encoder's precision (:mod:`tokenprune.precision`; ``auto``: fp16
        on GPU, bf16 on CPUs with native bf16, else fp32). Vectors are stored
        as fp16 whatever it is.
    """
    return build_indexes(
        model,
        dataset,
        {output: model.selector},
        batch_size=batch_size,
        chunk_documents=chunk_documents,
        document_range=document_range,
        precision=precision,
    )[0]


def build_posthoc_indexes(
    model: ColBERT,
    dataset: PreparedDataset,
    selections: dict[str | Path, TokenSelector],
    *,
    own_index: str | Path | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Several indexes of one corpus from *one* encoding pass, each pruned by a selector applied only at indexing.

    This is the paper's "prune after training" control: ``model`` (usually
    the unpruned baseline) was trained without the selectors, and each
    output folder holds what one of them keeps of the same vectors. The
    statistics record ``"selection": "post-hoc"``.

    Parameters
    ----------
    model
        The model whose vectors are pruned.
    dataset
        The prepared collection to index.
    selections
        Index folder to create -> the selector that prunes it.
    own_index
        Also write the model's own index (its selector, as :func:`build_index`
        writes it, byte for byte) from the same pass, so that the control
        costs no encoding pass of its own. Its statistics come first.
    **options
        ``batch_size``, ``chunk_documents``, ``document_range`` and ``precision``, as for :func:`build_index`.

    Raises
    ------
    TokenpruneError
        For a selector that changes the encoder's input (``unused`` inserts
        tokens, so it has no post-hoc form), or ``attention`` on a backbone
        that cannot give its attention weights.
    """
    for selector in selections.values():
        if selector.name not in POSTHOC_STRATEGIES:
            raise TokenpruneError(
                f"strategy {selector.name!r} has no post-hoc form (unused inserts tokens into the passage, const "
                f"mixes them with trained weights); post-hoc indexes take {', '.join(POSTHOC_STRATEGIES)}"
            )
        if selector.needs_attention:
            from tokenprune.attention import last_self_attention

            try:
                last_self_attention(model.backbone)
            except TypeError as error:
                raise TokenpruneError(f"strategy 'attention' needs a BERT-style backbone: {error}") from None
    if own_index is not None:
        selections = {own_index: model.selector, **selections}
    return build_indexes(model, dataset, selections, **options)


class _IndexWriter:
    """The files of one index being written: vectors, ids, diagnostics, and the per-document counts."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.vectors = open(staging / "vectors.f16", "wb")  # noqa: SIM115 - closed in close()
        self.doc_ids = open(staging / "doc_ids.txt", "w", encoding="utf-8")  # noqa: SIM115
        self.tokens = open(staging / "token_ids.i32", "wb")  # noqa: SIM115
        self.positions = open(staging / "positions.i16", "wb")  # noqa: SIM115
        self.per_document: list[int] = []

    def write_chunk(self, doc_ids: list[str], kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        for doc_id, (doc_vectors, doc_tokens, doc_positions) in zip(doc_ids, kept, strict=True):
            self.vectors.write(np.ascontiguousarray(doc_vectors).tobytes())
            self.tokens.write(doc_tokens.tobytes())
            self.positions.write(doc_positions.tobytes())
            self.doc_ids.write(doc_id + "\n")
            self.per_document.append(len(doc_vectors))

    def close(self) -> None:
        for handle in (self.vectors, self.doc_ids, self.tokens, self.positions):
            handle.close()


def write_vectors_index(
    output: str | Path,
    chunks: Iterable[tuple[list[str], list[np.ndarray]]],
    *,
    dim: int,
    strategy: str = "none",
    k: int | None = None,
    unpruned_tokens: int | None = None,
) -> dict[str, Any]:
    """An index of vectors computed elsewhere, in the format :func:`build_index` writes.

    For vectors no model of this library encoded: generated ones in the
    scale benchmark (benchmarks/scale.py), or another system's. Token ids
    are stored as 0 and positions as 0, 1, ... per document.

    Parameters
    ----------
    output
        Index folder, written atomically.
    chunks
        ``(doc_ids, vectors)`` pairs, one ``[n, dim]`` array per document.
    dim, strategy, k
        Recorded in ``index_stats.json``.
    unpruned_tokens
        Token count the ``percent_tokens_kept`` refers to (default: the vectors written).
    """
    with atomic_directory(output) as staging:
        writer = _IndexWriter(staging)
        for doc_ids, vectors in chunks:
            rows = []
            for doc_vectors in vectors:
                if doc_vectors.ndim != 2 or doc_vectors.shape[1] != dim:
                    raise TokenpruneError(f"document vectors must be [n, {dim}], got shape {list(doc_vectors.shape)}")
                count = len(doc_vectors)
                rows.append(
                    (doc_vectors.astype(np.float16), np.zeros(count, np.int32), np.arange(count, dtype=np.int16))
                )
            writer.write_chunk(doc_ids, rows)
        writer.close()
        np.save(staging / "offsets.npy", boundaries(writer.per_document))
        component_bytes = {name: (staging / name).stat().st_size for name in INDEX_COMPONENTS + DIAGNOSTIC_COMPONENTS}
        total = int(np.sum(writer.per_document, dtype=np.int64))
        stats = _index_stats(
            {"strategy": strategy, "k": k, "dim": dim}, writer.per_document, unpruned_tokens or total, component_bytes
        )
        stats["selection"] = "given vectors"
        write_json(staging / STATS_FILE, stats)
    return stats


def _kept_rows(passages: PassageVectors) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per passage of a batch: its stored vectors (fp16), token ids and positions, copied to the host."""
    # Prune on the device, then copy only the kept vectors back.
    host_vectors = passages.vectors[passages.mask].half().cpu().numpy()
    host_tokens = passages.token_ids[passages.mask].int().cpu().numpy()
    host_positions = passages.positions[passages.mask].short().cpu().numpy()
    starts = boundaries(passages.mask.sum(dim=1).tolist())
    return [
        (host_vectors[start:stop], host_tokens[start:stop], host_positions[start:stop])
        for start, stop in zip(starts[:-1], starts[1:], strict=True)
    ]


@torch.inference_mode()
def build_indexes(
    model: ColBERT,
    dataset: PreparedDataset,
    selections: dict[str | Path, TokenSelector],
    *,
    batch_size: int,
    chunk_documents: int,
    precision: str,
    document_range: tuple[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Encode a corpus once and write one index folder per selector, atomically; return their statistics.

    The model's own selector gives its in-loop index (:func:`build_index`),
    others give post-hoc indexes (:func:`build_posthoc_indexes`). Every
    selector sees the same vectors and the model's candidate rule. Options
    as for :func:`build_index`.
    """
    first_document, end_document = document_range if document_range is not None else (0, dataset.documents)
    model.eval()
    model.fit_selectors((texts for _, texts in dataset.corpus_batches(chunk_documents)), selections.values())
    precision = resolve_precision(precision, model.device, "encoding")
    with_attention = any(selector.needs_attention for selector in selections.values())
    inserted = torch.tensor(model.selector.prefix_ids(), dtype=torch.long, device=model.device)
    unpruned = 0
    with ExitStack() as stack:
        outputs = list(selections)
        writers = [_IndexWriter(stack.enter_context(atomic_directory(output))) for output in outputs]
        for writer in writers:
            stack.callback(writer.close)
        for doc_ids, texts in dataset.corpus_batches(chunk_documents, first_document, end_document):
            input_ids, attention_mask = model.tokenize_passages(texts)
            lengths = attention_mask.sum(dim=1).tolist()
            # The unpruned count of a passage: its candidates under the model's rule, inserted ids excluded.
            everything = candidate_mask(model.passage_batch(input_ids, attention_mask), model.config.candidate_tokens)
            unpruned += int((everything & ~torch.isin(input_ids, inserted)).sum())
            kept: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[None] * len(texts) for _ in outputs]  # type: ignore[list-item]
            for batch in length_sorted_batches(lengths, batch_size):
                width = max(lengths[i] for i in batch)
                ids, mask = input_ids[batch, :width], attention_mask[batch, :width]
                with autocast(model.device, precision):
                    vectors, view = model.encode_passage_tokens(ids, mask, with_attention=with_attention)
                for number, selector in enumerate(selections.values()):
                    for row, passage in zip(batch, _kept_rows(model.reduce(vectors, view, selector)), strict=True):
                        kept[number][row] = passage
            for writer, rows in zip(writers, kept, strict=True):
                writer.write_chunk(doc_ids, rows)
        all_stats = []
        for writer, selector in zip(writers, selections.values(), strict=True):
            writer.close()
            np.save(writer.staging / "offsets.npy", boundaries(writer.per_document))
            component_bytes = {
                name: (writer.staging / name).stat().st_size for name in INDEX_COMPONENTS + DIAGNOSTIC_COMPONENTS
            }
            selection = {"strategy": selector.name, "k": selector.k, "dim": model.config.dim}
            stats = _index_stats(selection, writer.per_document, unpruned, component_bytes)
            stats["selection"] = "in-loop" if selector is model.selector else "post-hoc"
            stats.update(selector.fitted())
            stats["model_strategy"] = model.config.strategy
            stats["candidate_tokens"] = model.config.candidate_tokens
            stats["document_range"] = [first_document, end_document]
            stats["encoding_precision"] = precision
            write_json(writer.staging / STATS_FILE, stats)
            all_stats.append(stats)
    return all_stats


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no data moves), or copy it where links are impossible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def merge_index_shards(shard_folders: Sequence[str | Path], output: str | Path) -> dict[str, Any]:
    """Join shard indexes, in document order, into one sharded index folder (written atomically).

    Parameters
    ----------
    shard_folders
        Index folders written by :func:`build_index` for consecutive
        ``document_range`` s starting at 0, all by the same model.
    output
        Sharded index folder to create (layout in the module docstring).

    Returns
    -------
    dict
        The whole index's statistics, as written to ``index_stats.json``.

    Raises
    ------
    TokenpruneError
        If a shard is missing or corrupted, the shards come from different
        models, or their document ranges leave a gap or overlap.
    """
    if not shard_folders:
        raise TokenpruneError("merge needs at least one shard index")
    shards = [PrunedIndex(Path(folder)) for folder in shard_folders]
    _check_mergeable(shards)
    first = shards[0].stats
    per_document = np.concatenate([np.diff(shard.offsets) for shard in shards])
    with atomic_directory(output) as staging:
        shard_entries: list[dict[str, Any]] = []
        manifest = {"format": MANIFEST_FORMAT, "shards": shard_entries}
        for number, shard in enumerate(shards):
            folder = Path("shards") / f"{number:05d}"
            (staging / folder).mkdir(parents=True)
            for name in VECTOR_COMPONENTS:
                _link_or_copy(shard.folder / name, staging / folder / name)
            shard_entries.append(
                {"folder": folder.as_posix(), "documents": shard.stats["documents"], "vectors": shard.stats["vectors"]}
            )
        np.save(staging / "offsets.npy", boundaries(per_document))
        with open(staging / "doc_ids.txt", "w", encoding="utf-8") as id_file:
            for shard in shards:
                id_file.writelines(doc_id + "\n" for doc_id in shard.doc_ids)
        component_bytes = {name: sum(shard.stats["bytes"][name] for shard in shards) for name in VECTOR_COMPONENTS}
        component_bytes.update({name: (staging / name).stat().st_size for name in ("offsets.npy", "doc_ids.txt")})
        stats = _index_stats(
            {key: first[key] for key in ("strategy", "k", "dim")},
            per_document,
            sum(shard.stats["unpruned_tokens"] for shard in shards),
            component_bytes,
        )
        stats["encoding_precision"] = first.get("encoding_precision")
        stats["shards"] = len(shards)
        write_json(staging / MANIFEST_FILE, manifest)
        write_json(staging / STATS_FILE, stats)
    return stats


def _check_mergeable(shards: Sequence[PrunedIndex]) -> None:
    """Shards of one model, encoded alike, whose document ranges follow each other from 0 without gaps."""
    first = shards[0].stats
    expected_start = 0
    for shard in shards:
        stats = shard.stats
        if shard.is_sharded:
            raise TokenpruneError(
                f"{str(shard.folder)!r} is already a merged index; merge the shard folders themselves"
            )
        for key in ("strategy", "k", "dim", "encoding_precision"):
            if stats.get(key) != first.get(key):
                raise TokenpruneError(
                    f"shard {str(shard.folder)!r} has {key}={stats.get(key)!r} but {str(shards[0].folder)!r} has "
                    f"{first.get(key)!r}: all shards must come from one model, encoded alike"
                )
        start, stop = stats.get("document_range", [expected_start, expected_start + stats["documents"]])
        if start != expected_start or stop - start != stats["documents"]:
            raise TokenpruneError(
                f"shard {str(shard.folder)!r} covers documents [{start}, {stop}) but the next shard must start at "
                f"{expected_start}: pass every shard, in order"
            )
        expected_start = stop


class ConcatenatedVectors:
    """Row access to several memory-mapped ``[rows, dim]`` arrays as if they were one.

    Supports what search needs: ``len``, ``shape``, a slice of rows, and an
    integer array of rows (returned in the given order).
    """

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = list(parts)
        self.starts = boundaries([len(part) for part in self.parts])
        self.dim = self.parts[0].shape[1]
        self.dtype = self.parts[0].dtype

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.starts[-1]), self.dim

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step != 1:
                raise IndexError("ConcatenatedVectors supports contiguous slices only")
            pieces = []
            for number, part in enumerate(self.parts):
                low, high = max(start, self.starts[number]), min(stop, self.starts[number + 1])
                if low < high:
                    pieces.append(part[low - self.starts[number] : high - self.starts[number]])
            if len(pieces) == 1:
                return pieces[0]
            return np.concatenate(pieces) if pieces else np.zeros((0, self.dim), dtype=self.dtype)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range for {len(self)} vectors")
        owner = np.searchsorted(self.starts, rows, side="right") - 1
        result = np.empty((rows.size, self.dim), dtype=self.dtype)
        for number in np.unique(owner):
            selected = owner == number
            result[selected] = self.parts[number][rows[selected] - self.starts[number]]
        return result


@dataclass
class PrunedIndex:
    """Read access to an index folder, single or sharded; vectors are memory-mapped, never loaded whole."""

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        if not (self.folder / STATS_FILE).is_file():
            raise TokenpruneError(
                f"{str(self.folder)!r} is not an index (no {STATS_FILE}); run 'tokenprune index' first"
            )
        expected_rows = [shard["vectors"] for shard in self.manifest["shards"]]
        if sum(expected_rows) != self.stats["vectors"]:
            raise TokenpruneError(
                f"index {str(self.folder)!r} is corrupted: {MANIFEST_FILE} does not match {STATS_FILE}"
            )
        for folder, rows in zip(self.vector_folders, expected_rows, strict=True):
            path = folder / self.row_file
            actual = path.stat().st_size if path.exists() else -1
            if actual != rows * self.row_bytes:
                raise TokenpruneError(
                    f"index {str(self.folder)!r} is corrupted: {path} has {actual} bytes, "
                    f"{rows} vectors of {self.row_bytes} bytes need {rows * self.row_bytes}"
                )
        if len(self.offsets) != self.stats["documents"] + 1 or int(self.offsets[-1]) != self.stats["vectors"]:
            raise TokenpruneError(f"index {str(self.folder)!r} is corrupted: offsets.npy does not match {STATS_FILE}")

    def _read_json(self, name: str) -> dict[str, Any]:
        try:
            return json.loads((self.folder / name).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise TokenpruneError(f"index {str(self.folder)!r}: {name} is corrupted ({error})") from None

    @cached_property
    def stats(self) -> dict[str, Any]:
        return self._read_json(STATS_FILE)

    @cached_property
    def is_compressed(self) -> bool:
        """Codes and a codec in place of float16 vectors (:mod:`tokenprune.compression`)."""
        return "compression" in self.stats

    @cached_property
    def row_file(self) -> str:
        """The per-vector file the rows are read from: ``codes.u8`` when compressed, else ``vectors.f16``."""
        return CODES_FILE if self.is_compressed else "vectors.f16"

    @cached_property
    def row_bytes(self) -> int:
        """Bytes per stored vector in :attr:`row_file`."""
        return int(self.stats["compression"]["code_bytes"]) if self.is_compressed else self.stats["dim"] * 2

    @cached_property
    def codec(self):  # noqa: ANN201 - faiss.Index
        """The faiss codec of a compressed index (see :mod:`tokenprune.compression`)."""
        faiss = import_faiss()

        return faiss.read_index(str(self.folder / CODEC_FILE))

    def _decoded(self, rows: np.ndarray) -> np.ndarray:
        """Raw ``[n, row_bytes]`` rows as ``[n, dim]`` float16 vectors."""
        if not self.is_compressed:
            return rows.view(np.float16)
        if not len(rows):
            return np.zeros((0, self.stats["dim"]), dtype=np.float16)
        return self.codec.sa_decode(np.ascontiguousarray(rows)).astype(np.float16)

    @cached_property
    def is_sharded(self) -> bool:
        return (self.folder / MANIFEST_FILE).is_file()

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The shard list of a sharded index (one implicit shard otherwise)."""
        if not self.is_sharded:
            return {
                "format": MANIFEST_FORMAT,
                "shards": [{"folder": ".", "documents": len(self), "vectors": self.stats["vectors"]}],
            }
        manifest = self._read_json(MANIFEST_FILE)
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(manifest.get("shards"), list):
            raise TokenpruneError(f"index {str(self.folder)!r}: {MANIFEST_FILE} is not a {MANIFEST_FORMAT} manifest")
        return manifest

    @cached_property
    def vector_folders(self) -> list[Path]:
        """Folders holding the per-vector files, one per shard, in document order."""
        return [self.folder / shard["folder"] for shard in self.manifest["shards"]]

    @cached_property
    def shard_documents(self) -> np.ndarray:
        """Document boundaries of the shards: shard ``s`` owns documents ``[b[s], b[s+1])``."""
        return boundaries([shard["documents"] for shard in self.manifest["shards"]])

    def component_files(self, name: str) -> list[Path]:
        """One per-vector file (``vectors.f16`` or ``codes.u8``, ``token_ids.i32``, ``positions.i16``) per shard, in order."""
        return [folder / name for folder in self.vector_folders]

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.load(self.folder / "offsets.npy")

    @cached_property
    def doc_ids(self) -> list[str]:
        return (self.folder / "doc_ids.txt").read_text(encoding="utf-8").splitlines()

    @cached_property
    def vectors(self) -> np.ndarray | ConcatenatedVectors:
        """All kept vectors, ``[vectors, dim]`` float16, memory-mapped (a view over the shards if sharded)."""
        if self.is_compressed:
            raise TokenpruneError(
                f"index {str(self.folder)!r} is compressed: read decoded rows with read_vectors or gather_vectors"
            )
        dim = self.stats["dim"]
        parts = [
            np.memmap(path, dtype=np.float16, mode="r", shape=(shard["vectors"], dim))
            if shard["vectors"]
            else np.zeros((0, dim), dtype=np.float16)
            for path, shard in zip(self.component_files("vectors.f16"), self.manifest["shards"], strict=True)
        ]
        return parts[0] if len(parts) == 1 else ConcatenatedVectors(parts)

    @cached_property
    def vector_starts(self) -> np.ndarray:
        """Vector-row boundaries of the shards: shard ``s`` holds rows ``[b[s], b[s+1])``."""
        return boundaries([shard["vectors"] for shard in self.manifest["shards"]])

    def read_vectors(self, start: int, stop: int) -> np.ndarray:
        """Vector rows ``[start, stop)``, read from the files into a new ``[rows, dim]`` float16 array.

        A slice of :attr:`vectors` would leave the pages it touched mapped
        into the process, so a scan of the whole index would end with the
        whole index in its resident memory. Read this way, a scan holds only
        the rows in hand, whatever the index's size (the page cache is the
        kernel's, and it gives it back under pressure).
        """
        width = self.row_bytes
        pieces = []
        shards = zip(self.component_files(self.row_file), self.vector_starts[:-1], self.vector_starts[1:], strict=True)
        for path, low, high in shards:
            first, last = max(start, int(low)), min(stop, int(high))
            if first < last:
                rows = np.fromfile(
                    path, dtype=np.uint8, count=(last - first) * width, offset=(first - int(low)) * width
                )
                pieces.append(rows.reshape(last - first, width))
        if not pieces:
            return np.zeros((0, self.stats["dim"]), dtype=np.float16)
        return self._decoded(pieces[0] if len(pieces) == 1 else np.concatenate(pieces))

    def gather_vectors(self, rows: np.ndarray) -> np.ndarray:
        """Vector ``rows`` (any order), read from the files into a new ``[len(rows), dim]`` float16 array.

        Like :meth:`read_vectors`, and unlike indexing :attr:`vectors` with
        the rows, this leaves no page of the index mapped into the process:
        a sample spread over a large index (the ANN training sample) would
        otherwise fault in, with the kernel's read-around, most of the file.
        Consecutive rows of one shard are read with one ``pread``.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        row_bytes = self.row_bytes
        gathered = np.empty((len(rows), row_bytes), dtype=np.uint8)
        if not len(rows):
            return self._decoded(gathered)
        if rows.min() < 0 or rows.max() >= int(self.vector_starts[-1]):
            raise TokenpruneError(
                f"vector rows must lie in [0, {int(self.vector_starts[-1])}), got {rows.min()}..{rows.max()}"
            )
        shard_of_row = np.searchsorted(self.vector_starts, rows, side="right") - 1
        breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(shard_of_row) != 0)) + 1
        run_starts = np.concatenate([[0], breaks])
        run_stops = np.concatenate([breaks, [len(rows)]])
        buffer = memoryview(gathered.reshape(-1).data)
        files = self.component_files(self.row_file)
        descriptors: dict[int, int] = {}
        try:
            for first, last in zip(run_starts.tolist(), run_stops.tolist(), strict=True):
                shard = int(shard_of_row[first])
                if shard not in descriptors:
                    descriptors[shard] = os.open(files[shard], os.O_RDONLY)
                offset = (int(rows[first]) - int(self.vector_starts[shard])) * row_bytes
                target, done = buffer[first * row_bytes : last * row_bytes], 0
                # One read returns at most about 2 GiB on Linux: loop until the run is in.
                while done < len(target):
                    got = os.preadv(descriptors[shard], [target[done:]], offset + done)
                    if not got:
                        raise TokenpruneError(
                            f"{str(files[shard])!r} ends before vector row {int(rows[first])}: the index is truncated"
                        )
                    done += got
        finally:
            for descriptor in descriptors.values():
                os.close(descriptor)
        return self._decoded(gathered)

    def document_chunks(self, chunk_vectors: int) -> Iterator[tuple[int, int]]:
        """Consecutive document ranges ``[first, last)`` of about ``chunk_vectors`` vectors each.

        A range holds at least one document and never crosses a shard
        boundary, so its vectors are one slice of one memory-mapped file.
        """
        offsets, bounds = self.offsets, self.shard_documents
        for shard_start, shard_stop in zip(bounds[:-1], bounds[1:], strict=True):
            first = int(shard_start)
            while first < shard_stop:
                last = int(np.searchsorted(offsets, offsets[first] + chunk_vectors, side="right")) - 1
                last = min(max(last, first + 1), int(shard_stop))
                yield first, last
                first = last

    def __len__(self) -> int:
        return self.stats["documents"]
