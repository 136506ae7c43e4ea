"""Token pooling: Ward clustering of a passage's vectors, batched, and the cluster means.

PyLate shrinks an index by clustering each document's vectors and storing
the mean of each cluster (``pool_factor``). It runs SciPy's ``linkage`` one
document at a time; here the same agglomeration runs on a whole batch of
passages at once, as tensor operations, so it costs little beside the
encoder and can sit inside the training loop.

The merges follow SciPy's Ward linkage exactly: start from the squared
Euclidean distances between the items' features, repeatedly merge the
closest pair, and update the merged cluster's distances with the
Lance-Williams recurrence for Ward,

``d(a∪b, m) = ((n_a + n_m) d(a, m) + (n_b + n_m) d(b, m) − n_m d(a, b)) / (n_a + n_b + n_m)``

on squared distances. Stopping after ``items − clusters`` merges gives the
flat clustering ``fcluster(..., t=clusters, criterion="maxclust")`` takes
from a Ward tree (Ward merge heights never decrease; exact ties may break
differently).

Two implementations give the same partitions: a tensor loop batched over
passages (every passage merges at once, so a GPU runs it beside the
encoder) and SciPy's compiled ``linkage`` one passage at a time, whose
first ``items − clusters`` merges are replayed. On a CPU the batched loop
is the slower one (its per-merge tensor calls cost more than SciPy's whole
nearest-neighbour chain; see benchmarks/README.md), so ``backend="auto"``
picks SciPy there and the tensor loop on accelerators.

Features (:func:`cosine_profiles`): PyLate 1.2 passes the square matrix of
cosine distances between a document's vectors to ``linkage``, which treats
a square matrix as observations, not as distances. Each token is thus
clustered by its *profile*, its row of cosine distances to every token of
the passage, with Euclidean Ward. That is what PyLate users get, so it is
what ``pool`` reproduces.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy.cluster.hierarchy import linkage

from tokenprune.errors import TokenpruneError

__all__ = ["WardBackend", "cosine_profiles", "ward_clusters", "cluster_means"]

WardBackend = Literal["auto", "scipy", "tensor"]


def cosine_profiles(vectors: torch.Tensor, members: torch.Tensor) -> torch.Tensor:
    """Each member's row of ``1 − <v_i, v_j>`` over the members ``j`` of its passage: ``[batch, length, length]``.

    Columns of non-members are zero, so they add nothing to the distance
    between two profiles; rows of non-members are never clustered.

    Parameters
    ----------
    vectors
        ``[batch, length, dim]``, L2-normalised for true cosines (as PyLate's are).
    members
        ``[batch, length]``, True for the positions to cluster.
    """
    vectors = vectors.float()
    profiles = 1.0 - vectors @ vectors.transpose(1, 2)
    return profiles * members[:, None, :].to(profiles.dtype)


def ward_clusters(
    features: torch.Tensor, members: torch.Tensor, clusters: int | torch.Tensor, backend: WardBackend = "auto"
) -> torch.Tensor:
    """Agglomerate each passage's members into ``clusters`` groups with Ward's criterion.

    Parameters
    ----------
    features
        ``[batch, length, features]``; items are compared by the Euclidean
        distance between their feature rows.
    members
        ``[batch, length]``, True for the positions to cluster. A passage with
        at most ``clusters`` members keeps each member on its own.
    clusters
        Groups per passage: one count for all, or ``[batch]`` counts.
    backend
        ``"scipy"`` (per passage, compiled), ``"tensor"`` (batched tensor
        operations on the features' device) or ``"auto"``: SciPy for CPU
        tensors, the tensor loop elsewhere.

    Returns
    -------
    torch.Tensor
        ``[batch, length]`` long, on the features' device: each member's
        cluster, named by the position of the cluster's first member; ``-1``
        for non-members.
    """
    if backend == "auto":
        backend = "scipy" if features.device.type == "cpu" else "tensor"
    if backend == "scipy":
        return _ward_clusters_scipy(features, members, clusters)
    if backend == "tensor":
        return _ward_clusters_tensor(features, members, clusters)
    raise TokenpruneError(f"unknown Ward backend {backend!r}; choose from 'auto', 'scipy', 'tensor'")


def _ward_clusters_scipy(features: torch.Tensor, members: torch.Tensor, clusters: int | torch.Tensor) -> torch.Tensor:
    """:func:`ward_clusters` through SciPy's ``linkage``, one passage at a time."""
    features_of = features.detach().double().cpu().numpy()
    members_of = members.cpu().numpy()
    counts = np.broadcast_to(
        np.asarray(clusters.cpu() if isinstance(clusters, torch.Tensor) else clusters), len(members_of)
    )
    labels = np.full(members_of.shape, -1, dtype=np.int64)
    for passage, (observations, chosen) in enumerate(zip(features_of, members_of, strict=True)):
        positions = np.flatnonzero(chosen)
        labels[passage, positions] = positions[_flat_ward(observations[positions], int(counts[passage]))]
    return torch.from_numpy(labels).to(features.device)


def _flat_ward(observations: np.ndarray, clusters: int) -> np.ndarray:
    """For each observation, the index of the first observation of its group after ``len − clusters`` Ward merges.

    Replaying the first merges of the tree gives exactly ``clusters`` groups
    even where merge heights tie, which ``fcluster(criterion="maxclust")``
    does not promise (it may stop below the count).
    """
    items = len(observations)
    merges = items - clusters
    if merges <= 0:
        return np.arange(items)
    tree = linkage(observations, method="ward")
    # Node items + i is the cluster made by merge i; roots point at themselves.
    parent = np.arange(2 * items - 1)
    merged = tree[:merges, :2].astype(np.int64)
    parent[merged[:, 0]] = parent[merged[:, 1]] = items + np.arange(merges)
    # Pointer doubling: every item reaches its root in log2(depth) passes.
    while not np.array_equal(jumped := parent[parent], parent):
        parent = jumped
    _, first, group = np.unique(parent[:items], return_index=True, return_inverse=True)
    return first[group]


def _ward_clusters_tensor(features: torch.Tensor, members: torch.Tensor, clusters: int | torch.Tensor) -> torch.Tensor:
    """:func:`ward_clusters` batched over passages as tensor operations on the features' device."""
    batch, length, _ = features.shape
    # Float64, as SciPy computes: near-equal merge costs must order the same way.
    features = features.double()
    norms = features.pow(2).sum(dim=-1)
    squared = (norms[:, :, None] + norms[:, None, :] - 2 * features @ features.transpose(1, 2)).clamp(min=0)
    infinity = torch.tensor(float("inf"), dtype=torch.float64, device=features.device)
    eye = torch.eye(length, dtype=torch.bool, device=features.device)
    pairs = members[:, :, None] & members[:, None, :] & ~eye
    distance = torch.where(pairs, squared, infinity)
    size = members.to(distance.dtype)
    position = torch.arange(length, device=features.device)
    labels = torch.where(members, position, -1)
    if isinstance(clusters, torch.Tensor):
        clusters = clusters.to(features.device)
    merges = (members.sum(dim=1) - clusters).clamp(min=0)
    # Each item's nearest other item: the closest pair is then the least of ``length`` values, not of length².
    nearest, neighbour = distance.min(dim=2)
    every = torch.arange(batch, device=features.device)
    for step in range(int(merges.max()) if batch else 0):
        # Every passage takes the same steps; a finished one rewrites its own values (a no-op).
        active = (merges > step)[:, None]
        first = nearest.argmin(dim=1)
        second = neighbour[every, first]
        # The cluster keeps its earliest position as its name, so names are positions of first members.
        kept, absorbed = torch.minimum(first, second), torch.maximum(first, second)
        to_kept, to_absorbed = _row(distance, kept), _row(distance, absorbed)
        between = to_kept.gather(1, absorbed[:, None])
        n_kept, n_absorbed = size.gather(1, kept[:, None]), size.gather(1, absorbed[:, None])
        # Distances to non-members, to the absorbed cluster and to itself were infinite and stay so:
        # both weights are at least 1 and ``between`` is finite, so no 0 * inf arises.
        updated = ((n_kept + size) * to_kept + (n_absorbed + size) * to_absorbed - size * between) / (
            n_kept + n_absorbed + size
        )
        updated = torch.where(active, updated, to_kept)
        _set_row(distance, kept, updated)
        _set_row(distance, absorbed, torch.where(active, infinity, to_absorbed))
        size.scatter_add_(1, kept[:, None], n_absorbed * active)
        size.scatter_(1, absorbed[:, None], torch.where(active, 0.0, n_absorbed).to(size.dtype))
        labels = torch.where(active & (labels == absorbed[:, None]), kept[:, None], labels)
        # Ward is reducible: a merged cluster is never nearer to anything than its parts were,
        # so only the rows whose nearest item was one of the two parts need a new search.
        stale = active & ((neighbour == kept[:, None]) | (neighbour == absorbed[:, None]) | (position == kept[:, None]))
        closer = active & ~stale & (updated < nearest)
        nearest = torch.where(closer, updated, nearest)
        neighbour = torch.where(closer, kept[:, None], neighbour)
        rows = torch.nonzero(stale.flatten()).squeeze(1)
        nearest_row, neighbour_row = distance.view(batch * length, length).index_select(0, rows).min(dim=1)
        nearest.view(-1).index_copy_(0, rows, nearest_row)
        neighbour.view(-1).index_copy_(0, rows, neighbour_row)
    return labels


def _row(distance: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Row ``index[p]`` of each passage ``p``'s distance matrix: ``[batch, length]``."""
    return distance.gather(1, index[:, None, None].expand(-1, 1, distance.shape[2])).squeeze(1)


def _set_row(distance: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> None:
    """Write ``values`` into row and column ``index[p]`` of each passage ``p``'s (symmetric) distance matrix."""
    batch, length, _ = distance.shape
    distance.scatter_(1, index[:, None, None].expand(-1, 1, length), values[:, None, :])
    distance.scatter_(2, index[:, None, None].expand(-1, length, 1), values[:, :, None])


def cluster_means(vectors: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean vector of every cluster, at its name's position: ``[batch, length, dim]`` and the mask of names.

    Differentiable in ``vectors`` (the labels are a fixed assignment), so
    pooling can run inside the training loop.

    Parameters
    ----------
    vectors
        ``[batch, length, dim]``.
    labels
        ``[batch, length]`` from :func:`ward_clusters`.
    """
    position = torch.arange(labels.shape[1], device=labels.device)
    assignment = (labels[:, :, None] == position[None, None, :]).to(vectors.dtype)
    sums = assignment.transpose(1, 2) @ vectors
    counts = assignment.sum(dim=1).clamp(min=1)
    return sums / counts[..., None], labels == position[None, :]
