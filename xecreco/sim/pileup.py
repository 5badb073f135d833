"""Pile-up photons: how many, their energies and times (physics.md section 6).

Each event gets Poisson(rate * window) extra photons, window = 2 * ``pileup_window_ns``, with
times uniform in +-``pileup_window_ns`` (ns, same frame as timeTruth). Energies follow a falling
spectrum: with probability ``pileup_low_fraction`` an exponential of mean ``pileup_low_mean_mev``
truncated to [pileup_min_mev, pileup_low_max_mev], otherwise 1/E between ``pileup_min_mev`` and
``pileup_max_mev`` (a radiative-decay-like falling shape up to the signal energy). Vertices and
directions are drawn like the signal's; their showers and light go through the same code.
"""

from __future__ import annotations

import numpy as np

from xecreco.sim.config import SimConfig


def mean_pileup_photons(config: SimConfig) -> float:
    """Expected extra photons per event: rate (Hz) x window (2 x half-width, ns) x 1e-9."""
    return config.pileup_rate_hz * 2.0 * config.pileup_window_ns * 1e-9


def draw_pileup_counts(n_events: int, config: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """(n_events,) int64 number of pile-up photons per event."""
    mean = mean_pileup_photons(config)
    if mean <= 0:
        return np.zeros(n_events, dtype=np.int64)
    return rng.poisson(mean, n_events).astype(np.int64)


def draw_pileup_energies(n: int, config: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """(n,) pile-up photon energies, MeV, from the falling spectrum described above."""
    low = rng.uniform(size=n) < config.pileup_low_fraction
    lo, hi = config.pileup_min_mev, config.pileup_low_max_mev
    mean = config.pileup_low_mean_mev
    # inverse CDF of an exponential truncated to [lo, hi]
    u = rng.uniform(size=n)
    span = -np.expm1(-(hi - lo) / mean)
    exp_part = lo - mean * np.log1p(-u * span)
    ratio = config.pileup_max_mev / config.pileup_min_mev
    flat_log = config.pileup_min_mev * ratio ** rng.uniform(size=n)
    return np.where(low, exp_part, flat_log)


def draw_pileup_times(n: int, config: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """(n,) pile-up photon emission times, ns, uniform in +-pileup_window_ns."""
    return rng.uniform(-config.pileup_window_ns, config.pileup_window_ns, n)
