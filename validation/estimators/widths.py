"""Robust widths with bootstrap errors: sigma68, sigma_eff, IQR, quantiles and the median.

Each works in the units of its input and ignores NaN and inf entries. With fewer than
``min_entries`` finite entries the value is ``None``; errors come from
:mod:`~xecreco.validation.estimators.bootstrap` (``None`` when they cannot be estimated).
Statistics are written as functions of sorted rows (``*_sorted``) so one call evaluates them on
every bootstrap replica; the fits reuse them for their starting values.
"""

from __future__ import annotations

import math

import numpy as np

from xecreco.validation.estimators.bootstrap import (
    BOOTSTRAP_REPLICAS,
    bootstrap_error,
    bootstrap_errors,
)
from xecreco.validation.estimators.results import Estimate

__all__ = [
    "ONE_SIGMA",
    "sigma68",
    "sigma_eff",
    "iqr",
    "quantile",
    "robust_widths",
    "finite_values",
    "quantile_sorted",
    "sigma68_sorted",
    "sigma_eff_sorted",
    "iqr_sorted",
]

#: fraction of a Gaussian within +-1 sigma.
ONE_SIGMA = 0.6826894921370859


def finite_values(x) -> np.ndarray:
    """The finite entries of ``x`` as a flat float64 array."""
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def quantile_sorted(s: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile ``q`` of each sorted row (numpy's default definition)."""
    n = s.shape[-1]
    pos = q * (n - 1)
    i = int(math.floor(pos))
    j = min(i + 1, n - 1)
    f = pos - i
    return s[..., i] * (1.0 - f) + s[..., j] * f


def sigma68_sorted(s: np.ndarray) -> np.ndarray:
    """Half the central 68.27% interval of each sorted row of ``s`` (..., n)."""
    lo = (1.0 - ONE_SIGMA) / 2.0
    return 0.5 * (quantile_sorted(s, 1.0 - lo) - quantile_sorted(s, lo))


def sigma_eff_sorted(s: np.ndarray) -> np.ndarray:
    """Half-width of the smallest interval holding 68.27% of each sorted row."""
    n = s.shape[-1]
    k = max(int(math.ceil(ONE_SIGMA * n)), 1)
    widths = s[..., k - 1 :] - s[..., : n - k + 1]
    return 0.5 * widths.min(axis=-1)


def iqr_sorted(s: np.ndarray) -> np.ndarray:
    """75th minus 25th percentile of each sorted row."""
    return quantile_sorted(s, 0.75) - quantile_sorted(s, 0.25)


def _estimate(x, stat, min_entries: int, replicas: int, seed: int) -> Estimate:
    x = finite_values(x)
    if x.size < max(min_entries, 2):
        return Estimate(None, None, int(x.size))
    value = float(stat(np.sort(x)))
    return Estimate(value, bootstrap_error(x, stat, replicas, seed), int(x.size))


def sigma68(x, *, min_entries: int = 10, replicas: int = BOOTSTRAP_REPLICAS,
            seed: int = 0) -> Estimate:
    """Half the width of the central 68.27% interval (16th to 84th percentile), bootstrap error."""
    return _estimate(x, sigma68_sorted, min_entries, replicas, seed)


def sigma_eff(x, *, min_entries: int = 10, replicas: int = BOOTSTRAP_REPLICAS,
              seed: int = 0) -> Estimate:
    """Half the width of the smallest interval holding 68.27% of the entries, bootstrap error."""
    return _estimate(x, sigma_eff_sorted, min_entries, replicas, seed)


def iqr(x, *, min_entries: int = 10, replicas: int = BOOTSTRAP_REPLICAS, seed: int = 0) -> Estimate:
    """Interquartile range (75th minus 25th percentile); a Gaussian has IQR = 1.349 sigma."""
    return _estimate(x, iqr_sorted, min_entries, replicas, seed)


def quantile(x, q: float, *, min_entries: int = 10, replicas: int = BOOTSTRAP_REPLICAS,
             seed: int = 0) -> Estimate:
    """The ``q`` quantile (e.g. 0.68 for a 68% containment radius), bootstrap error."""
    return _estimate(x, lambda s: quantile_sorted(s, q), min_entries, replicas, seed)


def robust_widths(x, *, min_entries: int = 10, replicas: int = BOOTSTRAP_REPLICAS,
                  seed: int = 0) -> dict[str, Estimate]:
    """sigma68, sigma_eff, IQR and the median of ``x`` with bootstrap errors (one resampling)."""
    x = finite_values(x)
    names = ("median", "sigma68", "sigma_eff", "iqr")
    if x.size < max(min_entries, 2):
        return {k: Estimate(None, None, int(x.size)) for k in names}
    stats = {
        "median": lambda s: quantile_sorted(s, 0.5),
        "sigma68": sigma68_sorted,
        "sigma_eff": sigma_eff_sorted,
        "iqr": iqr_sorted,
    }
    s0 = np.sort(x)
    errors = bootstrap_errors(x, stats, replicas, seed)
    return {k: Estimate(float(f(s0)), errors[k], int(x.size)) for k, f in stats.items()}
