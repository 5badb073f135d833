"""Pile-up study: energy resolution and tail fraction vs pile-up, and pile-up identification.

Uses the pile-up truth ``nPileup`` and, for the scans, the jagged ``pileupEnergy`` (GeV) and
``pileupTime`` (ns). For every event with pile-up: the summed pile-up energy (MeV) and the time
separation |t_pileup - t_signal| (ns) of its most energetic pile-up photon.

- Resolution: sigma68 of the relative energy residual (%) in bins of pile-up energy and time
  separation; the events without pile-up give the reference.
- Tail fraction: fraction of events whose residual lies more than ``TAIL_SIGMAS`` reference
  sigma68 from the reference median (binomial error).
- Identification: for every reconstruction with ``R_pileup_prob`` (the classical likelihood
  score, or the sigmoid of a neural ``pileup`` head, e.g. ``default_pileup_prob``; or else
  ``R_npileup``) the
  ROC curve (efficiency on events with pile-up vs fake rate on events without), its area, and the
  efficiency at 1% and 5% fake rate and at the nominal working point (probability >= 0.5 or
  npileup >= 0.5).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from xecreco.train.metrics import rank_auc
from xecreco.train.targets import PILEUP_LABEL_MEV, in_gate_pileup_mev, per_event_total
from xecreco.validation import plots
from xecreco.validation.estimators import robust_widths, sigma68
from xecreco.validation.studies.base import Context, StudyResult, Table, edges_from, fmt, pair

NAME = "pileup"
TITLE = "Pile-up"
REQUIRES = ("nPileup",)
TAIL_SIGMAS = 3.0
N_BINS = 6
MIN_BIN_ENTRIES = 30
#: events whose in-gate pile-up energy reaches this (MeV) are the positives of the ROC (the
#: label threshold of the neural ``pileup`` target).
PILEUP_MIN_MEV = PILEUP_LABEL_MEV
#: fake rate of the working point at which efficiencies are scanned.
FAKE_RATE = 0.05
#: one-sided high tail: E/E_true - 1 above this (%).
HIGH_TAIL_PERCENT = 3.0


def roc_curve(score: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(fake rate, efficiency, AUC) for a score where larger means "pile-up"; ``label`` True for
    events with pile-up. The curve is evaluated at distinct score values only (ties); the AUC is
    :func:`xecreco.train.metrics.rank_auc` (tied scores count half, the trapezoid area of this
    curve; NaN without both classes)."""
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
    return fake, eff, rank_auc(score, label)


def _fraction(passed: np.ndarray) -> dict:
    """Fraction of True entries of ``passed`` with its binomial error (at least that of one
    entry in n); null without entries."""
    n = passed.size
    if n == 0:
        return pair(None, None)
    f = float(np.mean(passed))
    return pair(f, np.sqrt(max(f * (1 - f), 1.0 / n) / n))


def _tail(r: np.ndarray, center: float, width: float) -> dict:
    if r.size < MIN_BIN_ENTRIES or width is None:
        return pair(None, None)
    return _fraction(np.abs(r - center) > TAIL_SIGMAS * width)


def in_gate_energy_mev(data) -> np.ndarray | None:
    """(N, k) jagged pile-up photon energies (MeV) as seen in the readout gate, or None.

    ``pileupEnergy`` x ``pileupGateFraction`` / f(0) when the gate fraction is in the file (f(0)
    of the default gate, docs/simulation.md), else ``pileupEnergy`` (the whole light counts):
    :func:`xecreco.train.targets.in_gate_pileup_mev`, the definition the ``pileup`` training
    target uses too."""
    if data.missing("pileupEnergy"):
        return None
    return in_gate_pileup_mev(data.truth["pileupEnergy"], data.truth.get("pileupGateFraction"))


def _per_event(data) -> dict | None:
    """Per event: summed in-gate pile-up energy (MeV), and for its most energetic (in the gate)
    pile-up photon the time separation (ns) and the (u, v) distance from the signal (cm; NaN
    without ``pileupU/V`` and ``uvwTruth``). None without energies, times or ``timeTruth``."""
    pe = in_gate_energy_mev(data)
    if pe is None or data.missing("pileupTime", "timeTruth"):
        return None
    lead = ak.argmax(pe, axis=1, keepdims=True)

    def leading(name):
        return ak.to_numpy(ak.fill_none(ak.firsts(ak.Array(data.truth[name])[lead]), np.nan)
                           ).astype(np.float64)

    total = per_event_total(pe)
    sep = np.abs(leading("pileupTime") - np.asarray(data.truth["timeTruth"], dtype=np.float64))
    dist = np.full(total.size, np.nan)
    if not data.missing("pileupU", "pileupV", "uvwTruth"):
        uvw = np.asarray(data.truth["uvwTruth"], dtype=np.float64)
        dist = np.hypot(leading("pileupU") - uvw[:, 0], leading("pileupV") - uvw[:, 1])
    return {"energy": total, "time": sep, "distance": dist}


def efficiency_at_fake(score: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                       fake: float = 0.05) -> tuple[float, float]:
    """(threshold, efficiency): the score threshold that accepts at most ``fake`` of the
    ``negative`` events (score > threshold) and the fraction of ``positive`` events above it."""
    thr = float(np.quantile(score[negative], 1.0 - fake, method="higher"))
    return thr, float(np.mean(score[positive] > thr))


