"""Light summary: physics references and a full-resolution view of the light peak.

The convolutional backbones see the inner face through coarse patches, and sums of light over many
sensors are hard to form from log-transformed features. This block gives the regressor what a
physicist would compute first, exactly, from the same input features:

- the collected light per face and in total (in units of the normalisation's ``npho_scale``);
- the inner-face light peak: the cell with the largest 3 x 3 light sum, and a ``crop x crop``
  window of sensors around it (npho fraction of the window and time feature of each sensor) at
  full sensor resolution;
- the light-weighted centroid (u, v) of that window (cm), a position reference;
- with ``use_vertex``, the photon incidence at the peak sensor seen from the event vertex
  (``xyzVTX``; the positron track in MEG II; the target centre when unknown): tangents along u
  and v and the distance (cm / 100). The shower, hence the light, develops along the photon
  direction, so the light centre sits off the first-interaction point by (depth x incidence
  tangent); the target is 27 cm long, so the tangent varies by about +-0.2 from event to event.

``forward(features, vertex=None)`` returns ``(summary, references)``: ``summary`` (N, out_dim) the MLP
embedding of all of the above, and ``references`` {"light": (N,) total collected light / npho_scale,
"u": (N,) cm, "v": (N,) cm}. The regressor adds its heads' outputs to these references (energy
proportional to the light, u and v relative to the centroid), so the network learns corrections
instead of re-deriving sums and centroids.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xecreco.geometry import N_SENSORS, Face, design_geometry, face_ids, face_image_index
from xecreco.geometry.constants import TARGET_CENTRE_CM
from xecreco.models.nn.encoder import FACE_NAMES, POSITION_SCALE_CM
from xecreco.normalization import scaled_npho

#: Light (units of npho_scale) added inside the logarithms, so empty faces give finite inputs.
_LOG_FLOOR = 1e-3
_FACES = tuple(FACE_NAMES)  # the canonical face order


def _crop_tables(crop: int) -> tuple[np.ndarray, np.ndarray]:
    """For every inner-face cell, the sensor ids of the ``crop x crop`` window centred on it
    (``N_SENSORS`` = an all-zero padding sensor outside the face), and the (u, v) cm of the
    window's centre cell: ``(ids (n_cells, crop * crop), centre_uv (n_cells, 2))``."""
    index = face_image_index(Face.INNER)
    height, width = index.shape
    half = crop // 2
    padded = np.full((height + 2 * half, width + 2 * half), N_SENSORS, dtype=np.int64)
    padded[half:half + height, half:half + width] = index
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    offsets = np.arange(crop)
    ids = padded[(rows.reshape(-1, 1, 1) + offsets.reshape(1, -1, 1)),
                 (cols.reshape(-1, 1, 1) + offsets.reshape(1, 1, -1))]
    centre_uv = design_geometry().uvw[index.reshape(-1), :2]
    return ids.reshape(height * width, crop * crop), centre_uv


def box_mean_3x3(image: torch.Tensor) -> torch.Tensor:
    """3 x 3 mean of (N, 1, H, W) with zero padding, bit-identical to ``F.avg_pool2d(image, 3,
    stride=1, padding=1, count_include_pad=True)``: the nine shifted views are added in the
    pooling kernel's row-major order and divided by 9, which is about 4x faster on CPUs than
    the single-channel pooling kernel (the largest single op of the cpu preset's inference)."""
    height, width = image.shape[-2:]
    padded = F.pad(image, (1, 1, 1, 1))
    total = padded[..., :height, :width].clone()
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                total.add_(padded[..., dy:dy + height, dx:dx + width])
    return total.div_(9.0)


