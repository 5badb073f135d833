"""Energy study: relative residual (E_reco - E_true) / E_true in percent.

Headline (MEG convention): upper-side sigma and FWHM of a Gaussian with a low-side exponential
tail, for all events and by depth class (w < 2 cm, w >= 2 cm), plus sigma68; resolution and bias
vs true energy (MeV) with the calorimeter fit sigma/E = a/sqrt(E) (+) b (+) c/E (one bin per
line on an energy-scan sample, see :mod:`~xecreco.validation.studies.scan`, else equal-width
bins), vs u, v, w and vs emission angle. Needs ``energyTruth``; the depth split and the u, v, w
scans need ``uvwTruth``, the angle scans ``emiAng``.
"""

from __future__ import annotations

import numpy as np

from xecreco.validation import plots
from xecreco.validation.estimators import calorimeter_fit, gauss_exp_tail_fit, robust_widths
from xecreco.validation.studies.base import (
    Context,
    StudyResult,
    Table,
    binned_resolution,
    depth_classes,
    edges_from,
    fit_summary,
    fmt,
    make_hist,
    missing_truth,
    overlay_range,
    pair,
    pull_summary,
    resolution_scans,
    safe_name,
)
from xecreco.validation.studies.scan import line_edges, scan_lines

NAME = "energy"
TITLE = "Energy"
REQUIRES = ("energyTruth",)
N_ENERGY_BINS = 9
N_POSITION_BINS = 8


