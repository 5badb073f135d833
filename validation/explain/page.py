"""The explain page: figures (PNG, or the formats asked for) and ``index.html`` of
:func:`xecreco.validation.explain.explain`.

Figures are drawn with the validation report's style (:mod:`xecreco.validation.plots`) and the
detector pictures with the event display's :func:`~xecreco.validation.display.draw_unrolled`.
Every file name starts with ``explain_`` so the page can share a folder with a validation report.
"""

from __future__ import annotations

import datetime as _dt
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xecreco import __version__  # noqa: E402
from xecreco.models.nn.encoder import FACE_ORDER  # noqa: E402
from xecreco.validation import plots  # noqa: E402
from xecreco.validation.display import draw_unrolled  # noqa: E402
from xecreco.validation.explain.occlusion import OUTPUT_UNITS  # noqa: E402
from xecreco.validation.report import _CSS  # noqa: E402

__all__ = ["occlusion_figure", "face_bar_figure", "saliency_figure", "attention_figure",
           "write_page"]

_DPI = 80
_LABELS = {"energy": "energy", "u": "u", "v": "v", "w": "w", "time": "time"}


def _save(fig, plot_dir: Path, name: str, formats=("png",)) -> str:
    """Write ``plot_dir/name.<ext>`` for every format, close; returns the file name of the
    first (the one the page shows)."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    for ext in formats:
        fig.savefig(plot_dir / f"{name}.{ext}", dpi=_DPI if ext == "png" else None)
    plt.close(fig)
    return f"{name}.{formats[0]}"


def occlusion_figure(occ, plot_dir: Path, formats=("png",)) -> str:
    """Bars of sigma68(face masked) / sigma68(nothing masked) per face, one panel per output."""
    outputs = occ.outputs
    fig, axes = plots.figure(1, len(outputs), panel_size=(3.6, 3.6))
    x = np.arange(len(FACE_ORDER))
    for ax, q in zip(axes[0], outputs):
        ratios = [occ.faces[f][q]["ratio"] or np.nan for f in FACE_ORDER]
        errors = [occ.faces[f][q]["ratio_error"] or 0.0 for f in FACE_ORDER]
        ax.bar(x, ratios, yerr=errors, color="#4c72b0", capsize=3)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(x, FACE_ORDER, rotation=60, fontsize=9)
        ax.set_title(f"{_LABELS[q]} (unmasked {_fmt(occ.baseline[q]['sigma68'])} "
                     f"{OUTPUT_UNITS[q]})", fontsize=10)
    axes[0, 0].set_ylabel("σ68 masked / unmasked")
    return _save(fig, plot_dir, "explain_occlusion", formats)


def face_bar_figure(table: dict, unit_of: dict, plot_dir: Path, formats=("png",)) -> str:
    """Bars of the event-mean gradient x input summed per face, one panel per output."""
    outputs = list(table)
    fig, axes = plots.figure(1, len(outputs), panel_size=(3.6, 3.6))
    x = np.arange(len(FACE_ORDER))
    for ax, q in zip(axes[0], outputs):
        means = [table[q][f]["mean"] for f in FACE_ORDER]
        absolute = [table[q][f]["mean_abs"] for f in FACE_ORDER]
        ax.bar(x - 0.2, means, width=0.4, color="#4c72b0", label="mean")
        ax.bar(x + 0.2, absolute, width=0.4, color="#dd8452", label="mean |.|")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(x, FACE_ORDER, rotation=60, fontsize=9)
        ax.set_title(f"{_LABELS[q]} ({unit_of[q]})", fontsize=10)
    axes[0, 0].legend(fontsize=8)
    axes[0, 0].set_ylabel("gradient × input per face")
    return _save(fig, plot_dir, "explain_grad_x_input", formats)


def saliency_figure(saliency: np.ndarray, q: str, unit: str, plot_dir: Path,
                    formats=("png",)) -> str:
    """Mean |d q / d x| on the unrolled detector: npho channel left, time channel right."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.2))
    for ax, channel, label in zip(axes, (0, 1), ("npho feature", "time feature")):
        values = saliency[:, channel]
        draw_unrolled(values, ax=ax, log=True, cmap="magma",
                      title=f"mean |d {q} / d {label}|",
                      cbar_label=f"{unit} per feature unit", legend=False)
    fig.subplots_adjust(left=0.05, right=0.97, bottom=0.1, top=0.92, wspace=0.15)
    return _save(fig, plot_dir, f"explain_saliency_{q}", formats)