def _binned_efficiency(coord, passed, sel, edges) -> list:
    idx = np.digitize(coord, edges) - 1
    bins = []
    for b in range(edges.size - 1):
        p = passed[sel & (idx == b)]
        bins.append({"center": float(0.5 * (edges[b] + edges[b + 1])), "low": float(edges[b]),
                     "high": float(edges[b + 1]), "n": int(p.size),
                     "status": "ok" if p.size else "empty", "efficiency": _fraction(p)})
    return bins


def _high_tail(r: np.ndarray) -> dict:
    """Fraction of relative residuals (%) above +HIGH_TAIL_PERCENT, binomial error."""
    return _fraction(r > HIGH_TAIL_PERCENT)


def _s68(r, ctx) -> dict:
    e = sigma68(r, min_entries=MIN_BIN_ENTRIES, replicas=ctx.bootstrap_replicas)
    return pair(e.value, e.error)


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
        total, sep = per_event["energy"], per_event["time"]
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
            big = ok & (total >= PILEUP_MIN_MEV)
            summ[f"pileup_ge_{PILEUP_MIN_MEV:g}MeV"] = {
                "sigma68_percent": _s68(r[big], ctx), "high_tail_fraction": _high_tail(r[big]),
                "n": int(big.sum())}
            summ["no_pileup"]["high_tail_fraction"] = _high_tail(r[ok & ~has])
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
                                 "tail_fraction": _tail(rb, center, width),
                                 "high_tail_fraction": _high_tail(rb)})
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
    if per_event is not None:
        positive = per_event["energy"] >= PILEUP_MIN_MEV
        pos_text = f"in-gate pile-up energy ≥ {PILEUP_MIN_MEV:g} MeV"
    else:
        positive = has
        pos_text = "nPileup > 0"
    eff_groups: dict = {}
    for s in data.series:
        key = "pileup_prob" if s.has("pileup_prob") else ("npileup" if s.has("npileup") else None)
        if key is None:
            continue
        ok = s.ok(key)
        pos, neg = ok & positive, ok & ~has
        if not (pos.any() and neg.any()):
            res.notes.append(f"{s.name}: both classes are needed for a ROC curve")
            continue
        score = s.values[key]
        both = pos | neg
        fake, eff, auc = roc_curve(score[both], positive[both])
        wp = score >= 0.5
        eff_wp = float(np.mean(wp[pos]))
        fake_wp = float(np.mean(wp[neg]))
        at1 = float(np.interp(0.01, fake, eff))
        thr, at5 = efficiency_at_fake(score, pos, neg, FAKE_RATE)
        ident = {
            "score": f"{s.reco}_{key}", "positives": pos_text, "n_positive": int(pos.sum()),
            "n_negative": int(neg.sum()), "auc": auc, "efficiency_at_fake_1pct": at1,
            "efficiency_at_fake_5pct": at5, "threshold_at_fake_5pct": thr,
            "fake_rate_at_threshold": float(np.mean(score[neg] > thr)),
            "working_point": {"threshold": 0.5, "efficiency": eff_wp, "fake_rate": fake_wp},
        }
        if per_event is not None:
            passed = score > thr
            anyp = ok & has & (per_event["energy"] > 0)
            scans = {"energy_MeV": (per_event["energy"], anyp,
                                    edges_from(per_event["energy"][anyp], N_BINS, lo=0.0)),
                     "time_separation_ns": (per_event["time"], pos,
                                            edges_from(per_event["time"][pos], N_BINS, lo=0.0))}
            if np.isfinite(per_event["distance"]).any():
                d = per_event["distance"]
                scans["distance_cm"] = (d, pos & np.isfinite(d),
                                        edges_from(d[pos & np.isfinite(d)], N_BINS, lo=0.0))
            for name, (coord, sel, edges) in scans.items():
                bins = _binned_efficiency(coord, passed, sel, edges)
                ident[f"efficiency_at_fake_5pct_vs_{name}"] = bins
                eff_groups.setdefault(name, []).append((s.name, bins))
        res.summary.setdefault(s.name, {})["identification"] = ident
        roc_rows.append([s.name, key, f"{auc:.4f}", f"{at1:.3f}", f"{at5:.3f}",
                         f"{eff_wp:.3f} / {fake_wp:.3f}"])
        step = max(1, fake.size // 2000)
        curves.append((s.name, fake[::step], eff[::step], auc))
    if eff_groups:
        fig, axes = plots.figure(1, len(eff_groups))
        for j, (name, group) in enumerate(eff_groups.items()):
            plots.binned_graph(axes[0, j], group, name.replace("_", " "), "efficiency @ 5% fake",
                               key="efficiency")
        res.figures.append(plots.save(fig, ctx, "pileup_efficiency"))
    if curves:
        fig, axes = plots.figure(1, 1)
        plots.roc_curves(axes[0, 0], curves)
        res.figures.append(plots.save(fig, ctx, "pileup_roc"))
        res.tables.append(Table(f"Pile-up identification ({pos_text} vs no pile-up)",
                                ["reconstruction", "score", "AUC", "eff. @ 1% fake",
                                 "eff. @ 5% fake", "eff. / fake at score ≥ 0.5"], roc_rows))
    else:
        res.notes.append("no reconstruction has R_pileup_prob or R_npileup: no ROC")
    if not curves and not res.figures:
        res.skipped = "nothing to evaluate: " + "; ".join(res.notes)
    return res
