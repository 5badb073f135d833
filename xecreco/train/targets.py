"""Truth branches -> regression targets in physical units.

| target | unit | from |
|---|---|---|
| energy | GeV | ``energyTruth`` |
| time | ns | ``timeTruth`` minus the per-event time reference of the inputs |
| u, v, w | cm | ``uvwTruth[:, 0..2]`` |
| direction | unit vector (N, 3) | ``emiAng`` (theta, phi deg), ``angles_to_direction`` |
| npileup | count | ``nPileup`` |
"""

from __future__ import annotations

import numpy as np

from xecreco.errors import UserError

#: target -> the truth branches it needs (canonical names).
TRUTH_FOR_TARGET = {
    "energy": ("energyTruth",),
    "time": ("timeTruth",),
    "u": ("uvwTruth",),
    "v": ("uvwTruth",),
    "w": ("uvwTruth",),
    "direction": ("emiAng",),
    "npileup": ("nPileup",),
}


def truth_branches(targets) -> list[str]:
    """Truth branch names needed for ``targets`` (ordered, unique)."""
    names: list[str] = []
    for target in targets:
        for name in TRUTH_FOR_TARGET[target]:
            if name not in names:
                names.append(name)
    return names


def _truth(batch, name: str, names: dict) -> np.ndarray:
    key = names.get(name, name)
    if key not in batch.truth:
        raise UserError(
            f"training needs the truth branch '{key}' but the input has only "
            f"{', '.join(sorted(batch.truth)) or 'no truth branches'}; set data.branches or drop "
            "the target from task.targets"
        )
    return np.asarray(batch.truth[key])


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
            uvw = _truth(batch, "uvwTruth", names).astype(np.float64).reshape(len(batch), 3)
            out[target] = uvw[:, "uvw".index(target)]
        elif target == "direction":
            from xecreco.geometry import angles_to_direction

            ang = _truth(batch, "emiAng", names).astype(np.float64).reshape(len(batch), 2)
            out[target] = np.asarray(angles_to_direction(ang[:, 0], ang[:, 1]), dtype=np.float64)
        elif target == "npileup":
            out[target] = _truth(batch, "nPileup", names).astype(np.float64)
        else:
            raise ValueError(f"unknown target {target!r}")
    return out
