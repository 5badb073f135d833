"""``explain``: what a reconstruction looks at (what `xecreco explain` runs).

For any reconstruction, per-face occlusion (:mod:`.occlusion`). For a neural regressor (the
bundled ``default`` or any regressor checkpoint) also gradient x input per face and mean saliency
maps (:mod:`.gradients`) and the fusion attention between tokens per depth class
(:mod:`.attention`). The folder receives ``index.html``, ``explain.json`` and
``plots/explain_*.<ext>`` (PNG, or each of ``formats``); everything is written to a hidden
temporary folder first and moved into place at the end, so an interrupted run leaves no
half-written page.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.io.paths import make_temp_dir, remove_stale_temps

__all__ = ["explain", "DEFAULT_EVENTS", "DEFAULT_GRADIENT_EVENTS", "MIN_EVENTS",
           "REQUIRED_TRUTH"]

#: Events reconstructed (7 times: unmasked and each face masked) for the occlusion study.
DEFAULT_EVENTS = 500
#: Events of the gradient and attention parts (the first ones of the occlusion sample).
DEFAULT_GRADIENT_EVENTS = 150
#: Fewest events for which the widths mean anything.
MIN_EVENTS = 50
#: Truth branches the residuals need.
REQUIRED_TRUTH = ("energyTruth", "uvwTruth", "timeTruth")
#: File suffixes of the plot formats (earlier explain plots with these are replaced).
_PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def _load_events(files, tree: str, events: int, branches=None):
    """The first ``events`` events of ``files`` with the required truth (UserError otherwise)."""
    from xecreco.io.reader import iterate_batches
    from xecreco.io.rootfile import count_entries, list_branches

    files = [str(f) for f in files]
    if not files:
        raise UserError("no input file given; usage: xecreco explain SIM.root -r RECO -o DIR")
    for path in files:
        if not Path(path).is_file():
            raise UserError(f"{path}: no such input file")
        present = set(list_branches(path, tree))
        missing = [b for b in REQUIRED_TRUTH
                   if (branches.file_name(b) if branches is not None else b) not in present]
        if missing:
            raise UserError(f"{path}: tree '{tree}' has no truth branch {', '.join(missing)}; "
                            "explain measures resolutions and needs simulated input with truth "
                            "(e.g. from `xecreco simulate`)")
    total = count_entries(files, tree)
    if total < MIN_EVENTS:
        raise UserError(f"{files[0]}: only {total} events in tree '{tree}'; explain needs at "
                        f"least {MIN_EVENTS} to measure resolutions: simulate more events")
    batches = list(iterate_batches(files, tree=tree, branches=branches,
                                   truth=list(REQUIRED_TRUTH),
                                   entry_stop=min(total, int(events)), prefetch=False))
    from xecreco.io.batch import EventBatch

    if len(batches) == 1:
        return batches[0]
    return EventBatch(**{
        name: (np.concatenate([getattr(b, name) for b in batches])
               if getattr(batches[0], name) is not None else None)
        for name in ("npho", "time", "valid_npho", "valid_time", "run", "event", "entry",
                     "vertex")},
        truth={k: np.concatenate([b.truth[k] for b in batches]) for k in batches[0].truth})


def _reconstructor(spec):
    """(reconstructor, label) from a registered name, a checkpoint path or an object."""
    if isinstance(spec, (str, Path)):
        from xecreco.models.registry import create_reconstructor

        return create_reconstructor(str(spec)), str(spec)
    return spec, getattr(spec, "name", type(spec).__name__)


def _is_neural(reconstructor) -> bool:
    from xecreco.models.regressor.reconstructor import CheckpointReconstructor

    return isinstance(reconstructor, CheckpointReconstructor)


def explain(input_files, reconstructor, output_dir, *, events: int = DEFAULT_EVENTS,
            gradient_events: int = DEFAULT_GRADIENT_EVENTS, tree: str = "tree",
            branches=None, formats=("png",), progress: bool = True) -> dict:
    """Write the explain page of ``reconstructor`` on simulated ``input_files`` to ``output_dir``.

    Args:
        input_files: simulated input ROOT file(s) with ``energyTruth``, ``uvwTruth``,
            ``timeTruth`` (tree ``tree``).
        reconstructor: registered name (e.g. ``default``, ``classical``), checkpoint path, or a
            :class:`~xecreco.models.base.Reconstructor` object.
        output_dir: page folder (created; earlier explain files in it are replaced).
        events: events for the occlusion study (the first ones of the input; at least
            :data:`MIN_EVENTS`).
        gradient_events: events for gradients and attention (the first of those).
        branches: :class:`~xecreco.io.schema.BranchNames` for files whose branches are named
            differently (None: the canonical names).
        formats: plot file formats (matplotlib extensions: png, pdf, svg); the page shows the
            first and links the others.
        progress: print one line per step to stderr.
    Returns:
        The summary written to ``explain.json``: ``occlusion``, and for neural reconstructions
        ``grad_x_input`` (output -> face -> {"mean", "mean_abs"}), ``gradient_units`` and
        ``attention`` (``labels``, ``classes``, ``counts``, ``cls_by_face``, ``weights``), plus
        ``outputs`` (paths written).
    """
    import sys

    from xecreco.validation.explain import page
    from xecreco.validation.explain.occlusion import occlusion
    from xecreco.validation.report import write_summary

    def say(text):
        if progress:
            print(f"explain: {text}", file=sys.stderr, flush=True)

    events, gradient_events = int(events), int(gradient_events)
    if events < MIN_EVENTS:
        raise UserError(f"--events {events} is too few to measure resolutions; use at least "
                        f"{MIN_EVENTS}")
    if gradient_events < 1:
        raise UserError(f"--gradient-events must be at least 1, got {gradient_events}")
    formats = tuple(formats)
    if not formats:
        raise UserError("no plot format given; use e.g. --format png")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"{output_dir}: exists and is not a folder; give a folder for the page")
    files = [input_files] if isinstance(input_files, (str, Path)) else list(input_files)
    batch = _load_events(files, tree, events, branches)
    if len(batch) < MIN_EVENTS:
        raise UserError(f"{files[0]}: only {len(batch)} events could be read; explain needs at "
                        f"least {MIN_EVENTS}")
    reco, label = _reconstructor(reconstructor)
    neural = _is_neural(reco)
    summary = {"format": "xecreco-explain", "format_version": 1, "reconstruction": label,
               "kind": "neural regressor" if neural else "not a neural network",
               "neural": neural, "input_files": [str(f) for f in files],
               "n_events": len(batch), "notes": []}
    if not neural:
        summary["notes"].append(
            f"'{label}' is not a neural regressor: this page gives the occlusion study only. "
            "Gradient × input, saliency maps and fusion attention need a differentiable "
            "network (the bundled 'default' regressor or a regressor checkpoint).")
    output_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(output_dir / "index.html")  # left by a run that was killed
    work = make_temp_dir(output_dir / "index.html")
    try:
        plot_dir = work / "plots"
        images: dict = {}
        say(f"occlusion: {len(batch)} events, 7 reconstructions")
        occ = occlusion(reco, batch, progress=lambda face: say(f"occlusion: {face} masked"))
        summary["occlusion"] = occ.to_dict()
        images["occlusion"] = [(page.occlusion_figure(occ, plot_dir, formats),
                                "σ68 with each face masked, relative to nothing masked")]
        if neural:
            from xecreco.validation.explain.attention import fusion_attention
            from xecreco.validation.explain.gradients import gradients

            sub = batch.select(slice(0, min(gradient_events, len(batch))))
            summary["n_gradient_events"] = len(sub)
            say(f"gradients: {len(sub)} events")
            grad = gradients(reco, sub, occ.outputs)
            table = grad.face_table()
            summary["grad_x_input"] = table
            summary["gradient_units"] = grad.units
            images["gradients"] = [(page.face_bar_figure(table, grad.units, plot_dir, formats),
                                    "gradient × input summed per face, mean over events")]
            images["saliency"] = []
            for q, sal in grad.saliency.items():
                say(f"saliency map: {q}")
                images["saliency"].append((
                    page.saliency_figure(sal, q, grad.units[q], plot_dir, formats),
                    f"mean saliency of {q}"))
            say("fusion attention")
            member = reco.members[0]
            att = fusion_attention(member, sub, sub.truth["uvwTruth"][:, 2])
            if len(reco.members) > 1:
                summary["notes"].append(f"Fusion attention of the first of {len(reco.members)} "
                                        "ensemble members; gradients average all members.")
            gate = getattr(reco, "gate", None)
            if gate is not None:
                summary["notes"].append(
                    "Gradients, saliency and attention are the main network's; its pile-up "
                    f"expert reconstructs the events with pileup_prob >= {gate.use_threshold:g} "
                    "(docs/reconstruction.md) and is not shown.")
            summary["attention"] = {"kind": att.kind, "labels": att.labels,
                                    "columns": att.columns, "classes": att.classes,
                                    "counts": att.counts, "cls_by_face": att.cls_by_face(),
                                    "weights": att.weights}
            caption = ("Perceiver cross-attention: mean weight of each latent per depth class"
                       if att.kind == "perceiver" else
                       "fusion layer {}: mean attention per depth class")
            images["attention"] = [(page.attention_figure(att, layer, plot_dir, formats),
                                    caption.format(layer + 1))
                                   for layer in range(att.weights.shape[0])]
        write_summary(work / "explain.json", summary)
        page.write_page(work / "index.html", summary, images, formats)
        outputs = _publish(work, output_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary["outputs"] = outputs
    say(f"wrote {outputs['index_html']}")
    return summary


def _publish(work: Path, output_dir: Path) -> dict:
    """Move the finished page into ``output_dir`` (atomic renames); explain plots (any of the
    plot formats) of an earlier page that this one does not produce are removed, other files are
    left alone."""
    plots = output_dir / "plots"
    plots.mkdir(exist_ok=True)
    new = sorted(p.name for p in (work / "plots").iterdir() if p.is_file())
    for old in plots.glob("explain_*"):
        if old.suffix in _PLOT_SUFFIXES and old.name not in new:
            old.unlink()
    for name in new:
        os.replace(work / "plots" / name, plots / name)
    for name in ("explain.json", "index.html"):
        os.replace(work / name, output_dir / name)
    return {"index_html": str(output_dir / "index.html"),
            "explain_json": str(output_dir / "explain.json"),
            "plots": [str(plots / n) for n in new]}
