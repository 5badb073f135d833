"""Token position encodings of the fusion transformer: sinusoidal and rotary (RoPE) beside the
learned geometric embedding of :class:`xecreco.models.regressor.network.Regressor`.

Selected by the model config key ``fusion.position``:

- ``geometric`` (default): a learned linear embedding of each token's face descriptor (face
  centroid, mean normal, MPPC fraction) added to the tokens (with
  ``encoder.positional_encoding``).
- ``sinusoidal``: the fixed encoding of Vaswani et al. of the face index (inner 0, outer 1,
  us 2, ds 3, top 4, bottom 5), PE(p, 2i) = sin(p / 10000^(2i/D)), PE(p, 2i+1) = cos(...),
  added to the tokens; no parameters.
- ``rope``: rotary position embedding (Su et al.) in every fusion attention layer, with each
  token's position the centroid of its face in cm (:func:`face_centroids_cm`): queries and
  keys are rotated by angles omega_j x_a (axis a = x, y, z taking turns over the channel pairs),
  so every query-key score depends on the displacement between the two faces, i.e. on their
  distance; wavelengths 2 pi / omega_j from :data:`ROPE_MIN_WAVELENGTH_CM` to
  :data:`ROPE_MAX_WAVELENGTH_CM` (the detector spans ~150 cm). The CLS token sits at the target
  centre (0, 0, 0).
- ``none``: the learned per-token embedding only.

All are plain tensor ops (ONNX-exportable).
"""

from __future__ import annotations

import math

import numpy as np
import torch

POSITION_MODES = ("geometric", "sinusoidal", "rope", "none")
ROPE_MIN_WAVELENGTH_CM = 10.0
ROPE_MAX_WAVELENGTH_CM = 400.0


def sinusoidal_table(positions: np.ndarray, dim: int) -> torch.Tensor:
    """(L, dim) float32: PE(p, 2i) = sin(p / 10000^(2i/dim)), PE(p, 2i+1) = cos(...)."""
    positions = np.asarray(positions, dtype=np.float64)[:, None]
    i = np.arange((dim + 1) // 2, dtype=np.float64)[None]
    angle = positions / np.power(10000.0, 2.0 * i / dim)
    table = np.zeros((positions.shape[0], dim))
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle)[:, : dim // 2]
    return torch.tensor(table, dtype=torch.float32)


def rope_angles(positions_cm: np.ndarray, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (L, head_dim // 2) float32, of the rotation angles of L tokens at
    ``positions_cm`` (L, 3): channel pair k rotates by omega_{k // 3} x_{k % 3}."""
    pairs = head_dim // 2
    positions_cm = np.asarray(positions_cm, dtype=np.float64)
    n_freq = max(1, math.ceil(pairs / 3))
    wavelengths = np.geomspace(ROPE_MIN_WAVELENGTH_CM, ROPE_MAX_WAVELENGTH_CM, n_freq)
    omega = 2.0 * math.pi / wavelengths
    k = np.arange(pairs)
    angle = positions_cm[:, k % 3] * omega[k // 3][None]
    return (torch.tensor(np.cos(angle), dtype=torch.float32),
            torch.tensor(np.sin(angle), dtype=torch.float32))


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs (2k, 2k+1) of ``x`` (N, heads, L, head_dim) by the angles whose
    cos/sin are (L, head_dim // 2); an odd last channel is left as it is."""
    pairs = cos.shape[-1]
    even = x[..., 0: 2 * pairs: 2]
    odd = x[..., 1: 2 * pairs: 2]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    rotated = rotated.flatten(-2)
    if x.shape[-1] > 2 * pairs:
        rotated = torch.cat([rotated, x[..., 2 * pairs:]], dim=-1)
    return rotated
