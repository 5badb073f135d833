"""The ``local`` body of the masked-sensor network: a fast neighbourhood inpainting network.

A dead channel is best predicted from its own neighbourhood (the shower's light falls off
smoothly on the scale of a few sensors) plus a little global knowledge (how bright the event is,
where the light is). This body evaluates a small network only at the sensors whose values are
unknown (hidden by the training mask, or invalid in the input), which makes training cheap: the
cost is proportional to the number of hidden sensors, not to the 4760 sensors.

For every sensor the body has a fixed neighbourhood: its ``k_inner`` (inner face) or ``k_pmt``
(PMT faces) nearest sensors of the same face (straight-line distance of the design geometry),
ordered by distance rounded to 1 mm, then by the direction angle in the local (u, v, w) frame, so
that on the regular MPPC grid every slot means the same grid offset. Each prediction is a base
value plus a learned correction. The base is the mean of the visible neighbour features among
the ``base_slots`` nearest slots (npho feature over neighbours with a valid npho, time over
those with a valid time). Per face, two MLPs (hidden width ``hidden``, ``depth`` hidden layers,
GELU) read, per slot, the neighbour's (u, v, w) offset from the query (cm / 10), its visible
npho feature and its two validity flags (padding reads zeros), plus the query's own (u, v, w)
(cm / 100) and a global context vector:

- the npho MLP sees no times at all, so out-of-time light (pile-up) cannot disturb npho;
- the time MLP also reads each neighbour's time relative to the base time, clipped to
  +-``time_clip`` feature units (5 = 25 ns with the inpainter configs' 5 ns scale), so the time
  prediction shifts exactly with the event's times (a pile-up photon that moves the event's time
  reference moves the prediction with it) and far out-of-time neighbours stay in range.

The global context (width ``context_dim``) is an MLP of per-face summaries of the npho only: the
mean and the maximum of the visible npho feature and the visible fraction of every face, and the
npho-feature weighted mean and spread of the inner-face (u, v, w) (cm / 100).

Visible sensors are passed through unchanged (their output is their input), so the output of
:class:`LocalInpaintBody` is the full (N, 4760, 2) array the masked-sensor model returns, with
sensor-level outputs on every face (each of the 234 outer PMTs is its own query).

:meth:`LocalInpaintBody.forward_static` computes the same values without data-dependent shapes
(every sensor is evaluated, the queries are selected with ``torch.where``); the ONNX export
(:mod:`xecreco.models.export.inpainter`) switches to it with ``static_queries = True``. Training
and ``xecreco inpaint`` use the ``nonzero`` path, whose cost scales with the number of queries.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from xecreco.geometry import N_SENSORS, Face, design_geometry

__all__ = ["LOCAL_DEFAULTS", "LocalInpaintBody", "neighbourhood_table"]

#: Default ``local`` section of a masked-model config.
LOCAL_DEFAULTS = {
    "k_inner": 48,
    "k_pmt": 18,
    "hidden": 96,
    "depth": 2,
    "context_dim": 32,
    "base_slots": 8,
    "time_clip": 5.0,
}

#: Scale of the slot offsets (cm per unit) and of the query positions (cm per unit).
OFFSET_SCALE_CM = 10.0
POSITION_SCALE_CM = 100.0

_FACES = tuple(Face)
_FACE_NAMES = {Face.INNER: "inner", Face.OUTER: "outer", Face.US: "us", Face.DS: "ds",
               Face.TOP: "top", Face.BOTTOM: "bottom"}


def neighbourhood_table(ids: np.ndarray, k: int, geometry=None) -> tuple[np.ndarray, np.ndarray]:
    """``(table, offset)`` of the sensors ``ids`` of one face.

    ``table`` (len(ids), k) int64: sensor ids of each sensor's k nearest other sensors of the
    set, ordered by distance rounded to 1 mm and then by direction angle in the (u, v) plane of
    the (u, v, w) frame (w breaks remaining ties); N_SENSORS where the face has fewer than k
    other sensors. ``offset`` (len(ids), k, 3) float32: neighbour minus sensor (u, v, w), cm / 10,
    0 at padding.
    """
    geometry = geometry or design_geometry()
    ids = np.asarray(ids, dtype=np.int64)
    kk = min(k, len(ids) - 1)
    position = geometry.position[ids]
    uvw = geometry.uvw[ids]
    _, local = cKDTree(position).query(position, k=kk + 1)
    table = np.full((len(ids), k), N_SENSORS, dtype=np.int64)
    offset = np.zeros((len(ids), k, 3), dtype=np.float32)
    for row in range(len(ids)):
        others = local[row][local[row] != row][:kk]
        d = np.linalg.norm(position[others] - position[row], axis=1)
        delta = uvw[others] - uvw[row]
        angle = np.round(np.arctan2(delta[:, 1], delta[:, 0]), 3)
        order = np.lexsort((delta[:, 2], angle, np.round(d, 1)))
        table[row, :kk] = ids[others[order]]
        offset[row, :kk] = delta[order] / OFFSET_SCALE_CM
    return table, offset


class _FaceQueryNet(nn.Module):
    """Per-query MLPs of one face, one for npho and one for time (see the module doc)."""

    def __init__(self, ids: np.ndarray, k: int, hidden: int, depth: int, context_dim: int,
                 base_slots: int, time_clip: float):
        super().__init__()
        table, offset = neighbourhood_table(ids, k)
        full_table = np.full((N_SENSORS, k), N_SENSORS, dtype=np.int64)
        full_offset = np.zeros((N_SENSORS, k, 3), dtype=np.float32)
        full_table[ids], full_offset[ids] = table, offset
        self.register_buffer("table", torch.from_numpy(full_table), persistent=False)
        self.register_buffer("offset", torch.from_numpy(full_offset), persistent=False)
        self.register_buffer("ids", torch.from_numpy(np.asarray(ids, dtype=np.int64)),
                             persistent=False)
        self.base_slots = min(int(base_slots), k)
        self.time_clip = float(time_clip)
        extra = 3 + context_dim  # query position, global context
        self.mlp_npho = _mlp(k * (3 + 3) + extra, hidden, depth)  # npho, 2 flags, offset
        self.mlp_time = _mlp(k * (4 + 3) + extra, hidden, depth)  # + relative time

    def forward(self, padded, batch_index, sensor, position, context):
        """Predictions (M, 2) for the queries (``batch_index``, ``sensor``) each (M,) int64.

        ``padded`` (N, 4761, 4) visible inputs with a zero row for padding; ``position``
        (4760, 3) query positions; ``context`` (N, context_dim)."""
        values = padded[batch_index[:, None], self.table[sensor]]         # (M, K, 4)
        extra = torch.cat([position[sensor], context[batch_index]], dim=1)
        return self._predict(values, self.offset[sensor], extra)

    def forward_all(self, padded, position, context):
        """Predictions (N, n_face, 2) at every sensor of the face (in ``self.ids`` order), with
        no data-dependent shapes (the ONNX export path; same values as :meth:`forward`)."""
        n = padded.shape[0]
        values = padded[:, self.table[self.ids]]                          # (N, n, K, 4)
        offset = self.offset[self.ids].unsqueeze(0).expand(n, -1, -1, -1)
        count = self.ids.shape[0]
        extra = torch.cat([position[self.ids].unsqueeze(0).expand(n, -1, -1),
                           context.unsqueeze(1).expand(-1, count, -1)], dim=-1)
        return self._predict(values, offset, extra)

    def _predict(self, values, offset, extra):
        """(..., 2) predictions from the neighbour inputs ``values`` (..., K, 4), their
        ``offset`` (..., K, 3) and ``extra`` (..., 3 + context_dim) query position + context."""
        npho, time, flags = values[..., 0:1], values[..., 1], values[..., 2:4]
        near = values[..., :self.base_slots, :]
        weight_n, weight_t = near[..., 2], near[..., 3]
        base_n = (near[..., 0] * weight_n).sum(-1) / weight_n.sum(-1).clamp(min=1.0)
        base_t = (near[..., 1] * weight_t).sum(-1) / weight_t.sum(-1).clamp(min=1.0)
        relative = ((time - base_t[..., None]) * values[..., 3]).clamp(-self.time_clip,
                                                                        self.time_clip)
        npho_in = torch.cat([torch.cat([npho, flags, offset], dim=-1).flatten(-2), extra], dim=-1)
        time_in = torch.cat([torch.cat([npho, relative[..., None], flags, offset],
                                       dim=-1).flatten(-2), extra], dim=-1)
        pred_n = base_n + self.mlp_npho(npho_in)[..., 0]
        pred_t = base_t + self.mlp_time(time_in)[..., 0]
        return torch.stack([pred_n, pred_t], dim=-1)


def _mlp(width: int, hidden: int, depth: int) -> nn.Sequential:
    """``depth`` GELU hidden layers of ``hidden`` units and one output."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(width if i == 0 else hidden, hidden), nn.GELU()]
    layers.append(nn.Linear(hidden if depth else width, 1))
    return nn.Sequential(*layers)


