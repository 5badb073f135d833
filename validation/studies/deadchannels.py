"""Dead-channel study: downstream effect of dead sensors on the reconstruction.

- With a dead-channel count per event (``nDead``, or a per-sensor ``dead`` array that is summed):
  sigma68 of the relative energy residual (%) and of the u, v residuals (mm) vs the number of
  dead channels.
- With labelled prediction files (``--label raw``, ``--label inpainted``, ...; events matched by
  (run, event)): every quantity's sigma68 for every (reconstruction, label) on the same events,
  and its ratio to the first label of the same reconstruction (raw vs recovered).
"""

from __future__ import annotations

import numpy as np

from xecreco.validation import plots
from xecreco.validation.estimators import sigma68
from xecreco.validation.studies.base import (
    Context,
    StudyResult,
    Table,
    binned_resolution,
    fmt,
    pair,
    wrap_degrees,
)

NAME = "deadchannels"
TITLE = "Dead channels"
N_BINS = 6

#: (key, quantity, truth branch, column, scale to plotted units, unit, relative)
_QUANTITIES = (
    ("energy", "energy", "energyTruth", None, 100.0, "%", True),
    ("u", "u", "uvwTruth", 0, 10.0, "mm", False),
    ("v", "v", "uvwTruth", 1, 10.0, "mm", False),
    ("w", "w", "uvwTruth", 2, 10.0, "mm", False),
    ("time", "time", "timeTruth", None, 1000.0, "ps", False),
    ("theta", "theta", "emiAng", 0, 1000.0 * np.pi / 180.0, "mrad", False),
    ("phi", "phi", "emiAng", 1, 1000.0 * np.pi / 180.0, "mrad", False),
)


def _residual(data, s, spec):
    """(mask of used events, residual in plotted units) or None when unavailable."""
    key, q, branch, col, scale, unit, relative = spec
    if not s.has(q) or branch not in data.truth:
        return None
    truth = np.asarray(data.truth[branch], dtype=np.float64)
    truth = truth if col is None else truth[:, col]
    ok = s.ok(q)
    diff = s.values[q] - truth
    if key == "phi":
        diff = wrap_degrees(diff)
    if relative:
        ok &= truth > 0
        diff = diff / np.where(truth > 0, truth, 1.0)
    return ok, scale * diff[ok]


def run(data, ctx: Context) -> StudyResult:
    res = StudyResult(NAME, TITLE)
    dead = data.dead_count()
    labelled = data.labels is not None and len(data.labels) > 1
    if dead is None and not labelled:
        res.skipped = ("no dead-channel count (branches nDead or dead) and no labelled prediction "
                       "files (--label) to compare")
        return res
    if dead is not None:
        branch, count = dead
        res.notes.append(f"dead-channel count from the branch '{branch}'")
        res.overall["dead_count_mean"] = float(np.mean(count))
        edges = np.unique(np.percentile(count, np.linspace(0, 100, N_BINS + 1)))
        if edges.size < 2:
            edges = np.array([count.min() - 0.5, count.max() + 0.5])
        edges = edges.astype(np.float64)
        edges[-1] += 0.5
        specs = [sp for sp in _QUANTITIES if sp[0] in ("energy", "u", "v")]
        fig, axes = plots.figure(1, len(specs))
        any_plot = False
        for j, spec in enumerate(specs):
            scan = []
            for s in data.series:
                got = _residual(data, s, spec)
                if got is None:
                    continue
                ok, r = got
                bins = binned_resolution(count[ok].astype(np.float64), r, edges, core=False,
                                         replicas=ctx.bootstrap_replicas)
                scan.append((s.name, bins))
                res.summary.setdefault(s.name, {})[f"{spec[0]}_vs_dead_count"] = bins
            if scan:
                any_plot = True
                plots.binned_graph(axes[0, j], scan, "dead channels in the event",
                                   f"σ68 of {spec[0]} residual ({spec[5]})", key="sigma68")
        if any_plot:
            res.figures.append(plots.save(fig, ctx, "deadchannels_vs_count"))
        else:
            plots.discard(fig)
            res.notes.append("no energy or u, v outputs with truth: no scan vs dead count")
    if labelled:
        rows = []
        first = {}
        for s in data.series:
            first.setdefault(s.reco, s.label)
        fig, axes = plots.figure(1, 1, panel_size=(9.0, 4.8))
        ax = axes[0, 0]
        labels_x = []
        for spec in _QUANTITIES:
            key, unit = spec[0], spec[5]
            ref = {}
            for s in data.series:
                got = _residual(data, s, spec)
                if got is None:
                    continue
                e = sigma68(got[1], replicas=ctx.bootstrap_replicas)
                if s.label == first[s.reco]:
                    ref[s.reco] = e.value
                base = ref.get(s.reco)
                ratio = None if (e.value is None or not base) else e.value / base
                res.summary.setdefault(s.name, {"label": s.label, "reco": s.reco,
                                                "efficiency": s.efficiency()})[key] = {
                    f"sigma68_{unit}": pair(e.value, e.error), "ratio_to_first_label": ratio,
                    "n": e.n}
                rows.append([s.reco, s.label, key, fmt(e.value, e.error) + f" {unit}",
                             "—" if ratio is None else f"{ratio:.3f}"])
                if ratio is not None:
                    labels_x.append((key, s.name, ratio))
        keys = list(dict.fromkeys(k for k, _, _ in labels_x))
        names = list(dict.fromkeys(n for _, n, _ in labels_x))
        for i, name in enumerate(names):
            shift = 0.1 * (i - (len(names) - 1) / 2)
            xs = [keys.index(k) + shift for k, n, _ in labels_x if n == name]
            ys = [r for _, n, r in labels_x if n == name]
            ax.plot(xs, ys, marker="o", ls="none", color=f"C{i % 10}", label=name)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(range(len(keys)), keys)
        ax.set_ylabel("σ68 / σ68 of the first label")
        ax.set_xlabel("quantity")
        if names:
            ax.legend(fontsize=9)
        res.figures.append(plots.save(fig, ctx, "deadchannels_labels"))
        res.tables.append(Table(
            f"Resolution (σ68) per label on the {len(data)} matched events; ratio to the first "
            "label of the same reconstruction",
            ["reconstruction", "label", "quantity", "σ68", "ratio"], rows))
    return res
