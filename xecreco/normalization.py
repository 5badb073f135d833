"""Input normalisation and target standardisation, versioned and serialisable.

:class:`NormalizationSpec` turns an :class:`~xecreco.io.batch.EventBatch` into the network
features ``(N, 4760, 2)`` float32: channel 0 the transformed npho, channel 1 the sensor time
relative to a per-event reference, scaled. Invalid sensors (``valid_npho`` / ``valid_time`` False)
get the sentinel feature values (0 by default). The same spec is used by training, prediction and
ONNX export and is stored in every checkpoint (``to_dict``/``from_dict``, JSON-safe).

Validity (:func:`validity_masks`, the one definition): a sensor's npho is valid when
``|npho| < INVALID_THRESHOLD`` (9e9; NaN, +-inf and the MEG sentinel 1e10 are not); its time when
its npho is valid, ``|time| < 9e9`` and ``npho >= time_npho_threshold`` (photons). The reader
(:mod:`xecreco.io.validity`, which also counts the reasons), training, the checkpoint
reconstructor and the ONNX graphs all use it. :func:`validity_masks`,
:meth:`NormalizationSpec.raw_features` and :func:`scaled_npho` take numpy arrays and torch
tensors alike, so the exported graphs run this same code.

npho transform, with ``x = max(npho, npho_min) / npho_scale`` (npho in photons):

=========  ===============================  =======================================
scheme     forward y(x)                     inverse npho(y)
=========  ===============================  =======================================
log1p      log(1 + x)                       expm1(y) * npho_scale
sqrt       sqrt(x)                          y**2 * npho_scale
anscombe   2 (sqrt(x + 3/8) - sqrt(3/8))    ((y/2 + sqrt(3/8))**2 - 3/8) * npho_scale
linear     x                                y * npho_scale
=========  ===============================  =======================================

Every scheme maps npho = 0 to 0. The inverse clips ``y`` to the image of ``npho_min``, so it never
returns less than ``npho_min``. For float32 input, log1p is evaluated as ``log(1 + x)`` in float32
(absolute error below 2.4e-7, and several times faster than numpy's float32 log1p).

Time: ``t_feature = (t_ns - reference_ns - time_shift_ns) / time_scale_ns`` with the sensor time
``t_ns`` in ns (files store seconds). The reference (ns) is the mean time of the
``reference_k`` earliest sensors with a valid time and ``npho >= reference_npho_threshold``; when no
sensor passes the threshold, the ``reference_k`` earliest sensors with a valid time; when no sensor
has a valid time, 0. Regress times relative to this reference and add it back.

Pile-up window (``reference_window_ns``, off by default): a sensor's time is that of the earliest
light above threshold, so a pile-up photon earlier than the signal sets the times of the sensors
it lights, and with them the earliest-sensor reference (about 38 % of the events with >= 5 MeV of
pile-up at 2e6 Hz have a reference more than 3 ns off). With the window, only sensors no earlier
than ``reference_window_ns`` before the anchor, the median time of the ``reference_anchor_k``
brightest sensors with a valid time, may set the reference (the signal light is the brightest in
the gate); 4 ns and 30 sensors leave clean events as they are and bring that fraction to about
2 % (docs/reconstruction.md).

Defaults: log1p, npho_scale 1000 photons, npho_min 0, time_scale_ns 5, time_shift_ns 0,
reference_k 10, reference_npho_threshold 300 photons (about 50 photo-electrons at 15 % PDE),
sentinels 0.

Dead flag (regressors with ``model.dead_flag``, docs/models.md): ``features(batch, flag=True)``
appends a third channel, 1.0 where the sensor was not measured (:func:`not_measured`: invalid
npho, i.e. dead, or filled by an inpainter, ``batch.extras["inpainted"]``), else 0.0. Channels 0
and 1 are unchanged (repaired values where an inpainter filled them).

:class:`TargetScaling` standardises regression targets, ``(value - mean) / scale``, per target
(vector targets per component), so no loss needs a tiny beta.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from xecreco.earliest import brightest_median_time as _brightest_median_time
from xecreco.earliest import mean_earliest as _mean_earliest
from xecreco.errors import UserError
from xecreco.io.batch import N_SENSORS, EventBatch
from xecreco.io.masks import CACHE_BLOCK_EVENTS, store_where_valid
from xecreco.io.prefetch import prefetch
from xecreco.io.schema import INPAINTED_BRANCH, INVALID_THRESHOLD

__all__ = [
    "NORMALIZATION_VERSION",
    "NPHO_SCHEMES",
    "NormalizationSpec",
    "TargetScaling",
    "batch_not_measured",
    "normalised_batches",
    "not_measured",
    "scaled_npho",
    "valid_values",
    "validity_masks",
]

NORMALIZATION_VERSION = 1
NPHO_SCHEMES = ("log1p", "sqrt", "anscombe", "linear")
_ANSCOMBE_C = 3.0 / 8.0
_SQRT_C = math.sqrt(_ANSCOMBE_C)


def _is_tensor(values) -> bool:
    """True for torch tensors (checked without importing torch)."""
    return type(values).__module__.split(".")[0] == "torch"


def valid_values(values):
    """True where a raw file value is usable: ``|value| < INVALID_THRESHOLD`` (False for NaN,
    +-inf and the MEG sentinel 1e10). numpy arrays and torch tensors alike."""
    return abs(values) < INVALID_THRESHOLD


def validity_masks(npho, time, time_npho_threshold: float, dead=None):
    """``(valid_npho, valid_time)`` from raw npho (photons) and sensor times (s): the one
    validity definition (module docstring). ``dead`` (same shape, bool, optional) marks further
    sensors invalid. numpy arrays (float32 comparisons) and torch tensors alike; the inputs are
    not modified."""
    if isinstance(npho, np.ndarray):
        time_npho_threshold = npho.dtype.type(time_npho_threshold)
    valid_npho = valid_values(npho)
    if dead is not None:
        valid_npho = valid_npho & ~dead
    valid_time = valid_npho & valid_values(time) & (npho >= time_npho_threshold)
    return valid_npho, valid_time


def not_measured(valid_npho, inpainted=None):
    """(N, 4760) bool, True where a sensor's value was not measured: its npho is invalid (a dead
    channel) or an inpainter filled it (``inpainted``, (N, 4760) bool or None). The one
    definition of the regressor's dead flag; numpy arrays and torch tensors alike."""
    flag = ~valid_npho
    return flag if inpainted is None else flag | inpainted


