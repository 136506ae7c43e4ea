"""Residual compression of an index: each vector stored as a coarse centroid and a few bits per dimension.

ColBERTv2 and PLAID store a vector as the id of its nearest of a few
thousand centroids plus its residual from that centroid, quantised to 1–2
bits per dimension; that is why a PyLate index costs about 40 bytes per
128-d vector against 256 for float16. Pruning and compression multiply, so
the index-size axis must know both.

The codec here is faiss's ``IVF{centroids},PQ{dim}x{bits}``: k-means
centroids (the coarse code) and, per dimension, a ``2**bits``-level scalar
codebook of the residuals (a product quantiser with one dimension per
sub-quantiser), trained on a sample of the index's own vectors. A vector
then costs ``ceil(log2(centroids) / 8) + dim * bits / 8`` bytes. Exact
search decodes the codes it reads (:class:`tokenprune.index.PrunedIndex`), so
MaxSim re-scores with the reconstructed vectors and the effectiveness cost
of compression is measured, not estimated.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tokenprune.errors import TokenpruneError
from tokenprune.faiss_support import import_faiss
from tokenprune.index import (
    CODEC_FILE,
    CODES_FILE,
    COMPRESSED_COMPONENTS,
    DIAGNOSTIC_COMPONENTS,
    STATS_FILE,
    PrunedIndex,
)
from tokenprune.io import atomic_directory, write_json

__all__ = [
    "ENCODE_ROWS",
    "codec_description",
    "check_bits",
    "train_codec",
    "plaid_centroids",
    "resolve_centroids",
    "compress_index",
]

log = logging.getLogger(__name__)

#: Rows encoded per faiss call: bounds the float32 copy held at once.
ENCODE_ROWS = 1 << 18


def codec_description(dim: int, bits: int, centroids: int) -> str:
    """The faiss factory string of the residual codec."""
    return f"IVF{centroids},PQ{dim}x{bits}"


def check_bits(bits: int) -> None:
    """Refuse a residual width faiss's per-dimension codebooks cannot take, naming it."""
    if not 1 <= bits <= 8:
        raise TokenpruneError(f"compression bits must lie in 1..8, got {bits}")


def train_codec(sample: np.ndarray, *, bits: int, centroids: int, seed: int = 0):  # noqa: ANN201 - faiss.Index
    """Train the residual codec on ``sample`` (``[n, dim]``).

    Raises
    ------
    TokenpruneError
        For ``bits`` outside 1–8, or fewer sample vectors than ``centroids``
        (k-means needs at least one point per centroid).
    """
    faiss = import_faiss()

    check_bits(bits)
    if centroids < 1 or len(sample) < centroids:
        raise TokenpruneError(
            f"compression centroids={centroids} needs at least as many sample vectors, got {len(sample)}; "
            "lower compression.centroids"
        )
    codec = faiss.index_factory(sample.shape[1], codec_description(sample.shape[1], bits, centroids))
    faiss.extract_index_ivf(codec).cp.seed = seed
    codec.train(np.ascontiguousarray(sample, dtype=np.float32))
    return codec


def _copy_uncompressed_components(index: PrunedIndex, staging: Path) -> None:
    """Offsets and document ids as they are; a sharded index's diagnostic files joined into one."""
    for name in ("offsets.npy", "doc_ids.txt"):
        shutil.copyfile(index.folder / name, staging / name)
    for name in DIAGNOSTIC_COMPONENTS:
        with open(staging / name, "wb") as joined:
            for part in index.component_files(name):
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, joined)


def plaid_centroids(vectors: int) -> int:
    """ColBERTv2/PLAID's number of coarse centroids for an index of ``vectors``: ``2 ** floor(log2(16 sqrt(vectors)))``."""
    if vectors < 1:
        raise TokenpruneError(f"an index of {vectors} vectors has no centroids to train")
    return int(2 ** math.floor(math.log2(16 * math.sqrt(vectors))))


