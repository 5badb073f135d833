"""Synthetic prediction files with known resolutions, for tests, benchmarks and demos.

The truth follows the XEC acceptance (physics.md sections 1 and 6): energies flat in
[15, 60] MeV, first-interaction depth exponential (mean 3.6 cm), u and v uniform in the
fiducial volume, emission angles theta 90 +- 20 deg and phi in [-60, 60] deg, Poisson pile-up.
Every reconstruction smears the truth with the widths given in its :class:`SyntheticReco`, so a
validation report on such a file must recover those widths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np

from xecreco.io.schema import FILL_VALUE, Status, reco_branch, status_branch
from xecreco.validation.estimators import sample_gauss_exp_tail

__all__ = ["SyntheticReco", "synthetic_predictions", "write_prediction_file"]


@dataclass
class SyntheticReco:
    """Known response of one synthetic reconstruction.

    Attributes:
        energy_sigma_shallow, energy_sigma_deep: upper-side sigma of the relative energy
            residual (fraction) for w < 2 cm and w >= 2 cm.
        energy_tail_k: low-side exponential-tail transition (units of sigma).
        position_sigma: (u, v, w) Gaussian residual widths, cm.
        time_sigma: Gaussian time residual width, ns.
        angle_sigma: Gaussian theta and phi residual widths, deg.
        pileup_energy_leak: fraction of in-time (|dt| < 50 ns) pile-up energy added to the
            reconstructed energy.
        pileup_separation: separation of the pile-up score between events with and without
            pile-up (in units of the score noise); None writes no pile-up output.
        failure_fraction: fraction of events written with status 3 and fill values.
        with_errors: also write ``R_energy_err``.
    """

    energy_sigma_shallow: float = 0.015
    energy_sigma_deep: float = 0.012
    energy_tail_k: float = 1.0
    position_sigma: tuple = (0.25, 0.25, 0.5)
    time_sigma: float = 0.07
    angle_sigma: float = 1.0
    pileup_energy_leak: float = 0.5
    pileup_separation: float | None = 2.0
    failure_fraction: float = 0.01
    with_errors: bool = False
    extra: dict = field(default_factory=dict)


def _truth(n: int, rng: np.random.Generator, start_event: int = 0) -> dict:
    from xecreco.geometry import uvw_to_xyz

    energy = rng.uniform(0.015, 0.060, n)
    w = np.minimum(rng.exponential(3.6, n), 41.9)
    u = rng.uniform(-23.9, 23.9, n)
    v = rng.uniform(-67.9, 67.9, n)
    uvw = np.stack([u, v, w], axis=1)
    xyz = uvw_to_xyz(uvw)
    theta = rng.normal(90.0, 20.0, n)
    phi = rng.uniform(-60.0, 60.0, n)
    npile = rng.poisson(0.4, n)
    total = int(npile.sum())
    pe = rng.uniform(0.001, 0.050, total)
    pt = rng.uniform(-200.0, 200.0, total)
    return {
        "run": np.full(n, 1, dtype=np.int32),
        "event": np.arange(start_event, start_event + n, dtype=np.int32),
        "energyTruth": energy,
        "timeTruth": rng.normal(0.0, 1.0, n),
        "uvwTruth": uvw,
        "xyzTruth": xyz,
        "xyzVTX": np.zeros((n, 3)),
        "emiAng": np.stack([theta, phi], axis=1),
        "energyVisible": energy * rng.normal(0.97, 0.01, n),
        "nPileup": npile.astype(np.int32),
        "pileupEnergy": ak.unflatten(pe, npile),
        "pileupTime": ak.unflatten(pt, npile),
        "nDead": rng.poisson(88, n).astype(np.int32),
    }


def _reconstruct(name: str, spec: SyntheticReco, truth: dict, rng: np.random.Generator) -> dict:
    from xecreco.geometry import uvw_to_xyz

    n = truth["energyTruth"].size
    uvw = truth["uvwTruth"]
    shallow = uvw[:, 2] < 2.0
    sig = np.where(shallow, spec.energy_sigma_shallow, spec.energy_sigma_deep)
    rel = sample_gauss_exp_tail(n, 0.0, 1.0, spec.energy_tail_k, rng) * sig
    in_time = np.abs(truth["pileupTime"]) < 50.0
    leak = ak.to_numpy(ak.sum(ak.where(in_time, truth["pileupEnergy"], 0.0), axis=1))
    energy = truth["energyTruth"] * (1.0 + rel) + spec.pileup_energy_leak * leak
    ruvw = uvw + rng.normal(0.0, 1.0, (n, 3)) * np.asarray(spec.position_sigma)
    rxyz = uvw_to_xyz(ruvw)
    theta = truth["emiAng"][:, 0] + rng.normal(0.0, spec.angle_sigma, n)
    phi = truth["emiAng"][:, 1] + rng.normal(0.0, spec.angle_sigma, n)
    phi = (phi + 180.0) % 360.0 - 180.0
    out = {
        "energy": energy,
        "u": ruvw[:, 0],
        "v": ruvw[:, 1],
        "w": ruvw[:, 2],
        "x": rxyz[:, 0],
        "y": rxyz[:, 1],
        "z": rxyz[:, 2],
        "time": truth["timeTruth"] + rng.normal(0.0, spec.time_sigma, n),
        "theta": theta,
        "phi": phi,
    }
    if spec.pileup_separation is not None:
        has = truth["nPileup"] > 0
        score = rng.normal(0.0, 1.0, n) + spec.pileup_separation * has
        out["pileup_prob"] = 1.0 / (1.0 + np.exp(-(score - 0.5 * spec.pileup_separation)))
    if spec.with_errors:
        out["energy_err"] = sig * truth["energyTruth"]
    status = np.zeros(n, dtype=np.int32)
    failed = rng.random(n) < spec.failure_fraction
    status[failed] = Status.FIT_FAILED
    arrays = {}
    for q, a in out.items():
        a = np.asarray(a, dtype=np.float32)
        a[failed] = FILL_VALUE
        arrays[reco_branch(name, q)] = a
    arrays[status_branch(name)] = status
    return arrays


def synthetic_predictions(n: int, recos: dict, seed: int = 0, start_event: int = 0) -> dict:
    """Branches of a prediction tree with ``n`` events and the given reconstructions
    (name -> :class:`SyntheticReco`); truth in file units (GeV, cm, ns, deg)."""
    rng = np.random.default_rng(seed)
    truth = _truth(n, rng, start_event)
    arrays = dict(truth)
    arrays["entry"] = np.arange(n, dtype=np.int64)
    for name, spec in recos.items():
        arrays.update(_reconstruct(name, spec, truth, rng))
    return arrays


def write_prediction_file(path, arrays: dict, tree: str = "reco") -> Path:
    """Write ``arrays`` as TTree ``tree`` with :class:`xecreco.io.writer.RootWriter` (atomic)."""
    from xecreco.io.writer import RootWriter

    path = Path(path)
    with RootWriter(path, tree=tree) as writer:
        writer.write(arrays)
    return path