def attention_figure(att, layer: int, plot_dir: Path, formats=("png",)) -> str:
    """Mean attention (query row -> key column) of one fusion layer, one panel per depth
    class."""
    n = len(att.classes)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.0), squeeze=False)
    perceiver = att.kind == "perceiver"
    for c, ax in enumerate(axes[0]):
        weights = att.weights[layer, c]
        image = ax.imshow(weights, vmin=0.0, vmax=max(float(np.nanmax(att.weights[layer])), 1e-3),
                          cmap="viridis", aspect="auto" if perceiver else "equal")
        ax.set_xticks(range(len(att.columns)), att.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(len(att.labels)), att.labels, fontsize=7)
        ax.set_title(f"{att.classes[c]} ({att.counts[c]} events)", fontsize=10)
        ax.set_xlabel("key cells / tokens of each face" if perceiver
                      else "key token (attended to)", fontsize=8)
        if c == 0:
            ax.set_ylabel("latent (query)" if perceiver else "query token", fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.9, bottom=0.22, top=0.92, wspace=0.35)
    fig.colorbar(image, cax=fig.add_axes((0.92, 0.22, 0.015, 0.7)), label="attention weight")
    return _save(fig, plot_dir, f"explain_attention_layer{layer + 1}", formats)


def _fmt(value, digits: int = 3) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:.{digits}g}"