def batch_not_measured(batch: EventBatch) -> np.ndarray:
    """:func:`not_measured` of a batch: its ``valid_npho`` and, when an inpainter repaired it
    (in memory, or a file with the ``inpainted`` branch read into ``extras``), that mask."""
    inpainted = batch.extras.get(INPAINTED_BRANCH)
    if inpainted is not None:
        inpainted = np.asarray(inpainted, dtype=bool)
        if inpainted.shape != np.shape(batch.valid_npho):
            raise UserError(f"the '{INPAINTED_BRANCH}' mask holds {inpainted.shape} values, the "
                            f"batch {np.shape(batch.valid_npho)}; it must be one bool per sensor "
                            "and event (as xecreco inpaint writes it)")
    return not_measured(np.asarray(batch.valid_npho, dtype=bool), inpainted)


def _float_dtype(values) -> np.dtype:
    dtype = np.result_type(np.asarray(values).dtype, np.float32)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


#: A target whose standard deviation is at most this fraction of its |mean| (plus
#: :data:`MIN_ABSOLUTE_SPREAD`) has no spread: float64 std of identical values is ~1e-17 of the
#: value, not 0 (52.83 MeV photons gave an energy scale of 7e-18 GeV).
MIN_RELATIVE_SPREAD = 1.0e-6
#: Absolute floor of the spread test, in the target's file unit (GeV, cm, ns, count).
MIN_ABSOLUTE_SPREAD = 1.0e-12


