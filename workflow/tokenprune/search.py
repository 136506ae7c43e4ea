"""Ranking passages by MaxSim over a pruned index: exact brute force, or faiss ANN + exact re-rank.

Exact search streams the index in chunks of whole documents: the chunk's
documents are padded to a common width (padding repeats a real vector), one
matrix product gives every real query token's similarity to every vector of
the chunk, and a maximum over the padded axis gives the per-document maximum,
so no Python loop runs per document and memory stays bounded by the chunk size.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tokenprune.errors import TokenpruneError
from tokenprune.faiss_support import FaissPlacement, choose_faiss_placement, import_faiss, to_placement
from tokenprune.index import PrunedIndex
from tokenprune.io import atomic_file

if TYPE_CHECKING:
    from tokenprune.model import ColBERT

__all__ = [
    "SCORE_BUFFER",
    "fix_malloc_mmap_threshold",
    "Ranking",
    "QUERY_BATCH",
    "encode_query_set",
    "pad_documents",
    "PackedQueries",
    "exact_search",
    "MIN_POINTS_PER_LIST",
    "build_ann_index",
    "save_ann_index",
    "load_ann_index",
    "ann_search",
    "write_trec_run",
]

log = logging.getLogger(__name__)

# Query-document scores held before a top-k merge (float32: 256 MiB).
SCORE_BUFFER = 1 << 26
# glibc's mallopt parameter number of M_MMAP_THRESHOLD (malloc.h), and the threshold it starts with.
_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_MMAP_THRESHOLD = -3, 128 * 1024


@functools.cache
def fix_malloc_mmap_threshold() -> bool:
    """Stop glibc from retaining a scan's freed chunk buffers on the heap; True where it applied.

    glibc's malloc raises its mmap threshold each time a large block is freed,
    so the next buffers of that size come from the heap instead. A scan
    allocates buffers of a few MiB, each chunk a different size (documents
    are padded per chunk), and the heap fragments and keeps growing: 577 MiB
    of peak RSS over a 400 MiB index with 16 queries. Setting the threshold
    explicitly turns that adjustment off, so the buffers go back to the
    kernel when freed (45 MiB over the same scan; tests/test_search.py).
    Elsewhere than glibc this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_MMAP_THRESHOLD))


@dataclass
class Ranking:
    """Top documents per query: ``doc_indices[q]`` and ``scores[q]``, best first."""

    scores: np.ndarray
    doc_indices: np.ndarray


#: Queries encoded per forward pass.
QUERY_BATCH = 128


