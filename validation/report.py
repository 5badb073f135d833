"""Report writers: ``index.html`` (one self-contained page), ``summary.json`` and
``histograms.root``.

The page embeds its style, shows every study's tables and notes, and references the plots
relatively (``plots/<name>.png``, with a link to the PDF), so the folder can be copied as a whole.
summary.json holds every headline number with its error; NaN/inf never appear (``null``).
histograms.root holds the residual histograms (hist objects, written by uproot as TH1D) in one
directory per study and series.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from pathlib import Path

import numpy as np
import uproot

__all__ = ["jsonable", "write_summary", "write_histograms", "write_html"]

_CSS = """
body { font-family: Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1300px;
       color: #222; }
h1 { border-bottom: 2px solid #335; padding-bottom: .2em; }
h2 { color: #335; border-bottom: 1px solid #ccd; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0 1.2em 0; font-size: 90%; }
th, td { border: 1px solid #ccd; padding: .25em .6em; text-align: right; }
th { background: #eef; } td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-weight: bold; padding-bottom: .3em; }
.note { color: #555; font-style: italic; } .skipped { color: #a33; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 85%; color: #555; }
.failed { color: #a33; } nav a { margin-right: 1em; }
"""


def jsonable(obj):
    """Recursively convert to JSON types: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def write_summary(path: Path, summary: dict) -> None:
    """summary.json (strict JSON: ``allow_nan=False``)."""
    Path(path).write_text(json.dumps(jsonable(summary), indent=1, allow_nan=False))


def write_histograms(path: Path, results) -> int:
    """histograms.root with every study's histograms (key ``study/series/name``); returns how
    many were written."""
    n = 0
    with uproot.recreate(path) as f:
        for res in results:
            for key, h in res.histograms.items():
                f[key] = h
                n += 1
    return n


def _table_html(table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for c in row:
            text = html.escape(str(c))
            cls = ' class="failed"' if str(c) in ("failed", "empty") else ""
            cells.append(f"<td{cls}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<table><caption>{html.escape(table.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _gallery_html(gallery, formats=("png",)) -> list[str]:
    """The worst-event section: one sub-section per (series, observable), one figure per event
    (the image in the first of ``formats``) with its caption (run, event, truth, reco,
    residual) and links to the other formats."""
    parts = ['<h2 id="worst">Worst events</h2>',
             '<p class="note">Per reconstruction and observable, the events with the largest '
             "|residual| among those entering the studies (status 0), drawn on the unrolled "
             "detector: npho (log) and sensor times, dead sensors red, sensors without a valid "
             "value grey, hollow star = true first interaction, crosses = reconstructions, "
             "diamonds = pile-up photons (energy in MeV). Residuals: energy in %, u, v, w in mm, "
             "time in ps.</p>"]
    current = None
    for item in gallery:
        if (item.series, item.observable) != current:
            current = (item.series, item.observable)
            parts.append(f"<h3>{html.escape(item.series)}: {html.escape(item.observable)}</h3>")
        stem = html.escape(item.image.rsplit(".", 1)[0])
        links = "".join(f' <a href="plots/{stem}.{ext}">{ext.upper()}</a>' for ext in formats[1:])
        parts.append(
            f'<figure class="worst"><img src="plots/{html.escape(item.image)}" '
            f'alt="worst {html.escape(item.observable)} event {item.rank + 1} of '
            f'{html.escape(item.series)}" loading="lazy">'
            f"<figcaption>{html.escape(item.caption())}{links}</figcaption></figure>"
        )
    return parts


def write_html(path: Path, results, meta: dict, gallery=()) -> None:
    """index.html: header with inputs and efficiencies, then one section per study, then the
    worst-event ``gallery`` (:class:`~xecreco.validation.gallery.GalleryItem` list) if any."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>xecreco validation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>xecreco physics validation</h1>",
        '<p class="note">MEG II simulation. Residuals are reconstructed minus true; only events '
        "with status 0 enter the resolutions. Energies in MeV (relative residuals in %), lengths "
        "in mm, times in ps, angles in mrad.</p>",
    ]
    files = ", ".join(html.escape(str(f)) for f in meta.get("files", []))
    parts.append(f"<p><b>Prediction files:</b> {files}<br><b>Events:</b> {meta.get('n_events')}"
                 f" &nbsp; <b>Generated:</b> {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} "
                 f"UTC &nbsp; <b>xecreco</b> {html.escape(str(meta.get('xecreco_version')))}</p>")
    eff_rows = meta.get("efficiency", {})
    if eff_rows:
        parts.append("<table><caption>Reconstructions: efficiency (fraction of events with "
                     "status 0)</caption><thead><tr><th>reconstruction</th><th>efficiency</th>"
                     "<th>events with status 0</th></tr></thead><tbody>")
        for name, e in eff_rows.items():
            parts.append(f"<tr><td>{html.escape(name)}</td><td>{e['efficiency']:.4f}</td>"
                         f"<td>{e['n_ok']}</td></tr>")
        parts.append("</tbody></table>")
    for note in meta.get("notes", []):
        parts.append(f'<p class="note">{html.escape(note)}</p>')
    links = [f'<a href="#{r.name}">{html.escape(r.title)}</a>' for r in results]
    if gallery:
        links.append('<a href="#worst">Worst events</a>')
    parts.append("<nav>" + "".join(links) + "</nav>")
    for res in results:
        parts.append(f'<h2 id="{res.name}">{html.escape(res.title)}</h2>')
        if res.skipped:
            parts.append(f'<p class="skipped">Skipped: {html.escape(res.skipped)}</p>')
        for note in res.notes:
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        for table in res.tables:
            parts.append(_table_html(table))
        formats = meta.get("formats", ("png", "pdf"))
        for fig in res.figures:
            links = " ".join(f'<a href="plots/{fig}.{ext}">{ext.upper()}</a>'
                             for ext in formats[1:])
            parts.append(
                f'<figure><img src="plots/{fig}.{formats[0]}" alt="{fig}" loading="lazy">'
                f"<figcaption>{fig} {links}</figcaption></figure>"
            )
    if gallery:
        parts.extend(_gallery_html(gallery, meta.get("formats", ("png", "pdf"))))
    parts.append('<p class="note">Machine-readable numbers: <a href="summary.json">summary.json'
                 '</a>; histograms: <a href="histograms.root">histograms.root</a>.</p>')
    parts.append("</body></html>")
    Path(path).write_text("\n".join(parts), encoding="utf-8")
