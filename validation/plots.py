"""Plotting helpers: mplhep ROOT style and histogram drawing, the "MEG II simulation" label,
PNG + PDF output.

All values arrive already in plotted units (MeV, mm, ps, mrad, %); axis labels carry the unit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["figure", "save", "discard", "residual_overlay", "binned_graph", "roc_curves", "FORMATS"]

# the ROOT style's mathtext set-up asks for a 'cursive' family that most Linux machines lack;
# matplotlib falls back to DejaVu Sans and would warn on every report
logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)

#: formats written for every figure.
FORMATS = ("png", "pdf")
#: overrides of the ROOT style: no minor ticks (they dominate the drawing time).
_FAST = {"xtick.minor.visible": False, "ytick.minor.visible": False}
#: marker per series index.
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def figure(nrows: int = 1, ncols: int = 1, *, panel_size=(6.0, 4.6)):
    """A figure in the mplhep ROOT style; returns (fig, axes) with axes a 2-D array.

    Fixed margins (no constrained layout): layout engines re-measure every tick label and cost
    seconds per figure, which matters when a report draws dozens of them.
    """
    with plt.style.context([mplhep.style.ROOT, _FAST]):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(panel_size[0] * ncols, panel_size[1] * nrows), squeeze=False,
        )
    fig.subplots_adjust(left=0.12 / ncols ** 0.3, right=0.98, bottom=0.13 / nrows ** 0.5,
                        top=1.0 - 0.08 / nrows ** 0.5, wspace=0.32, hspace=0.35)
    for ax in axes.ravel():
        ax.tick_params(labelsize=11)
        ax.xaxis.label.set_size(13)
        ax.yaxis.label.set_size(13)
    return fig, axes


def _label(ax) -> None:
    """The experiment label above the panel: bold "MEG II", italic "simulation"."""
    ax.text(0.0, 1.015, "MEG II", transform=ax.transAxes, fontsize=13, fontweight="bold",
            ha="left", va="bottom")
    ax.text(0.17, 1.015, "simulation", transform=ax.transAxes, fontsize=13, fontstyle="italic",
            ha="left", va="bottom")


def save(fig, ctx, name: str) -> str:
    """Label every used panel, write ``ctx.plot_dir/name.<ext>`` for every format in
    ``ctx.formats`` (default PNG and PDF), close; returns ``name``."""
    plot_dir = Path(ctx.plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:
        if ax.has_data():
            _label(ax)
        else:
            ax.set_axis_off()
    for ext in getattr(ctx, "formats", FORMATS):
        fig.savefig(plot_dir / f"{name}.{ext}", dpi=80 if ext == "png" else None)
    plt.close(fig)
    return name


def discard(fig) -> None:
    """Close a figure without writing it."""
    plt.close(fig)


def residual_overlay(ax, entries, xlabel: str, *, density: bool = False,
                     title: str | None = None) -> None:
    """Overlay residual histograms of several series.

    ``entries``: list of (label, hist.Hist, FitResult or None); a successful fit's curve is drawn
    over its histogram and its status noted in the legend.
    """
    for i, (label, h, fit) in enumerate(entries):
        color = f"C{i % 10}"
        text = label
        if fit is not None:
            if fit.ok:
                sig, err = fit.get("sigma")
                text = f"{label}: σ = {sig:.3g} ± {err:.1g}"
                if fit.status == "poor":
                    text += " (poor fit)"
            else:
                text = f"{label}: fit failed"
        mplhep.histplot(h, ax=ax, label=text, color=color, histtype="step", density=density,
                        yerr=False)
        if fit is not None and fit.ok and fit.curve is not None:
            xs, ys, width = fit.curve
            hw = h.axes[0].widths[0]
            scale = hw / width if width else 1.0
            ax.plot(xs, ys * scale, color=color, lw=1.2, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("events / bin")
    ax.legend(fontsize=9, loc="upper right", title=title, title_fontsize=9)


def binned_graph(ax, series, xlabel: str, ylabel: str, key: str = "sigma", *,
                 scale: float = 1.0) -> None:
    """Points with error bars for each series: ``series`` is a list of (label, bins) with bins
    from :func:`~xecreco.validation.studies.base.binned_resolution` (``key`` picks the value).
    Empty or failed bins are left out and counted in the legend."""
    for i, (label, bins) in enumerate(series):
        xs, ys, es = [], [], []
        missing = 0
        for b in bins:
            v = b[key]["value"] if isinstance(b[key], dict) else b[key]
            e = b[key].get("error") if isinstance(b[key], dict) else None
            if v is None:
                missing += 1
                continue
            xs.append(b["center"])
            ys.append(v * scale)
            es.append((e or 0.0) * scale)
        text = label if not missing else f"{label} ({missing} empty/failed bins)"
        n = max(len(series), 1)
        offset = 0.0
        if len(bins) > 1:
            width = bins[1]["center"] - bins[0]["center"]
            offset = (i - (n - 1) / 2) * 0.08 * width
        ax.errorbar(np.asarray(xs) + offset, ys, yerr=es, marker=_MARKERS[i % len(_MARKERS)],
                    ls="none", color=f"C{i % 10}", label=text, capsize=0, ms=5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)


def roc_curves(ax, curves) -> None:
    """ROC: ``curves`` is a list of (label, fake_rate, efficiency, auc)."""
    for i, (label, fake, eff, auc) in enumerate(curves):
        ax.plot(fake, eff, color=f"C{i % 10}", label=f"{label} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set_xlabel("fake rate (events without pile-up flagged)")
    ax.set_ylabel("pile-up identification efficiency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=9, loc="lower right")