def run(data, ctx: Context) -> StudyResult:
    res = StudyResult(NAME, TITLE)
    if missing_truth(res, data, REQUIRES):
        return res
    series = [s for s in data.series if s.has("energy")]
    if not series:
        res.skipped = "no reconstruction has an energy output (R_energy)"
        return res
    e_true = np.asarray(data.truth["energyTruth"], dtype=np.float64) * 1000.0  # MeV
    uvw = data.truth.get("uvwTruth")
    if uvw is None:
        res.notes.append("uvwTruth absent: no depth classes and no u, v, w scans")
    clean = np.ones(len(data), bool)
    if "nPileup" in data.truth:
        clean = np.asarray(data.truth["nPileup"]) == 0
        if not clean.all():
            res.notes.append(
                f"energy resolutions use the {int(clean.sum())} events without simulated pile-up "
                f"(nPileup == 0, {clean.mean():.0%}); events with pile-up are in the pile-up study")
    residuals, masks = {}, {}
    for s in series:
        ok = s.ok("energy") & (e_true > 0) & clean
        masks[s.name] = ok
        residuals[s.name] = 100.0 * (s.values["energy"][ok] * 1000.0 - e_true[ok]) / e_true[ok]
    lo, hi = overlay_range(residuals.values(), low=7.0, high=4.0)
    classes = depth_classes(uvw[:, 2]) if uvw is not None else {"all": np.ones(len(data), bool)}

    headline_rows, pull_rows = [], []
    overlay = {c: [] for c in classes}
    for s in series:
        ok = masks[s.name]
        summ = {"efficiency": s.efficiency(), "n_events": int(len(data)), "n_used": int(ok.sum())}
        by_class = {}
        for cname, cmask in classes.items():
            sel = ok & cmask
            r = 100.0 * (s.values["energy"][sel] * 1000.0 - e_true[sel]) / e_true[sel]
            fit = gauss_exp_tail_fit(r)
            rob = robust_widths(r, replicas=ctx.bootstrap_replicas)
            entry = fit_summary(fit, {"sigma": "sigma_upper_percent", "fwhm": "fwhm_percent",
                                      "mu": "peak_percent", "k": "tail_k_sigma"})
            entry["sigma68_percent"] = pair(rob["sigma68"].value, rob["sigma68"].error)
            entry["sigma_eff_percent"] = pair(rob["sigma_eff"].value, rob["sigma_eff"].error)
            entry["median_percent"] = pair(rob["median"].value, rob["median"].error)
            entry["n"] = int(r.size)
            by_class[cname] = entry
            h = make_hist(r, lo, hi, "(E_reco - E_true) / E_true (%)")
            res.histograms[f"energy/{safe_name(s.name)}/residual_{safe_name(cname)}"] = h
            overlay[cname].append((s.name, h, fit))
            headline_rows.append([
                s.name, cname, str(r.size),
                fmt(*fit.get("sigma")), fmt(*fit.get("fwhm")), fmt(*fit.get("mu")),
                fmt(rob["sigma68"].value, rob["sigma68"].error), fit.status,
            ])
        summ["by_depth"] = by_class
        pull = pull_summary(s, "energy", s.values["energy"][ok] - e_true[ok] / 1000.0, ok,
                            replicas=ctx.bootstrap_replicas)
        if pull is not None:
            summ["pull"] = pull
            pull_rows.append([s.name, str(pull["n"]), fmt(pull["sigma68"]["value"],
                                                          pull["sigma68"]["error"]),
                              fmt(pull["median"]["value"], pull["median"]["error"])])
        res.summary[s.name] = summ
    res.tables.append(Table(
        "Relative energy residual (%): Gaussian + low-side exponential tail fit",
        ["reconstruction", "depth", "events", "upper σ (%)", "FWHM (%)", "peak (%)", "σ68 (%)",
         "fit"],
        headline_rows,
    ))
    if pull_rows:
        res.tables.append(Table(
            "Predicted energy uncertainty: pull (E_reco − E_true) / energy_err (ideal σ68 = 1)",
            ["reconstruction", "events", "σ68 of pull", "median pull"], pull_rows))
    fig, axes = plots.figure(1, len(classes))
    for ax, (cname, entries) in zip(axes[0], overlay.items()):
        plots.residual_overlay(ax, entries, "(E$_{reco}$ − E$_{true}$) / E$_{true}$ (%)",
                               title=f"depth: {cname}")
    res.figures.append(plots.save(fig, ctx, "energy_residual"))

    # resolution and bias vs true energy, calorimeter fit: one bin per line on a scan sample
    lines = scan_lines(e_true[clean])
    edges = edges_from(e_true, N_ENERGY_BINS) if lines is None else line_edges(lines)
    vs_e, cal_rows, cal_fits = [], [], []
    for s in series:
        ok = masks[s.name]
        r = residuals[s.name]
        bins = binned_resolution(e_true[ok], r, edges, replicas=ctx.bootstrap_replicas)
        if lines is not None:  # a line's point sits at its energy, not at its bin's centre
            for b, line in zip(bins, lines):
                b["center"] = float(line)
        vs_e.append((s.name, bins))
        centers = np.array([b["center"] for b in bins]) / 1000.0  # GeV
        sig = [None if b["sigma"]["value"] is None else b["sigma"]["value"] / 100.0 for b in bins]
        err = [None if b["sigma"]["error"] is None else b["sigma"]["error"] / 100.0 for b in bins]
        cal = calorimeter_fit(centers, sig, err)
        res.summary[s.name]["vs_energy_MeV"] = bins
        res.summary[s.name]["calorimeter_fit"] = {
            **fit_summary(cal, {"a": "a_sqrtGeV", "b": "b", "c": "c_GeV"}),
            "formula": "sigma_E/E = a/sqrt(E) (+) b (+) c/E, E in GeV",
        }
        cal_rows.append([s.name, fmt(*cal.get("a")), fmt(*cal.get("b")), fmt(*cal.get("c")),
                         "—" if cal.chi2 is None else f"{cal.chi2:.1f}/{cal.ndof}",
                         cal.status + (f" ({cal.message})" if cal.message else "")])
        cal_fits.append(cal)
    res.tables.append(Table(
        "Calorimeter fit σ/E = a/√E ⊕ b ⊕ c/E (E in GeV)",
        ["reconstruction", "a (√GeV)", "b", "c (GeV)", "χ²/ndof", "fit"],
        cal_rows,
    ))
    fig, axes = plots.figure(1, 2)
    plots.binned_graph(axes[0, 0], vs_e, "E$_{true}$ (MeV)", "σ$_E$/E, core (%)")
    for i, cal in enumerate(cal_fits):
        if cal.ok:
            xs, ys, _ = cal.curve
            axes[0, 0].plot(xs * 1000.0, ys * 100.0, color=f"C{i % 10}", ls="--", lw=1)
    plots.binned_graph(axes[0, 1], vs_e, "E$_{true}$ (MeV)",
                       "bias (E$_{reco}$/E$_{true}$ − 1) (%)", key="bias")
    axes[0, 1].axhline(0.0, color="grey", lw=0.8)
    res.figures.append(plots.save(fig, ctx, "energy_vs_energy"))

    scans = []
    if uvw is not None:
        scans += [(f"{q}_cm", uvw[:, j], f"{q}$_{{true}}$ (cm)")
                  for j, q in enumerate(("u", "v", "w"))]
    if "emiAng" in data.truth:
        ang = np.asarray(data.truth["emiAng"], dtype=np.float64)
        scans += [("theta_deg", ang[:, 0], "θ$_{true}$ (deg)"),
                  ("phi_deg", ang[:, 1], "φ$_{true}$ (deg)")]
    else:
        res.notes.append("emiAng absent: no scans vs emission angle")
    if scans:
        resolution_scans(res, ctx, series, masks, residuals, scans, N_POSITION_BINS,
                         "σ$_E$/E, core (%)", "bias (%)", "energy_vs_position_angle")
    return res
