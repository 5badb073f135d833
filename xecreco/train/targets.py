"""Truth branches -> regression targets in physical units.

| target | unit | from |
|---|---|---|
| energy | GeV | ``energyTruth`` |
| time | ns | ``timeTruth`` minus the per-event time reference of the inputs |
| u, v, w | cm | ``uvwTruth[:, 0..2]`` |
| direction | unit vector (N, 3) | ``emiAng`` (theta, phi deg), ``angles_to_direction`` |
| npileup | count | ``nPileup`` |
| pileup | 0 or 1 | ``pileupEnergy``, ``pileupGateFraction`` (see below) |
| pileup_energy | GeV | the same: the summed in-gate pile-up energy (see below) |

Standardised targets (energy, time, u, v, w, npileup, pileup_energy) need a spread in the
training sample: :func:`fit_target_scaling` refuses, in one line naming the target, a target
whose standard deviation is below ``1e-6`` of its mean (:func:`xecreco.normalization.has_spread`),
e.g. the energy of a mono-energetic sample. Train on a spectrum (``xecreco simulate --energy 15:60``) or
drop the target from ``task.targets``.

The binary ``pileup`` target (trained with a BCE loss on the network's logit, not standardised)
is 1 when the pile-up light inside the readout gate is significant: the in-gate energy
equivalent of the pile-up photons, sum over photons of ``pileupEnergy`` x f(t0) / f(0)
(``pileupGateFraction`` is f(t0), f(0) that of the default gate, docs/simulation.md), reaches
:data:`PILEUP_LABEL_MEV` = 5 MeV, the threshold of the positives in the pile-up study of
``xecreco validate``. Events with less in-gate pile-up light (including none) are 0. The
``pileup_energy`` target is that summed in-gate energy itself (GeV, 0 without pile-up): a model
with its head subtracts its estimate from the energy's light reference
(:class:`xecreco.models.regressor.network.Regressor`).
"""

from __future__ import annotations

import numpy as np

from xecreco.errors import UserError
from xecreco.normalization import TargetScaling, has_spread

#: In-gate pile-up energy (MeV) from which an event is labelled pile-up (target ``pileup``).
PILEUP_LABEL_MEV = 5.0

#: How to get a spread into each target, for the no-spread error.
_SPREAD_HINT = {
    "energy": "simulate a flat spectrum, e.g. `xecreco simulate --energy 15:60`",
    "npileup": "simulate with pile-up (`xecreco simulate --pileup-rate 2e6`)",
    "pileup": "simulate with pile-up (`xecreco simulate --pileup-rate 2e6`)",
    "pileup_energy": "simulate with pile-up (`xecreco simulate --pileup-rate 2e6`)",
}

#: target -> the truth branches it needs (canonical names).
TRUTH_FOR_TARGET = {
    "energy": ("energyTruth",),
    "time": ("timeTruth",),
    "u": ("uvwTruth",),
    "v": ("uvwTruth",),
    "w": ("uvwTruth",),
    "direction": ("emiAng",),
    "npileup": ("nPileup",),
    "pileup": ("pileupEnergy", "pileupGateFraction"),
    "pileup_energy": ("pileupEnergy", "pileupGateFraction"),
}


def truth_branches(targets) -> list[str]:
    """Truth branch names needed for ``targets`` (ordered, unique)."""
    names: list[str] = []
    for target in targets:
        for name in TRUTH_FOR_TARGET[target]:
            if name not in names:
                names.append(name)
    return names


def in_gate_pileup_mev(energy_gev, gate_fraction=None):
    """Per pile-up photon (jagged awkward array, MeV): the energy equivalent of its light inside
    the readout gate, ``energy_gev`` x 1000 x ``gate_fraction`` / f(0) (f(0): the in-time
    fraction of the default gate); the whole energy when ``gate_fraction`` is None."""
    import awkward as ak

    mev = ak.Array(energy_gev) * 1000.0
    if gate_fraction is None:
        return mev
    from xecreco.sim.config import SimConfig
    from xecreco.sim.gate import in_time_fraction

    return mev * ak.Array(gate_fraction) / in_time_fraction(SimConfig())


def per_event_total(jagged) -> np.ndarray:
    """(N,) float64: the sum of each event's entries of a jagged array (0 for none)."""
    import awkward as ak

    return np.asarray(ak.to_numpy(ak.fill_none(ak.sum(jagged, axis=1), 0.0)), dtype=np.float64)


