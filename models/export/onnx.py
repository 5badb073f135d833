"""Shared pieces of every ONNX export (regressor and inpainter graphs).

- :class:`RawInputs`: raw file values -> validity masks and network features, in torch ops;
- :func:`sim_like_inputs`, :func:`sim_like_inpainted`, :func:`batch_from_raw`: check events
  (simulated-like raw values, an inpainted mask) and the reader's view of them;
- :func:`disagreement`: the float32 agreement tolerance every exported graph is checked with;
- :func:`save_checked`: metadata in, check run, and only then the file written atomically;
- :func:`read_metadata`: the xecreco metadata of an exported file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xecreco.geometry import R_INNER, design_geometry
from xecreco.geometry.constants import LXE_LIGHT_SPEED_CM_PER_NS
from xecreco.io.batch import EventBatch
from xecreco.io.paths import temp_path
from xecreco.io.validity import DEFAULT_TIME_NPHO_THRESHOLD
from xecreco.io.schema import FILL_VALUE, INPAINTED_BRANCH, SENTINEL
from xecreco.normalization import NormalizationSpec, not_measured, validity_masks

#: ONNX opset used by default.
DEFAULT_OPSET = 17
#: Agreement of an exported graph with xecreco's own result, per output (see
#: :func:`disagreement`): ``|got - want| <= AGREEMENT_ULPS * eps32 * max|want| + AGREEMENT_RTOL
#: * |want|``, i.e. float32 rounding at the output's scale (accumulated over the network's
#: depth) plus a relative part for values computed through exp (npho from a log feature).
AGREEMENT_ULPS = 64.0
AGREEMENT_RTOL = 1.0e-5
_EPS32 = float(np.finfo(np.float32).eps)


class RawInputs(nn.Module):
    """Raw file values -> validity masks and network features, in torch ops (export graphs).

    Shared by the regressor's :class:`PhysicalModel` and the inpainter's export wrapper
    (:mod:`xecreco.models.export.inpainter`). The masks and features are the one definition of
    :mod:`xecreco.normalization` (:func:`~xecreco.normalization.validity_masks`,
    :meth:`~xecreco.normalization.NormalizationSpec.raw_features`), which the reader, training
    and ``predict`` run on numpy arrays.

    Args:
        spec: input normalisation.
        time_npho_threshold: minimum npho (photons) for a sensor time to be valid (reader default).
    """

    def __init__(self, spec: NormalizationSpec,
                 time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD):
        super().__init__()
        self.spec = spec
        self.time_npho_threshold = float(time_npho_threshold)

    def inputs_to_features(self, npho: torch.Tensor, time: torch.Tensor,
                           dead: torch.Tensor | None = None, flag: bool = False,
                           inpainted: torch.Tensor | None = None):
        """``(features (N, 4760, C), time_reference_ns (N,), valid_npho, valid_time)``.

        ``dead`` (N, 4760) bool, optional: sensors marked invalid on top of the file's invalid
        values (as :func:`xecreco.models.pipelines.inpaint.apply_dead_mask` does). ``flag``: a
        third channel, the dead flag (:func:`~xecreco.normalization.not_measured` of the
        masks and ``inpainted`` (N, 4760) bool, the sensors an inpainter filled; None: none).
        """
        valid_npho, valid_time = validity_masks(npho, time, self.time_npho_threshold, dead)
        dead_flag = not_measured(valid_npho, inpainted) if flag else None
        features, reference = self.spec.raw_features(npho, time, valid_npho, valid_time,
                                                     dead_flag)
        return features, reference, valid_npho, valid_time


def sim_like_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(npho, time) (n, 4760) float32 resembling simulated photons, for export checks.

    Each event is a point source in the xenon (w 0.5-20 cm behind the inner face) whose light
    falls as A cos / d^2 on every sensor facing it (~1.5e5 photons at 50 MeV), with Poisson-like
    noise, light-propagation times at 8.5 cm/ns around a random event time (s), the time sentinel
    1e10 where npho < 50, a few dead sensors (1e10 in both), one NaN, and every fourth event
    dimmer. Not physics: only realistic ranges and the invalid-value conventions.
    """
    rng = np.random.default_rng(seed)
    geometry = design_geometry()
    u = rng.uniform(-20, 20, n)
    v = rng.uniform(-60, 60, n)
    w = rng.uniform(0.5, 20, n)
    r = w + R_INNER
    points = np.stack([-r * np.cos(v / R_INNER), r * np.sin(v / R_INNER), u], axis=1)
    delta = geometry.position[None] - points[:, None]
    dist = np.linalg.norm(delta, axis=-1)
    cos = np.clip(-np.sum(delta * geometry.normal[None], axis=-1) / dist, 0.0, None)
    area = np.where(geometry.is_mppc, 1.39, math.pi * 2.25**2)
    photons = rng.uniform(0.3, 1.0, n)[:, None] * 1.5e6 * area * cos / (4 * math.pi * dist**2)
    photons[::4] *= 0.05
    npho = photons + rng.normal(0.0, 1.0, photons.shape) * np.sqrt(photons + 4.0)
    time = (rng.uniform(-5, 5, n)[:, None] + dist / LXE_LIGHT_SPEED_CM_PER_NS + rng.normal(0, 0.3, dist.shape)) * 1e-9
    time = np.where(npho < 50, SENTINEL, time)
    dead = rng.random(npho.shape) < 0.02
    npho = np.where(dead, SENTINEL, npho).astype(np.float32)
    time = np.where(dead, SENTINEL, time).astype(np.float32)
    npho[0, 5] = np.nan
    return npho, time


