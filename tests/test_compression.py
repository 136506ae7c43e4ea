"""Residual compression: the stored bytes, the decoded vectors against faiss itself, and search on the codes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenprune.compression import compress_index
from tokenprune.errors import TokenpruneError
from tokenprune.index import PrunedIndex, merge_index_shards, write_vectors_index
from tokenprune.search import exact_search

DIM = 16


@pytest.fixture(scope="module")
def documents() -> list[np.ndarray]:
    """240 documents of 1 to 19 vectors around 12 topics, like token vectors of passages on a few subjects."""
    rng = np.random.default_rng(0)
    topics = rng.standard_normal((12, DIM)).astype(np.float32)
    return [
        (topics[rng.integers(12)] + 0.4 * rng.standard_normal((rng.integers(1, 20), DIM))).astype(np.float32)
        for _ in range(240)
    ]


@pytest.fixture(scope="module")
def fp16_index(documents, tmp_path_factory) -> PrunedIndex:
    folder = tmp_path_factory.mktemp("fp16") / "index"
    write_vectors_index(folder, [([f"d{i}" for i in range(len(documents))], documents)], dim=DIM)
    return PrunedIndex(folder)


@pytest.fixture(scope="module")
def compressed(fp16_index, tmp_path_factory) -> dict[int, PrunedIndex]:
    folder = tmp_path_factory.mktemp("compressed")
    for bits in (2, 4):
        compress_index(fp16_index.folder, folder / f"r{bits}", bits=bits, centroids=16, sample_vectors=1500, seed=3)
    return {bits: PrunedIndex(folder / f"r{bits}") for bits in (2, 4)}


def test_bytes_are_one_centroid_byte_and_bits_per_dimension(fp16_index, compressed) -> None:
    vectors = fp16_index.stats["vectors"]
    for bits, index in compressed.items():
        stats = index.stats
        # 16 centroids fit one byte; 16 dimensions x bits.
        assert stats["compression"]["code_bytes"] == 1 + DIM * bits // 8
        assert (index.folder / "codes.u8").stat().st_size == vectors * (1 + DIM * bits // 8)
        stored = sum(
            (index.folder / name).stat().st_size for name in ("codes.u8", "codec.faiss", "offsets.npy", "doc_ids.txt")
        )
        assert stats["index_bytes"] == stored
        assert stats["vectors"] == vectors and stats["percent_tokens_kept"] == fp16_index.stats["percent_tokens_kept"]
        assert index.doc_ids == fp16_index.doc_ids and np.array_equal(index.offsets, fp16_index.offsets)
    # 2 bits per dimension: 5 bytes a vector against 32 in float16.
    assert compressed[2].stats["bytes"]["codes.u8"] * 32 == fp16_index.stats["bytes"]["vectors.f16"] * 5


def test_decoded_rows_equal_faiss_encoding_then_decoding_the_float16_vectors(fp16_index, compressed) -> None:
    total = fp16_index.stats["vectors"]
    original = fp16_index.read_vectors(0, total).astype(np.float32)
    for index in compressed.values():
        reference = index.codec.sa_decode(index.codec.sa_encode(original)).astype(np.float16)
        assert np.array_equal(index.read_vectors(0, total), reference)
        assert np.array_equal(index.read_vectors(100, 160), reference[100:160])
        rows = np.array([7, 3, 400, 401, 402, total - 1])
        assert np.array_equal(index.gather_vectors(rows), reference[rows])
    # More bits, closer vectors.
    error = {
        bits: np.abs(index.read_vectors(0, total).astype(np.float32) - original).mean()
        for bits, index in compressed.items()
    }
    assert error[4] < error[2] < np.abs(original).mean() / 2


def test_exact_search_on_codes_equals_search_on_the_decoded_vectors(documents, compressed, tmp_path) -> None:
    index = compressed[2]
    decoded = index.read_vectors(0, index.stats["vectors"])
    pieces = np.split(decoded, index.offsets[1:-1])
    write_vectors_index(tmp_path / "decoded", [(index.doc_ids, pieces)], dim=DIM)
    queries = torch.from_numpy(np.stack([documents[i][:1].repeat(4, axis=0) for i in range(0, 60, 6)]))
    query_mask = torch.ones(queries.shape[:2], dtype=torch.bool)
    on_codes = exact_search(queries, query_mask, index, depth=10, chunk_vectors=200)
    reference = exact_search(queries, query_mask, PrunedIndex(tmp_path / "decoded"), depth=10, chunk_vectors=200)
    assert np.array_equal(on_codes.doc_indices, reference.doc_indices)
    assert np.allclose(on_codes.scores, reference.scores)


def test_a_sharded_index_compresses_to_the_same_codes(documents, fp16_index, compressed, tmp_path) -> None:
    half = len(documents) // 2
    for name, part in (("a", range(half)), ("b", range(half, len(documents)))):
        write_vectors_index(tmp_path / name, [([f"d{i}" for i in part], [documents[i] for i in part])], dim=DIM)
    merge_index_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "sharded")
    compress_index(tmp_path / "sharded", tmp_path / "r2", bits=2, centroids=16, sample_vectors=1500, seed=3)
    assert (tmp_path / "r2" / "codes.u8").read_bytes() == (compressed[2].folder / "codes.u8").read_bytes()
    assert (tmp_path / "r2" / "token_ids.i32").read_bytes() == (compressed[2].folder / "token_ids.i32").read_bytes()


def test_a_compressed_index_has_no_float16_memory_map(compressed) -> None:
    with pytest.raises(TokenpruneError, match="is compressed: read decoded rows"):
        _ = compressed[2].vectors


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bits": 0, "centroids": 16, "sample_vectors": 1000}, "compression bits must lie in 1..8, got 0"),
        (
            {"bits": 2, "centroids": 64, "sample_vectors": 20},
            "compression centroids=64 needs at least as many sample vectors, got 20",
        ),
    ],
)
def test_bad_settings_are_named(fp16_index, tmp_path, options, message) -> None:
    with pytest.raises(TokenpruneError, match=message):
        compress_index(fp16_index.folder, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_compressing_twice_is_refused(compressed, tmp_path) -> None:
    with pytest.raises(TokenpruneError, match="is already compressed"):
        compress_index(compressed[2].folder, tmp_path / "again", bits=2, centroids=4, sample_vectors=100)


def test_a_truncated_codes_file_is_detected(compressed, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(compressed[4].folder, copy)
    with open(copy / "codes.u8", "r+b") as handle:
        handle.truncate(90)
    with pytest.raises(TokenpruneError, match=r"is corrupted: .*codes.u8 has 90 bytes"):
        PrunedIndex(copy)
    assert json.loads((copy / "index_stats.json").read_text())["compression"]["bits"] == 4


@pytest.mark.parametrize(("vectors", "expected"), [(1, 16), (4, 32), (1000, 256), (5183, 1024), (262144, 8192)])
def test_plaid_centroids_are_the_power_of_two_below_16_sqrt_vectors(vectors: int, expected: int) -> None:
    from tokenprune.compression import plaid_centroids, resolve_centroids

    assert plaid_centroids(vectors) == expected
    assert 16 * vectors**0.5 / 2 < expected <= 16 * vectors**0.5
    assert resolve_centroids("plaid", vectors) == min(expected, vectors)
    assert resolve_centroids(64, vectors) == min(64, vectors)


def test_the_plaid_rule_sizes_each_index_by_its_own_vectors(fp16_index, tmp_path) -> None:
    compress_index(fp16_index.folder, tmp_path / "r2", bits=2, centroids="plaid", sample_vectors=5000, seed=3)
    stats = PrunedIndex(tmp_path / "r2").stats["compression"]
    vectors = fp16_index.stats["vectors"]
    assert stats["centroids"] == 2 ** int(np.log2(16 * np.sqrt(vectors))) and stats["centroid_rule"] == "plaid"
    with pytest.raises(TokenpruneError, match="'many'"):
        compress_index(fp16_index.folder, tmp_path / "bad", bits=2, centroids="many", sample_vectors=100)