def in_gate_pileup_total_mev(energy_gev, gate_fraction) -> np.ndarray:
    """(N,) float64 MeV: the summed in-gate energy equivalent of each event's pile-up photons
    (0 without any)."""
    return per_event_total(in_gate_pileup_mev(energy_gev, gate_fraction))


def pileup_label(energy_gev, gate_fraction, threshold_mev: float = PILEUP_LABEL_MEV):
    """(N,) float64: 1 where the summed in-gate pile-up energy reaches ``threshold_mev``."""
    total = in_gate_pileup_total_mev(energy_gev, gate_fraction)
    return (total >= threshold_mev).astype(np.float64)


def _truth(batch, name: str, names: dict) -> np.ndarray:
    return np.asarray(_truth_raw(batch, name, names))


def _truth_raw(batch, name: str, names: dict):
    """The truth branch ``name`` as the reader gave it (awkward for jagged branches)."""
    key = names.get(name, name)
    if key not in batch.truth:
        raise UserError(
            f"training needs the truth branch '{key}' but the input has only "
            f"{', '.join(sorted(batch.truth)) or 'no truth branches'}; set data.branches or drop "
            "the target from task.targets"
        )
    return batch.truth[key]


def _columns(values, width: int, branch: str, n: int) -> np.ndarray:
    """(n, width) float64 of a vector truth branch; UserError naming it when it is not."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        array = np.zeros((0,))
    if array.shape != (n, width):
        raise UserError(f"truth branch '{branch}' must hold {width} values per entry; map the "
                        "right branch with data.branches or drop the target from task.targets")
    return array


def compute_targets(batch, targets, time_reference_ns: np.ndarray | None = None,
                    names: dict | None = None) -> dict[str, np.ndarray]:
    """Physical targets of a batch: {target: (N,) float64, "direction": (N, 3) float64}.

    ``time_reference_ns`` (N,) is the per-event reference subtracted from ``timeTruth`` (needed
    for the ``time`` target). ``names`` maps canonical truth names to the batch's truth keys.
    """
    names = names or {}
    out: dict[str, np.ndarray] = {}
    for target in targets:
        if target == "energy":
            out[target] = _truth(batch, "energyTruth", names).astype(np.float64)
        elif target == "time":
            if time_reference_ns is None:
                raise ValueError("the time target needs the per-event time reference")
            out[target] = _truth(batch, "timeTruth", names).astype(np.float64) - time_reference_ns
        elif target in ("u", "v", "w"):
            uvw = _columns(_truth(batch, "uvwTruth", names), 3, names.get("uvwTruth", "uvwTruth"),
                           len(batch))
            out[target] = uvw[:, "uvw".index(target)]
        elif target == "direction":
            from xecreco.geometry import angles_to_direction

            ang = _columns(_truth(batch, "emiAng", names), 2, names.get("emiAng", "emiAng"),
                           len(batch))
            out[target] = np.asarray(angles_to_direction(ang[:, 0], ang[:, 1]), dtype=np.float64)
        elif target == "npileup":
            out[target] = _truth(batch, "nPileup", names).astype(np.float64)
        elif target == "pileup":
            out[target] = pileup_label(_truth_raw(batch, "pileupEnergy", names),
                                       _truth_raw(batch, "pileupGateFraction", names))
        elif target == "pileup_energy":
            out[target] = 1e-3 * in_gate_pileup_total_mev(
                _truth_raw(batch, "pileupEnergy", names),
                _truth_raw(batch, "pileupGateFraction", names))
        else:
            raise ValueError(f"unknown target {target!r}")
    return out


def fit_target_scaling(values: dict, source: str = "the training sample") -> TargetScaling:
    """:meth:`TargetScaling.fit` of the physical targets ``values`` ({name: (N,) array}), after
    checking that each has a spread (see the module docstring).

    UserError (one line) naming the first target without spread, its value and the way out.
    """
    for name, array in values.items():
        array = np.asarray(array, dtype=np.float64)
        array = array[np.isfinite(array)] if array.ndim == 1 else array
        if array.ndim != 1 or len(array) == 0:
            continue  # vector targets are not standardised; no finite values: fit() says so
        mean, std = array.mean(), array.std()
        if not has_spread(mean, std):
            hint = _SPREAD_HINT.get(name, "train on events where it varies")
            raise UserError(
                f"target '{name}' has no spread in {source} (all {len(array)} events have "
                f"{mean:.6g}, std {std:.3g}): it cannot be standardised or learned; {hint}, or "
                f"drop '{name}' from task.targets")
    return TargetScaling.fit(values)
