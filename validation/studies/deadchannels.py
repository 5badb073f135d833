"""Dead-channel study: downstream effect of dead sensors on the reconstruction.

- With a dead-channel count per event (``nDead``, or a per-sensor ``dead`` array that is summed):
  sigma68 of the relative energy residual (%) and of the u, v residuals (mm) vs the number of
  dead channels.
- With labelled prediction files (``--label raw``, ``--label inpainted``, ...; events matched by
  (run, event)): every quantity's sigma68 for every (reconstruction, label) on the same events,
  and its ratio to the first label of the same reconstruction (raw vs recovered).
- With labels and the headline studies (energy, position, timing, angle) run before it in the
  same report: every headline resolution (:mod:`xecreco.validation.headlines`) per
  (reconstruction, label) and its loss in percent against the first label, 100 (value /
  first - 1). ``xecreco validate --data SIM.root -r RECO --dead-patterns`` labels the same events
  by dead-channel pattern (``clean`` first, then ``scattered``, ``grouped``,
  ``grouped+scattered``; :mod:`xecreco.validation.deadpatterns`), so the losses are those of
  each pattern, repaired by the inpainter, against the events without dead channels.
"""

from __future__ import annotations

import numpy as np

from xecreco.validation import plots
from xecreco.validation.estimators import sigma68
from xecreco.validation.headlines import HEADLINE_STUDIES, HEADLINES, headline_numbers
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
    if dead is not None and labelled and np.unique(dead[1]).size == 1:
        # e.g. the dead-pattern predictions (read from the clean values): nothing to scan
        res.notes.append(f"every event has {int(dead[1][0])} dead channels in the branch "
                         f"'{dead[0]}': no scan vs the dead-channel count")
        dead = None
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
                entry = _label_entry(res, s) if labelled else res.summary.setdefault(s.name, {})
                entry[f"{spec[0]}_vs_dead_count"] = bins
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
                _label_entry(res, s)[key] = {
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
        _headline_losses(data, ctx, res)
    return res


def _label_entry(res: StudyResult, s) -> dict:
    """The summary entry of series ``s``, created with its label, reconstruction and efficiency
    (computed once, not per quantity)."""
    if s.name not in res.summary:
        res.summary[s.name] = {"label": s.label, "reco": s.reco, "efficiency": s.efficiency()}
    return res.summary[s.name]


def headline_losses(numbers: dict, reference: dict) -> dict:
    """``{headline key: loss in percent}``: 100 (numbers / reference - 1), None where either
    value is missing or the reference is not positive."""
    return {key: (100.0 * (numbers[key] / reference[key] - 1.0)
                  if numbers.get(key) is not None and reference.get(key) else None)
            for key, *_ in HEADLINES}


def _headline_losses(data, ctx: Context, res: StudyResult) -> None:
    """Headline resolutions per (reconstruction, label) from the headline studies of this report
    and their losses against the first label of the same reconstruction."""
    ran = {n: r for n, r in ctx.results.items() if n in HEADLINE_STUDIES and not r.skipped}
    if not ran:
        res.notes.append("no headline comparison per label: run the energy, position, timing "
                         "and angle studies in the same report")
        return
    summary = {"studies": {n: {"series": r.summary} for n, r in ran.items()}}
    first = {}
    for s in data.series:
        first.setdefault(s.reco, s)
    rows, losses = [], {}
    for s in data.series:
        numbers = headline_numbers(summary, s.name)
        reference = headline_numbers(summary, first[s.reco].name)
        loss = headline_losses(numbers, reference)
        entry = _label_entry(res, s)
        entry["headlines"] = {key: {f"value_{unit}": numbers[key], "loss_percent": loss[key]}
                              for key, _, _, unit in HEADLINES}
        entry["headlines_reference_label"] = first[s.reco].label
        worst = [v for v in loss.values() if v is not None]
        entry["headline_max_loss_percent"] = max(worst) if worst else None
        if s is not first[s.reco]:
            losses[s.name] = entry["headline_max_loss_percent"]
        cells = []
        for key, *_ in HEADLINES:
            value = numbers[key]
            text = "—" if value is None else f"{value:.4g}"
            if s is not first[s.reco] and loss[key] is not None:
                text += f" ({loss[key]:+.1f} %)"
            cells.append(text)
        rows.append([s.reco, s.label, *cells])
    res.overall["headline_max_loss_percent"] = losses
    res.tables.append(Table(
        "Headline resolutions per label (upper σ of energy by depth, core σ of u, v, w and "
        "time, 68 % opening angle) and the loss against the first label of the same "
        "reconstruction, 100 (σ / σ_first − 1)",
        ["reconstruction", "label", *[f"{key} ({unit})" for key, _, _, unit in HEADLINES]],
        rows))
    if len(ran) < len(HEADLINE_STUDIES):
        res.notes.append("headline comparison without the "
                         f"{', '.join(sorted(set(HEADLINE_STUDIES) - set(ran)))} study")
