"""Pile-up study: energy resolution and tail fraction vs pile-up, and pile-up identification.

Uses the pile-up truth ``nPileup`` and, for the scans, the jagged ``pileupEnergy`` (GeV) and
``pileupTime`` (ns). For every event with pile-up: the summed pile-up energy (MeV) and the time
separation |t_pileup - t_signal| (ns) of its most energetic pile-up photon.

- Resolution: sigma68 of the relative energy residual (%) in bins of pile-up energy and time
  separation; the events without pile-up give the reference.
- Tail fraction: fraction of events whose residual lies more than ``TAIL_SIGMAS`` reference
  sigma68 from the reference median (binomial error).
- Identification: for every reconstruction with ``R_pileup_prob`` (or else ``R_npileup``) the
  ROC curve (efficiency on events with pile-up vs fake rate on events without), its area, and the
  efficiency at 1% and 5% fake rate and at the nominal working point (probability >= 0.5 or
  npileup >= 0.5).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from xecreco.validation import plots
from xecreco.validation.estimators import robust_widths, sigma68
from xecreco.validation.studies.base import Context, StudyResult, Table, edges_from, fmt, pair

NAME = "pileup"
TITLE = "Pile-up"
REQUIRES = ("nPileup",)
TAIL_SIGMAS = 3.0
N_BINS = 6
MIN_BIN_ENTRIES = 30


def roc_curve(score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(fake rate, efficiency, AUC) for a score where larger means "pile-up"; ``label`` True for
    events with pile-up. Ties are handled by evaluating at distinct score values only."""
    score = np.asarray(score, dtype=np.float64)
    label = np.asarray(label, dtype=bool)
    order = np.argsort(-score, kind="stable")
    s, y = score[order], label[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    npos, nneg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    eff = np.r_[0.0, tp[last] / npos]
    fake = np.r_[0.0, fp[last] / nneg]
    auc = float(np.sum(np.diff(fake) * 0.5 * (eff[1:] + eff[:-1])))  # trapezoid rule
    return fake, eff, auc


def _tail(r: np.ndarray, center: float, width: float) -> dict:
    n = r.size
    if n < MIN_BIN_ENTRIES or width is None:
        return pair(None, None)
    f = float(np.mean(np.abs(r - center) > TAIL_SIGMAS * width))
    return pair(f, np.sqrt(max(f * (1 - f), 1.0 / n) / n))


def _per_event(data) -> tuple[np.ndarray, np.ndarray] | None:
    """(summed pile-up energy MeV, time separation ns of the leading pile-up photon) or None."""
    if data.missing("pileupEnergy", "pileupTime", "timeTruth"):
        return None
    pe = data.truth["pileupEnergy"]
    pt = data.truth["pileupTime"]
    pe = pe if isinstance(pe, ak.Array) else ak.Array(pe)
    pt = pt if isinstance(pt, ak.Array) else ak.Array(pt)
    total = ak.to_numpy(ak.fill_none(ak.sum(pe, axis=1), 0.0)).astype(np.float64) * 1000.0
    lead = ak.argmax(pe, axis=1, keepdims=True)
    tlead = ak.to_numpy(ak.fill_none(ak.firsts(pt[lead]), np.nan)).astype(np.float64)
    sep = np.abs(tlead - np.asarray(data.truth["timeTruth"], dtype=np.float64))
    return total, sep


def run(data, ctx: Context) -> StudyResult:
    res = StudyResult(NAME, TITLE)
    missing = data.missing(*REQUIRES)
    if missing:
        res.skipped = f"no pile-up truth in the file (missing {', '.join(missing)})"
        return res
    has = np.asarray(data.truth["nPileup"]) > 0
    if not has.any():
        res.skipped = "no event with pile-up (nPileup > 0) in the sample"
        return res
    if has.all():
        res.notes.append("every event has pile-up: no reference without pile-up and no ROC")
    res.overall["fraction_with_pileup"] = float(has.mean())
    per_event = _per_event(data)
    if per_event is None:
        res.notes.append("pileupEnergy / pileupTime / timeTruth absent: no scans vs pile-up "
                         "energy and time separation")
    energy_series = []
    if "energyTruth" in data.truth:
        energy_series = [s for s in data.series if s.has("energy")]
    if "energyTruth" not in data.truth:
        res.notes.append("energyTruth absent: no energy resolution vs pile-up")
    if energy_series and per_event is not None:
        total, sep = per_event
        e_true = np.asarray(data.truth["energyTruth"], dtype=np.float64) * 1000.0
        fig, axes = plots.figure(2, 2)
        scans = [("pileup_energy_MeV", total, edges_from(total[has], N_BINS),
                  "summed pile-up energy (MeV)"),
                 ("time_separation_ns", sep, edges_from(sep[has], N_BINS, lo=0.0),
                  "|t$_{pile-up}$ − t$_{γ}$| (ns)")]
        rows = []
        scan_bins = [[] for _ in scans]
        for i, s in enumerate(energy_series):
            ok = s.ok("energy") & (e_true > 0)
            r = 100.0 * (s.values["energy"] * 1000.0 - e_true) / np.where(e_true > 0, e_true, 1.0)
            ref = robust_widths(r[ok & ~has], replicas=ctx.bootstrap_replicas)
            center, width = ref["median"].value, ref["sigma68"].value
            ref_tail = _tail(r[ok & ~has], center, width)
            all_tail = _tail(r[ok & has], center, width)
            s68_pu = sigma68(r[ok & has], replicas=ctx.bootstrap_replicas)
            summ = res.summary.setdefault(s.name, {})
            summ["no_pileup"] = {"sigma68_percent": pair(width, ref["sigma68"].error),
                                 "tail_fraction": ref_tail, "n": int((ok & ~has).sum())}
            summ["with_pileup"] = {"sigma68_percent": pair(s68_pu.value, s68_pu.error),
                                   "tail_fraction": all_tail, "n": int((ok & has).sum())}
            rows.append([s.name, fmt(width, ref["sigma68"].error), fmt(s68_pu.value, s68_pu.error),
                         fmt(ref_tail["value"], ref_tail["error"]),
                         fmt(all_tail["value"], all_tail["error"])])
            for j, (key, coord, edges, label) in enumerate(scans):
                idx = np.digitize(coord, edges) - 1
                bins = []
                for b in range(edges.size - 1):
                    sel = ok & has & (idx == b)
                    rb = r[sel]
                    s68 = sigma68(rb, min_entries=MIN_BIN_ENTRIES, replicas=ctx.bootstrap_replicas,
                                  seed=b)
                    bins.append({"center": float(0.5 * (edges[b] + edges[b + 1])),
                                 "low": float(edges[b]), "high": float(edges[b + 1]),
                                 "n": int(rb.size),
                                 "status": "ok" if s68.value is not None else "empty",
                                 "sigma68": pair(s68.value, s68.error),
                                 "tail_fraction": _tail(rb, center, width)})
                summ[f"vs_{key}"] = bins
                scan_bins[j].append((s.name, bins, width, i))
        for j, (key, coord, edges, label) in enumerate(scans):
            group = [(name, bins) for name, bins, _, _ in scan_bins[j]]
            plots.binned_graph(axes[0, j], group, label, "σ68 of ΔE/E (%)", key="sigma68")
            plots.binned_graph(axes[1, j], group, label, "tail fraction", key="tail_fraction")
            for _, _, width, i in scan_bins[j]:
                if width is not None:  # reference: events without pile-up
                    axes[0, j].axhline(width, color=f"C{i % 10}", ls=":", lw=1)
        res.figures.append(plots.save(fig, ctx, "pileup_resolution"))
        res.tables.append(Table(
            f"Energy resolution with and without pile-up (tail: |ΔE/E − median| > "
            f"{TAIL_SIGMAS:g} σ68 of the events without pile-up)",
            ["reconstruction", "σ68 no pile-up (%)", "σ68 with pile-up (%)",
             "tail fraction no pile-up", "tail fraction with pile-up"],
            rows,
        ))

    curves, roc_rows = [], []
    for s in data.series:
        key = "pileup_prob" if s.has("pileup_prob") else ("npileup" if s.has("npileup") else None)
        if key is None:
            continue
        ok = s.ok(key)
        if not (has[ok].any() and (~has[ok]).any()):
            res.notes.append(f"{s.name}: both classes are needed for a ROC curve")
            continue
        score = s.values[key][ok]
        fake, eff, auc = roc_curve(score, has[ok])
        wp = score >= 0.5
        eff_wp = float(np.mean(wp[has[ok]]))
        fake_wp = float(np.mean(wp[~has[ok]]))
        at1 = float(np.interp(0.01, fake, eff))
        at5 = float(np.interp(0.05, fake, eff))
        res.summary.setdefault(s.name, {})["identification"] = {
            "score": f"{s.reco}_{key}", "auc": auc, "efficiency_at_fake_1pct": at1,
            "efficiency_at_fake_5pct": at5, "working_point": {"threshold": 0.5,
                                                              "efficiency": eff_wp,
                                                              "fake_rate": fake_wp},
        }
        roc_rows.append([s.name, key, f"{auc:.4f}", f"{at1:.3f}", f"{at5:.3f}",
                         f"{eff_wp:.3f} / {fake_wp:.3f}"])
        step = max(1, fake.size // 2000)
        curves.append((s.name, fake[::step], eff[::step], auc))
    if curves:
        fig, axes = plots.figure(1, 1)
        plots.roc_curves(axes[0, 0], curves)
        res.figures.append(plots.save(fig, ctx, "pileup_roc"))
        res.tables.append(Table("Pile-up identification (events with nPileup > 0 as signal)",
                                ["reconstruction", "score", "AUC", "eff. @ 1% fake",
                                 "eff. @ 5% fake", "eff. / fake at score ≥ 0.5"], roc_rows))
    else:
        res.notes.append("no reconstruction has R_pileup_prob or R_npileup: no ROC")
    if not curves and not res.figures:
        res.skipped = "nothing to evaluate: " + "; ".join(res.notes)
    return res
