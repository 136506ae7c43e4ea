"""Which tokens a pruned index kept, and where they sat in the passage, read from the index itself.

Every index stores, beside its vectors, the token id and passage position
behind each kept vector (``token_ids.i32``, ``positions.i16``). Counting them
shows what a strategy actually selects: ``first`` the opening positions,
``idf`` rare word pieces, ``attention`` whatever the last layer attends to
(often the special tokens), ``unused`` its own inserted ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tokenprune.errors import TokenpruneError
from tokenprune.index import STATS_FILE, PrunedIndex

__all__ = ["KeptTokens", "count_kept_tokens", "top_tokens_table", "positions_table"]


@dataclass
class KeptTokens:
    """Counts over every kept vector of one index.

    Attributes
    ----------
    position_counts
        ``position_counts[p]``: kept vectors at passage position ``p``.
    token_counts
        Token id to number of kept vectors with that id.
    vectors
        Kept vectors in all.
    """

    position_counts: np.ndarray
    token_counts: dict[int, int]
    vectors: int

    def top_tokens(self, n: int) -> list[tuple[int, int]]:
        """The ``n`` most frequent ``(token_id, count)``, ties broken by the smaller id."""
        return sorted(self.token_counts.items(), key=lambda item: (-item[1], item[0]))[:n]


def _diagnostic_arrays(index: PrunedIndex, name: str, dtype: type[np.generic]) -> Iterator[np.ndarray]:
    """The per-vector diagnostic file ``name``, one array per shard (memory stays bounded by a shard)."""
    total = 0
    for path in index.component_files(name):
        if not path.is_file():
            raise TokenpruneError(f"index {str(index.folder)!r} has no {name}; rebuild it with 'tokenprune index'")
        values = np.fromfile(path, dtype=dtype)
        total += len(values)
        yield values
    if total != index.stats["vectors"]:
        raise TokenpruneError(
            f"index {str(index.folder)!r} is corrupted: {name} holds {total} entries, {STATS_FILE} says {index.stats['vectors']} vectors"
        )


def count_kept_tokens(index_dir: str | Path) -> KeptTokens:
    """Count kept vectors per passage position and per token id in one index folder (single or sharded)."""
    index = PrunedIndex(Path(index_dir))
    per_shard = []
    for positions in _diagnostic_arrays(index, "positions.i16", np.int16):
        if len(positions) and positions.min() < 0:
            raise TokenpruneError(f"index {str(index.folder)!r} is corrupted: negative positions in positions.i16")
        per_shard.append(np.bincount(positions.astype(np.int64), minlength=1))
    width = max(map(len, per_shard))
    position_counts = np.sum([np.pad(counts, (0, width - len(counts))) for counts in per_shard], axis=0)
    token_counts: Counter[int] = Counter()
    vectors = 0
    for token_ids in _diagnostic_arrays(index, "token_ids.i32", np.int32):
        ids, counts = np.unique(token_ids, return_counts=True)
        token_counts.update({int(i): int(c) for i, c in zip(ids, counts, strict=True)})
        vectors += len(token_ids)
    return KeptTokens(position_counts=position_counts, token_counts=dict(sorted(token_counts.items())), vectors=vectors)


def top_tokens_table(
    kept: dict[str, KeptTokens], labels: dict[str, tuple[str, int | None]], tokenizer, n: int
) -> pd.DataFrame:  # noqa: ANN001
    """The ``n`` most often kept tokens of each model, decoded with ``tokenizer``.

    Parameters
    ----------
    kept
        Model label to its counts.
    labels
        Model label to ``(strategy, k)``.
    tokenizer
        The models' tokenizer (``convert_ids_to_tokens``).

    Returns
    -------
    pandas.DataFrame
        Columns ``model``, ``strategy``, ``k``, ``rank``, ``token_id``,
        ``token``, ``count``, ``share`` (of the model's kept vectors).
    """
    rows = []
    for model, counts in kept.items():
        strategy, k = labels[model]
        top = counts.top_tokens(n)
        tokens = tokenizer.convert_ids_to_tokens([token_id for token_id, _ in top])
        for rank, ((token_id, count), token) in enumerate(zip(top, tokens, strict=True), start=1):
            rows.append(
                {
                    "model": model,
                    "strategy": strategy,
                    "k": k,
                    "rank": rank,
                    "token_id": token_id,
                    "token": token,
                    "count": count,
                    "share": count / max(counts.vectors, 1),
                }
            )
    frame = pd.DataFrame(rows, columns=["model", "strategy", "k", "rank", "token_id", "token", "count", "share"])
    frame["k"] = frame["k"].astype("Int64")
    return frame


def positions_table(kept: dict[str, KeptTokens], labels: dict[str, tuple[str, int | None]]) -> pd.DataFrame:
    """Kept vectors per passage position, long format: ``model``, ``strategy``, ``k``, ``position``, ``count``."""
    frames = []
    for model, counts in kept.items():
        strategy, k = labels[model]
        positions = np.flatnonzero(counts.position_counts)
        frames.append(
            pd.DataFrame(
                {
                    "model": model,
                    "strategy": strategy,
                    "k": k,
                    "position": positions,
                    "count": counts.position_counts[positions],
                }
            )
        )
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "strategy", "k", "position", "count"])
    )
    frame["k"] = frame["k"].astype("Int64")
    return frame
