"""Latency statistics: our percentile rule is numpy's linear one; the summary is internally consistent."""

from __future__ import annotations

import numpy as np
import pytest
from edge_vsd.benchmarks.stats import percentile, summarize


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
def test_percentile_matches_numpy(n):
    values = np.random.default_rng(n).lognormal(1.0, 0.6, n)
    for q in (0, 1, 10, 25, 50, 90, 99, 99.9, 100):
        assert percentile(values.tolist(), q) == pytest.approx(np.percentile(values, q), rel=1e-12, abs=1e-12)


def test_percentile_of_unsorted_input_and_ties():
    assert percentile([5, 1, 3, 3, 9], 50) == 3
    assert percentile([4, 1, 2, 3], 50) == 2.5
    assert percentile([7.0], 90) == 7.0


@pytest.mark.parametrize("bad", [-1, 100.5])
def test_percentile_rejects_out_of_range(bad):
    with pytest.raises(ValueError):
        percentile([1, 2], bad)


def test_percentile_rejects_empty():
    with pytest.raises(ValueError):
        percentile([], 50)


def test_summary_values():
    times = np.random.default_rng(0).gamma(4.0, 2.0, 500)
    s = summarize(times.tolist(), batch=4)
    assert s["iters"] == 500 and s["batch"] == 4
    assert s["mean_ms"] == pytest.approx(times.mean())
    assert s["std_ms"] == pytest.approx(times.std())
    assert s["min_ms"] == times.min() and s["max_ms"] == times.max()
    for q in (10, 50, 90, 99):
        assert s[f"p{q}_ms"] == pytest.approx(np.percentile(times, q))
    assert s["min_ms"] <= s["p10_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert s["fps"] == pytest.approx(4 * 1000 / np.percentile(times, 50))
