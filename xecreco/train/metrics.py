"""Validation metrics in physical units, used to pick the best checkpoint.

| metric | unit | definition |
|---|---|---|
| energy_sigma68_rel | 1 | half-width of the central 68.27% interval of (E_pred - E_true) / E_true |
| energy_bias_rel | 1 | median of (E_pred - E_true) / E_true |
| u_sigma68, v_sigma68, w_sigma68 | cm | same half-width of pred - true |
| time_sigma68 | ns | same, for the emission time |
| angle_68 | deg | 68% containment of the opening angle between predicted and true direction |
| npileup_sigma68 | photons | same half-width for the pile-up count |
| weighted | | sum of weights[m] * metric m (``checkpoint.metric_weights``) |
"""

from __future__ import annotations

import numpy as np

#: Every metric the regressor's validation can report (``checkpoint.best_metric`` choices).
REGRESSOR_METRICS = ("val_loss", "energy_sigma68_rel", "energy_bias_rel", "u_sigma68", "v_sigma68",
                     "w_sigma68", "time_sigma68", "npileup_sigma68", "angle_68", "weighted")

_LOW, _HIGH = 100 * (1 - 0.6827) / 2, 100 * (1 + 0.6827) / 2


def sigma68(residuals: np.ndarray) -> float:
    """Half of the central 68.27% interval of ``residuals`` (NaN for an empty array)."""
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.size == 0:
        return float("nan")
    low, high = np.percentile(residuals, [_LOW, _HIGH])
    return float(0.5 * (high - low))


def physics_metrics(pred: dict, true: dict, weights: dict | None = None) -> dict:
    """Metrics of the table above for the targets present in both ``pred`` and ``true``."""
    out: dict[str, float] = {}
    if "energy" in pred and "energy" in true:
        e_true = np.asarray(true["energy"], dtype=np.float64)
        ok = e_true > 0
        rel = (np.asarray(pred["energy"])[ok] - e_true[ok]) / e_true[ok]
        out["energy_sigma68_rel"] = sigma68(rel)
        out["energy_bias_rel"] = float(np.median(rel)) if rel.size else float("nan")
    for name in ("u", "v", "w", "time", "npileup"):
        if name in pred and name in true:
            out[f"{name}_sigma68"] = sigma68(np.asarray(pred[name]) - np.asarray(true[name]))
    if "direction" in pred and "direction" in true:
        p = np.asarray(pred["direction"], dtype=np.float64)
        t = np.asarray(true["direction"], dtype=np.float64)
        p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
        t = t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
        angle = np.degrees(np.arccos(np.clip((p * t).sum(-1), -1.0, 1.0)))
        out["angle_68"] = float(np.percentile(angle, 68.27)) if angle.size else float("nan")
    if weights:
        out["weighted"] = float(sum(w * out[m] for m, w in weights.items() if m in out))
    return out
