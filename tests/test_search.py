"""Index accounting, exact MaxSim search against a naive reference, ANN, and evaluation values."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_beir_folder
from tokenprune import search as search_module
from tokenprune.data import DatasetSpec, PreparedDataset, prepare_dataset
from tokenprune.data.sources import open_collection
from tokenprune.errors import TokenpruneError
from tokenprune.evaluation import evaluate_run, parse_measures
from tokenprune.faiss_support import choose_faiss_placement
from tokenprune.index import PrunedIndex, build_index, build_posthoc_indexes, merge_index_shards, write_vectors_index
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.search import (
    PackedQueries,
    _maxsim_chunk,
    ann_search,
    build_ann_index,
    encode_query_set,
    exact_search,
    write_trec_run,
)
from tokenprune.selection import make_selector

WORDS = [
    "aspirin",
    "heart",
    "sleep",
    "vitamin",
    "cold",
    "protein",
    "cell",
    "gene",
    "tumour",
    "insulin",
    "blood",
    "brain",
    "liver",
    "kidney",
    "virus",
    "dose",
    "trial",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tokenizer) -> PreparedDataset:
    """37 random passages of 3 to 40 words, with punctuation, in BEIR layout."""
    rng = random.Random(7)
    documents = [
        {
            "_id": f"d{i}",
            "title": "",
            "text": ", ".join(" ".join(rng.choices(WORDS, k=rng.randint(1, 8))) for _ in range(rng.randint(1, 5)))
            + ".",
        }
        for i in range(37)
    ]
    queries = [{"_id": "q1", "text": "aspirin and heart"}, {"_id": "q2", "text": "sleep"}]
    folder = tmp_path_factory.mktemp("corpus")
    write_beir_folder(folder / "beir", documents, queries, {"test": [("q1", "d1", 1), ("q2", "d2", 1)]})
    spec = DatasetSpec.from_config("random", {"beir_folder": str(folder / "beir"), "splits": ["test"]})
    prepare_dataset(spec, open_collection(spec, None, folder), folder / "prepared", tokenizer)
    return PreparedDataset(folder / "prepared")


def small_model(strategy: str = "none", k: int | None = None) -> ColBERT:
    torch.manual_seed(0)
    return ColBERT.from_backbone(ColBERTConfig(strategy=strategy, k=k, dim=16, passage_max_length=48)).eval()


@pytest.fixture(scope="module")
def indexes(corpus, tmp_path_factory) -> dict[str, PrunedIndex]:
    folder = tmp_path_factory.mktemp("indexes")
    built = {}
    for name, strategy, k in [("none", "none", None), ("first10", "first", 10), ("attention10", "attention", 10)]:
        # fp32: these tests compare with the model's own fp32 encodings and a naive MaxSim.
        build_index(small_model(strategy, k), corpus, folder / name, batch_size=5, chunk_documents=16, precision="fp32")
        built[name] = PrunedIndex(folder / name)
    return built


def test_index_accounting(indexes, corpus) -> None:
    model = small_model()
    _, texts = corpus.corpus()
    with torch.no_grad():
        expected_counts = model.encode_passages(texts).mask.sum(dim=1).tolist()
    baseline = indexes["none"]
    stats = baseline.stats
    assert stats["documents"] == 37
    assert np.diff(baseline.offsets).tolist() == expected_counts  # chunked, length-bucketed = one big batch
    assert stats["vectors"] == sum(expected_counts) == stats["unpruned_tokens"]
    assert stats["percent_tokens_kept"] == 100.0
    assert stats["bytes"]["vectors.f16"] == stats["vectors"] * 16 * 2
    assert stats["bytes"]["offsets.npy"] == 128 + 38 * 8  # npy header + int64 offsets
    assert (
        stats["index_bytes"]
        == stats["bytes"]["vectors.f16"] + stats["bytes"]["offsets.npy"] + stats["bytes"]["doc_ids.txt"]
    )
    assert baseline.doc_ids == [f"d{i}" for i in range(37)]

    for name in ("first10", "attention10"):
        pruned = indexes[name].stats
        assert pruned["vectors_per_document"]["max"] <= 10
        assert pruned["unpruned_tokens"] == stats["unpruned_tokens"]
        assert pruned["percent_tokens_kept"] == pytest.approx(100 * pruned["vectors"] / stats["vectors"], abs=1e-3)
        assert pruned["vectors"] < stats["vectors"]


def test_index_vectors_equal_the_models_encodings(indexes, corpus) -> None:
    model = small_model("first", 10)
    _, texts = corpus.corpus()
    with torch.no_grad():
        encoded = model.encode_passages(texts[:3])
    index = indexes["first10"]
    for row in range(3):
        stored = torch.from_numpy(
            np.asarray(index.vectors[index.offsets[row] : index.offsets[row + 1]], dtype=np.float32)
        )
        assert torch.allclose(stored, encoded.vectors[row][encoded.mask[row]], atol=2e-3)  # float16 storage


def naive_ranking(queries, query_mask, index: PrunedIndex, depth: int) -> tuple[list[list[int]], list[list[float]]]:
    vectors = np.asarray(index.vectors, dtype=np.float32)
    rankings, all_scores = [], []
    for q in range(queries.shape[0]):
        scores = []
        for d in range(len(index)):
            doc = vectors[index.offsets[d] : index.offsets[d + 1]]
            total = 0.0
            for i in range(queries.shape[1]):
                if query_mask[q, i]:
                    total += max(float(np.dot(queries[q, i].numpy(), v)) for v in doc)
            scores.append(total)
        order = sorted(range(len(scores)), key=lambda d: -scores[d])[:depth]
        rankings.append(order)
        all_scores.append([scores[d] for d in order])
    return rankings, all_scores


@pytest.mark.parametrize("chunk_vectors", [1, 50, 64, 10_000])
def test_exact_search_equals_a_naive_reference(indexes, chunk_vectors) -> None:
    index = indexes["attention10"]
    generator = torch.Generator().manual_seed(3)
    queries = torch.randn(4, 6, 16, generator=generator)
    query_mask = torch.ones(4, 6, dtype=torch.bool)
    query_mask[1, 3:] = False
    expected_order, expected_scores = naive_ranking(queries, query_mask, index, depth=20)
    ranking = exact_search(queries, query_mask, index, depth=20, chunk_vectors=chunk_vectors, query_batch=3)
    assert ranking.doc_indices.tolist() == expected_order
    assert np.allclose(ranking.scores, expected_scores, atol=1e-4)


def test_exact_search_merging_blocks_of_chunks_equals_the_naive_reference(indexes, monkeypatch) -> None:
    index = indexes["first10"]
    # Room for 7 documents' scores per query: the top 5 is merged after about every chunk of 25 vectors.
    monkeypatch.setattr(search_module, "SCORE_BUFFER", 7 * 4)
    generator = torch.Generator().manual_seed(4)
    queries = torch.randn(4, 5, 16, generator=generator)
    query_mask = torch.ones(4, 5, dtype=torch.bool)
    query_mask[2, 1] = False  # a hole, not only trailing padding
    expected_order, expected_scores = naive_ranking(queries, query_mask, index, depth=5)
    ranking = exact_search(queries, query_mask, index, depth=5, chunk_vectors=25, query_batch=3)
    assert ranking.doc_indices.tolist() == expected_order
    assert np.allclose(ranking.scores, expected_scores, atol=1e-4)


def test_maxsim_of_padded_documents_ignores_the_padding_and_ranks_empty_documents_last() -> None:
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0], [3.0, 1.0]])
    lengths = torch.tensor([2, 0, 1, 1])  # document 1 has no vector
    queries = torch.tensor([[[1.0, 1.0], [0.0, -1.0], [5.0, 5.0]]])
    packed = PackedQueries.pack(queries, torch.tensor([[True, True, False]]))
    scores = _maxsim_chunk(packed, vectors, lengths)[0].tolist()
    # d0: max(1, 2) + max(0, -2); d2: -2 + 1; d3: 4 + -1. Padding repeats d2's and d3's vector: no change.
    assert scores == [2.0, float("-inf"), -1.0, 3.0]


def test_depth_beyond_the_corpus_returns_every_document(indexes) -> None:
    queries = torch.randn(1, 3, 16)
    ranking = exact_search(queries, torch.ones(1, 3, dtype=torch.bool), indexes["none"], depth=1000)
    assert sorted(ranking.doc_indices[0].tolist()) == list(range(37))


def test_ann_with_every_list_probed_and_flat_codes_is_exact(indexes) -> None:
    index = indexes["none"]
    ann = build_ann_index(index, nlist=4, m=4, nbits=8, flat=True)
    generator = torch.Generator().manual_seed(5)
    queries = torch.randn(3, 5, 16, generator=generator)
    query_mask = torch.ones(3, 5, dtype=torch.bool)
    exact = exact_search(queries, query_mask, index, depth=10)
    approximate = ann_search(
        queries, query_mask, index, ann, depth=10, candidates_per_token=index.stats["vectors"], nprobe=4
    )
    assert approximate.doc_indices.tolist() == exact.doc_indices.tolist()
    assert np.allclose(approximate.scores, exact.scores, atol=1e-3)


def test_an_ann_index_built_for_a_cpu_job_says_it_used_faiss_cpu(indexes, caplog: pytest.LogCaptureFixture) -> None:
    index = indexes["none"]
    with caplog.at_level("INFO", logger="tokenprune.search"):
        ann = build_ann_index(
            index, nlist=4, m=4, nbits=8, flat=True, placement=choose_faiss_placement(torch.device("cpu"))
        )
    assert "building the ANN index with faiss-cpu (the job runs on cpu)" in caplog.text
    assert ann.ntotal == index.stats["vectors"]


def test_ann_lists_are_capped_by_the_vectors_there_are_to_train_them(indexes) -> None:
    index = indexes["none"]
    ann = build_ann_index(index, nlist=10**6, m=4, nbits=8, flat=True)
    assert ann.nlist == index.stats["vectors"] // 39 >= 1
    with pytest.raises(TokenpruneError, match="nlist must be positive, got 0"):
        build_ann_index(index, nlist=0, m=4, nbits=8)
    # faiss would stop with a C++ assertion: PQ codebooks of 2**nbits centroids need that many vectors.
    with pytest.raises(TokenpruneError, match=f"nbits=12 needs 4096 vectors .* the index has {index.stats['vectors']}"):
        build_ann_index(index, nlist=4, m=4, nbits=12)


def test_query_set_encoded_in_batches_equals_one_batch() -> None:
    model = small_model()
    texts = ["aspirin", "does aspirin prevent heart attacks in adults", "sleep", "vitamin c and the common cold"]
    with torch.inference_mode():
        whole, whole_mask = model.encode_queries(texts)
    batched, batched_mask = encode_query_set(model, texts, batch_size=3)
    # Batches are padded to the longest query of the set; the padding is masked out.
    assert batched_mask.tolist() == whole_mask.tolist()
    assert torch.allclose(batched[batched_mask], whole[whole_mask], atol=1e-5)


def test_ann_pq_recovers_most_of_the_exact_top(indexes) -> None:
    index = indexes["none"]
    ann = build_ann_index(index, nlist=4, m=4, nbits=4)
    queries = torch.from_numpy(np.asarray(index.vectors[:40], dtype=np.float32)).reshape(8, 5, 16)
    query_mask = torch.ones(8, 5, dtype=torch.bool)
    exact = exact_search(queries, query_mask, index, depth=5)
    approximate = ann_search(queries, query_mask, index, ann, depth=5, candidates_per_token=32, nprobe=4)
    overlap = np.mean(
        [
            len(set(a) & set(e)) / 5
            for a, e in zip(approximate.doc_indices.tolist(), exact.doc_indices.tolist(), strict=True)
        ]
    )
    assert overlap >= 0.6


def test_corrupted_index_is_detected(indexes, tmp_path) -> None:
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(indexes["first10"].folder, copy)
    with open(copy / "vectors.f16", "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(Exception, match=r"is corrupted: .*vectors.f16 has 100 bytes"):
        PrunedIndex(copy)


def test_evaluation_gives_hand_computed_values(tmp_path: Path) -> None:
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq1 0 d3 2\nq2 0 d4 1\nq2 0 d9 0\n")
    (tmp_path / "run.trec").write_text(
        "q1 Q0 d2 1 3.0 t\nq1 Q0 d1 2 2.0 t\nq1 Q0 d3 3 1.0 t\nq2 Q0 d4 1 5.0 t\nq2 Q0 d9 2 4.0 t\n"
    )
    values = evaluate_run(
        tmp_path / "run.trec",
        tmp_path / "qrels.txt",
        parse_measures(["nDCG@10", "RR@10"]),
        tmp_path / "m.json",
        tmp_path / "pq.tsv",
    )
    # q1: DCG = 1/log2(3) + 2/log2(4) = 1.63093, IDCG = 2 + 1/log2(3) = 2.63093 -> 0.61990; RR = 1/2. q2: 1 and 1.
    assert values["nDCG@10"] == pytest.approx((0.619900 + 1.0) / 2, abs=1e-5)
    assert values["RR@10"] == pytest.approx(0.75)
    rows = (tmp_path / "pq.tsv").read_text().splitlines()
    assert rows[0] == "query_id\tmeasure\tvalue" and "q1\tRR@10\t0.500000" in rows
    assert json.loads((tmp_path / "m.json").read_text())["queries"] == 2


def test_trec_run_round_trip(tmp_path: Path) -> None:
    from tokenprune.search import Ranking

    ranking = Ranking(np.array([[3.5, 1.25, -np.inf]]), np.array([[2, 0, -1]]))
    write_trec_run(tmp_path / "run.trec", ["q7"], ranking, ["a", "b", "c"], tag="x")
    assert (tmp_path / "run.trec").read_text() == "q7 Q0 c 1 3.500000 x\nq7 Q0 a 2 1.250000 x\n"


def test_posthoc_indexes_from_one_pass_equal_each_selection_indexed_on_its_own(indexes, corpus, tmp_path) -> None:
    """One encoding pass of the unpruned model serves every post-hoc selection, byte for byte."""
    idf = torch.rand(30522, generator=torch.Generator().manual_seed(1))
    selections = {
        tmp_path / "first10": make_selector("first", 10),
        tmp_path / "attention10": make_selector("attention", 10),
        tmp_path / "idf10": make_selector("idf", 10, idf=idf),
    }
    all_stats = build_posthoc_indexes(
        small_model(),
        corpus,
        selections,
        own_index=tmp_path / "none",
        batch_size=5,
        chunk_documents=16,
        precision="fp32",
    )
    # The model's own index, written from the same pass, is the one the index stage writes on its own.
    own_stats, all_stats = all_stats[0], all_stats[1:]
    assert own_stats == indexes["none"].stats
    for name in ("vectors.f16", "offsets.npy", "token_ids.i32", "positions.i16", "doc_ids.txt", "index_stats.json"):
        assert (tmp_path / "none" / name).read_bytes() == (indexes["none"].folder / name).read_bytes(), name
    # The reference: a model of each strategy with the very same weights (small_model seeds them), indexed alone.
    torch.manual_seed(0)
    reference = ColBERT.from_backbone(ColBERTConfig(strategy="idf", k=10, dim=16, passage_max_length=48), idf=idf)
    build_index(reference.eval(), corpus, tmp_path / "idf10-alone", batch_size=5, chunk_documents=16, precision="fp32")
    alone = {
        "first10": indexes["first10"].folder,
        "attention10": indexes["attention10"].folder,
        "idf10": tmp_path / "idf10-alone",
    }
    for (folder, selector), stats in zip(selections.items(), all_stats, strict=True):
        assert stats["selection"] == "post-hoc" and stats["model_strategy"] == "none"
        assert (stats["strategy"], stats["k"]) == (selector.name, 10)
        assert stats["unpruned_tokens"] == indexes["none"].stats["unpruned_tokens"]
        for name in ("vectors.f16", "offsets.npy", "token_ids.i32", "positions.i16", "doc_ids.txt"):
            assert (folder / name).read_bytes() == (alone[folder.name] / name).read_bytes(), (folder.name, name)


def test_posthoc_refuses_a_selection_that_changes_the_encoder_input(corpus, tmp_path) -> None:
    unused = make_selector("unused", 3, unused_ids=[3, 4, 5])
    const = make_selector("const", 3, passage_length=16, normalize=True)
    for name, selector in (("unused", unused), ("const", const)):
        with pytest.raises(TokenpruneError, match=f"strategy '{name}' has no post-hoc form"):
            build_posthoc_indexes(
                small_model(), corpus, {tmp_path / name: selector}, batch_size=5, chunk_documents=16, precision="fp32"
            )
        assert not (tmp_path / name).exists()


def test_every_strategy_counts_percent_kept_against_the_same_candidates(indexes) -> None:
    """The baseline keeps exactly its candidates (100%), and no index keeps [CLS], [D], [SEP] or punctuation."""
    model = small_model()
    assert indexes["none"].stats["percent_tokens_kept"] == 100.0
    for index in indexes.values():
        token_ids = torch.from_numpy(np.fromfile(index.folder / "token_ids.i32", dtype=np.int32).astype(np.int64))
        assert not torch.isin(token_ids, model.special_ids).any()
        assert not torch.isin(token_ids, model.punctuation_ids).any()


def test_negative_audit_equals_scoring_each_pair_with_the_model(indexes, corpus) -> None:
    """Per unjudged BM25 rank: the share of queries whose passage the model scores at least as high as the positive."""
    import bm25s

    from tokenprune.negatives import audit_negatives, bm25_index

    model = small_model()
    table = audit_negatives(corpus, "test", model, indexes["none"], depth=6)
    doc_ids, texts = corpus.corpus()
    queries, qrels = corpus.queries("test"), corpus.qrels("test")
    retriever, stemmer = bm25_index(texts)
    suspects: dict[int, list[bool]] = {}
    for query_id in ("q1", "q2"):
        tokens = bm25s.tokenize([queries[query_id]], stopwords="en", stemmer=stemmer, show_progress=False)
        ranking, _ = retriever.retrieve(tokens, k=len(doc_ids), show_progress=False)
        unjudged = [doc_ids[i] for i in ranking[0] if doc_ids[i] not in qrels[query_id]][:6]
        positive = next(iter(qrels[query_id]))
        with torch.no_grad():
            scores = model.score([queries[query_id]], [texts[doc_ids.index(d)] for d in [positive, *unjudged]])[0]
        for rank, score in enumerate(scores[1:].tolist(), start=1):
            suspects.setdefault(rank, []).append(score >= float(scores[0]) - 1e-3)
    assert table["rank"].tolist() == list(range(1, 7))
    assert table["queries"].tolist() == [2] * 6
    assert table["suspect_share"].tolist() == [sum(flags) / 2 for _, flags in sorted(suspects.items())]


def random_documents(documents: int, dim: int, seed: int, max_vectors: int = 12) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(n), dim)).astype(np.float16) for n in rng.integers(0, max_vectors, documents)]


def test_given_vectors_index_round_trips_and_reads_rows_like_the_memory_map(tmp_path) -> None:
    documents = random_documents(40, 8, seed=5)
    ids = [f"d{i}" for i in range(40)]
    chunks = [(ids[:25], documents[:25]), (ids[25:], documents[25:])]
    stats = write_vectors_index(tmp_path / "index", chunks, dim=8, strategy="first", k=11)
    index = PrunedIndex(tmp_path / "index")
    assert index.doc_ids == ids and stats["vectors"] == sum(map(len, documents)) == len(index.vectors)
    assert stats["strategy"] == "first" and stats["k"] == 11 and stats["selection"] == "given vectors"
    for d in (0, 17, 39):
        assert np.array_equal(index.vectors[index.offsets[d] : index.offsets[d + 1]], documents[d])
    total = len(index.vectors)
    for start, stop in ((0, total), (3, 3), (5, 77), (total - 1, total)):
        assert np.array_equal(index.read_vectors(start, stop), np.asarray(index.vectors[start:stop]))
    with pytest.raises(TokenpruneError, match=r"document vectors must be \[n, 8\], got shape \[3, 4\]"):
        write_vectors_index(tmp_path / "bad", [(["x"], [np.zeros((3, 4))])], dim=8)


def test_gathered_rows_equal_the_memory_map_across_shards(tmp_path) -> None:
    documents = random_documents(40, 8, seed=6)
    ids = [f"d{i}" for i in range(40)]
    for name, part in (("a", slice(0, 25)), ("b", slice(25, 40))):
        write_vectors_index(tmp_path / name, [(ids[part], documents[part])], dim=8)
    merge_index_shards([tmp_path / "a", tmp_path / "b"], tmp_path / "merged")
    single = PrunedIndex(tmp_path / "a")
    merged = PrunedIndex(tmp_path / "merged")
    total, boundary = len(merged.vectors), len(single.vectors)
    assert merged.is_sharded and int(merged.vector_starts[1]) == boundary
    rng = np.random.default_rng(0)
    for index in (single, merged):
        size = len(index.vectors)
        # A run across the shard boundary, rows out of order and repeated, single rows, and nothing.
        for rows in (
            np.arange(size),
            np.arange(boundary - 3, min(boundary + 4, size)),
            rng.integers(0, size, 50),
            np.array([size - 1, 0, 0, 5]),
            np.array([], dtype=np.int64),
        ):
            assert np.array_equal(index.gather_vectors(rows), np.asarray(index.vectors[rows]).reshape(-1, 8)), rows
    with pytest.raises(TokenpruneError, match=rf"vector rows must lie in \[0, {total}\), got 0..{total}"):
        merged.gather_vectors(np.array([0, total]))


PEAK_RSS_OF_A_SCAN = """
import resource, sys, torch
from tokenprune.index import PrunedIndex
from tokenprune.search import exact_search
index = PrunedIndex(sys.argv[1])
queries = torch.randn(4, 32, index.stats["dim"], generator=torch.Generator().manual_seed(0))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
exact_search(queries, torch.ones(4, 32, dtype=torch.bool), index, depth=1000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_exact_search_streams_an_index_without_holding_it(tmp_path) -> None:
    import subprocess
    import sys

    # 200 MiB of vectors (800k of dimension 128, 50k documents), searched as the rules do (CPU chunks of 2,048
    # vectors). Two ways a scan used to grow with the index: pages touched through the memory map stayed
    # resident (+200 MiB here), and glibc kept the freed chunk buffers on a fragmenting heap (+195 MiB with
    # the map fixed, on a 100 MiB index).
    rng = np.random.default_rng(0)
    block = rng.standard_normal((1000, 128)).astype(np.float16)
    chunks = (
        (list(map(str, range(c * 1000, (c + 1) * 1000))), np.split(np.tile(block, (16, 1)), 1000)) for c in range(50)
    )
    stats = write_vectors_index(tmp_path / "index", chunks, dim=128)
    assert stats["bytes"]["vectors.f16"] == 800_000 * 128 * 2
    growth_kib = int(
        subprocess.run(
            [sys.executable, "-c", PEAK_RSS_OF_A_SCAN, str(tmp_path / "index")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    # Measured: 20-26 MiB (a chunk's buffers and the scores).
    assert growth_kib < 60 * 1024, f"peak RSS grew by {growth_kib / 1024:.0f} MiB while scanning a 200 MiB index"
