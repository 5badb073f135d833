"""Scores of inpainted npho and time against the simulation's clean values.

Only sensors that were inpainted (invalid in the input, filled by the inpainter) are scored.
Per face (and for all faces together, key ``"all"``):

- ``n``: inpainted sensors scored;
- ``mae``, ``rmse``, ``bias``: npho error (inpainted - clean), photons;
- ``rel_n``: sensors with clean npho >= ``min_npho`` used for the relative error;
- ``rel_bias``: mean relative error; ``rel68``: 68% quantile of |relative error|;
  ``sigma68``: half-width of the central 68% interval of the relative error;
- ``time_n``, ``time_mae_ns``, ``time_rmse_ns``, ``time_bias_ns``: time error (ns) where both
  the clean time and the inpainted time are valid.
"""

from __future__ import annotations

import math

import numpy as np

from xecreco.geometry import Face, design_geometry
from xecreco.normalization import valid_values

__all__ = ["InpaintScorer", "score_file", "format_scores", "usable"]


def usable(values: np.ndarray) -> np.ndarray:
    """True where a file value is a real number (finite and not an invalid-sensor sentinel):
    :func:`xecreco.normalization.valid_values`."""
    return valid_values(np.asarray(values))


class InpaintScorer:
    """Streaming accumulator of inpainting errors, per face.

    Args:
        min_npho: clean npho (photons) below which a sensor is left out of the relative error.
    """

    def __init__(self, min_npho: float = 100.0) -> None:
        self.min_npho = float(min_npho)
        self._face = np.asarray(design_geometry().face)
        self._npho_err: list[np.ndarray] = []
        self._rel_err: list[np.ndarray] = []
        self._time_err: list[np.ndarray] = []
        self._npho_face: list[np.ndarray] = []
        self._rel_face: list[np.ndarray] = []
        self._time_face: list[np.ndarray] = []

    def add(self, npho: np.ndarray, time_s: np.ndarray, valid_time: np.ndarray,
            clean_npho: np.ndarray, clean_time_s: np.ndarray, inpainted: np.ndarray) -> None:
        """Add a batch.

        Args:
            npho: (N, 4760) inpainted npho, photons.
            time_s: (N, 4760) inpainted time, s.
            valid_time: (N, 4760) bool, True where the inpainted time is valid.
            clean_npho: (N, 4760) clean npho (``nphoClean``), photons.
            clean_time_s: (N, 4760) clean time (``timeClean``), s; sentinels allowed.
            inpainted: (N, 4760) bool, the sensors that were filled.
        """
        inpainted = np.asarray(inpainted, dtype=bool)
        clean_npho = np.asarray(clean_npho, dtype=np.float64)
        scored = inpainted & usable(clean_npho)
        ev, sensor = np.nonzero(scored)
        truth = clean_npho[ev, sensor]
        err = np.asarray(npho, dtype=np.float64)[ev, sensor] - truth
        self._npho_err.append(err)
        self._npho_face.append(self._face[sensor])
        bright = truth >= self.min_npho
        self._rel_err.append(err[bright] / truth[bright])
        self._rel_face.append(self._face[sensor[bright]])

        clean_time_s = np.asarray(clean_time_s, dtype=np.float64)
        timed = inpainted & np.asarray(valid_time, dtype=bool) & usable(clean_time_s)
        ev, sensor = np.nonzero(timed)
        terr = (np.asarray(time_s, dtype=np.float64)[ev, sensor] - clean_time_s[ev, sensor]) * 1e9
        self._time_err.append(terr)
        self._time_face.append(self._face[sensor])

    def result(self) -> dict[str, dict[str, float]]:
        """Scores per face name (lower case, e.g. ``"inner"``) and ``"all"``; NaN-free (None)."""
        def cat(parts):
            return np.concatenate(parts) if parts else np.zeros(0)

        err, face = cat(self._npho_err), cat(self._npho_face).astype(int)
        rel, rel_face = cat(self._rel_err), cat(self._rel_face).astype(int)
        terr, tface = cat(self._time_err), cat(self._time_face).astype(int)
        out = {}
        groups = [(f.name.lower(), int(f)) for f in Face] + [("all", None)]
        for name, code in groups:
            sel = np.ones(len(err), bool) if code is None else face == code
            rsel = np.ones(len(rel), bool) if code is None else rel_face == code
            tsel = np.ones(len(terr), bool) if code is None else tface == code
            if not sel.any():
                continue
            out[name] = _summary(err[sel], rel[rsel], terr[tsel])
        return out


