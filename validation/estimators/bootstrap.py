"""Bootstrap errors of statistics of sorted samples, vectorised over the replicas.

A statistic here is a function of sorted rows, ``stat(s)`` with ``s`` of shape (..., n), so all
replicas are evaluated in one call. Above :data:`BOOTSTRAP_MAX_SAMPLE` entries the bootstrap
resamples a random subset of that size and scales the error by ``sqrt(subset / n)`` (the robust
widths are root-n consistent), so errors stay cheap for large samples. Errors are in the units of
the input.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BOOTSTRAP_REPLICAS", "BOOTSTRAP_MAX_SAMPLE", "bootstrap_error", "bootstrap_errors",
           "sorted_replicas"]

#: bootstrap replicas of the robust widths.
BOOTSTRAP_REPLICAS = 40
#: above this many entries the bootstrap resamples a random subset (see the module docstring).
BOOTSTRAP_MAX_SAMPLE = 20000


def sorted_replicas(x: np.ndarray, replicas: int, seed: int) -> tuple[np.ndarray, float] | None:
    """``(s, scale)``: ``replicas`` resamples of the finite 1-d sample ``x``, each sorted
    (shape (replicas, m), m = min(n, BOOTSTRAP_MAX_SAMPLE)), and the factor ``sqrt(m / n)`` that
    turns their spread into the error of the full sample. None when ``x`` has fewer than 3
    entries or ``replicas < 2`` (no error can be estimated)."""
    n = x.size
    if n < 3 or replicas < 2:
        return None
    rng = np.random.default_rng(seed)
    m = min(n, BOOTSTRAP_MAX_SAMPLE)
    base = x if m == n else rng.choice(x, size=m, replace=False)
    s = np.sort(base[rng.integers(0, m, size=(replicas, m))], axis=1)
    return s, math.sqrt(m / n)


def bootstrap_errors(x: np.ndarray, stats: dict, replicas: int, seed: int) -> dict:
    """``{name: bootstrap standard error or None}`` of several statistics (functions of sorted
    rows) on the sample ``x``, all from the same resampling."""
    resampled = sorted_replicas(x, replicas, seed)
    if resampled is None:
        return dict.fromkeys(stats)
    s, scale = resampled
    return {k: float(np.std(stat(s), ddof=1)) * scale for k, stat in stats.items()}


def bootstrap_error(x: np.ndarray, stat, replicas: int, seed: int) -> float | None:
    """Bootstrap standard error of ``stat`` (a function of sorted rows) on the sample ``x``."""
    return bootstrap_errors(x, {"stat": stat}, replicas, seed)["stat"]
