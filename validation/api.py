"""``validate``: the physics validation report from prediction files (what `xecreco validate`
runs).

The report folder receives ``index.html``, ``summary.json``, ``histograms.root`` and
``plots/<name>.{png,pdf}``. Everything is first written to a hidden temporary folder inside the
output folder, ``.index.html.<pid>.<random>.tmp`` (the temporary-name convention of
:mod:`xecreco.io.paths`), and moved into place when all studies succeeded, so an interrupted run
leaves the previous report untouched; the next run removes such a folder once its process is
gone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from xecreco import __version__
from xecreco.errors import UserError
from xecreco.io.paths import make_temp_dir, remove_stale_temps
from xecreco.validation.data import load_predictions
from xecreco.validation.report import write_histograms, write_html, write_summary
from xecreco.validation.studies import STUDIES
from xecreco.validation.studies.base import Context

__all__ = ["validate", "validate_data", "STUDY_NAMES"]

#: The report's page; its temporary folder is named after it (``.index.html.<pid>...tmp``).
INDEX_NAME = "index.html"

#: study names in report order.
STUDY_NAMES = tuple(STUDIES)


def _select_studies(studies) -> list[str]:
    if not studies:
        return list(STUDY_NAMES)
    unknown = [s for s in studies if s not in STUDIES]
    if unknown:
        raise UserError(f"unknown study {', '.join(unknown)}; choose from {', '.join(STUDY_NAMES)}")
    return [s for s in STUDY_NAMES if s in studies]


def validate(prediction_files, output_dir, recos=None, studies=None, labels=None,
             progress: bool = True, *, tree: str = "reco", bootstrap_replicas: int = 40,
             formats=("png", "pdf"), input_files=None, input_tree: str = "tree",
             input_branches: dict | None = None, worst: int = 0) -> dict:
    """Run the physics studies on prediction files and write the report folder.

    Args:
        prediction_files: prediction ROOT files (tree ``tree``, see :mod:`.data`).
        output_dir: report folder (created; existing report files are replaced).
        recos: reconstruction names to compare (default: all in the files).
        studies: study names (default: all of :data:`STUDY_NAMES`).
        labels: one label per file to compare variants of the same events (matched by
            (run, event)); files with the same label are concatenated.
        progress: show a tqdm bar over the studies.
        tree: prediction tree name.
        bootstrap_replicas: bootstrap replicas for the robust-width errors.
        formats: plot file formats (matplotlib extensions); the page shows the first (a raster
            format such as png) and links the others.
        input_files: the simulated input files of the predictions (tree ``input_tree``), needed
            for ``worst``.
        input_branches: ``{canonical: name in file}`` for input files with other branch names
            (:class:`~xecreco.io.schema.BranchNames`).
        worst: when > 0, add the worst-event gallery (:mod:`~xecreco.validation.gallery`): the
            ``worst`` events with the largest |residual| per reconstruction and observable,
            drawn with the event display.
    Returns:
        The summary (as written to summary.json): ``studies`` (name -> per-series numbers),
        ``skipped`` (name -> reason), ``efficiency``, ``worst_events`` (series -> observable ->
        list of events, with ``worst``), ``outputs`` (paths written).
    Raises:
        UserError: bad inputs (see :func:`~xecreco.validation.data.load_predictions`), unknown
            studies, or no study able to run on these files.
    """
    names = _select_studies(studies)
    worst = int(worst or 0)
    if worst < 0:
        raise UserError(f"--worst must be a positive number of events, got {worst}")
    if worst and not input_files:
        raise UserError("--worst draws events from the simulated input: give the file the "
                        "predictions were made from with --input SIM.root")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: exists and is not a folder; give a folder for the report")
    data = load_predictions(prediction_files, tree=tree, recos=recos, labels=labels)
    if len(data) == 0:
        raise UserError(f"{data.files[0]}: the prediction tree '{tree}' has no events")
    formats = tuple(formats)
    if not formats:
        raise UserError("no plot format given; use e.g. png and pdf")
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output_dir / INDEX_NAME)  # left by a run that was killed
    work = make_temp_dir(output_dir / INDEX_NAME)
    try:
        ctx = Context(plot_dir=work / "plots", bootstrap_replicas=bootstrap_replicas,
                      formats=formats)
        results = []
        bar = tqdm(names, desc="validation", unit="study", disable=not progress)
        for name in bar:
            bar.set_postfix_str(name)
            results.append(STUDIES[name].run(data, ctx))
            ctx.results[name] = results[-1]
        bar.close()
        ran = [r for r in results if not r.skipped]
        if not ran:
            reasons = "; ".join(f"{r.name}: {r.skipped}" for r in results)
            raise UserError(f"{data.files[0]}: no validation study can run ({reasons})")
        gallery, gallery_notes = [], []
        if worst:
            from xecreco.validation.gallery import build_gallery

            gallery, gallery_notes = build_gallery(data, input_files, worst, ctx.plot_dir,
                                                   tree=input_tree, branches=input_branches,
                                                   formats=formats, progress=progress)
        efficiency = {s.name: {"efficiency": s.efficiency(), "n_ok": int((s.status == 0).sum()),
                               "status_counts": _status_counts(s.status)} for s in data.series}
        summary = {
            "format": "xecreco-validation",
            "format_version": 1,
            "xecreco_version": __version__,
            "files": data.files,
            "labels": data.labels,
            "n_events": len(data),
            "reconstructions": [s.name for s in data.series],
            "units": {"energy": "% (relative residual) and MeV", "position": "mm", "time": "ps",
                      "angle": "mrad", "energy_bins": "MeV", "calorimeter_fit": "E in GeV"},
            "efficiency": efficiency,
            "notes": data.notes + gallery_notes,
            "studies": {r.name: {"notes": r.notes, "overall": r.overall, "series": r.summary}
                        for r in ran},
            "skipped": {r.name: r.skipped for r in results if r.skipped},
        }
        if worst:
            summary["worst_events"] = _gallery_summary(gallery)
        write_summary(work / "summary.json", summary)
        write_histograms(work / "histograms.root", ran)
        meta = {"files": data.files, "n_events": len(data), "xecreco_version": __version__,
                "efficiency": efficiency, "notes": data.notes + gallery_notes,
                "formats": formats}
        write_html(work / INDEX_NAME, results, meta, gallery=gallery)
        outputs = _publish(work, output_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary["outputs"] = outputs
    return summary


def _gallery_summary(gallery) -> dict:
    """summary.json's ``worst_events``: series -> observable -> events, worst first."""
    out: dict = {}
    for item in gallery:
        out.setdefault(item.series, {}).setdefault(item.observable, []).append({
            "run": item.run, "event": item.event, "input_file": item.input_file,
            "entry": item.entry, "truth": item.truth, "reco": item.reco,
            "residual": item.residual, "image": f"plots/{item.image}",
        })
    return out


