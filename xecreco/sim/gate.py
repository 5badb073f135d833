"""The readout gate: how much of a photon's scintillation light the charge integration sees.

MEG II digitises every waveform and integrates its charge in a gate [g1, g2] around the trigger
(physics.md section 6). The trigger fires on the signal photon, so the gate is placed relative
to the signal photon's own emission time (``timeTruth``): a photon emitted at t0 (ns, relative
to that time) whose light follows the scintillation profile exp(-t/tau)/tau puts the fraction

    f(t0) = exp(-max(0, g1 - t0) / tau) - exp(-max(0, g2 - t0) / tau)     (0 when t0 > g2)

of its light inside the gate. The MEG II charge calibration absorbs the in-time fraction f(0),
so a photon's light is scaled by ``f(t0) / f(0)``: the signal photon (t0 = 0) keeps exactly its
light, and signal-only samples are unchanged by the gate. Times in ns; tau is
``decay_time_ns``, g1 / g2 are ``gate_start_ns`` / ``gate_end_ns``.
"""

from __future__ import annotations

import numpy as np

from xecreco.sim.config import SimConfig


def gate_fraction(t0_ns: np.ndarray, config: SimConfig) -> np.ndarray:
    """Fraction (float64, shape of ``t0_ns``) of the light of a photon emitted at ``t0_ns``
    (relative to the trigger) inside the gate; 1 everywhere when ``readout_gate`` is off."""
    t0 = np.asarray(t0_ns, dtype=np.float64)
    if not config.readout_gate:
        return np.ones(t0.shape)
    tau = config.decay_time_ns
    start = np.exp(-np.maximum(0.0, config.gate_start_ns - t0) / tau)
    end = np.exp(-np.maximum(0.0, config.gate_end_ns - t0) / tau)
    return np.where(t0 > config.gate_end_ns, 0.0, start - end)


def in_time_fraction(config: SimConfig) -> float:
    """f(0): the gate fraction of a photon at the trigger time (1 without the gate)."""
    return float(gate_fraction(np.zeros(1), config)[0])


def light_weight(t0_ns: np.ndarray, config: SimConfig) -> np.ndarray:
    """Scale of a photon's light in the stored npho: f(t0) / f(0) (1 for an in-time photon)."""
    return gate_fraction(t0_ns, config) / in_time_fraction(config)