def sim_like_inpainted(npho: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, 4760) bool: an ``inpainted`` mask for export checks, about 3 % of each event's
    sensors with a valid npho (as an inpainter marks the sensors it filled)."""
    rng = np.random.default_rng(seed + 11)
    with np.errstate(invalid="ignore"):
        valid = np.abs(npho) < 9e9
    return valid & (rng.random(npho.shape) < 0.03)


def batch_from_raw(npho: np.ndarray, time: np.ndarray,
                    time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD,
                    vertex: np.ndarray | None = None,
                    inpainted: np.ndarray | None = None) -> EventBatch:
    """An EventBatch with the reader's validity rules (used to check the export); ``vertex``
    (N, 3) cm and ``inpainted`` ((N, 4760) bool, into ``extras``), optional."""
    from xecreco.io.validity import ReaderStats, apply_validity

    npho, time = npho.copy(), time.copy()
    valid_npho, valid_time = apply_validity(npho, time, time_npho_threshold, ReaderStats())
    n = len(npho)
    ids = np.arange(n, dtype=np.int64)
    return EventBatch(npho=npho, time=time, valid_npho=valid_npho, valid_time=valid_time,
                      run=np.zeros(n, np.int64), event=ids, entry=ids,
                      vertex=None if vertex is None else np.asarray(vertex, np.float32),
                      extras={} if inpainted is None else {
                          INPAINTED_BRANCH: np.asarray(inpainted, dtype=bool)})


def save_checked(proto, metadata: dict, check, output: Path) -> dict:
    """Store ``metadata`` (str -> str) in the ONNX ``proto``, run ``check(serialised bytes)``
    (which raises UserError on a mismatch) and only then write ``output`` atomically (a fresh
    temporary name of :func:`xecreco.io.paths.temp_path`, renamed on success and removed on
    failure); returns what ``check`` returned."""
    import onnx

    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    result = check(proto.SerializeToString())
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(output)
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return result


def disagreement(got: np.ndarray, want: np.ndarray, valid: np.ndarray | None = None,
                 period: float | None = None) -> float:
    """Largest ``|got - want|`` in units of the export tolerance (<= 1 agrees): ``AGREEMENT_ULPS
    * eps32 * max|want| + AGREEMENT_RTOL * |want|``, the maximum taken over ``valid`` entries
    (default: all finite ``want`` other than the fill value). ``period`` (e.g. 360 for phi in
    deg) wraps differences to the nearest period. Used for every exported graph."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if valid is None:
        valid = np.isfinite(want) & (want != FILL_VALUE)
    if got.shape != want.shape:
        return math.inf
    diff = np.abs(got - want)
    if period is not None:
        diff = np.abs((got - want + 0.5 * period) % period - 0.5 * period)
    diff = np.where(np.isnan(diff) & np.isnan(want) & np.isnan(got), 0.0, diff)
    if not np.any(valid):
        return float(np.max(diff, initial=0.0) > 0) * math.inf
    scale = float(np.max(np.abs(want[valid])))
    tolerance = AGREEMENT_ULPS * _EPS32 * scale + AGREEMENT_RTOL * np.abs(want)
    ratio = np.where(diff == 0, 0.0, diff / np.maximum(tolerance, np.finfo(np.float64).tiny))
    return float(np.max(ratio))


def read_metadata(path: str | Path) -> dict:
    """The xecreco metadata of an exported ONNX file (JSON values decoded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {}
    for entry in proto.metadata_props:
        try:
            meta[entry.key] = json.loads(entry.value)
        except json.JSONDecodeError:
            meta[entry.key] = entry.value
    return meta
