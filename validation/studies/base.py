"""What every study shares: its result record, the run context, and binned resolution scans.

A study is a module in :mod:`xecreco.validation.studies` with ``NAME``, ``TITLE`` and
``run(dataset, context) -> StudyResult``. It never crashes on an empty bin or a failed fit:
those appear as ``"empty"`` / ``"failed"`` entries (``null`` values in summary.json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xecreco.io.schema import FILL_THRESHOLD
from xecreco.validation import plots
from xecreco.validation.estimators import Estimate, FitResult, clean, gauss_core_fit, robust_widths

__all__ = [
    "StudyResult",
    "Table",
    "Context",
    "binned_resolution",
    "pair",
    "safe_name",
    "fmt",
    "depth_classes",
    "missing_truth",
    "DEPTH_SPLIT_CM",
]

#: depth (w, cm) separating the shallow and deep classes of the MEG convention.
DEPTH_SPLIT_CM = 2.0
#: fewest entries for a bin to be evaluated.
MIN_BIN_ENTRIES = 30


@dataclass
class Table:
    """A small table for the HTML report: ``rows`` of already formatted cells."""

    title: str
    columns: list
    rows: list


@dataclass
class StudyResult:
    """Outcome of one study.

    ``skipped`` holds the reason when the study could not run (e.g. missing truth branches);
    ``figures`` are plot base names under ``plots/`` (each written as .png and .pdf);
    ``summary`` is JSON-ready, keyed by series name (units in the key names); ``overall`` holds
    study-level numbers that belong to no series; ``histograms`` maps a ROOT path to a
    ``hist.Hist``.
    """

    name: str
    title: str
    skipped: str | None = None
    notes: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    overall: dict = field(default_factory=dict)
    histograms: dict = field(default_factory=dict)


@dataclass
class Context:
    """Where a study writes its plots, and shared settings. ``results``: the results of the
    studies that ran before this one in the same report (name -> :class:`StudyResult`)."""

    plot_dir: Path
    bootstrap_replicas: int = 40
    formats: tuple = ("png", "pdf")
    results: dict = field(default_factory=dict)


def missing_truth(res: StudyResult, data, requires) -> bool:
    """True, with ``res.skipped`` saying which, when ``data`` lacks any of the truth branches
    ``requires`` (the study then returns ``res`` as it is)."""
    missing = data.missing(*requires)
    if missing:
        res.skipped = f"missing truth branch(es): {', '.join(missing)}"
    return bool(missing)


def safe_name(text: str) -> str:
    """An identifier-like name for files and ROOT keys."""
    return re.sub(r"[^A-Za-z0-9_]+", "_", str(text)).strip("_") or "x"


def pair(value, error) -> dict:
    """``{"value": v, "error": e}`` with NaN/inf as ``None``."""
    return {"value": clean(value), "error": clean(error)}


def fmt(value, error=None, digits: int = 3) -> str:
    """``"v ± e"`` for tables; ``"—"`` when the value is missing."""
    if value is None:
        return "—"
    if error is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {error:.2g}"


def depth_classes(w_cm: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of the MEG depth classes: all, w < 2 cm, w >= 2 cm."""
    return {
        "all": np.ones(w_cm.shape, dtype=bool),
        "w<2cm": w_cm < DEPTH_SPLIT_CM,
        "w>=2cm": w_cm >= DEPTH_SPLIT_CM,
    }


def binned_resolution(x: np.ndarray, residual: np.ndarray, edges, *, core: bool = True,
                      replicas: int = 40, min_entries: int = MIN_BIN_ENTRIES) -> list[dict]:
    """Resolution and bias of ``residual`` in bins of ``x``.

    For every bin: ``center``, ``n``, ``status`` (``"ok"``, ``"poor"``, ``"failed"`` or
    ``"empty"``), ``sigma`` and ``bias`` from a Gaussian core fit (``core=True``) and the
    robust ``sigma68`` and ``median``, each ``{"value", "error"}`` in the residual's units.
    When the core fit fails, ``sigma``/``bias`` are null and the robust values remain.
    """
    edges = np.asarray(edges, dtype=np.float64)
    idx = np.digitize(x, edges) - 1
    out = []
    for i in range(edges.size - 1):
        r = residual[idx == i]
        entry = {"center": float(0.5 * (edges[i] + edges[i + 1])), "low": float(edges[i]),
                 "high": float(edges[i + 1]), "n": int(r.size)}
        if r.size < min_entries:
            entry.update(status="empty", sigma=pair(None, None), bias=pair(None, None),
                         sigma68=pair(None, None), median=pair(None, None))
            out.append(entry)
            continue
        rob = robust_widths(r, replicas=replicas, seed=i)
        entry["sigma68"] = _est(rob["sigma68"])
        entry["median"] = _est(rob["median"])
        if core:
            fit = gauss_core_fit(r)
            entry["status"] = fit.status
            entry["sigma"] = pair(*fit.get("sigma"))
            entry["bias"] = pair(*fit.get("mu"))
        else:
            entry["status"] = "ok"
            entry["sigma"] = entry["sigma68"]
            entry["bias"] = entry["median"]
        out.append(entry)
    return out


