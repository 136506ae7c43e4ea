"""Sharded indexing: shard ranges, merging, and search over a sharded index equal to the unsharded one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from test_search import corpus, small_model  # noqa: F401 - the module-scoped corpus fixture
from tokenprune.errors import TokenpruneError
from tokenprune.index import ConcatenatedVectors, PrunedIndex, build_index, merge_index_shards, shard_ranges
from tokenprune.reporting.diagnostics import count_kept_tokens
from tokenprune.search import Ranking, ann_search, build_ann_index, exact_search

CHUNK = 4


def test_shard_ranges_cut_on_chunk_boundaries() -> None:
    # 37 documents in chunks of 4 = 10 chunks; 3 shards get 3, 3 and 4 chunks.
    assert shard_ranges(37, 3, 4) == [(0, 12), (12, 24), (24, 37)]
    assert shard_ranges(37, 1, 4096) == [(0, 37)]
    # More shards than chunks: some shards are empty, the cover stays exact.
    assert shard_ranges(5, 4, 4) == [(0, 0), (0, 4), (4, 4), (4, 5)]
    assert shard_ranges(0, 2, 4) == [(0, 0), (0, 0)]
    with pytest.raises(TokenpruneError, match="must be positive, got 0 and 4"):
        shard_ranges(10, 0, 4)


def test_corpus_batches_of_a_range_align_with_the_whole_corpus(corpus) -> None:  # noqa: F811
    whole = [ids for ids, _ in corpus.corpus_batches(CHUNK)]
    assert [ids for ids, _ in corpus.corpus_batches(CHUNK, 12, 24)] == whole[3:6]
    assert [ids for ids, _ in corpus.corpus_batches(CHUNK, 24)] == whole[6:]
    assert list(corpus.corpus_batches(CHUNK, 37, 37)) == []
    with pytest.raises(TokenpruneError, match=r"\[30, 20\) is not within the corpus's 37 documents"):
        list(corpus.corpus_batches(CHUNK, 30, 20))


@pytest.fixture(scope="module")
def unsharded_and_sharded(corpus, tmp_path_factory) -> tuple[PrunedIndex, PrunedIndex, list[Path]]:  # noqa: F811
    folder = tmp_path_factory.mktemp("sharding")
    model = small_model("attention", 6)
    build_index(model, corpus, folder / "whole", batch_size=3, chunk_documents=CHUNK, precision="auto")
    shard_folders = []
    for number, document_range in enumerate(shard_ranges(corpus.documents, 3, CHUNK)):
        shard_folders.append(folder / f"shard{number}")
        build_index(
            model,
            corpus,
            shard_folders[-1],
            batch_size=3,
            chunk_documents=CHUNK,
            precision="auto",
            document_range=document_range,
        )
    merge_index_shards(shard_folders, folder / "merged")
    return PrunedIndex(folder / "whole"), PrunedIndex(folder / "merged"), shard_folders


def test_merged_index_holds_exactly_the_unsharded_vectors(unsharded_and_sharded) -> None:
    whole, merged, _ = unsharded_and_sharded
    assert merged.is_sharded and not whole.is_sharded
    manifest = json.loads((merged.folder / "manifest.json").read_text())
    assert [shard["documents"] for shard in manifest["shards"]] == [12, 12, 13]
    assert merged.doc_ids == whole.doc_ids
    assert merged.offsets.tolist() == whole.offsets.tolist()
    assert (
        b"".join(path.read_bytes() for path in merged.component_files("vectors.f16"))
        == (whole.folder / "vectors.f16").read_bytes()
    )
    for key in (
        "documents",
        "vectors",
        "unpruned_tokens",
        "percent_tokens_kept",
        "vectors_per_document",
        "dim",
        "strategy",
        "k",
    ):
        assert merged.stats[key] == whole.stats[key], key
    # Same components, same bytes: the index size in the tables does not depend on sharding.
    assert merged.stats["index_bytes"] == whole.stats["index_bytes"]
    assert merged.stats["shards"] == 3


def test_search_over_shards_gives_the_same_ranking(unsharded_and_sharded) -> None:
    whole, merged, _ = unsharded_and_sharded
    generator = torch.Generator().manual_seed(11)
    queries = torch.randn(5, 6, 16, generator=generator)
    query_mask = torch.ones(5, 6, dtype=torch.bool)
    query_mask[2, 4:] = False
    rankings = [exact_search(queries, query_mask, index, depth=20, chunk_vectors=50) for index in (whole, merged)]
    # The same documents in the same order; scores agree to float32 rounding (a matrix product's last bit
    # depends on the shapes BLAS sees, and shard boundaries change the chunk shapes).
    assert rankings[0].doc_indices.tolist() == rankings[1].doc_indices.tolist()
    assert np.allclose(rankings[0].scores, rankings[1].scores, rtol=0, atol=1e-5)
    # Searched in the same chunks, the scores are bit-identical.
    same_chunks = [exact_search(queries, query_mask, index, depth=20, chunk_vectors=1) for index in (whole, merged)]
    assert np.array_equal(same_chunks[0].scores, same_chunks[1].scores)
    assert np.array_equal(same_chunks[0].doc_indices, same_chunks[1].doc_indices)

    ann_rankings: list[Ranking] = []
    for index in (whole, merged):
        ann = build_ann_index(index, nlist=2, m=4, nbits=8, flat=True)
        assert ann.ntotal == index.stats["vectors"]
        ann_rankings.append(
            ann_search(queries, query_mask, index, ann, depth=10, candidates_per_token=index.stats["vectors"], nprobe=2)
        )
    assert ann_rankings[0].doc_indices.tolist() == ann_rankings[1].doc_indices.tolist()
    assert np.array_equal(ann_rankings[0].scores, ann_rankings[1].scores)


def test_token_diagnostics_read_every_shard(unsharded_and_sharded) -> None:
    whole, merged, _ = unsharded_and_sharded
    expected, actual = count_kept_tokens(whole.folder), count_kept_tokens(merged.folder)
    assert actual.vectors == expected.vectors
    assert actual.token_counts == expected.token_counts
    assert actual.position_counts.tolist() == expected.position_counts.tolist()


def test_merge_refuses_gaps_and_mixed_models(unsharded_and_sharded, corpus, tmp_path) -> None:  # noqa: F811
    _, _, shards = unsharded_and_sharded
    with pytest.raises(TokenpruneError, match=r"covers documents \[24, 37\) but the next shard must start at 12"):
        merge_index_shards([shards[0], shards[2]], tmp_path / "gap")
    other = tmp_path / "other"
    build_index(
        small_model("first", 6),
        corpus,
        other,
        batch_size=3,
        chunk_documents=CHUNK,
        precision="auto",
        document_range=(12, 24),
    )
    with pytest.raises(
        TokenpruneError, match="has strategy='first' but .* has 'attention': all shards must come from one model"
    ):
        merge_index_shards([shards[0], other, shards[2]], tmp_path / "mixed")
    precision = json.loads((shards[0] / "index_stats.json").read_text())["encoding_precision"]
    other_precision = "bf16" if precision == "fp32" else "fp32"
    build_index(
        small_model("attention", 6),
        corpus,
        tmp_path / "other_precision",
        batch_size=3,
        chunk_documents=CHUNK,
        document_range=(12, 24),
        precision=other_precision,
    )
    with pytest.raises(TokenpruneError, match=f"has encoding_precision='{other_precision}' but .* has '{precision}'"):
        merge_index_shards([shards[0], tmp_path / "other_precision", shards[2]], tmp_path / "mixed_precision")
    assert not any((tmp_path / name).exists() for name in ("gap", "mixed", "mixed_precision"))


def test_truncated_shard_is_detected(unsharded_and_sharded, tmp_path) -> None:
    _, merged, _ = unsharded_and_sharded
    copy = tmp_path / "merged"
    shutil.copytree(merged.folder, copy)
    with open(copy / "shards" / "00001" / "vectors.f16", "r+b") as handle:
        handle.truncate(64)
    with pytest.raises(TokenpruneError, match=r"is corrupted: .*00001/vectors.f16 has 64 bytes"):
        PrunedIndex(copy)


def test_concatenated_vectors_equal_one_array() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((rows, 3)).astype(np.float16) for rows in (4, 0, 5, 2)]
    whole = np.concatenate(parts)
    view = ConcatenatedVectors(parts)
    assert view.shape == (11, 3) and len(view) == 11
    for start in range(12):
        for stop in range(start, 12):
            assert np.array_equal(view[start:stop], whole[start:stop])
    rows = np.array([10, 0, 4, 4, 8, 3])
    assert np.array_equal(view[rows], whole[rows])
    with pytest.raises(IndexError):
        view[np.array([11])]
