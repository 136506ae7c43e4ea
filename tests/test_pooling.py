"""Token pooling: the batched Ward clustering against SciPy, the means, and the ``pool`` strategy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage

from tokenprune.errors import TokenpruneError
from tokenprune.model import ColBERT, ColBERTConfig
from tokenprune.pooling import cluster_means, cosine_profiles, ward_clusters
from tokenprune.selection import PassageBatch, make_selector


def partition(labels: torch.Tensor) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for position, label in enumerate(labels.tolist()):
        if label >= 0:
            groups.setdefault(label, set()).add(position)
    return {frozenset(group) for group in groups.values()}


def scipy_partition(observations: np.ndarray, positions: np.ndarray, clusters: int) -> set[frozenset[int]]:
    """SciPy's Ward tree cut into at most ``clusters`` groups, as PyLate cuts it."""
    if len(positions) <= clusters:
        return {frozenset([int(position)]) for position in positions}
    labels = fcluster(linkage(observations, method="ward"), t=clusters, criterion="maxclust")
    return {frozenset(int(positions[i]) for i in np.flatnonzero(labels == label)) for label in np.unique(labels)}


BACKENDS = ["scipy", "tensor"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hand_made_line_of_points(backend: str) -> None:
    # Ward merges {0, 1} and {10, 11} (cost 0.5 each), then those two (cost 100) before either joins 30 (cost 253.5).
    features = torch.tensor([[[0.0], [1.0], [10.0], [11.0], [30.0], [99.0]]])
    members = torch.tensor([[True, True, True, True, True, False]])
    assert ward_clusters(features, members, 2, backend).tolist() == [[0, 0, 0, 0, 4, -1]]
    assert ward_clusters(features, members, 3, backend).tolist() == [[0, 0, 2, 2, 4, -1]]
    # Enough clusters for every member: nothing merges.
    assert ward_clusters(features, members, 5, backend).tolist() == [[0, 1, 2, 3, 4, -1]]
    means, named = cluster_means(features, ward_clusters(features, members, 2, backend))
    assert named.tolist() == [[True, False, False, False, True, False]]
    assert means[0, 0].item() == 5.5 and means[0, 4].item() == 30.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_tied_merge_heights_still_give_the_budget(backend: str) -> None:
    # {0, 1} and {2, 3} both cost 0.5: fcluster(maxclust=3) would cut both and return 2 groups.
    features = torch.tensor([[[0.0], [1.0], [5.0], [6.0]]])
    labels = ward_clusters(features, torch.ones(1, 4, dtype=torch.bool), 3, backend)
    assert partition(labels[0]) in (
        {frozenset({0, 1}), frozenset({2}), frozenset({3})},
        {frozenset({0}), frozenset({1}), frozenset({2, 3})},
    )


def test_an_unknown_backend_is_named() -> None:
    with pytest.raises(TokenpruneError, match="'numba'"):
        ward_clusters(torch.zeros(1, 2, 1), torch.ones(1, 2, dtype=torch.bool), 1, "numba")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clusters", [1, 3, 7, 20])
def test_ward_clusters_equal_scipys_fcluster_passage_by_passage(clusters: int, backend: str) -> None:
    generator = torch.Generator().manual_seed(clusters)
    features = torch.randn(5, 24, 6, generator=generator)
    members = torch.rand(5, 24, generator=generator) > 0.25
    members[0] = False
    members[0, [3, 9, 17]] = True
    labels = ward_clusters(features, members, clusters, backend)
    for row in range(5):
        positions = members[row].nonzero().flatten().numpy()
        expected = scipy_partition(features[row, positions].double().numpy(), positions, clusters)
        assert partition(labels[row]) == expected
        # A cluster is named by the position of its first member.
        assert all(labels[row, min(group)] == min(group) for group in expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cosine_profiles_reproduce_pylates_recipe(backend: str) -> None:
    """PyLate 1.2 hands linkage the square matrix 1 - V V^T, which SciPy reads as one observation per row."""
    generator = torch.Generator().manual_seed(7)
    vectors = torch.nn.functional.normalize(torch.randn(3, 30, 16, generator=generator), dim=-1)
    members = torch.ones(3, 30, dtype=torch.bool)
    members[1, 20:] = False
    labels = ward_clusters(cosine_profiles(vectors, members), members, 6, backend)
    for row in range(3):
        positions = members[row].nonzero().flatten().numpy()
        pooled = vectors[row, positions].double().numpy()
        assert partition(labels[row]) == scipy_partition(1.0 - pooled @ pooled.T, positions, 6)


def test_cluster_means_equal_a_naive_mean_and_carry_gradients() -> None:
    generator = torch.Generator().manual_seed(3)
    vectors = torch.randn(2, 10, 4, generator=generator, requires_grad=True)
    labels = torch.tensor([[0, 0, 2, 0, 2, 5, 5, 5, -1, -1], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]])
    means, named = cluster_means(vectors, labels)
    for row in range(2):
        for name in named[row].nonzero().flatten().tolist():
            assert torch.allclose(means[row, name], vectors[row, labels[row] == name].mean(dim=0))
    assert named.sum(dim=1).tolist() == [3, 10]
    means[named].sum().backward()
    # Every member's vector reaches the loss through its cluster's mean; non-members do not.
    assert (vectors.grad[0, :8] != 0).all() and (vectors.grad[0, 8:] == 0).all()


def test_pool_clusters_only_content_tokens_into_k_means() -> None:
    # [CLS] [D] t t "," t t t [SEP], then a short passage; hand-placed vectors make the clusters obvious.
    input_ids = torch.tensor([[101, 2, 10, 12, 11, 13, 14, 15, 102], [101, 2, 20, 102, 0, 0, 0, 0, 0]])
    attention_mask = (input_ids != 0).long()
    batch = PassageBatch(
        input_ids, attention_mask, input_ids == 11, torch.isin(input_ids, torch.tensor([0, 2, 101, 102]))
    )
    east, north = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    vectors = torch.zeros(2, 9, 3)
    vectors[0, [2, 3]] = east
    vectors[0, [5, 6, 7]] = north
    vectors[0, [0, 1, 4, 8]] = torch.tensor([0.0, 0.0, 1.0])
    vectors[1, 2] = east
    stored = make_selector("pool", 2).reduce(vectors, batch, "content")
    assert stored.mask.tolist() == [[True, True], [True, False]]
    # Each stored vector sits at its cluster's first token; [CLS], [D], the comma and [SEP] joined no cluster.
    assert stored.positions[0].tolist() == [2, 5]
    assert stored.token_ids[0].tolist() == [10, 13]
    assert torch.equal(stored.vectors[0], torch.stack([east, north]))
    assert torch.equal(stored.vectors[1, 0], east)


def test_pool_with_room_for_every_token_stores_what_the_baseline_stores() -> None:
    model = ColBERT.from_backbone(ColBERTConfig(strategy="pool", k=500, passage_max_length=32, dim=16))
    texts = ["Aspirin, taken daily, lowers (some) risk.", "Sleep: it matters!"]
    input_ids, attention_mask = model.tokenize_passages(texts)
    with torch.no_grad():
        vectors, view = model.encode_passage_tokens(input_ids, attention_mask, with_attention=False)
        pooled = model.reduce(vectors, view)
        unpruned = model.reduce(vectors, view, make_selector("none", None))
    assert torch.equal(pooled.mask, unpruned.mask)
    assert torch.equal(pooled.positions[pooled.mask], unpruned.positions[unpruned.mask])
    assert torch.allclose(pooled.vectors, unpruned.vectors)