def _summary(err: np.ndarray, rel: np.ndarray, terr: np.ndarray) -> dict:
    def maybe(fn, values):
        return float(fn(values)) if len(values) else None

    row = {
        "n": int(len(err)),
        "mae": maybe(lambda e: np.mean(np.abs(e)), err),
        "rmse": maybe(lambda e: math.sqrt(np.mean(e * e)), err),
        "bias": maybe(np.mean, err),
        "rel_n": int(len(rel)),
        "rel_bias": maybe(np.mean, rel),
        "rel68": maybe(lambda r: np.quantile(np.abs(r), 0.68), rel),
        "sigma68": maybe(lambda r: 0.5 * (np.quantile(r, 0.84) - np.quantile(r, 0.16)), rel),
        "time_n": int(len(terr)),
        "time_mae_ns": maybe(lambda e: np.mean(np.abs(e)), terr),
        "time_rmse_ns": maybe(lambda e: math.sqrt(np.mean(e * e)), terr),
        "time_bias_ns": maybe(np.mean, terr),
    }
    return row


def score_file(path, tree: str | None = None, step_events: int | None = None,
               min_npho: float = 100.0) -> dict[str, dict[str, float]]:
    """Score an inpainted file (from :func:`xecreco.models.pipelines.inpaint.inpaint_file`).

    The file needs the ``inpainted`` branch and the simulation's ``nphoClean``/``timeClean``.
    """
    from xecreco.io.reader import iterate_batches
    from xecreco.io.rootfile import list_branches
    from xecreco.io.schema import DEFAULT_TREE
    from xecreco.errors import UserError

    tree = tree or DEFAULT_TREE
    names = set(list_branches(path, tree))
    missing = [b for b in ("inpainted", "nphoClean", "timeClean") if b not in names]
    if missing:
        raise UserError(
            f"{path}: tree '{tree}' has no {', '.join(missing)} branch: scoring needs an "
            "inpainted simulation file (xecreco inpaint on a file from xecreco simulate)")
    scorer = InpaintScorer(min_npho=min_npho)
    for batch in iterate_batches([path], tree=tree, extras=("inpainted", "nphoClean", "timeClean"),
                                 step_events=step_events):
        scorer.add(batch.npho, batch.time, batch.valid_time, batch.extras["nphoClean"],
                   batch.extras["timeClean"], batch.extras["inpainted"])
    return scorer.result()


def format_scores(scores: dict[str, dict[str, float]]) -> str:
    """A fixed-width text table of :meth:`InpaintScorer.result` (npho in photons, time in ns)."""
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    lines = [f"{'face':<8}{'n':>8}{'MAE':>10}{'RMSE':>10}{'bias':>10}{'rel68':>8}{'sig68':>8}"
             f"{'t MAE ns':>10}{'t bias ns':>10}"]
    for face, row in scores.items():
        lines.append(
            f"{face:<8}{row['n']:>8d}{fmt(row['mae'], '.1f'):>10}{fmt(row['rmse'], '.1f'):>10}"
            f"{fmt(row['bias'], '.1f'):>10}{fmt(row['rel68'], '.3f'):>8}"
            f"{fmt(row['sigma68'], '.3f'):>8}{fmt(row['time_mae_ns'], '.3f'):>10}"
            f"{fmt(row['time_bias_ns'], '.3f'):>10}")
    return "\n".join(lines)