def has_spread(mean, std):
    """Whether a target with this mean and standard deviation (file units, arrays broadcast)
    has a spread to standardise by: ``std > MIN_RELATIVE_SPREAD * |mean| + MIN_ABSOLUTE_SPREAD``."""
    return np.asarray(std) > MIN_RELATIVE_SPREAD * np.abs(np.asarray(mean)) + MIN_ABSOLUTE_SPREAD


@dataclass(frozen=True)
class NormalizationSpec:
    """How raw sensor values become network features (see the module docstring for formulas).

    Attributes:
        version: format version of the spec.
        npho_scheme: "log1p", "sqrt", "anscombe" or "linear".
        npho_scale: photons per unit before the transform.
        npho_min: lower clip of npho (photons) before the transform.
        time_scale_ns: ns per feature unit.
        time_shift_ns: ns subtracted after the reference.
        reference_k: number of earliest sensors averaged for the time reference.
        reference_npho_threshold: minimum npho (photons) of the reference sensors.
        reference_window_ns: None, or the pile-up window (ns): only sensors no earlier than
            this before the anchor (the median time of the ``reference_anchor_k`` brightest
            sensors) may set the reference (module docstring).
        reference_anchor_k: number of brightest sensors whose median time is the anchor.
        npho_sentinel: npho feature value at sensors with invalid npho.
        time_sentinel: time feature value at sensors with invalid time.
    """

    version: int = NORMALIZATION_VERSION
    npho_scheme: str = "log1p"
    npho_scale: float = 1000.0
    npho_min: float = 0.0
    time_scale_ns: float = 5.0
    time_shift_ns: float = 0.0
    reference_k: int = 10
    reference_npho_threshold: float = 300.0
    reference_window_ns: float | None = None
    reference_anchor_k: int = 30
    npho_sentinel: float = 0.0
    time_sentinel: float = 0.0

    def __post_init__(self):
        if self.version != NORMALIZATION_VERSION:
            raise UserError(
                f"normalisation spec version {self.version} is not supported (this xecreco reads "
                f"version {NORMALIZATION_VERSION}); re-create the checkpoint or config"
            )
        if self.npho_scheme not in NPHO_SCHEMES:
            raise UserError(
                f"normalisation npho_scheme '{self.npho_scheme}' is unknown; use one of "
                f"{', '.join(NPHO_SCHEMES)}"
            )
        for name in ("npho_scale", "time_scale_ns"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserError(f"normalisation {name} must be a positive number, got {value!r}")
        lowest = {"log1p": -1.0, "sqrt": 0.0, "anscombe": -_ANSCOMBE_C, "linear": -math.inf}
        limit = lowest[self.npho_scheme] * self.npho_scale
        if not self.npho_min >= limit or (self.npho_scheme == "log1p" and self.npho_min == limit):
            raise UserError(
                f"normalisation npho_min {self.npho_min} is outside the domain of "
                f"{self.npho_scheme} (must be "
                f"{'>' if self.npho_scheme == 'log1p' else '>='} {limit})"
            )
        for name in ("reference_k", "reference_anchor_k"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 1 <= value <= N_SENSORS):
                raise UserError(f"normalisation {name} must be an integer in 1..{N_SENSORS}, "
                                f"got {value!r}")
        window = self.reference_window_ns
        if window is not None and not (isinstance(window, (int, float)) and math.isfinite(window)
                                       and window > 0):
            raise UserError(f"normalisation reference_window_ns must be a positive number of ns "
                            f"or null (no pile-up window), got {window!r}")

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        """All fields as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, mapping: dict | None) -> NormalizationSpec:
        """Rebuild from :meth:`to_dict` output; unknown keys are a UserError."""
        mapping = dict(mapping or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise UserError(
                f"unknown normalisation key(s) {', '.join(unknown)}; known keys: "
                f"{', '.join(sorted(known))}"
            )
        for key in ("reference_k", "reference_anchor_k"):
            if key in mapping and isinstance(mapping[key], float) and mapping[key].is_integer():
                mapping[key] = int(mapping[key])
        return cls(**mapping)

    # ------------------------------------------------------------------ npho
    def npho_forward(self, npho):
        """Feature values from npho (photons); float32 in gives float32 out (NaN -> npho_min)."""
        dtype = _float_dtype(npho)
        x = np.fmax(np.asarray(npho, dtype=dtype), dtype.type(self.npho_min))
        x *= dtype.type(1.0 / self.npho_scale)
        return self._npho_transform_inplace(x)

    def _npho_transform_inplace(self, x):
        """y(x) of the scheme, in place, on a numpy array or a torch tensor (returned)."""
        scheme = self.npho_scheme
        tensor = _is_tensor(x)
        const = float if tensor else x.dtype.type
        if scheme == "log1p":
            if tensor or x.dtype == np.float32:
                x += const(1.0)
                x.log_() if tensor else np.log(x, out=x)
            else:
                np.log1p(x, out=x)
        elif scheme == "sqrt":
            x.sqrt_() if tensor else np.sqrt(x, out=x)
        elif scheme == "anscombe":
            x += const(_ANSCOMBE_C)
            x.sqrt_() if tensor else np.sqrt(x, out=x)
            x -= const(_SQRT_C)
            x *= const(2.0)
        return x

    def npho_inverse(self, features):
        """npho (photons) from feature values: the inverse of :meth:`npho_forward`."""
        dtype = _float_dtype(features)
        y_min = self.npho_forward(np.array([self.npho_min], dtype=np.float64))[0]
        y = np.maximum(np.asarray(features, dtype=np.float64), y_min)
        x = scaled_npho(y, self.npho_scheme)
        return np.maximum(x * self.npho_scale, self.npho_min).astype(dtype, copy=False)

    # ------------------------------------------------------------------ time
    def time_forward(self, time_ns, reference_ns=0.0):
        """Feature values from sensor times (ns) and the event reference (ns, scalar or (N, 1))."""
        time_ns = np.asarray(time_ns)
        dtype = _float_dtype(time_ns)
        reference_ns = np.asarray(reference_ns, dtype=np.float64)
        offset = (reference_ns + self.time_shift_ns) / self.time_scale_ns
        return (time_ns.astype(dtype) / dtype.type(self.time_scale_ns) - offset.astype(dtype))

    def time_inverse(self, features, reference_ns=0.0):
        """Sensor times (ns) from feature values and the event reference (ns); float64."""
        features = np.asarray(features, dtype=np.float64)
        reference_ns = np.asarray(reference_ns, dtype=np.float64)
        return features * self.time_scale_ns + self.time_shift_ns + reference_ns

    def time_reference_ns(self, batch: EventBatch) -> np.ndarray:
        """(N,) float64 per-event time reference, ns (see the module docstring)."""
        return self._reference_ns(batch.npho, batch.time, batch.valid_time)

    def _reference_ns(self, npho, time, valid_time):
        """(N,) time reference (ns) from npho (photons), sensor times (s) and ``valid_time``;
        float64 for numpy, the input's dtype for torch tensors."""
        if _is_tensor(npho):
            lit = (npho >= float(self.reference_npho_threshold)) & valid_time
            if self.reference_window_ns is not None:
                lit = lit & (time >= self._window_start_s(npho, time, valid_time)[:, None])
            reference, found = _mean_earliest(time, lit, self.reference_k)
            fallback, _ = _mean_earliest(time, valid_time, self.reference_k)
            return (reference.where(found, fallback)) * 1e9
        lit = npho >= np.float32(self.reference_npho_threshold)
        lit &= valid_time
        if self.reference_window_ns is not None:
            lit &= time >= self._window_start_s(npho, time, valid_time).astype(
                np.float32)[:, None]
        reference, found = _mean_earliest(time, lit, self.reference_k)
        if not found.all():
            rows = np.flatnonzero(~found)
            fallback, _ = _mean_earliest(time[rows], valid_time[rows], self.reference_k)
            reference[rows] = fallback
        return reference * 1e9

    def _window_start_s(self, npho, time, valid_time):
        """(N,) earliest sensor time (s) that may set the reference: the anchor (median time of
        the ``reference_anchor_k`` brightest valid sensors) minus ``reference_window_ns``;
        -inf for events without a valid time."""
        anchor = _brightest_median_time(npho, time, valid_time, self.reference_anchor_k)
        return anchor - self.reference_window_ns * 1e-9

    # ------------------------------------------------------------------ features
    def features(self, batch: EventBatch, out: np.ndarray | None = None,
                 reference_ns: np.ndarray | None = None, flag: bool = False) -> np.ndarray:
        """(N, 4760, 2) float32 features [npho, time]; sentinel values at invalid sensors.

        ``flag``: (N, 4760, 3), the third channel the dead flag (1.0 where
        :func:`batch_not_measured`, else 0.0; module docstring).
        ``out`` (optional) is a preallocated (N, 4760, C) float32 array to fill (e.g. a slot of a
        training shuffle buffer). ``reference_ns`` (optional, (N,) ns) is this batch's
        :meth:`time_reference_ns` when the caller has it already (it is the costly part).
        The time reference is found for the whole batch at once; the element-wise passes run in
        blocks of events small enough for the CPU cache (they are memory-bound).
        """
        n = len(batch)
        channels = 3 if flag else 2
        if out is None:
            out = np.empty((n, N_SENSORS, channels), dtype=np.float32)
        elif out.shape[-1] != channels:
            raise ValueError(f"features: out has {out.shape[-1]} channels, not {channels}")
        if flag:
            out[:, :, 2] = batch_not_measured(batch)
        if reference_ns is None:
            reference_ns = self.time_reference_ns(batch)
        offset = ((np.asarray(reference_ns, dtype=np.float64) + self.time_shift_ns)
                  / self.time_scale_ns).astype(np.float32)
        for start in range(0, n, CACHE_BLOCK_EVENTS):
            rows = slice(start, start + CACHE_BLOCK_EVENTS)
            self._features_block(batch.npho[rows], batch.time[rows], batch.valid_npho[rows],
                                 batch.valid_time[rows], offset[rows], out[rows])
        return out

    def features_and_reference(self, batch: EventBatch, flag: bool = False
                               ) -> tuple[np.ndarray, np.ndarray]:
        """``(features(batch, flag=flag), time_reference_ns(batch))`` with the reference found
        once."""
        reference = self.time_reference_ns(batch)
        return self.features(batch, reference_ns=reference, flag=flag), reference

    def raw_features(self, npho, time, valid_npho, valid_time, dead_flag=None):
        """``(features (N, 4760, 2), time_reference_ns (N,))`` from raw npho (photons), sensor
        times (s) and their masks (:func:`validity_masks`): numpy arrays or torch tensors (the
        ONNX graphs call this). Same values as :meth:`features` (float32 rounding aside).
        ``dead_flag`` ((N, 4760) bool, :func:`not_measured`), given: a third channel, 1.0 there."""
        if not _is_tensor(npho):
            extras = {}
            if dead_flag is not None:  # as a batch whose not-measured sensors are all inpainted
                extras[INPAINTED_BRANCH] = np.asarray(dead_flag, dtype=bool)
            batch = EventBatch(npho=npho, time=time, valid_npho=valid_npho,
                               valid_time=valid_time, run=None, event=None, entry=None,
                               extras=extras)
            return self.features_and_reference(batch, flag=dead_flag is not None)
        import torch

        reference = self._reference_ns(npho, time, valid_time)
        offset = (reference + self.time_shift_ns) * (1.0 / self.time_scale_ns)
        channels = [self._npho_channel(npho, valid_npho),
                    self._time_channel(time, valid_time, offset)]
        if dead_flag is not None:
            channels.append(dead_flag.to(channels[0].dtype))
        return torch.stack(channels, dim=2), reference

    def _npho_channel(self, npho, valid_npho, out=None):
        """npho feature (float32) with the sentinel at invalid sensors; numpy (written into
        ``out`` when given) or torch."""
        # maximum (faster than fmax) lets NaN through, but NaN is possible only at invalid
        # sensors, whose values the masked store replaces by the sentinel
        if _is_tensor(npho):
            x = npho.clamp(min=float(self.npho_min)) * (1.0 / self.npho_scale)
            x = self._npho_transform_inplace(x)
            return x.where(valid_npho, x.new_full((), float(self.npho_sentinel)))
        # against a row of the bound: numpy's SIMD loop (about 2x faster than a scalar bound)
        bound = np.full(npho.shape[-1:], self.npho_min, dtype=np.float32)
        x = np.maximum(npho, bound, dtype=np.float32)
        x *= np.float32(1.0 / self.npho_scale)
        with np.errstate(invalid="ignore"):
            self._npho_transform_inplace(x)
        return store_where_valid(x, valid_npho, self.npho_sentinel, out=out)

    def _time_channel(self, time, valid_time, offset, out=None):
        """time feature ``time_s * 1e9 / time_scale_ns - offset`` (``offset`` (N,) =
        (reference + time_shift_ns) / time_scale_ns) with the sentinel at invalid sensors."""
        if _is_tensor(time):
            t = time * (1e9 / self.time_scale_ns) - offset[:, None]
            return t.where(valid_time, t.new_full((), float(self.time_sentinel)))
        t = np.multiply(time, np.float32(1e9 / self.time_scale_ns), dtype=np.float32)
        t -= offset[:, None]
        return store_where_valid(t, valid_time, self.time_sentinel, out=out)

    def _features_block(self, npho_raw, time_raw, valid_npho, valid_time, offset, out) -> None:
        self._npho_channel(npho_raw, valid_npho, out=out[:, :, 0])
        self._time_channel(time_raw, valid_time, offset, out=out[:, :, 1])


def normalised_batches(batches, spec: NormalizationSpec, *, ahead: bool = True):
    """Yield ``(batch, features, time_reference_ns)`` for each batch of ``batches`` (e.g. a
    :class:`~xecreco.io.reader.BatchReader`), the features computed by
    :meth:`NormalizationSpec.features_and_reference`; with ``ahead`` in a background thread, one
    batch ahead of the caller (:func:`xecreco.io.prefetch.prefetch`: same values, same order,
    errors raised as themselves)."""
    def normalise(batch):
        return (batch, *spec.features_and_reference(batch))

    if not ahead:
        yield from map(normalise, batches)
        return
    yield from prefetch(batches, normalise, name="xecreco-normalise")


def scaled_npho(features, scheme: str):
    """``npho / npho_scale`` from npho feature values of ``scheme`` (no clipping).

    Works on numpy arrays and torch tensors alike, so the networks that need the light itself
    (e.g. the regressor's light summary) invert the transform with this same code. Feature 0 (the
    invalid-sensor sentinel) gives 0 for every scheme.
    """
    if scheme == "log1p":
        if isinstance(features, np.ndarray):
            return np.expm1(features)
        return features.exp() - 1.0  # a tensor: ONNX has no expm1 (absolute error ~1e-7)
    if scheme == "sqrt":
        return features * features
    if scheme == "anscombe":
        return (features / 2.0 + _SQRT_C) ** 2 - _ANSCOMBE_C
    if scheme == "linear":
        return features
    raise UserError(f"unknown npho scheme '{scheme}': use one of {', '.join(NPHO_SCHEMES)}")


def _as_vector(value) -> float | list[float]:
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else [float(v) for v in array.ravel()]


@dataclass
class TargetScaling:
    """Per-target standardisation ``(value - mean) / scale``, in file units.

    ``mean`` and ``scale`` map a target name (e.g. "energy", "u", "time") to a float, or for
    vector targets (e.g. "direction") a list applied along the last axis. Works on numpy arrays
    and torch tensors alike.
    """

    mean: dict = field(default_factory=dict)
    scale: dict = field(default_factory=dict)
    version: int = 1

    def __post_init__(self):
        if set(self.mean) != set(self.scale):
            raise UserError(
                f"target scaling has means for {sorted(self.mean)} but scales for "
                f"{sorted(self.scale)}; both need the same targets"
            )
        for name, value in self.scale.items():
            if not np.all(np.isfinite(value)) or np.any(np.asarray(value) <= 0):
                raise UserError(f"target scaling: scale of '{name}' must be positive, got {value}")

    @property
    def names(self) -> tuple[str, ...]:
        """Target names, sorted."""
        return tuple(sorted(self.mean))

    @classmethod
    def fit(cls, targets: dict) -> TargetScaling:
        """Mean and standard deviation of each target array ``(N,)`` or ``(N, k)`` (per component).

        A target without spread (see :func:`has_spread`) gets scale 1.
        """
        mean, scale = {}, {}
        for name, values in targets.items():
            values = np.asarray(values, dtype=np.float64)
            values = values.reshape(len(values), -1) if values.ndim > 1 else values[:, None]
            values = values[np.all(np.isfinite(values), axis=1)]
            if len(values) == 0:
                raise UserError(f"target scaling: no finite values of '{name}' to fit")
            mu = values.mean(axis=0)
            sigma = values.std(axis=0)
            sigma = np.where(has_spread(mu, sigma), sigma, 1.0)
            single = np.asarray(targets[name]).ndim == 1
            mean[name] = float(mu[0]) if single else _as_vector(mu)
            scale[name] = float(sigma[0]) if single else _as_vector(sigma)
        return cls(mean=mean, scale=scale)

    def _parameters(self, name: str, values):
        if name not in self.mean:
            raise UserError(
                f"target scaling has no target '{name}'; it has {', '.join(self.names) or 'none'}"
            )
        mean, scale = self.mean[name], self.scale[name]
        if _is_tensor(values):
            import torch

            def convert(v):
                return torch.as_tensor(v, dtype=values.dtype, device=values.device)

            return convert(mean), convert(scale)
        dtype = _float_dtype(values)
        return np.asarray(mean, dtype=dtype), np.asarray(scale, dtype=dtype)

    def standardize(self, name: str, values):
        """``(values - mean) / scale`` for target ``name`` (numpy float32/64 or torch tensor)."""
        mean, scale = self._parameters(name, values)
        if not hasattr(values, "dtype"):
            values = np.asarray(values, dtype=mean.dtype)
        return (values - mean) / scale

    def destandardize(self, name: str, values):
        """``values * scale + mean``: the inverse of :meth:`standardize`."""
        mean, scale = self._parameters(name, values)
        if not hasattr(values, "dtype"):
            values = np.asarray(values, dtype=mean.dtype)
        return values * scale + mean

    def to_dict(self) -> dict:
        """JSON-serialisable dict."""
        return {"version": self.version, "mean": dict(self.mean), "scale": dict(self.scale)}

    @classmethod
    def from_dict(cls, mapping: dict) -> TargetScaling:
        """Rebuild from :meth:`to_dict` output."""
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - {"version", "mean", "scale"})
        if unknown:
            raise UserError(f"unknown target-scaling key(s) {', '.join(unknown)}")
        return cls(
            mean={k: _as_vector(v) for k, v in dict(mapping.get("mean", {})).items()},
            scale={k: _as_vector(v) for k, v in dict(mapping.get("scale", {})).items()},
            version=int(mapping.get("version", 1)),
        )