class LightSummary(nn.Module):
    """Light sums, peak window and centroid of the inner face -> (summary, references).

    Args:
        npho_scheme: the npho transform of the input features (see
            :class:`xecreco.normalization.NormalizationSpec`), to recover the light.
        crop: side of the square sensor window around the peak (odd).
        hidden: width of the summary MLP.
        out_dim: width of the summary vector.
        in_channels: feature channels per sensor (channel 0 npho, channel 1 time).
        use_vertex: add the incidence from the vertex to the summary inputs.
    """

    def __init__(self, npho_scheme: str, crop: int, hidden: int, out_dim: int, in_channels: int,
                 use_vertex: bool = False):
        super().__init__()
        if crop < 1 or crop % 2 == 0:
            raise ValueError(f"light summary crop must be a positive odd number, got {crop}")
        self.npho_scheme = npho_scheme
        self.crop = crop
        index = face_image_index(Face.INNER)
        self.image_shape = index.shape
        self.n_inner = int(index.size)
        ids, centre_uv = _crop_tables(crop)
        self.register_buffer("window_ids", torch.from_numpy(ids), persistent=False)
        self.register_buffer("centre_uv", torch.from_numpy(centre_uv.astype(np.float32)),
                             persistent=False)
        uv = np.zeros((N_SENSORS + 1, 2), dtype=np.float32)
        uv[:N_SENSORS] = design_geometry().uvw[:, :2]
        self.register_buffer("sensor_uv", torch.from_numpy(uv), persistent=False)
        membership = np.zeros((N_SENSORS, len(_FACES)), dtype=np.float32)
        for column, face in enumerate(_FACES):
            membership[face_ids(face), column] = 1.0
        self.register_buffer("face_membership", torch.from_numpy(membership), persistent=False)
        self.use_vertex = bool(use_vertex)
        if self.use_vertex:
            geometry = design_geometry()
            normal = geometry.normal[: self.n_inner]
            # local frame of every inner sensor: u along z, v = normal x z, normal into the xenon
            frame = np.stack([np.tile([0.0, 0.0, 1.0], (self.n_inner, 1)),
                              np.stack([normal[:, 1], -normal[:, 0], np.zeros(self.n_inner)], 1),
                              normal], axis=1)
            self.register_buffer("inner_position", torch.tensor(
                geometry.position[: self.n_inner], dtype=torch.float32), persistent=False)
            self.register_buffer("inner_frame", torch.tensor(frame, dtype=torch.float32),
                                 persistent=False)
            self.register_buffer("target_centre", torch.tensor(TARGET_CENTRE_CM,
                                                               dtype=torch.float32),
                                 persistent=False)
        window = crop * crop
        n_inputs = (window * min(in_channels, 2) + 4 + len(_FACES) + 1
                    + (3 if self.use_vertex else 0))
        self.mlp = nn.Sequential(
            nn.Linear(n_inputs, hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.GELU(),
            nn.Linear(hidden, out_dim),
        )

    def _peak_window(self, features: torch.Tensor):
        """``(face_light (N, 6), window_ids (N, w), window_light (N, w), centre_uv (N, 2) cm,
        centroid_uv (N, 2) cm, peak (N,) inner-face cell)`` with w = crop * crop."""
        light = torch.clamp(scaled_npho(features[..., 0].float(), self.npho_scheme), min=0.0)
        face_light = light @ self.face_membership
        inner = light[:, : self.n_inner].reshape(-1, 1, *self.image_shape)
        peak = torch.argmax(box_mean_3x3(inner).flatten(1), dim=1)
        window_ids = self.window_ids[peak]
        window_light = torch.gather(F.pad(light, (0, 1)), 1, window_ids)
        window_uv = self.sensor_uv[window_ids]  # (N, w, 2)
        total = window_light.sum(dim=1, keepdim=True)
        centre_uv = self.centre_uv[peak]
        centroid = torch.where(
            total > 0,
            (window_light.unsqueeze(-1) * window_uv).sum(dim=1) / torch.clamp(total, min=1e-12),
            centre_uv,
        )
        return face_light, window_ids, window_light, centre_uv, centroid, peak

    def incidence(self, peak: torch.Tensor, vertex: torch.Tensor | None) -> torch.Tensor:
        """(N, 3): incidence tangents along u and v at the ``peak`` inner sensors seen from
        ``vertex`` (N, 3) cm (None or non-finite rows: the target centre), and distance / 100."""
        position = self.inner_position[peak]
        centre = self.target_centre.expand_as(position)
        if vertex is None:
            vertex = centre
        else:
            vertex = vertex.to(position.dtype)
            vertex = torch.where(torch.isfinite(vertex).all(dim=1, keepdim=True), vertex, centre)
        d = torch.einsum("nij,nj->ni", self.inner_frame[peak], position - vertex)
        depth = torch.clamp(d[:, 2:3], min=1.0)
        distance = torch.linalg.vector_norm(position - vertex, dim=1, keepdim=True)
        return torch.cat([d[:, :2] / depth, distance / POSITION_SCALE_CM], dim=1)

    def forward(self, features: torch.Tensor, vertex: torch.Tensor | None = None):
        """``(summary (N, out_dim), references)``; see the module docstring."""
        # the light sums and the centroid are references the outputs are built on: always fp32,
        # also under bf16 autocast (a bf16 matmul would put 0.4 % noise on the energy reference)
        with torch.autocast(features.device.type, enabled=False):
            face_light, window_ids, window_light, centre_uv, centroid, peak = \
                self._peak_window(features.float())
        fraction = window_light / torch.clamp(window_light.sum(dim=1, keepdim=True), min=1e-12)
        parts = [fraction]
        if features.shape[-1] > 1:
            padded_time = F.pad(features[..., 1].float(), (0, 1))
            parts.append(torch.gather(padded_time, 1, window_ids))
        total_light = face_light.sum(dim=1, keepdim=True)
        parts += [
            centre_uv / POSITION_SCALE_CM,
            centroid - centre_uv,  # cm, within about a sensor pitch
            torch.log(face_light + _LOG_FLOOR),
            torch.log(total_light + _LOG_FLOOR),
        ]
        if self.use_vertex:
            parts.append(self.incidence(peak, vertex))
        # the window's sensor fractions carry the position at the sub-mm level: the MLP (small)
        # stays fp32 under bf16 autocast too (in bf16 the bundled model's w widened by 2 %)
        with torch.autocast(features.device.type, enabled=False):
            summary = self.mlp(torch.cat(parts, dim=1).float())
        references = {"light": total_light[:, 0], "u": centroid[:, 0], "v": centroid[:, 1]}
        return summary, references