def _status_counts(status) -> dict:
    import numpy as np

    values, counts = np.unique(status, return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts)}


def _publish(work: Path, output_dir: Path) -> dict:
    """Move the finished report from ``work`` into ``output_dir`` file by file (atomic renames);
    plots from an earlier report that this one does not produce are removed."""
    plots = output_dir / "plots"
    plots.mkdir(exist_ok=True)
    new_plots = {p.name for p in (work / "plots").glob("*")} if (work / "plots").is_dir() else set()
    for old in plots.glob("*"):
        if old.is_file() and old.name not in new_plots and old.suffix in (".png", ".pdf",
                                                                            ".svg"):
            old.unlink()
    for name in sorted(new_plots):
        os.replace(work / "plots" / name, plots / name)
    for name in ("summary.json", "histograms.root", INDEX_NAME):
        os.replace(work / name, output_dir / name)
    return {
        "index_html": str(output_dir / INDEX_NAME),
        "summary_json": str(output_dir / "summary.json"),
        "histograms_root": str(output_dir / "histograms.root"),
        "plots": sorted(str(plots / n) for n in new_plots),
    }


def validate_data(data_files, reconstructors, output_dir, *, tree: str = "tree",
                  branches: dict | None = None, names=None, studies=None, progress: bool = True,
                  step_events=None, nproc: int = 1, worst: int = 0,
                  formats=("png", "pdf"), bootstrap_replicas: int = 40,
                  dead_patterns: bool = False, inpainter=None) -> dict:
    """Predict ``reconstructors`` on simulated input files into ``output_dir/predictions.root``
    (with :func:`xecreco.models.pipelines.predict.predict_files`), then :func:`validate` it
    (with the worst-event gallery of the ``data_files`` when ``worst`` > 0).

    ``tree`` and ``branches`` (``{canonical: name in file}``) describe the data files, for the
    prediction and the gallery; ``formats`` and ``bootstrap_replicas`` are passed to
    :func:`validate`.

    ``dead_patterns``: instead, predict the same events once per dead-channel pattern of each
    file (clean, scattered, grouped, grouped+scattered; each repaired by ``inpainter``, default
    the bundled one) into ``output_dir/dead_patterns/`` and validate them labelled by pattern
    (:mod:`xecreco.validation.deadpatterns`)."""
    from xecreco.models.pipelines.predict import predict_files

    if not tuple(formats):
        raise UserError("no plot format given; use e.g. png and pdf")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: exists and is not a folder; give a folder for the report")
    output_dir.mkdir(parents=True, exist_ok=True)
    if dead_patterns:
        from xecreco.validation.deadpatterns import predict_patterns

        if int(nproc) != 1:
            raise UserError("--dead-patterns predicts in one process; drop --nproc")
        if worst:
            raise UserError("--worst draws the events as the file holds them, not per dead "
                            "pattern; drop --worst with --dead-patterns")
        files, labels = predict_patterns(list(data_files), list(reconstructors),
                                         output_dir / "dead_patterns", inpainter=inpainter,
                                         tree=tree, branches=branches, step_events=step_events,
                                         progress=progress)
        return validate(files, output_dir, studies=studies, labels=labels, progress=progress,
                        bootstrap_replicas=bootstrap_replicas, formats=formats)
    if inpainter is not None:
        raise UserError("--inpainter repairs the dead-channel patterns; use it with "
                        "--dead-patterns")
    pred = output_dir / "predictions.root"
    predict_files(list(data_files), str(pred), list(reconstructors), tree=tree,
                  out_tree="reco", names=names, step_events=step_events, nproc=nproc,
                  progress=progress, branches=branches or None)
    return validate([pred], output_dir, studies=studies, progress=progress,
                    bootstrap_replicas=bootstrap_replicas, formats=formats,
                    input_files=list(data_files), input_tree=tree,
                    input_branches=branches or None, worst=worst)
