"""Paired significance tests that let the variance between training seeds in.

Two systems scored on the same queries, each trained with several seeds, give
a query x seed matrix of differences. Three tests read it:

``p_query``
    Paired t-test over queries on the values averaged over seeds. Blind to the
    seed: three models that disagree in sign can still look certain.
``p_seed``
    One-sample t-test on the per-seed mean differences. Blind to the sampling
    of queries, and weak with three seeds (two degrees of freedom).
``p_mixed``
    A linear mixed model with query and seed as crossed random effects,
    ``d[q, s] = mu + a_q + b_s + e``, testing ``mu = 0``. The design is balanced
    (every query is scored for every seed; a query missing from one run scores
    0), so the variance components come from the two-way ANOVA mean squares
    (equal to REML there, with components truncated at zero), and the
    degrees of freedom from Satterthwaite's approximation. With one seed it is
    exactly the query-level test; when the seeds agree it moves towards it,
    and when one seed deviates it moves towards the seed-level test. This is
    the test that decides significance and verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from tokenprune.errors import TokenpruneError

__all__ = [
    "PairedTest",
    "crossed_random_effects",
    "holm_adjust",
    "margin_p_values",
    "one_sample_t",
    "paired_differences",
    "paired_test",
]


def holm_adjust(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order.

    The i-th smallest p-value is multiplied by (m - i), made monotone by a
    running maximum and capped at 1. ``nan`` entries are left out of the family
    and stay ``nan``.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, position in enumerate(order):
        running = max(running, (m - rank) * p[position])
        adjusted[position] = min(1.0, running)
    return adjusted


def _t_p_value(estimate: float, standard_error: float, df: float) -> float:
    """Two-sided p of ``estimate / standard_error`` on ``df`` degrees of freedom.

    A zero standard error means every difference is the same: p = 1 when it is
    zero (no evidence of a difference), 0 otherwise (a certain one), where
    scipy would divide by zero.
    """
    if standard_error <= 1e-12 * max(1.0, abs(estimate)):
        return 1.0 if abs(estimate) <= 1e-12 else 0.0
    return float(2 * stats.t.sf(abs(estimate) / standard_error, df))


def margin_p_values(delta: float, standard_error: float, df: float, margin: float) -> tuple[float, float]:
    """One-sided p-values of a t-distributed estimate against a margin: (delta > margin, delta < margin)."""
    shifted = delta - margin
    if not standard_error > 1e-12 * max(1.0, abs(shifted)):
        return (0.0, 1.0) if shifted > 0 else (1.0, 0.0) if shifted < 0 else (1.0, 1.0)
    t = shifted / standard_error
    return float(stats.t.sf(t, df)), float(stats.t.cdf(t, df))


def one_sample_t(values: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, standard error, degrees of freedom, two-sided p) of a one-sample t-test of mean 0; ``nan`` below 2 values."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan, math.nan
    standard_error = float(values.std(ddof=1) / math.sqrt(n))
    return mean, standard_error, float(n - 1), _t_p_value(mean, standard_error, n - 1)


def crossed_random_effects(differences: np.ndarray) -> tuple[float, float, float, float]:
    """(mean, standard error, Satterthwaite df, two-sided p) of ``mu`` in ``d[q, s] = mu + a_q + b_s + e``.

    ``differences`` is a queries x seeds matrix. With ``Q`` queries and ``S``
    seeds, the variance of the grand mean is ``var_a / Q + var_b / S + var_e / (Q S)``
    with ``var_a = (MS_q - MS_e) / S``, ``var_b = (MS_s - MS_e) / Q``, ``var_e = MS_e``,
    each component truncated at zero. One seed leaves only the query term: the
    paired t-test over queries.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 2 or d.shape[0] < 2 or d.shape[1] < 1:
        raise TokenpruneError(f"a paired test needs at least 2 queries and 1 seed; got a {d.shape} matrix")
    queries, seeds = d.shape
    mean = float(d.mean())
    if seeds == 1:
        _, standard_error, df, p = one_sample_t(d[:, 0])
        return mean, standard_error, df, p
    row, column = d.mean(axis=1), d.mean(axis=0)
    df_q, df_s, df_e = queries - 1, seeds - 1, (queries - 1) * (seeds - 1)
    ms_q = seeds * float(((row - mean) ** 2).sum()) / df_q
    ms_s = queries * float(((column - mean) ** 2).sum()) / df_s
    residual = d - row[:, None] - column[None, :] + mean
    ms_e = float((residual**2).sum()) / df_e
    # Var(mean) * Q * S as a combination of mean squares; a component estimated
    # below zero is set to zero (REML's boundary), which drops its two terms.
    uses_q = ms_q > ms_e
    uses_s = ms_s > ms_e
    terms = [(float(uses_q), ms_q, df_q), (float(uses_s), ms_s, df_s), (1.0 - uses_q - uses_s, ms_e, df_e)]
    combined = sum(coefficient * ms for coefficient, ms, _ in terms)
    standard_error = math.sqrt(max(combined, 0.0) / (queries * seeds))
    denominator = sum((coefficient * ms) ** 2 / df for coefficient, ms, df in terms if coefficient)
    df = combined**2 / denominator if denominator > 0 else float(df_e)
    return mean, standard_error, float(df), _t_p_value(mean, standard_error, df)


