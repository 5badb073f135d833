"""Shared synthetic reconstructions and comparison helper for the validation tests."""

from __future__ import annotations

from xecreco.validation.synthetic import SyntheticReco

GOOD = SyntheticReco(energy_sigma_shallow=0.015, energy_sigma_deep=0.010, energy_tail_k=1.0,
                     position_sigma=(0.25, 0.20, 0.50), time_sigma=0.060, angle_sigma=1.0,
                     pileup_energy_leak=0.0, pileup_separation=2.0, failure_fraction=0.02)
BAD = SyntheticReco(energy_sigma_shallow=0.030, energy_sigma_deep=0.025, energy_tail_k=0.8,
                    position_sigma=(0.50, 0.50, 1.00), time_sigma=0.120, angle_sigma=2.0,
                    pileup_energy_leak=1.0, pileup_separation=None, failure_fraction=0.0)


def close(value_error: dict, truth: float, rel: float = 0.03, pulls: float = 4.0) -> bool:
    """True when value is within ``pulls`` errors plus ``rel`` (relative) of ``truth``."""
    v, e = value_error["value"], value_error["error"]
    return v is not None and abs(v - truth) <= pulls * e + rel * truth
