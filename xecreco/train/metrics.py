"""Validation metrics in physical units, used to pick the best checkpoint.

| metric | unit | definition |
|---|---|---|
| energy_sigma68_rel | 1 | half-width of the central 68.27% interval of (E_pred - E_true) / E_true |
| energy_bias_rel | 1 | median of (E_pred - E_true) / E_true |
| u_sigma68, v_sigma68, w_sigma68 | cm | same half-width of pred - true |
| time_sigma68 | ns | same, for the emission time |
| angle_68 | deg | 68% containment of the opening angle between predicted and true direction |
| npileup_sigma68 | photons | same half-width for the pile-up count |
| pileup_energy_sigma68 | GeV | same half-width for the summed in-gate pile-up energy |
| pileup_bce | | mean binary cross-entropy of the pile-up logit against the 0/1 label |
| pileup_auc | 1 | ROC area of the pile-up logit, label 1 against label 0 (ties count half) |
| weighted | | sum of weights[m] * metric m (``checkpoint.metric_weights``) |
"""

from __future__ import annotations

import numpy as np

#: Every metric the regressor's validation can report (``checkpoint.best_metric`` choices).
REGRESSOR_METRICS = ("val_loss", "energy_sigma68_rel", "energy_bias_rel", "u_sigma68", "v_sigma68",
                     "w_sigma68", "time_sigma68", "npileup_sigma68", "pileup_energy_sigma68",
                     "pileup_bce", "angle_68",
                     "weighted")

_LOW, _HIGH = 100 * (1 - 0.6827) / 2, 100 * (1 + 0.6827) / 2


def sigma68(residuals: np.ndarray) -> float:
    """Half of the central 68.27% interval of ``residuals`` (NaN for an empty array)."""
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.size == 0:
        return float("nan")
    low, high = np.percentile(residuals, [_LOW, _HIGH])
    return float(0.5 * (high - low))


def rank_auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC area of ``score`` for ``label`` True against False (Mann-Whitney U / n+ n-, tied
    scores count half); NaN without both classes."""
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label, dtype=bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(score.size, dtype=np.float64)
    sorted_scores = score[order]
    # average rank (1-based) of each group of equal scores
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]
    ends = np.r_[starts[1:], score.size]
    ranks[order] = np.repeat(0.5 * (starts + ends + 1), ends - starts)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _bce_logits(logit: np.ndarray, label: np.ndarray) -> float:
    logit = np.asarray(logit, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    if logit.size == 0:
        return float("nan")
    # log(1 + exp(-|x|)) + max(x, 0) - x y: stable for any logit
    loss = np.logaddexp(0.0, -np.abs(logit)) + np.maximum(logit, 0.0) - logit * label
    return float(np.mean(loss))


def physics_metrics(pred: dict, true: dict, weights: dict | None = None) -> dict:
    """Metrics of the table above for the targets present in both ``pred`` and ``true``."""
    out: dict[str, float] = {}
    if "energy" in pred and "energy" in true:
        e_true = np.asarray(true["energy"], dtype=np.float64)
        ok = e_true > 0
        rel = (np.asarray(pred["energy"])[ok] - e_true[ok]) / e_true[ok]
        out["energy_sigma68_rel"] = sigma68(rel)
        out["energy_bias_rel"] = float(np.median(rel)) if rel.size else float("nan")
    for name in ("u", "v", "w", "time", "npileup", "pileup_energy"):
        if name in pred and name in true:
            out[f"{name}_sigma68"] = sigma68(np.asarray(pred[name]) - np.asarray(true[name]))
    if "pileup" in pred and "pileup" in true:
        out["pileup_bce"] = _bce_logits(pred["pileup"], true["pileup"])
        out["pileup_auc"] = rank_auc(pred["pileup"], np.asarray(true["pileup"]) > 0.5)
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