def _table(caption: str, columns, rows) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return (f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _figure(image: str, caption: str, formats=("png",)) -> str:
    stem = html.escape(image.rsplit(".", 1)[0])
    links = "".join(f' <a href="plots/{stem}.{ext}">{ext.upper()}</a>' for ext in formats[1:])
    return (f'<figure><img src="plots/{html.escape(image)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}{links}</figcaption></figure>")


def write_page(path: Path, summary: dict, images: dict, formats=("png",)) -> None:
    """index.html from the explain ``summary`` (as written to explain.json) and the ``images``
    (section -> list of (file name, caption)), each shown in the first of ``formats`` with links
    to the others."""
    occ = summary["occlusion"]
    outputs = occ["outputs"]
    units = occ["units"]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>xecreco explain</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>What {html.escape(summary['reconstruction'])} looks at</h1>",
             f"<p><b>Input:</b> {html.escape(', '.join(summary['input_files']))}<br>"
             f"<b>Reconstruction:</b> {html.escape(summary['reconstruction'])} "
             f"({html.escape(summary['kind'])})<br><b>Events:</b> {summary['n_events']} for "
             f"occlusion, {summary.get('n_gradient_events', 0)} for gradients and attention "
             f"&nbsp; <b>Generated:</b> {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
             f"&nbsp; <b>xecreco</b> {html.escape(__version__)}</p>"]
    for note in summary.get("notes", []):
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    parts.append('<nav><a href="#occlusion">Occlusion</a>' + (
        '<a href="#gradients">Gradient × input</a><a href="#saliency">Saliency maps</a>'
        '<a href="#attention">Fusion attention</a>' if summary["neural"] else "") + "</nav>")
    parts.append('<h2 id="occlusion">Per-face occlusion</h2>')
    parts.append('<p class="note">Each face in turn is masked: its sensors are marked invalid, '
                 "exactly as dead sensors are, and the events are reconstructed again. Resolution "
                 "= σ68 of reconstructed minus true (energy relative, in %; u, v, w in mm; time "
                 "in ps) over the events with status 0. Ratio = σ68 masked / unmasked with a "
                 "paired bootstrap error; efficiency = fraction of events with status 0.</p>")
    rows = [["nothing masked"] + [f"{_fmt(occ['baseline'][q]['sigma68'])}" for q in outputs] +
            [f"{occ['baseline_efficiency']:.3f}"]]
    for face in FACE_ORDER:
        entry = occ["faces"][face]
        cells = []
        for q in outputs:
            e = entry[q]
            cells.append(f"{_fmt(e['sigma68'])} (×{_fmt(e['ratio'])} "
                         f"± {_fmt(e['ratio_error'], 2)})")
        rows.append([f"{face} masked"] + cells + [f"{entry[outputs[0]]['efficiency']:.3f}"])
    parts.append(_table("σ68 with one face masked (× ratio to unmasked ± paired bootstrap error)",
                        ["masked"] + [f"{q} ({units[q]})" for q in outputs] + ["efficiency"],
                        rows))
    parts += [_figure(i, c, formats) for i, c in images.get("occlusion", [])]
    if summary["neural"]:
        grad = summary["grad_x_input"]
        parts.append('<h2 id="gradients">Gradient × input per face</h2>')
        parts.append('<p class="note">(input − missing-sensor value) × d output / d input, summed '
                     "over both feature channels and over the face's sensors: the first-order "
                     "change of the output if the face were switched off, averaged over events "
                     "(signed, and of its absolute value). The face sums add up to the total over "
                     "all sensors.</p>")
        rows = []
        for face in FACE_ORDER + ("total",):
            rows.append([face] + [f"{_fmt(grad[q][face]['mean'])} / "
                                  f"{_fmt(grad[q][face]['mean_abs'])}" for q in grad])
        parts.append(_table("Gradient × input: mean / mean |.| per event",
                            ["face"] + [f"{q} ({summary['gradient_units'][q]})" for q in grad],
                            rows))
        parts += [_figure(i, c, formats) for i, c in images.get("gradients", [])]
        parts.append('<h2 id="saliency">Mean saliency maps</h2>')
        parts.append('<p class="note">|d output / d input feature| per sensor, averaged over '
                     "events, on the unrolled detector (log colour scale); left the npho feature, "
                     "right the time feature.</p>")
        parts += [_figure(i, c, formats) for i, c in images.get("saliency", [])]
        perceiver = summary["attention"].get("kind") == "perceiver"
        if perceiver:
            parts.append('<h2 id="attention">Perceiver cross-attention over the faces</h2>')
            parts.append('<p class="note">Cross-attention weights of the Perceiver fusion\'s '
                         "latents (queries) over every cell of each face's last feature map and "
                         "each face token (keys), summed per face into cells and tokens, "
                         "averaged over heads and over the events of each class of the true "
                         "depth w; a row sums to 1. The event embedding, which feeds the output "
                         "heads, is the first latent and the mean of the others: its row in the "
                         "table is the mean of those two.</p>")
        else:
            parts.append('<h2 id="attention">Fusion attention between tokens</h2>')
            parts.append('<p class="note">Attention weights of the transformer fusion, averaged '
                         "over heads and over the events of each class of the true depth w; a "
                         "row is a query token, its weights over the key tokens sum to 1. The "
                         "CLS token's row is what feeds the output heads.</p>")
        cls = summary["attention"]["cls_by_face"]
        what = "the event embedding on each face's cells and tokens" if perceiver \
            else "the CLS token on each face's tokens"
        for layer, per_class in cls.items():
            parts.append(_table(f"Attention of {what}, {layer}",
                                ["depth class", "CLS"] + list(FACE_ORDER),
                                [[c] + [f"{v[f]:.3f}" if v[f] == v[f] else "–"
                                        for f in ("CLS",) + FACE_ORDER]
                                 for c, v in per_class.items()]))
        parts += [_figure(i, c, formats) for i, c in images.get("attention", [])]
    parts.append('<p class="note">Machine-readable numbers: <a href="explain.json">explain.json'
                 "</a>.</p></body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
