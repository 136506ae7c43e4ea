"""The paired tests over queries and seeds: textbook formulas, statsmodels' REML, and where they must disagree."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tokenprune.errors import TokenpruneError
from tokenprune.layout import System
from tokenprune.reporting.statistics import crossed_random_effects, paired_differences, paired_test
from tokenprune.reporting.summary import SystemResult, compare_methods

QUERIES = [f"q{i}" for i in range(60)]


def series(values: np.ndarray | list[float], queries: list[str] | None = None) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=float), index=queries or QUERIES[: len(values)])


def test_one_seed_is_the_paired_t_test_over_queries() -> None:
    a = series([0.5, 0.7, 0.2, 0.9, 0.4])
    b = series([0.4, 0.5, 0.3, 0.6, 0.1])
    d = (a - b).to_numpy()
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    test = paired_test({42: a}, {42: b})
    assert test.p_query == pytest.approx(2 * stats.t.sf(abs(t), len(d) - 1))
    assert test.p_mixed == pytest.approx(test.p_query) and test.df == len(d) - 1
    assert math.isnan(test.p_seed) and test.seeds == 1
    assert paired_test({1: a}, {1: a}).p_mixed == 1.0
    assert paired_test({1: a + 0.1}, {1: a}).p_mixed == 0.0
    # A query one run did not answer counts as 0 on its side.
    partial = a.drop(a.index[-1])
    zeroed = a.where(a.index != a.index[-1], 0.0)
    assert paired_test({1: partial}, {1: b}).p_mixed == pytest.approx(paired_test({1: zeroed}, {1: b}).p_mixed)


def test_mixed_model_matches_statsmodels_reml() -> None:
    """The ANOVA estimate of the crossed random-effects model equals statsmodels' REML fit of it."""
    smf = pytest.importorskip("statsmodels.formula.api")
    rng = np.random.default_rng(3)
    queries, seeds = 40, 3
    for seed_sd in (0.005, 0.03):
        d = (
            0.02
            + rng.normal(0, 0.05, (queries, 1))
            + rng.normal(0, seed_sd, (1, seeds))
            + rng.normal(0, 0.03, (queries, seeds))
        )
        mean, se, df, p = crossed_random_effects(d)
        long = pd.DataFrame(
            [(q, s, d[q, s]) for q in range(queries) for s in range(seeds)], columns=["query", "seed", "y"]
        ).assign(group=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = smf.mixedlm(
                "y ~ 1",
                long,
                groups="group",
                re_formula="0",
                vc_formula={"query": "0 + C(query)", "seed": "0 + C(seed)"},
            ).fit(reml=True)
        assert mean == pytest.approx(fit.params["Intercept"], abs=1e-9)
        assert se == pytest.approx(fit.bse["Intercept"], rel=2e-3)
        assert 2 <= df <= (queries - 1) * (seeds - 1)
        assert p == pytest.approx(2 * stats.t.sf(abs(mean) / se, df))


def test_one_deviant_seed_splits_the_query_test_from_the_seed_aware_one() -> None:
    """Gains of +0.034 and +0.039 in two seeds and -0.004 in the third: certain over queries, not over seeds."""
    rng = np.random.default_rng(11)
    noise = 0.01
    base = rng.uniform(0.2, 0.7, len(QUERIES))
    gains = {42: 0.034, 43: 0.039, 44: -0.004}
    in_loop = {seed: series(base + gain + rng.normal(0, noise, len(QUERIES))) for seed, gain in gains.items()}
    post_hoc = {seed: series(base + rng.normal(0, noise, len(QUERIES))) for seed in gains}
    test = paired_test(in_loop, post_hoc)
    assert test.seed_deltas == pytest.approx(list(gains.values()), abs=0.006)
    assert test.p_query < 1e-6
    assert test.p_seed > 0.05 and test.p_mixed > 0.05
    # Three seeds that agree: the mixed model finds the gain too.
    agreeing = {seed: series(base + 0.035 + rng.normal(0, noise, len(QUERIES))) for seed in gains}
    assert paired_test(agreeing, post_hoc).p_mixed < 0.01

    # The same through the study's summary: the in-loop vs post-hoc row of a hand-made three-seed study.
    def result(system_id: str, values: pd.Series) -> SystemResult:
        frame = values.rename("nDCG@10").to_frame()
        return SystemResult(
            System.parse(system_id),
            {"nDCG@10": float(values.mean())},
            frame,
            {"percent_tokens_kept": 10.0, "index_bytes": 1},
        )

    results = [result(f"sci/none/kall/seed{seed}", series(base)) for seed in gains]
    results += [result(f"sci/idf/k10/seed{seed}", values) for seed, values in in_loop.items()]
    results += [result(f"sci/posthoc-idf/k10/seed{seed}", values) for seed, values in post_hoc.items()]
    contrast = compare_methods(results, ["nDCG@10"], alpha=0.05).contrast.iloc[0]
    assert contrast["seed_deltas"].split() == [f"{value:+.4f}" for value in test.seed_deltas]
    assert contrast["p_query"] < 1e-6 and not contrast["significant"]


def test_seeds_pair_by_number_and_a_single_seed_reference_is_shared() -> None:
    a = {1: series([0.5, 0.6]), 2: series([0.7, 0.8])}
    reference = {0: series([0.5, 0.5])}
    frame = paired_differences(a, reference)
    assert list(frame.columns) == [1, 2]
    np.testing.assert_allclose(frame.to_numpy(), [[0.0, 0.2], [0.1, 0.3]])
    np.testing.assert_allclose(
        paired_differences({2: series([1.0, 1.0]), 1: series([0.0, 0.0])}, a).to_numpy(), [[-0.5, 0.3], [-0.6, 0.2]]
    )
    with pytest.raises(TokenpruneError, match=r"share no seed \(seeds \[1, 2\] and \[3, 4\]\)"):
        paired_differences(a, {3: series([0.0, 0.0]), 4: series([0.0, 0.0])})


def test_margin_tests_show_a_cost_below_or_above_the_margin() -> None:
    rng = np.random.default_rng(5)
    base = rng.uniform(0.2, 0.7, len(QUERIES))
    small_cost = paired_test({1: series(base - 0.005 + rng.normal(0, 0.01, len(QUERIES)))}, {1: series(base)})
    below, above = small_cost.p_beyond(-0.02)
    assert below < 1e-6 and above > 0.99
    large_cost = paired_test({1: series(base - 0.05 + rng.normal(0, 0.01, len(QUERIES)))}, {1: series(base)})
    below, above = large_cost.p_beyond(-0.02)
    assert below > 0.99 and above < 1e-6
