"""Sensor times: first-photon (constant-fraction) statistics on top of the light arrival time.

A sensor seeing N photo-electrons of a scintillation pulse with decay time tau is timed by its
k-th photon, k = max(1, round(cf_fraction * N)). The k-th arrival of N exponential photons is
drawn as ``tau * Gamma(k) / N`` (the Erlang order statistic, mean tau k / N, spread
tau sqrt(k) / N). The single-photon time spread (MPPC SPTR, PMT TTS) enters divided by sqrt(k),
and a constant electronics term is added. The channel time offset tau * cf_fraction (the mean
constant-fraction delay of a bright sensor) is calibrated away, as the experiment does; what
remains at low light is a genuine time walk. Times below ``time_threshold_pe`` are invalid.

All times in ns here; the runner converts to seconds for the file.
"""

from __future__ import annotations

import numpy as np

from xecreco.sim.config import SimConfig


def constant_fraction_order(npe: np.ndarray, config: SimConfig) -> np.ndarray:
    """Order k (>= 1, float) of the photon that times a sensor with ``npe`` photo-electrons."""
    return np.maximum(np.rint(config.cf_fraction * npe), 1.0)


def expected_time_spread_ns(npe: np.ndarray, is_mppc: np.ndarray, config: SimConfig) -> np.ndarray:
    """Standard deviation (ns) of the simulated sensor time around the arrival time + walk."""
    npe = np.maximum(npe, 1.0)
    k = constant_fraction_order(npe, config)
    sptr = np.where(is_mppc, config.mppc_sptr_ns, config.pmt_tts_ns)
    erlang = config.decay_time_ns * np.sqrt(k) / npe
    return np.sqrt(erlang**2 + sptr**2 / k + config.electronics_ns**2)


def expected_walk_ns(npe: np.ndarray, config: SimConfig) -> np.ndarray:
    """Mean delay (ns) of the sensor time after the light arrival (k / N - f) * tau."""
    npe = np.maximum(npe, 1.0)
    return config.decay_time_ns * (constant_fraction_order(npe, config) / npe - config.cf_fraction)


def draw_sensor_times(
    arrival_ns: np.ndarray, npe: np.ndarray, is_mppc: np.ndarray, config: SimConfig,
    rng: np.random.Generator, needed: np.ndarray | None = None, fill: float = np.nan,
) -> np.ndarray:
    """Sensor times (ns) for light arriving at ``arrival_ns`` with ``npe`` photo-electrons (N, S).

    Only entries where ``needed`` (bool (N, S), default all) is True are drawn; the others are
    ``fill`` (NaN by default). Validity (the light threshold) is decided by the caller.
    """
    out = np.full(arrival_ns.shape, fill)
    if needed is None:
        needed = np.ones(arrival_ns.shape, dtype=bool)
    index = np.flatnonzero(needed)
    cols = index % arrival_ns.shape[1]
    npe_sel = np.maximum(npe.reshape(-1)[index], 1.0)
    k = constant_fraction_order(npe_sel, config)
    erlang = rng.standard_gamma(k) * (config.decay_time_ns / npe_sel)
    sptr = np.where(is_mppc[cols], config.mppc_sptr_ns, config.pmt_tts_ns)
    noise = rng.standard_normal(len(k)) * (sptr / np.sqrt(k))
    noise += config.electronics_ns * rng.standard_normal(len(k))
    offset = config.decay_time_ns * config.cf_fraction
    out.reshape(-1)[index] = arrival_ns.reshape(-1)[index] + erlang - offset + noise
    return out
