"""Calibration of predicted uncertainties: pulls and interval coverage of every ``R_<q>_err``.

For every reconstruction R and quantity q with an uncertainty branch ``R_<q>_err`` (file units,
one standard deviation) and a truth branch, the pull ``(R_q - q_true) / R_q_err`` (phi
differences wrapped into [-180, 180) deg) should follow a unit Gaussian when the errors are
right. Per quantity the study reports the pull mean and standard deviation, its robust width
sigma68 and median, and the coverage of the 68.27 % and 95.45 % intervals (the fraction of events
with |pull| <= 1 and <= 2); all with bootstrap errors. Too small errors give pull widths above 1
and coverage below 68 %; too large errors the opposite. Coverage is also given in quintiles of
the predicted error (does a larger error mean a larger residual?). Events with status != 0,
fill values or a non-positive / non-finite error are left out.
"""

from __future__ import annotations

import numpy as np

from xecreco.io.schema import FILL_THRESHOLD
from xecreco.validation import plots
from xecreco.validation.estimators import ONE_SIGMA
from xecreco.validation.estimators.bootstrap import bootstrap_errors
from xecreco.validation.estimators.widths import quantile_sorted, sigma68_sorted
from xecreco.validation.studies.base import (
    MIN_BIN_ENTRIES,
    Context,
    StudyResult,
    Table,
    fmt,
    make_hist,
    pair,
    safe_name,
    wrap_degrees,
)

NAME = "calibration"
TITLE = "Uncertainty calibration"

#: quantity -> (truth branch, column or None): the truth each ``R_<q>`` is compared with.
TRUTH_OF = {
    "energy": ("energyTruth", None),
    "u": ("uvwTruth", 0),
    "v": ("uvwTruth", 1),
    "w": ("uvwTruth", 2),
    "x": ("xyzTruth", 0),
    "y": ("xyzTruth", 1),
    "z": ("xyzTruth", 2),
    "time": ("timeTruth", None),
    "theta": ("emiAng", 0),
    "phi": ("emiAng", 1),
    "npileup": ("nPileup", None),
}
#: fraction of a Gaussian within +-2 sigma.
TWO_SIGMA = 0.9544997361036416
#: bins of the predicted error for the coverage scan.
N_ERROR_BINS = 5
#: fewest events for a quantity to be evaluated.
MIN_EVENTS = 20


def pulls(data, series, quantity: str):
    """(pull, error, used-event mask) of ``series`` for ``quantity``; None when the series has no
    error or value branch, or the file no truth, for it."""
    if quantity not in series.errors or not series.has(quantity):
        return None
    branch, column = TRUTH_OF[quantity]
    if branch not in data.truth:
        return None
    truth = np.asarray(data.truth[branch], dtype=np.float64)
    truth = truth if column is None else truth[:, column]
    err = np.asarray(series.errors[quantity], dtype=np.float64)
    ok = series.ok(quantity) & np.isfinite(truth) & np.isfinite(err) & (err > 0)
    ok &= err < FILL_THRESHOLD
    diff = series.values[quantity][ok] - truth[ok]
    if quantity == "phi":
        diff = wrap_degrees(diff)
    return diff / err[ok], err[ok], ok


def pull_statistics(pull: np.ndarray, replicas: int = 40, seed: int = 0) -> dict:
    """Mean, standard deviation, sigma68, median and the 68 % / 95 % coverage of a pull sample,
    each ``{"value", "error"}`` (bootstrap errors), plus ``n``."""
    pull = np.asarray(pull, dtype=np.float64)
    pull = pull[np.isfinite(pull)]
    stats = {
        "mean": lambda s: s.mean(-1),
        "std": lambda s: s.std(-1, ddof=1),
        "sigma68": sigma68_sorted,
        "median": lambda s: quantile_sorted(s, 0.5),
        "coverage68": lambda s: (np.abs(s) <= 1.0).mean(-1),
        "coverage95": lambda s: (np.abs(s) <= 2.0).mean(-1),
    }
    out: dict = {"n": int(pull.size)}
    if pull.size < 2:
        out.update({k: pair(None, None) for k in stats})
        return out
    s0 = np.sort(pull)
    errors = bootstrap_errors(pull, stats, replicas, seed)
    for key, stat in stats.items():
        out[key] = pair(float(stat(s0)), errors[key])
    return out