class LocalInpaintBody(nn.Module):
    """Neighbourhood networks of all six faces plus the global context (see the module doc).

    ``forward(x, query)``: ``x`` (N, 4760, C) visible inputs (C >= 4: npho, time, visible npho,
    visible time), ``query`` (N, 4760) bool sensors to predict -> (N, 4760, 2): predictions at
    the queries, ``x[..., :2]`` elsewhere.
    """

    def __init__(self, config: dict, in_channels: int):
        super().__init__()
        if in_channels != 4:
            raise ValueError("the local inpainting body needs exactly npho, time and the two "
                             "validity channels (validity_channels: true)")
        geometry = design_geometry()
        face = np.asarray(geometry.face, dtype=np.int64)
        self.register_buffer("sensor_face", torch.from_numpy(face), persistent=False)
        self.register_buffer("position", torch.from_numpy(
            (geometry.uvw / POSITION_SCALE_CM).astype(np.float32)), persistent=False)
        inner = face == int(Face.INNER)
        self.register_buffer("inner_mask", torch.from_numpy(inner), persistent=False)
        onehot = np.zeros((N_SENSORS, len(_FACES)), dtype=np.float32)
        onehot[np.arange(N_SENSORS), face] = 1.0
        self.register_buffer("face_onehot", torch.from_numpy(onehot), persistent=False)
        self.register_buffer("face_count", torch.from_numpy(onehot.sum(0)), persistent=False)
        # sensor id -> its row in the face-by-face concatenation of forward_static
        order = np.concatenate([np.flatnonzero(face == int(f)) for f in _FACES])
        self.register_buffer("static_row", torch.from_numpy(np.argsort(order)), persistent=False)
        #: True: forward evaluates every sensor and selects the queries with torch.where (no
        #: data-dependent shapes; set by the ONNX export only, slower for few queries).
        self.static_queries = False
        context_dim = int(config["context_dim"])
        summary = 3 * len(_FACES) + 6
        self.context = nn.Sequential(nn.Linear(summary, context_dim), nn.GELU(),
                                     nn.Linear(context_dim, context_dim))
        self.nets = nn.ModuleDict()
        for f in _FACES:
            k = int(config["k_inner"] if f == Face.INNER else config["k_pmt"])
            self.nets[_FACE_NAMES[f]] = _FaceQueryNet(
                np.flatnonzero(face == int(f)), k, int(config["hidden"]), int(config["depth"]),
                context_dim, int(config["base_slots"]), float(config["time_clip"]))

    def summary(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 24) per-event summary: per face mean / max visible npho feature and visible
        fraction; inner-face npho-weighted mean and spread of (u, v, w) / 100 cm."""
        npho = x[..., 0] * x[..., 2]
        mean = npho @ self.face_onehot / self.face_count
        visible = x[..., 2] @ self.face_onehot / self.face_count
        peak = (npho[:, :, None] * self.face_onehot).amax(dim=1)
        w = npho * self.inner_mask
        w = w / w.sum(1, keepdim=True).clamp(min=1e-6)
        centre = w @ self.position
        spread = (w @ self.position.square() - centre.square()).clamp(min=0.0).sqrt()
        return torch.cat([mean, peak, visible, centre, spread], dim=1)

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        if self.static_queries:
            return self.forward_static(x, query)
        out = x[..., :2].clone()
        context = self.context(self.summary(x))
        padded = torch.cat([x, x.new_zeros(x.shape[0], 1, x.shape[2])], dim=1)
        batch_index, sensor = query.nonzero(as_tuple=True)
        face = self.sensor_face[sensor]
        pred = x.new_zeros(sensor.shape[0], 2)
        for f in _FACES:
            pick = (face == int(f)).nonzero(as_tuple=True)[0]
            if pick.numel():
                value = self.nets[_FACE_NAMES[f]](padded, batch_index[pick], sensor[pick],
                                                  self.position, context)
                pred = pred.index_put((pick,), value)
        return out.index_put((batch_index, sensor), pred)

    def forward_static(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Same result as :meth:`forward` without ``nonzero``: the face networks run at all
        4760 sensors and ``torch.where(query, ...)`` keeps their output at the queries only
        (what the ONNX export traces; its cost does not depend on the number of queries)."""
        context = self.context(self.summary(x))
        padded = torch.cat([x, x.new_zeros(x.shape[0], 1, x.shape[2])], dim=1)
        pred = torch.cat([self.nets[_FACE_NAMES[f]].forward_all(padded, self.position, context)
                          for f in _FACES], dim=1)[:, self.static_row]
        return torch.where(query[..., None], pred, x[..., :2])