def encode_query_set(
    model: ColBERT, texts: Sequence[str], *, max_length: int | None = None, batch_size: int = QUERY_BATCH
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every query's vectors ``[queries, length, dim]`` and mask, encoded in batches and padded to the longest.

    What :func:`exact_search` and :func:`ann_search` take. ``max_length``
    overrides the model's query length (classic collections have long queries).
    """
    if batch_size <= 0:
        raise TokenpruneError(f"query batch size must be positive, got {batch_size}")
    vectors, masks = [], []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded, mask = model.encode_queries(list(texts[start : start + batch_size]), max_length=max_length)
            vectors.append(encoded)
            masks.append(mask)
    width = max(v.shape[1] for v in vectors)
    return (
        torch.cat([torch.nn.functional.pad(v, (0, 0, 0, width - v.shape[1])) for v in vectors]),
        torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in masks]),
    )


def pad_documents(vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Lay the consecutive documents of ``vectors`` out as ``[documents, width, dim]``.

    ``lengths[d]`` rows of ``vectors`` belong to document ``d``, in order.
    Padding slots repeat the document's first vector, so a maximum over the
    padded axis needs no mask (documents without vectors excepted). Pruned
    documents all hold about k vectors, so the padding is small.
    """
    documents = lengths.numel()
    width = max(int(lengths.max()) if documents else 0, 1)
    starts = torch.cumsum(lengths, 0) - lengths
    slots = torch.arange(width, device=vectors.device)
    valid = slots[None, :] < lengths[:, None]
    rows = (starts[:, None] + torch.where(valid, slots[None, :], 0)).clamp(max=max(vectors.shape[0] - 1, 0))
    return vectors[rows] if vectors.shape[0] else vectors.new_zeros((documents, width, vectors.shape[1]))


@dataclass
class PackedQueries:
    """The query tokens that count, without padding: ``vectors[t]`` belongs to query ``owner[t]``."""

    vectors: torch.Tensor
    owner: torch.Tensor
    count: int

    @classmethod
    def pack(cls, queries: torch.Tensor, query_mask: torch.Tensor) -> PackedQueries:
        """From ``[queries, length, dim]`` vectors and the mask of tokens that count."""
        mask = query_mask.to(queries.device).bool()
        owner = torch.arange(queries.shape[0], device=queries.device)[:, None].expand_as(mask)
        return cls(vectors=queries[mask], owner=owner[mask], count=queries.shape[0])


def _maxsim_chunk(queries: PackedQueries, vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """MaxSim of every query against consecutive documents holding ``lengths`` rows of ``vectors`` each.

    One matrix product of the packed query tokens (no padded query rows)
    against the documents padded to a common width, a maximum over the last
    (contiguous) axis, then each token's maxima added to its query's scores:
    much faster than a per-vector scatter of maxima, on the CPU especially.
    """
    padded = pad_documents(vectors, lengths)
    documents, width, dim = padded.shape
    similarity = (queries.vectors @ padded.reshape(documents * width, dim).T).reshape(-1, documents, width)
    best = similarity.amax(dim=-1).float()
    scores = torch.zeros((queries.count, documents), device=best.device).index_add_(0, queries.owner, best)
    # A document with no vector at all can only rank last.
    return scores.masked_fill_(lengths[None, :] == 0, float("-inf"))


def _merge_top(
    best_scores: torch.Tensor, best_indices: torch.Tensor, scores: torch.Tensor, first_document: int, depth: int
) -> tuple[torch.Tensor, torch.Tensor]:
    indices = torch.arange(first_document, first_document + scores.shape[1], device=scores.device).expand_as(scores)
    all_scores = torch.cat([best_scores, scores], dim=1)
    all_indices = torch.cat([best_indices, indices], dim=1)
    top = all_scores.topk(min(depth, all_scores.shape[1]), dim=1)
    return top.values, all_indices.gather(1, top.indices)


@torch.inference_mode()
def exact_search(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    index: PrunedIndex,
    depth: int,
    *,
    chunk_vectors: int | None = None,
    query_batch: int = 64,
) -> Ranking:
    """Brute-force MaxSim of every query against every document of ``index``.

    Parameters
    ----------
    queries, query_mask
        ``[queries, length, dim]`` vectors (on the device to search on) and the
        mask of tokens that count.
    index
        The pruned index, streamed in chunks.
    depth
        Documents returned per query.
    chunk_vectors
        Index vectors per chunk; with ``query_batch`` it bounds memory to
        about ``query_batch × length × chunk_vectors`` similarities. Default:
        65,536 on a GPU (large products), 2,048 on the CPU, where the
        similarities of a chunk then stay in cache (1.6× faster on SciFact than
        65,536, benchmarks/README.md).
    query_batch
        Queries scored together.
    """
    device = queries.device
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    fix_malloc_mmap_threshold()
    if chunk_vectors is None:
        chunk_vectors = 65536 if device.type == "cuda" else 2048
    offsets = index.offsets
    depth = min(depth, len(index))
    count = queries.shape[0]
    batches = [
        PackedQueries.pack(queries[q : q + query_batch].to(dtype), query_mask[q : q + query_batch])
        for q in range(0, count, query_batch)
    ]
    # Scores are kept for many chunks and merged into the top `depth` once per block, not after every chunk.
    block_documents = max(depth, SCORE_BUFFER // max(count, 1))
    best_scores = torch.full((count, 0), float("-inf"), device=device)
    best_indices = torch.zeros((count, 0), dtype=torch.long, device=device)
    pending: list[torch.Tensor] = []
    pending_first = 0
    # Whole documents per chunk, never across a shard: each chunk is one slice of one memory-mapped file.
    for first, last in index.document_chunks(chunk_vectors):
        start, stop = int(offsets[first]), int(offsets[last])
        # Read, not sliced from the memory map: memory stays that of one chunk however large the index.
        vectors = torch.from_numpy(index.read_vectors(start, stop)).to(device).to(dtype)
        lengths = torch.from_numpy(np.diff(offsets[first : last + 1])).to(device)
        if not pending:
            pending_first = first
        pending.append(torch.cat([_maxsim_chunk(batch, vectors, lengths) for batch in batches]))
        if last - pending_first >= block_documents:
            best_scores, best_indices = _merge_top(
                best_scores, best_indices, torch.cat(pending, dim=1), pending_first, depth
            )
            pending = []
    if pending:
        best_scores, best_indices = _merge_top(
            best_scores, best_indices, torch.cat(pending, dim=1), pending_first, depth
        )
    return Ranking(best_scores.cpu().numpy(), best_indices.cpu().numpy())


#: faiss warns below 39 training points per centroid; smaller indexes get fewer inverted lists.
MIN_POINTS_PER_LIST = 39


def build_ann_index(
    index: PrunedIndex,
    *,
    nlist: int,
    m: int,
    nbits: int,
    flat: bool = False,
    train_sample: int = 262144,
    seed: int = 0,
    placement: FaissPlacement | None = None,
):  # noqa: ANN201 - faiss.Index
    """Inner-product IVF-PQ (or IVF-Flat) over every vector of ``index``, trained on a sample and filled shard by shard.

    ``nlist`` is capped at one list per :data:`MIN_POINTS_PER_LIST` vectors; the
    returned index's ``nlist`` says how many it has. With a ``faiss-gpu``
    ``placement`` the k-means and the encoding run on that GPU; a layout GPU
    faiss does not take falls back to the CPU, and the log says so. The
    returned index is always a CPU index, ready to save.
    """
    faiss = import_faiss()

    dim = index.stats["dim"]
    total = index.stats["vectors"]
    if nlist <= 0:
        raise TokenpruneError(f"ann nlist must be positive, got {nlist}")
    nlist = max(1, min(nlist, total // MIN_POINTS_PER_LIST))
    if not flat and min(train_sample, total) < 2**nbits:
        raise TokenpruneError(
            f"ann nbits={nbits} needs {2**nbits} vectors to train each PQ codebook, but the index has {total}; "
            "lower retrieval.ann.nbits"
        )
    if not flat and dim % m:
        raise TokenpruneError(f"ann m={m} must divide the vector dimension {dim}")
    quantizer = faiss.IndexFlatIP(dim)
    if flat:
        ann = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:
        ann = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    placement = placement or FaissPlacement("faiss-cpu", None, "no placement given")
    if placement.gpu is not None:
        try:
            ann = to_placement(ann, placement, faiss)
        except RuntimeError as error:
            log.warning("GPU faiss does not take this index (%s); building it on the CPU", str(error).splitlines()[0])
            placement = FaissPlacement("faiss-cpu", None, "GPU faiss refused the index layout")
    log.info("building the ANN index with %s (%s)", placement.backend, placement.reason)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(total, size=min(train_sample, total), replace=False))
    ann.train(index.gather_vectors(sample).astype(np.float32))
    # Added shard by shard, in vector order, so faiss ids are the index's global vector rows.
    for first, last in index.document_chunks(1 << 20):
        ann.add(index.read_vectors(int(index.offsets[first]), int(index.offsets[last])).astype(np.float32))
    return faiss.index_gpu_to_cpu(ann) if placement.gpu is not None else ann


def save_ann_index(ann, path: str | Path) -> None:  # noqa: ANN001
    faiss = import_faiss()

    with atomic_file(path) as tmp:
        faiss.write_index(ann, str(tmp))


def load_ann_index(path: str | Path):  # noqa: ANN201
    faiss = import_faiss()

    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise TokenpruneError(
            f"ANN index {str(path)!r} is missing or corrupted: {str(error).splitlines()[0]}"
        ) from None


@torch.inference_mode()
def ann_search(
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    index: PrunedIndex,
    ann,  # noqa: ANN001 - faiss.Index
    depth: int,
    *,
    candidates_per_token: int,
    nprobe: int,
    placement: FaissPlacement | None = None,
) -> Ranking:
    """ColBERT's two-stage search: each query token's nearest vectors name candidate documents,
    which are then ranked by exact MaxSim over their kept vectors.

    ``placement`` (default: :func:`~tokenprune.faiss_support.choose_faiss_placement`
    for the queries' device) says whether the candidates come from GPU faiss.
    """
    faiss = import_faiss()
    faiss.extract_index_ivf(ann).nprobe = nprobe
    ann = to_placement(ann, placement or choose_faiss_placement(queries.device, faiss), faiss)
    count, length, dim = queries.shape
    tokens = queries.float().cpu().numpy().reshape(count * length, dim)
    _, vector_ids = ann.search(tokens, candidates_per_token)
    owners = np.searchsorted(index.offsets, vector_ids, side="right") - 1
    owners = owners.reshape(count, length * candidates_per_token)
    mask = query_mask.cpu().numpy().repeat(candidates_per_token, axis=1)
    depth = min(depth, len(index))
    scores = np.full((count, depth), -np.inf, dtype=np.float32)
    indices = np.full((count, depth), -1, dtype=np.int64)
    for q in range(count):
        candidates = np.unique(owners[q][mask[q] & (vector_ids.reshape(count, -1)[q] >= 0)])
        if candidates.size == 0:
            continue
        starts, stops = index.offsets[candidates], index.offsets[candidates + 1]
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
        vectors = torch.from_numpy(index.gather_vectors(rows).astype(np.float32)).to(queries.device)
        lengths = torch.from_numpy(stops - starts).to(queries.device)
        candidate_scores = _maxsim_chunk(
            PackedQueries.pack(queries[q : q + 1].float(), query_mask[q : q + 1]), vectors, lengths
        )[0]
        top = candidate_scores.topk(min(depth, candidates.size))
        scores[q, : top.values.numel()] = top.values.cpu().numpy()
        indices[q, : top.values.numel()] = candidates[top.indices.cpu().numpy()]
    return Ranking(scores, indices)


def write_trec_run(path: str | Path, query_ids: list[str], ranking: Ranking, doc_ids: list[str], tag: str) -> None:
    """Write a TREC run file atomically (``qid Q0 docid rank score tag``); unfilled slots are skipped."""
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as run:
        for query_id, scores, indices in zip(query_ids, ranking.scores, ranking.doc_indices, strict=True):
            rank = 0
            for score, index in zip(scores, indices, strict=True):
                if index < 0 or not np.isfinite(score):
                    continue
                rank += 1
                run.write(f"{query_id} Q0 {doc_ids[index]} {rank} {float(score):.6f} {tag}\n")