def resolution_scans(res: "StudyResult", ctx: "Context", series, masks: dict, residuals: dict,
                     scans: list, n_bins: int, sigma_label: str, bias_label: str,
                     figure_name: str) -> None:
    """Core resolution (top row) and bias (bottom row) of every series vs each scan coordinate.

    ``scans`` holds ``(key, coordinate per event, axis label)``; ``masks[name]`` selects the
    events whose residuals are ``residuals[name]``. Each series' bins go to
    ``res.summary[name]["vs_<key>"]`` and the figure to ``res.figures``.
    """
    fig, axes = plots.figure(2, len(scans))
    for j, (key, coord, label) in enumerate(scans):
        edges = edges_from(coord, n_bins)
        scan = []
        for s in series:
            ok = masks[s.name]
            bins = binned_resolution(coord[ok], residuals[s.name], edges,
                                     replicas=ctx.bootstrap_replicas)
            scan.append((s.name, bins))
            res.summary[s.name][f"vs_{key}"] = bins
        plots.binned_graph(axes[0, j], scan, label, sigma_label)
        plots.binned_graph(axes[1, j], scan, label, bias_label, key="bias")
        axes[1, j].axhline(0.0, color="grey", lw=0.8)
    res.figures.append(plots.save(fig, ctx, figure_name))


def _est(e: Estimate) -> dict:
    return pair(e.value, e.error)


def fit_summary(fit: FitResult, names: dict) -> dict:
    """Selected parameters of a fit as ``{key: {"value", "error"}}`` plus its status;
    ``names`` maps parameter -> output key."""
    out = {"status": fit.status, "message": fit.message, "chi2": clean(fit.chi2), "ndof": fit.ndof}
    for p, key in names.items():
        out[key] = pair(*fit.get(p))
    return out


def overlay_range(arrays, low: float = 5.0, high: float = 5.0) -> tuple[float, float]:
    """A common histogram range for residual overlays: around the median of the widest series,
    ``low`` and ``high`` times its sigma68 (falls back to (-1, 1) without data)."""
    best = None
    for a in arrays:
        a = np.asarray(a, dtype=np.float64)
        a = a[np.isfinite(a)]
        if a.size < 10:
            continue
        q16, q50, q84 = np.percentile(a, [15.865, 50.0, 84.135])
        s = 0.5 * (q84 - q16)
        if s > 0 and (best is None or s > best[1]):
            best = (q50, s)
    if best is None:
        return -1.0, 1.0
    return best[0] - low * best[1], best[0] + high * best[1]


def make_hist(values, lo: float, hi: float, label: str, bins: int = 100):
    """A 1-D ``hist.Hist`` (weight storage) of ``values`` in [lo, hi]."""
    import hist

    h = hist.Hist.new.Reg(bins, lo, hi, name="x", label=label).Weight()
    h.fill(np.asarray(values, dtype=np.float64))
    return h


def edges_from(values, n: int, lo=None, hi=None) -> np.ndarray:
    """``n`` equal-width bins covering the 0.5-99.5 percentile range of ``values``
    (or the given limits)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.linspace(0.0, 1.0, n + 1)
    a = np.percentile(v, 0.5) if lo is None else lo
    b = np.percentile(v, 99.5) if hi is None else hi
    if not b > a:
        b = a + 1.0
    return np.linspace(a, b, n + 1)


def binned_quantile(x: np.ndarray, values: np.ndarray, edges, q: float, *, replicas: int = 40,
                    min_entries: int = MIN_BIN_ENTRIES) -> list[dict]:
    """The ``q`` quantile of ``values`` in bins of ``x`` (e.g. a 68% containment radius), with
    bootstrap errors: bins carry ``center``, ``n``, ``status`` and ``value`` {"value", "error"}."""
    from xecreco.validation.estimators import quantile

    edges = np.asarray(edges, dtype=np.float64)
    idx = np.digitize(x, edges) - 1
    out = []
    for i in range(edges.size - 1):
        v = values[idx == i]
        entry = {"center": float(0.5 * (edges[i] + edges[i + 1])), "low": float(edges[i]),
                 "high": float(edges[i + 1]), "n": int(v.size)}
        if v.size < min_entries:
            entry.update(status="empty", value=pair(None, None))
        else:
            e = quantile(v, q, replicas=replicas, seed=i)
            entry.update(status="ok", value=pair(e.value, e.error))
        out.append(entry)
    return out


def wrap_degrees(d: np.ndarray) -> np.ndarray:
    """Angle differences wrapped into [-180, 180) deg."""
    return (np.asarray(d, dtype=np.float64) + 180.0) % 360.0 - 180.0


def pull_summary(series, quantity: str, diff: np.ndarray, ok: np.ndarray, *,
                 replicas: int = 40) -> dict | None:
    """Calibration of a predicted uncertainty ``R_<quantity>_err``: the pull
    diff / err (diff = reco - true in file units, already restricted to ``ok``) should have
    sigma68 = 1 and median 0. None when the series has no such error branch."""
    if quantity not in series.errors:
        return None
    err = series.errors[quantity][ok]
    good = np.isfinite(err) & (err > 0) & (err < FILL_THRESHOLD)
    rob = robust_widths(diff[good] / err[good], replicas=replicas)
    return {"sigma68": _est(rob["sigma68"]), "median": _est(rob["median"]), "n": int(good.sum())}
