"""Bootstrap confidence intervals over pieces, and the random halves of a real set (the real-vs-real floor).

Every metric of a report is a number over a sample of tunes; resampling the tunes with replacement and
recomputing it gives the spread a different sample of the same size would have had. Intervals are
percentile intervals (95 % by default) of ``n_resamples`` resamples drawn by ``numpy.random.default_rng(seed)``:
the same inputs and seed give the same interval, and ``bootstrap_mean`` and ``bootstrap_statistic`` draw
the same resamples for the same number of items, so the mean computed either way has the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np

from abcgen.errors import ConfigError

T = TypeVar("T")

# Resample indices are drawn in blocks of at most this many cells (int64: 32 MB), so 1,000 resamples of
# 100,000 values do not need 800 MB at once. The block size depends only on the sample size, so the
# draws, and the interval, do not depend on memory.
_MAX_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True, slots=True)
class Estimate:
    """A statistic (``value``, on all items) and its bootstrap interval [``low``, ``high``].

    ``n``: items the statistic was computed over; ``nan_count``: for ``bootstrap_mean`` the NaN values left
    out, for ``bootstrap_statistic`` the resamples whose statistic was NaN (left out of the interval)."""

    value: float
    low: float
    high: float
    n: int
    nan_count: int = 0
    confidence: float = 0.95

    @property
    def width(self) -> float:
        return self.high - self.low

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(n_resamples: int, confidence: float) -> None:
    if n_resamples < 1:
        raise ConfigError(f"n_resamples={n_resamples}: give at least 1 (1000 is usual)")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence={confidence}: give a share strictly between 0 and 1, e.g. 0.95")


def _resample_blocks(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Index arrays of shape (rows, n), ``n_resamples`` rows in all: each row one resample with replacement."""
    rng = np.random.default_rng(seed)
    rows_per_block = max(1, _MAX_BLOCK_CELLS // max(n, 1))
    for start in range(0, n_resamples, rows_per_block):
        yield rng.integers(0, n, size=(min(rows_per_block, n_resamples - start), n))


def _interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(resampled, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_mean(values: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                   confidence: float = 0.95) -> Estimate:
    """Mean of ``values`` (NaNs left out and counted in ``nan_count``) with its bootstrap interval.

    Vectorised: each block of resamples is one fancy-indexing of the values and one row mean."""
    _check(n_resamples, confidence)
    array = np.asarray(values, dtype=np.float64).ravel()
    finite = array[~np.isnan(array)]
    nan_count = int(array.size - finite.size)
    if finite.size == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, nan_count, confidence)
    means = np.concatenate([finite[indices].mean(axis=1)
                            for indices in _resample_blocks(finite.size, n_resamples, seed)])
    low, high = _interval(means, confidence)
    return Estimate(float(finite.mean()), low, high, int(finite.size), nan_count, confidence)


def bootstrap_statistic(items: Sequence[T], statistic: Callable[[list[T]], float], n_resamples: int = 1000,
                        seed: int = 0, confidence: float = 0.95) -> Estimate:
    """A set-level ``statistic`` of ``items`` (a median, a pooled share, an overlap ...) with its bootstrap
    interval: the items are resampled with replacement and the statistic recomputed on each resample.

    The resample indices are drawn vectorised; ``statistic`` is called once per resample on a list. A
    resample whose statistic is NaN is left out of the interval and counted in ``nan_count``."""
    _check(n_resamples, confidence)
    pool = list(items)
    if not pool:
        return Estimate(math.nan, math.nan, math.nan, 0, 0, confidence)
    value = float(statistic(pool))
    resampled = np.asarray([float(statistic([pool[i] for i in row]))
                            for indices in _resample_blocks(len(pool), n_resamples, seed)
                            for row in indices.tolist()])
    finite = resampled[~np.isnan(resampled)]
    nan_count = int(resampled.size - finite.size)
    low, high = _interval(finite, confidence) if finite.size else (math.nan, math.nan)
    return Estimate(value, low, high, len(pool), nan_count, confidence)


def split_halves(items: Sequence[T], seed: int = 0) -> tuple[list[T], list[T]]:
    """``items`` shuffled by ``seed`` and cut in two halves (the first gets ``len // 2``): two real sets of
    the same origin, whose distance is the floor a generated set is compared against."""
    order = np.random.default_rng(seed).permutation(len(items))
    half = len(items) // 2
    return [items[i] for i in order[:half]], [items[i] for i in order[half:]]