def resolve_centroids(setting: int | str, vectors: int) -> int:
    """The centroids of an index of ``vectors``: a number (capped at the vectors), or ``"plaid"``'s rule."""
    if setting == "plaid":
        return min(plaid_centroids(vectors), vectors)
    if isinstance(setting, str):
        try:
            setting = int(setting)
        except ValueError:
            raise TokenpruneError(f"centroids must be a positive integer or 'plaid', got {setting!r}") from None
    if setting < 1:
        raise TokenpruneError(f"centroids must be a positive integer or 'plaid', got {setting!r}")
    return min(setting, vectors)


def _compressed_stats(index: PrunedIndex, staging: Path, codec: Any, coding: dict[str, Any]) -> dict[str, Any]:  # noqa: ANN401 - faiss.Index
    """``index_stats.json`` of a compressed copy of ``index`` whose files are in ``staging``.

    ``coding``: the ``bits``, the centroid ``rule`` as configured, the ``sample_vectors`` and ``seed``.
    """
    faiss = import_faiss()

    component_bytes = {name: (staging / name).stat().st_size for name in COMPRESSED_COMPONENTS + DIAGNOSTIC_COMPONENTS}
    index_bytes = sum(component_bytes[name] for name in COMPRESSED_COMPONENTS)
    stats = {key: value for key, value in index.stats.items() if key not in ("shards", "document_range")}
    centroids, bits = int(faiss.extract_index_ivf(codec).nlist), coding["bits"]
    stats.update(
        {
            "compression": {
                "codec": codec_description(index.stats["dim"], bits, centroids),
                "bits": bits,
                "centroids": centroids,
                "centroid_rule": "plaid" if coding["rule"] == "plaid" else "fixed",
                "code_bytes": int(codec.sa_code_size()),
                "sample_vectors": coding["sample_vectors"],
                "seed": coding["seed"],
                "source_index_bytes": index.stats["index_bytes"],
            },
            "bytes": component_bytes,
            "index_bytes": index_bytes,
            "index_mib": round(index_bytes / 2**20, 3),
            "dtype": f"residual {bits}-bit codes",
        }
    )
    return stats


def compress_index(
    source: str | Path,
    output: str | Path,
    *,
    bits: int,
    centroids: int | str,
    sample_vectors: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Write a compressed copy of an index folder (single or sharded) and return its statistics.

    Parameters
    ----------
    source
        Float16 index folder (:func:`tokenprune.index.build_index`).
    output
        Compressed index folder, written atomically.
    bits
        Bits per dimension of the residual codes.
    centroids
        Coarse centroids, capped at the number of vectors; or ``"plaid"``:
        PLAID's rule from the index's vector count (:func:`plaid_centroids`).
    sample_vectors
        Vectors drawn uniformly (with ``seed``) to train the codec.
    """
    faiss = import_faiss()

    # Checked before the index is sampled, which on a large index takes a while.
    check_bits(bits)
    index = PrunedIndex(Path(source))
    if index.is_compressed:
        raise TokenpruneError(f"index {str(source)!r} is already compressed")
    total = index.stats["vectors"]
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(total, size=min(sample_vectors, total), replace=False))
    codec = train_codec(
        index.gather_vectors(sample).astype(np.float32),
        bits=bits,
        centroids=resolve_centroids(centroids, total),
        seed=seed,
    )
    with atomic_directory(output) as staging:
        with open(staging / CODES_FILE, "wb") as codes:
            for start in range(0, total, ENCODE_ROWS):
                stop = min(start + ENCODE_ROWS, total)
                codes.write(codec.sa_encode(index.read_vectors(start, stop).astype(np.float32)).tobytes())
        faiss.write_index(codec, str(staging / CODEC_FILE))
        _copy_uncompressed_components(index, staging)
        stats = _compressed_stats(
            index, staging, codec, {"bits": bits, "rule": centroids, "sample_vectors": len(sample), "seed": seed}
        )
        write_json(staging / STATS_FILE, stats)
    log.info(
        "%d vectors compressed to %d bytes each (%.2f MiB, from %.2f MiB)",
        total,
        stats["compression"]["code_bytes"],
        stats["index_mib"],
        index.stats["index_mib"],
    )
    return stats
