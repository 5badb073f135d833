"""Timing study: residual of the photon emission time at the vertex, R_time - timeTruth (ps).

Core Gaussian sigma and bias overall and vs true energy, depth w and the collected light (from a
light-sum branch such as ``nphoSum`` or ``energyVisible``; the axis is skipped when none is in the
file). Needs ``timeTruth`` and ``R_time``.
"""

from __future__ import annotations

import numpy as np

from xecreco.validation import plots
from xecreco.validation.estimators import gauss_core_fit, robust_widths
from xecreco.validation.studies.base import (
    Context,
    StudyResult,
    Table,
    fmt,
    make_hist,
    missing_truth,
    overlay_range,
    pair,
    pull_summary,
    resolution_scans,
    safe_name,
)

NAME = "timing"
TITLE = "Timing"
REQUIRES = ("timeTruth",)
N_BINS = 8
PS_PER_NS = 1000.0


def run(data, ctx: Context) -> StudyResult:
    res = StudyResult(NAME, TITLE)
    if missing_truth(res, data, REQUIRES):
        return res
    series = [s for s in data.series if s.has("time")]
    if not series:
        res.skipped = "no reconstruction has a time output (R_time)"
        return res
    t_true = np.asarray(data.truth["timeTruth"], dtype=np.float64)
    masks = {s.name: s.ok("time") for s in series}
    resid = {s.name: PS_PER_NS * (s.values["time"][masks[s.name]] - t_true[masks[s.name]])
             for s in series}
    lo, hi = overlay_range(resid.values())
    entries, rows = [], []
    for s in series:
        r = resid[s.name]
        fit = gauss_core_fit(r)
        rob = robust_widths(r, replicas=ctx.bootstrap_replicas)
        h = make_hist(r, lo, hi, "t_reco - t_true (ps)")
        res.histograms[f"timing/{safe_name(s.name)}/residual"] = h
        entries.append((s.name, h, fit))
        res.summary[s.name] = {
            "efficiency": s.efficiency(), "n_used": int(r.size), "status": fit.status,
            "sigma_ps": pair(*fit.get("sigma")), "bias_ps": pair(*fit.get("mu")),
            "sigma68_ps": pair(rob["sigma68"].value, rob["sigma68"].error),
        }
        rows.append([s.name, str(r.size), fmt(*fit.get("sigma")), fmt(*fit.get("mu")),
                     fmt(rob["sigma68"].value, rob["sigma68"].error), fit.status])
        pull = pull_summary(s, "time", r / PS_PER_NS, masks[s.name],
                            replicas=ctx.bootstrap_replicas)
        if pull is not None:
            res.summary[s.name]["pull"] = pull
            res.notes.append(f"{s.name}: pull (t_reco − t_true) / time_err has σ68 = "
                             f"{fmt(pull['sigma68']['value'], pull['sigma68']['error'])} "
                             "(ideal 1)")
    res.tables.append(Table("Time residual (ps): Gaussian core fit and σ68",
                            ["reconstruction", "events", "σ core (ps)", "bias (ps)", "σ68 (ps)",
                             "fit"], rows))

    scans = []
    if "energyTruth" in data.truth:
        scans.append(("energy_MeV", np.asarray(data.truth["energyTruth"]) * 1000.0,
                      "E$_{true}$ (MeV)"))
    else:
        res.notes.append("energyTruth absent: no scan vs energy")
    if "uvwTruth" in data.truth:
        scans.append(("w_cm", np.asarray(data.truth["uvwTruth"])[:, 2], "w$_{true}$ (cm)"))
    else:
        res.notes.append("uvwTruth absent: no scan vs depth")
    light = data.light()
    if light is not None:
        branch, values, label = light
        scans.append((f"light_{branch}", values, label))
        res.notes.append(f"collected light taken from the branch '{branch}'")
    else:
        res.notes.append("no collected-light branch (nphoSum, nsum2, nsum, npho_sum, "
                         "energyVisible): scan vs light skipped")
    fig, axes = plots.figure(1, 1)
    plots.residual_overlay(axes[0, 0], entries, "t$_{reco}$ − t$_{true}$ (ps)")
    res.figures.append(plots.save(fig, ctx, "timing_residual"))
    if not scans:
        return res
    resolution_scans(res, ctx, series, masks, resid, scans, N_BINS, "σ$_t$ core (ps)",
                     "t bias (ps)", "timing_vs")
    return res