def coverage_vs_error(pull: np.ndarray, err: np.ndarray, n_bins: int = N_ERROR_BINS) -> list:
    """68 % coverage in quantile bins of the predicted error (fewer bins where quantiles
    coincide, one for a constant error): ``low``/``high`` (file units), ``n`` and
    ``coverage68`` {"value", "error"} (binomial error)."""
    edges = np.unique(np.quantile(err, np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size < 2:  # one error value for all events: a single bin
        edges = np.array([edges[0], edges[0]])
    n_bins = edges.size - 1
    idx = np.clip(np.searchsorted(edges, err, side="right") - 1, 0, n_bins - 1)
    out = []
    for i in range(n_bins):
        sel = np.abs(pull[idx == i]) <= 1.0
        entry = {"low": float(edges[i]), "high": float(edges[i + 1]), "n": int(sel.size)}
        if sel.size < MIN_BIN_ENTRIES:
            entry["coverage68"] = pair(None, None)
        else:
            p = float(sel.mean())
            entry["coverage68"] = pair(p, float(np.sqrt(max(p * (1 - p), 1e-12) / sel.size)))
        out.append(entry)
    return out


def run(data, ctx: Context) -> StudyResult:
    res = StudyResult(NAME, TITLE)
    with_errors = [s for s in data.series if any(q in TRUTH_OF for q in s.errors)]
    if not with_errors:
        res.skipped = "no reconstruction has uncertainty branches (R_<quantity>_err)"
        return res
    rows, panels = [], {}
    for s in with_errors:
        res.summary[s.name] = {}
        for q in TRUTH_OF:
            if q not in s.errors:
                continue
            found = pulls(data, s, q)
            if found is None:
                res.notes.append(f"{s.name}: {q}_err present but no truth branch "
                                 f"{TRUTH_OF[q][0]} (or no {q} value): not scored")
                continue
            pull, err, _ = found
            if pull.size < MIN_EVENTS:
                res.notes.append(f"{s.name}: only {pull.size} events with a usable {q}_err")
                continue
            st = pull_statistics(pull, replicas=ctx.bootstrap_replicas)
            st["coverage_vs_error"] = coverage_vs_error(pull, err)
            res.summary[s.name][q] = st
            h = make_hist(np.clip(pull, -6.0, 6.0), -6.0, 6.0, f"{q} pull", bins=60)
            res.histograms[f"calibration/{safe_name(s.name)}/{q}_pull"] = h
            panels.setdefault(q, []).append((s.name, h))
            rows.append([s.name, q, str(st["n"]), fmt(st["mean"]["value"], st["mean"]["error"]),
                         fmt(st["std"]["value"], st["std"]["error"]),
                         fmt(st["sigma68"]["value"], st["sigma68"]["error"]),
                         _percent(st["coverage68"]), _percent(st["coverage95"])])
    if not rows:
        res.skipped = "no uncertainty branch could be scored (see the notes)"
        return res
    res.overall = {"ideal": {"pull_mean": 0.0, "pull_std": 1.0,
                             "coverage68": ONE_SIGMA, "coverage95": TWO_SIGMA}}
    res.tables.append(Table(
        "Pulls (reco − true) / err and interval coverage (ideal: mean 0, σ 1, 68.3 %, 95.4 %)",
        ["reconstruction", "quantity", "events", "pull mean", "pull σ", "pull σ68",
         "coverage 68 %", "coverage 95 %"], rows))
    _plot(res, ctx, panels)
    return res


def _percent(entry: dict) -> str:
    value, error = entry["value"], entry["error"]
    if value is None:
        return "—"
    return fmt(100.0 * value, None if error is None else 100.0 * error) + " %"


def _plot(res: StudyResult, ctx: Context, panels: dict) -> None:
    """One panel per quantity: the pull histograms (unit area) and the unit Gaussian."""
    names = list(panels)
    fig, axes = plots.figure(1, len(names))
    grid = np.linspace(-6.0, 6.0, 241)
    for j, q in enumerate(names):
        ax = axes[0, j]
        for i, (label, h) in enumerate(panels[q]):
            values = h.values()
            total = values.sum() * h.axes[0].widths[0]
            ax.stairs(values / total if total > 0 else values, h.axes[0].edges,
                      color=f"C{i % 10}", label=label)
        ax.plot(grid, np.exp(-0.5 * grid ** 2) / np.sqrt(2 * np.pi), color="grey", ls="--",
                lw=1.0, label="N(0, 1)")
        ax.set_xlabel(f"({q}$_{{reco}}$ − {q}$_{{true}}$) / σ$_{{{q}}}$")
        ax.set_ylabel("density")
        ax.legend(fontsize=9, loc="upper right")
    res.figures.append(plots.save(fig, ctx, "calibration_pulls"))
