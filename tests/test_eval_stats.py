"""Bootstrap intervals and split halves on inputs whose answers are known."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from abcgen.errors import ConfigError
from abcgen.evaluation.stats import Estimate, bootstrap_mean, bootstrap_statistic, split_halves


def test_constant_has_a_zero_width_interval() -> None:
    estimate = bootstrap_mean([3.0] * 50)
    assert estimate == Estimate(3.0, 3.0, 3.0, 50, 0, 0.95)
    median = bootstrap_statistic([3.0] * 50, statistics.median)
    assert (median.value, median.low, median.high) == (3.0, 3.0, 3.0)


def test_interval_contains_the_mean_and_narrows_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small = rng.normal(10.0, 2.0, size=50)
    large = rng.normal(10.0, 2.0, size=2000)
    est_small, est_large = bootstrap_mean(small), bootstrap_mean(large)
    assert est_small.low < small.mean() < est_small.high
    assert est_large.low < large.mean() < est_large.high
    assert est_small.value == pytest.approx(small.mean())
    # the width of a mean's interval shrinks like 1/sqrt(n): 2 * 1.96 * 2 / sqrt(n)
    assert est_small.width == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(50), rel=0.3)
    assert est_large.width == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(2000), rel=0.3)
    assert est_large.width < est_small.width / 4
    assert est_large.low < 10.0 < est_large.high


def test_seed_makes_it_deterministic() -> None:
    values = list(np.random.default_rng(2).exponential(size=100))
    assert bootstrap_mean(values, seed=7) == bootstrap_mean(values, seed=7)
    assert bootstrap_mean(values, seed=7) != bootstrap_mean(values, seed=8)
    assert bootstrap_statistic(values, statistics.median, seed=3) == bootstrap_statistic(values, statistics.median,
                                                                                         seed=3)


def test_nans_are_left_out_and_counted() -> None:
    estimate = bootstrap_mean([1.0, float("nan"), 3.0, float("nan"), 2.0])
    assert (estimate.value, estimate.n, estimate.nan_count) == (2.0, 3, 2)
    assert 1.0 <= estimate.low <= estimate.high <= 3.0
    assert math.isnan(bootstrap_mean([float("nan")] * 4).value)
    assert bootstrap_mean([float("nan")] * 4).nan_count == 4
    # a statistic that is NaN on some resamples (no value above 5 drawn): those resamples are counted
    def share_of_large(values: list[float]) -> float:
        large = [v for v in values if v > 5]
        return len(large) / len(values) if large else float("nan")

    estimate = bootstrap_statistic([1.0] * 19 + [9.0], share_of_large, n_resamples=400)
    # P(no 9 among 20 draws) = (19/20)^20 = 0.358
    assert 0.25 < estimate.nan_count / 400 < 0.47
    assert estimate.value == 0.05


def test_statistic_and_mean_draw_the_same_resamples() -> None:
    values = list(np.random.default_rng(4).normal(size=80))
    by_mean = bootstrap_mean(values, n_resamples=300, seed=5)
    by_statistic = bootstrap_statistic(values, lambda v: float(np.mean(v)), n_resamples=300, seed=5)
    assert by_statistic.low == pytest.approx(by_mean.low)
    assert by_statistic.high == pytest.approx(by_mean.high)


def test_set_level_statistic_pooled_share() -> None:
    """A pooled share (bad bars / bars) resampled over pieces, as the report computes bar errors."""
    pieces = [(1, 10)] * 10 + [(0, 30)] * 10  # 10 bad of 400 bars

    def pooled(items: list[tuple[int, int]]) -> float:
        return sum(bad for bad, _ in items) / sum(bars for _, bars in items)

    estimate = bootstrap_statistic(pieces, pooled, n_resamples=500)
    assert estimate.value == pytest.approx(10 / 400)
    assert estimate.low < 10 / 400 < estimate.high
    assert estimate.as_dict()["value"] == pytest.approx(0.025)
    assert set(estimate.as_dict()) == {"value", "low", "high", "n", "nan_count", "confidence"}


def test_empty_input_and_bad_settings() -> None:
    assert math.isnan(bootstrap_mean([]).value)
    assert bootstrap_statistic([], statistics.median).n == 0
    with pytest.raises(ConfigError, match="n_resamples"):
        bootstrap_mean([1.0], n_resamples=0)
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_mean([1.0], confidence=95)


def test_split_halves_is_a_seeded_partition() -> None:
    items = list(range(101))
    a, b = split_halves(items, seed=0)
    assert len(a) == 50 and len(b) == 51
    assert sorted(a + b) == items
    assert split_halves(items, seed=0) == (a, b)
    assert split_halves(items, seed=1) != (a, b)
    assert a != sorted(a) or b != sorted(b)  # shuffled, not cut in place
