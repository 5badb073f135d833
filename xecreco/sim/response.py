"""Sensor response: per-channel efficiencies (a fixed detector calibration), photo-electron
counting, MPPC saturation, baseline noise, and the stored ``npho = nphe / efficiency``.

The efficiencies are a property of the simulated detector, drawn once from
``calibration_seed`` (independent of the event seed): the true efficiency of channel i is
``nominal * (1 + efficiency_spread * g_i)`` and the calibrated efficiency used to convert
photo-electrons back into incident photons is the true one times ``(1 + calibration_error * h_i)``
(g, h standard normal), a calibration the reconstruction does not know exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xecreco.sim.config import SimConfig

#: MPPC saturation is applied above this fraction of the pixel count (see measure_npho)
_SATURATION_FROM = 0.001
#: efficiencies are clipped at this fraction of the nominal value (no negative efficiencies)
_MIN_RELATIVE_EFFICIENCY = 0.2


@dataclass(frozen=True)
class Calibration:
    """Per-channel efficiencies of the simulated detector.

    Attributes:
        true_efficiency: (S,) detection efficiency used to draw photo-electrons.
        calibrated_efficiency: (S,) efficiency used to compute the stored npho.
    """

    true_efficiency: np.ndarray
    calibrated_efficiency: np.ndarray


def make_calibration(config: SimConfig, is_mppc: np.ndarray) -> Calibration:
    """The detector calibration drawn from ``config.calibration_seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([config.calibration_seed, 0xCA1]))
    nominal = np.where(is_mppc, config.mppc_pde, config.pmt_qe)
    n = len(is_mppc)
    true = nominal * np.maximum(1.0 + config.efficiency_spread * rng.standard_normal(n),
                                _MIN_RELATIVE_EFFICIENCY)
    calibrated = true * np.maximum(1.0 + config.calibration_error * rng.standard_normal(n),
                                   _MIN_RELATIVE_EFFICIENCY)
    return Calibration(true_efficiency=true, calibrated_efficiency=calibrated)


def draw_photoelectrons(
    mean_pe: np.ndarray, config: SimConfig, rng: np.random.Generator
) -> np.ndarray:
    """Photo-electrons ~ Poisson(mean) (Gaussian with the same mean and variance above
    ``gaussian_above_pe``), float64 array of the shape of ``mean_pe``.

    Sensors with no expected light (about half of them: the far side of the detector) are 0
    without a draw; Poisson(0) consumes no random numbers, so this is the same sample as drawing
    every entry.
    """
    flat = np.ravel(mean_pe)  # negative means (rounding) count as 0, like the maximum below
    out = np.zeros(flat.shape)
    high = flat > config.gaussian_above_pe
    low = flat > 0.0
    low ^= high
    low = np.flatnonzero(low)
    high = np.flatnonzero(high)
    out[low] = rng.poisson(flat[low])
    mu = flat[high]
    out[high] = np.maximum(mu + np.sqrt(mu) * rng.standard_normal(mu.shape), 0.0)
    return out.reshape(mean_pe.shape)


def measure_npho(
    nphe: np.ndarray, calibration: Calibration, is_mppc: np.ndarray, config: SimConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Stored npho (estimated incident photons) from true photo-electrons (N, S).

    MPPCs saturate as ``N_pix (1 - exp(-nphe / N_pix))``; Gaussian baseline noise of
    ``noise_pe`` is added; with ``correct_saturation`` the MPPC response is inverted (as the
    experiment's charge-to-photon conversion does); finally npho = measured pe / calibrated
    efficiency. Small negative values are possible (noise), as in real data.
    """
    npix = float(config.mppc_pixels)
    measured = rng.standard_normal(nphe.shape)
    measured *= config.noise_pe
    measured += nphe
    # saturation only where it is not negligible: below _SATURATION_FROM pixels the loss
    # nphe^2 / (2 N_pix) is < 0.03 pe, far below the baseline noise
    candidates = nphe > _SATURATION_FROM * npix
    candidates &= is_mppc[None, :]
    index = np.flatnonzero(candidates)
    if len(index):
        flat = measured.reshape(-1)
        bright = nphe.reshape(-1)[index]
        fired = npix * -np.expm1(-bright / npix)
        value = fired + (flat[index] - bright)
        if config.correct_saturation:
            value = -npix * np.log1p(-np.clip(value / npix, None, 1.0 - 1e-6))
        flat[index] = value
    efficiency = calibration.calibrated_efficiency
    if np.broadcast_shapes(measured.shape, efficiency.shape) != measured.shape:
        return measured / efficiency
    measured /= efficiency
    return measured