def paired_differences(a: Mapping[int, pd.Series], b: Mapping[int, pd.Series]) -> pd.DataFrame:
    """Per-query differences ``a - b`` as a queries x seeds frame.

    ``a`` and ``b`` map a seed to its per-query values. A side with one seed
    (the untrained backbone, BM25, a single-seed study) is compared with every
    seed of the other; otherwise seeds are paired by number (in-loop seed s
    against the post-hoc selection on baseline seed s), over the seeds both
    have. A query missing from one run scores 0, as ir_measures would.
    """
    if not a or not b:
        raise TokenpruneError("a paired test needs per-query values on both sides")
    if len(b) == 1 and len(a) >= 1:
        (only,) = b.values()
        pairs = {seed: (values, only) for seed, values in a.items()}
    elif len(a) == 1:
        (only,) = a.values()
        pairs = {seed: (only, values) for seed, values in b.items()}
    else:
        common = sorted(set(a) & set(b))
        if not common:
            raise TokenpruneError(
                f"the two systems share no seed (seeds {sorted(a)} and {sorted(b)}); pair them by seed"
            )
        pairs = {seed: (a[seed], b[seed]) for seed in common}
    queries = pd.Index([])
    for left, right in pairs.values():
        queries = queries.union(left.index).union(right.index)
    return pd.DataFrame(
        {
            seed: left.reindex(queries, fill_value=0.0).astype(float)
            - right.reindex(queries, fill_value=0.0).astype(float)
            for seed, (left, right) in sorted(pairs.items())
        },
        index=queries,
    )


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison ``a - b`` over queries and seeds (see the module docstring for the three tests).

    Attributes
    ----------
    delta
        Mean difference over queries and seeds.
    seed_deltas
        Mean difference per seed, in seed order.
    queries, seeds
        Size of the difference matrix.
    p_query, p_seed, p_mixed
        Two-sided p-values of the three tests (``p_seed`` is ``nan`` with one seed).
    se, df
        Standard error and degrees of freedom of the mixed model's ``delta``.
    """

    delta: float
    seed_deltas: tuple[float, ...]
    queries: int
    seeds: int
    p_query: float
    p_seed: float
    p_mixed: float
    se: float
    df: float

    def p_beyond(self, margin: float) -> tuple[float, float]:
        """One-sided p-values of the mixed model against a margin: (delta > margin, delta < margin).

        ``p_beyond(-0.02)[0]`` small shows a cost under 0.02 (non-inferiority);
        ``[1]`` small shows a cost over it.
        """
        return margin_p_values(self.delta, self.se, self.df, margin)

    def seed_deltas_text(self) -> str:
        """The per-seed differences as one CSV-safe cell: ``+0.034 +0.039 -0.004``."""
        return " ".join(f"{value:+.4f}" for value in self.seed_deltas)


def paired_test(a: Mapping[int, pd.Series], b: Mapping[int, pd.Series]) -> PairedTest:
    """All three tests of ``a - b`` (each maps a seed to per-query values of one measure)."""
    differences = paired_differences(a, b).to_numpy()
    delta, se, df, p_mixed = crossed_random_effects(differences)
    _, _, _, p_query = one_sample_t(differences.mean(axis=1))
    _, _, _, p_seed = one_sample_t(differences.mean(axis=0))
    return PairedTest(
        delta=delta,
        seed_deltas=tuple(float(value) for value in differences.mean(axis=0)),
        queries=differences.shape[0],
        seeds=differences.shape[1],
        p_query=p_query,
        p_seed=p_seed,
        p_mixed=p_mixed,
        se=se,
        df=df,
    )
