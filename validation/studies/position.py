"""Position study: u, v, w residuals (mm) of the first-interaction point.

Core Gaussian sigma and bias overall and by depth class (w < 2 cm, w >= 2 cm), their scans vs
u, v, w, and the 3-D distance between reconstructed and true point (68% containment radius and
smallest-interval sigma_eff). Needs ``uvwTruth`` and ``R_u``, ``R_v``, ``R_w``.
"""

from __future__ import annotations

import numpy as np

from xecreco.validation import plots
from xecreco.validation.estimators import gauss_core_fit, quantile, robust_widths, sigma_eff
from xecreco.validation.studies.base import (
    Context,
    StudyResult,
    Table,
    binned_resolution,
    depth_classes,
    edges_from,
    fmt,
    make_hist,
    missing_truth,
    overlay_range,
    pair,
    safe_name,
)

NAME = "position"
TITLE = "Position (u, v, w)"
REQUIRES = ("uvwTruth",)
N_BINS = 8
AXES = ("u", "v", "w")


def _xyz(data, series, ok):
    """(reco xyz, true xyz) in cm for the events ``ok``, converting from u, v, w if needed."""
    from xecreco.geometry import uvw_to_xyz

    if series.has("x", "y", "z"):
        reco = np.stack([series.values[q][ok] for q in ("x", "y", "z")], axis=1)
    else:
        reco = uvw_to_xyz(np.stack([series.values[q][ok] for q in AXES], axis=1))
    true = data.truth.get("xyzTruth")
    true = uvw_to_xyz(data.truth["uvwTruth"][ok]) if true is None else true[ok]
    return reco, true


def run(data, ctx: Context) -> StudyResult:
    res = StudyResult(NAME, TITLE)
    if missing_truth(res, data, REQUIRES):
        return res
    series = [s for s in data.series if s.has(*AXES)]
    if not series:
        res.skipped = "no reconstruction has position outputs (R_u, R_v, R_w)"
        return res
    uvw = np.asarray(data.truth["uvwTruth"], dtype=np.float64)
    classes = depth_classes(uvw[:, 2])
    masks = {s.name: s.ok(*AXES) for s in series}
    resid = {s.name: {q: 10.0 * (s.values[q][masks[s.name]] - uvw[masks[s.name], i])
                      for i, q in enumerate(AXES)} for s in series}

    rows = []
    fig, axes = plots.figure(1, 4)
    for i, q in enumerate(AXES):
        lo, hi = overlay_range([resid[s.name][q] for s in series], low=5.0, high=5.0)
        entries = []
        for s in series:
            r = resid[s.name][q]
            fit = gauss_core_fit(r)
            h = make_hist(r, lo, hi, f"{q}_reco - {q}_true (mm)")
            res.histograms[f"position/{safe_name(s.name)}/residual_{q}"] = h
            entries.append((s.name, h, fit))
            summ = res.summary.setdefault(s.name, {"efficiency": s.efficiency(),
                                                   "n_used": int(masks[s.name].sum())})
            by_class = {}
            for cname, cmask in classes.items():
                rc = r if cname == "all" else r[cmask[masks[s.name]]]
                fc = fit if cname == "all" else gauss_core_fit(rc)
                rob = robust_widths(rc, replicas=ctx.bootstrap_replicas)
                by_class[cname] = {
                    "status": fc.status,
                    "sigma_mm": pair(*fc.get("sigma")),
                    "bias_mm": pair(*fc.get("mu")),
                    "sigma68_mm": pair(rob["sigma68"].value, rob["sigma68"].error),
                    "n": int(rc.size),
                }
                rows.append([s.name, q, cname, str(rc.size), fmt(*fc.get("sigma")),
                             fmt(*fc.get("mu")), fmt(rob["sigma68"].value, rob["sigma68"].error),
                             fc.status])
            summ[q] = by_class
        plots.residual_overlay(axes[0, i], entries, f"{q}$_{{reco}}$ − {q}$_{{true}}$ (mm)")
    res.tables.append(Table(
        "Position residuals (mm): Gaussian core fit and σ68, by depth class",
        ["reconstruction", "coordinate", "depth", "events", "σ core (mm)", "bias (mm)",
         "σ68 (mm)", "fit"],
        rows,
    ))

    # 3-D distance
    dist_rows, dist_entries = [], []
    dists = {}
    for s in series:
        ok = masks[s.name]
        reco, true = _xyz(data, s, ok)
        dists[s.name] = 10.0 * np.linalg.norm(reco - true, axis=1)
    hi = max([np.percentile(d, 98) for d in dists.values() if d.size] or [1.0])
    for s in series:
        d = dists[s.name]
        r68 = quantile(d, 0.6827, replicas=ctx.bootstrap_replicas)
        seff = sigma_eff(d, replicas=ctx.bootstrap_replicas)
        res.summary[s.name]["distance3d"] = {"r68_mm": pair(r68.value, r68.error),
                                             "sigma_eff_mm": pair(seff.value, seff.error),
                                             "n": int(d.size)}
        dist_rows.append([s.name, str(d.size), fmt(r68.value, r68.error),
                          fmt(seff.value, seff.error)])
        h = make_hist(d, 0.0, hi if hi > 0 else 1.0, "3-D distance (mm)")
        res.histograms[f"position/{safe_name(s.name)}/distance3d"] = h
        dist_entries.append((f"{s.name}: R68 = {fmt(r68.value, r68.error)} mm", h, None))
    plots.residual_overlay(axes[0, 3], dist_entries, "|x$_{reco}$ − x$_{true}$| (mm)")
    res.figures.append(plots.save(fig, ctx, "position_residuals"))
    res.tables.append(Table(
        "3-D distance between reconstructed and true first interaction",
        ["reconstruction", "events", "68% containment (mm)", "σ_eff (mm)"],
        dist_rows,
    ))

    # scans vs u, v, w
    fig_s, axes_s = plots.figure(3, 3)
    fig_b, axes_b = plots.figure(3, 3)
    for j, axis in enumerate(AXES):
        coord = uvw[:, j]
        edges = edges_from(coord, N_BINS)
        for i, q in enumerate(AXES):
            scan = []
            for s in series:
                ok = masks[s.name]
                bins = binned_resolution(coord[ok], resid[s.name][q], edges,
                                         replicas=ctx.bootstrap_replicas)
                scan.append((s.name, bins))
                res.summary[s.name][q][f"vs_{axis}_cm"] = bins
            plots.binned_graph(axes_s[i, j], scan, f"{axis}$_{{true}}$ (cm)", f"σ$_{q}$ core (mm)")
            plots.binned_graph(axes_b[i, j], scan, f"{axis}$_{{true}}$ (cm)", f"{q} bias (mm)",
                               key="bias")
            axes_b[i, j].axhline(0.0, color="grey", lw=0.8)
    res.figures.append(plots.save(fig_s, ctx, "position_resolution_vs_uvw"))
    res.figures.append(plots.save(fig_b, ctx, "position_bias_vs_uvw"))
    return res
