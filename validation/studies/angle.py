"""Angle study: emission-angle residuals and opening-angle containment.

theta and phi residuals (mrad; phi wrapped into [-180, 180) deg before conversion) with Gaussian
core fits; the opening angle between reconstructed and true direction, its 68% containment
overall and vs true theta, phi and energy. Needs ``emiAng`` (theta, phi in deg, phi =
atan2(y, -x)) and ``R_theta``, ``R_phi``.
"""

from __future__ import annotations

import numpy as np

from xecreco.validation import plots
from xecreco.validation.estimators import gauss_core_fit, quantile, robust_widths
from xecreco.validation.studies.base import (
    Context,
    StudyResult,
    Table,
    binned_quantile,
    edges_from,
    fmt,
    make_hist,
    missing_truth,
    overlay_range,
    pair,
    safe_name,
    wrap_degrees,
)

NAME = "angle"
TITLE = "Emission angle"
REQUIRES = ("emiAng",)
N_BINS = 8
MRAD_PER_DEG = 1000.0 * np.pi / 180.0


def opening_angle_mrad(theta1, phi1, theta2, phi2) -> np.ndarray:
    """Angle (mrad) between the directions (theta1, phi1) and (theta2, phi2), all in deg."""
    from xecreco.geometry import angles_to_direction

    a = angles_to_direction(np.asarray(theta1), np.asarray(phi1))
    b = angles_to_direction(np.asarray(theta2), np.asarray(phi2))
    cos = np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)
    # arctan2 of |a x b| and a.b stays accurate for small angles, unlike arccos
    sin = np.linalg.norm(np.cross(a, b), axis=-1)
    return 1000.0 * np.arctan2(sin, cos)


def run(data, ctx: Context) -> StudyResult:
    res = StudyResult(NAME, TITLE)
    if missing_truth(res, data, REQUIRES):
        return res
    series = [s for s in data.series if s.has("theta", "phi")]
    if not series:
        res.skipped = "no reconstruction has angle outputs (R_theta, R_phi)"
        return res
    ang = np.asarray(data.truth["emiAng"], dtype=np.float64)
    masks = {s.name: s.ok("theta", "phi") for s in series}
    resid = {}
    opening = {}
    for s in series:
        ok = masks[s.name]
        resid[s.name] = {
            "theta": MRAD_PER_DEG * (s.values["theta"][ok] - ang[ok, 0]),
            "phi": MRAD_PER_DEG * wrap_degrees(s.values["phi"][ok] - ang[ok, 1]),
        }
        opening[s.name] = opening_angle_mrad(s.values["theta"][ok], s.values["phi"][ok],
                                             ang[ok, 0], ang[ok, 1])
    fig, axes = plots.figure(1, 3)
    rows = []
    for i, q in enumerate(("theta", "phi")):
        lo, hi = overlay_range([resid[s.name][q] for s in series])
        entries = []
        for s in series:
            r = resid[s.name][q]
            fit = gauss_core_fit(r)
            rob = robust_widths(r, replicas=ctx.bootstrap_replicas)
            h = make_hist(r, lo, hi, f"{q} residual (mrad)")
            res.histograms[f"angle/{safe_name(s.name)}/residual_{q}"] = h
            entries.append((s.name, h, fit))
            summ = res.summary.setdefault(s.name, {"efficiency": s.efficiency(),
                                                   "n_used": int(masks[s.name].sum())})
            summ[q] = {"status": fit.status, "sigma_mrad": pair(*fit.get("sigma")),
                       "bias_mrad": pair(*fit.get("mu")),
                       "sigma68_mrad": pair(rob["sigma68"].value, rob["sigma68"].error),
                       "n": int(r.size)}
            rows.append([s.name, q, str(r.size), fmt(*fit.get("sigma")), fmt(*fit.get("mu")),
                         fmt(rob["sigma68"].value, rob["sigma68"].error), fit.status])
        symbol = "θ" if q == "theta" else "φ"
        plots.residual_overlay(axes[0, i], entries,
                               f"{symbol}$_{{reco}}$ − {symbol}$_{{true}}$ (mrad)")
    hi = max([np.percentile(o, 98) for o in opening.values() if o.size] or [1.0])
    entries, open_rows = [], []
    for s in series:
        o = opening[s.name]
        c68 = quantile(o, 0.68, replicas=ctx.bootstrap_replicas)
        res.summary[s.name]["opening_angle"] = {"containment68_mrad": pair(c68.value, c68.error),
                                                "n": int(o.size)}
        open_rows.append([s.name, str(o.size), fmt(c68.value, c68.error)])
        h = make_hist(o, 0.0, hi if hi > 0 else 1.0, "opening angle (mrad)")
        res.histograms[f"angle/{safe_name(s.name)}/opening_angle"] = h
        entries.append((f"{s.name}: 68% within {fmt(c68.value, c68.error)} mrad", h, None))
    plots.residual_overlay(axes[0, 2], entries, "opening angle (mrad)")
    res.figures.append(plots.save(fig, ctx, "angle_residuals"))
    res.tables.append(Table("Angle residuals (mrad): Gaussian core fit and σ68",
                            ["reconstruction", "angle", "events", "σ core (mrad)", "bias (mrad)",
                             "σ68 (mrad)", "fit"], rows))
    res.tables.append(Table("Opening angle between reconstructed and true direction",
                            ["reconstruction", "events", "68% containment (mrad)"], open_rows))

    axes_def = [("theta", ang[:, 0], "θ$_{true}$ (deg)"), ("phi", ang[:, 1], "φ$_{true}$ (deg)")]
    if "energyTruth" in data.truth:
        e_true = np.asarray(data.truth["energyTruth"]) * 1000.0
        axes_def.append(("energy", e_true, "E$_{true}$ (MeV)"))
    else:
        res.notes.append("energyTruth absent: no containment scan vs energy")
    fig, axes = plots.figure(1, len(axes_def))
    for j, (key, coord, label) in enumerate(axes_def):
        edges = edges_from(coord, N_BINS)
        scan = []
        for s in series:
            ok = masks[s.name]
            bins = binned_quantile(coord[ok], opening[s.name], edges, 0.68,
                                   replicas=ctx.bootstrap_replicas)
            scan.append((s.name, bins))
            res.summary[s.name]["opening_angle"][f"vs_{key}"] = bins
        plots.binned_graph(axes[0, j], scan, label, "opening angle, 68% containment (mrad)",
                           key="value")
    res.figures.append(plots.save(fig, ctx, "angle_containment"))
    return res
