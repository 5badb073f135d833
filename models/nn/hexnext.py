"""HexNeXt: ConvNeXt-style blocks on the hexagonal PMT arrays of the top and bottom faces.

Each node attends to itself and its (up to 6) neighbours; keys, values and logits get learned
terms that depend on the neighbour's direction type, so the block sees the lattice orientation
the way a convolution sees kernel offsets. The neighbour table and direction types come from
:func:`xecreco.geometry.hex_graph` (built from sensor positions, not from a row-parity rule) and
are passed in as arrays; padding slots (-1) are masked out.

Tensors are node-major ``(N, n_nodes, C)``. Plain ops only (gather, matmul, softmax), so the
blocks export to ONNX.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from xecreco.models.nn.convnext import GRN

#: Direction types: 0 = self, 1-6 = the six lattice directions.
N_DIRECTION_TYPES = 7

# Added to the logits of padding slots; finite so softmax never produces NaN.
_MASK_LOGIT = -1.0e4


class NeighbourAttention(nn.Module):
    """Multi-head attention of every node over its neighbour slots with direction-typed terms.

    Args:
        dim: node width C.
        heads: attention heads (``dim`` divisible by ``heads``).
        neighbours: (n, K) int array of local neighbour indices, self first, -1 = padding.
        direction: (n, K) int array of direction types in [0, 7), 0 at self and padding.
    """

    def __init__(self, dim: int, heads: int, neighbours: np.ndarray, direction: np.ndarray):
        super().__init__()
        if dim % heads:
            raise ValueError(f"HexNeXt width {dim} is not divisible by {heads} heads")
        neighbours = np.asarray(neighbours, dtype=np.int64)
        direction = np.asarray(direction, dtype=np.int64)
        if neighbours.shape != direction.shape or neighbours.ndim != 2:
            raise ValueError("hex neighbour and direction tables must both be (n, K)")
        if direction.min() < 0 or direction.max() >= N_DIRECTION_TYPES:
            raise ValueError(f"hex direction types must lie in [0, {N_DIRECTION_TYPES})")
        self.heads = heads
        self.head_dim = dim // heads
        self.n_nodes, self.slots = neighbours.shape
        nodes = np.arange(self.n_nodes)[:, None]
        valid = neighbours >= 0
        safe = np.where(valid, neighbours, nodes)
        # flat indices into the node list and into an (n x 7 types) per-node table
        self.register_buffer("node_index", torch.from_numpy(safe.reshape(-1).copy()),
                             persistent=False)
        self.register_buffer("type_index",
                             torch.from_numpy((nodes * N_DIRECTION_TYPES + direction).reshape(-1)),
                             persistent=False)
        self.register_buffer("direction", torch.from_numpy(direction.copy()), persistent=False)
        self.register_buffer(
            "mask_bias",
            torch.from_numpy(np.where(valid, 0.0, _MASK_LOGIT).astype(np.float32)),
            persistent=False,
        )
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.rel_key = nn.Parameter(torch.zeros(heads, self.head_dim, N_DIRECTION_TYPES))
        self.rel_value = nn.Parameter(torch.zeros(heads, N_DIRECTION_TYPES, self.head_dim))
        self.rel_bias = nn.Parameter(torch.zeros(heads, N_DIRECTION_TYPES))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, n, C) -> (N, n, C).

        Slot logits are ``q_i . (k_j + r_k[d_ij]) / sqrt(dh) + b[d_ij]`` and values
        ``v_j + r_v[d_ij]``. The direction terms are folded into small per-node tables (``q . r_k``
        per type, and the softmax weights summed per type against ``r_v``), so the only
        (N, n, K, C)-sized work is the neighbour gather and two multiply-sums.
        """
        n, nodes, dim = x.shape
        h, dh, k_slots = self.heads, self.head_dim, self.slots
        q = self.query(x).reshape(n, nodes, h, dh)
        key = torch.index_select(self.key(x), 1, self.node_index).reshape(n, nodes, k_slots, h, dh)
        value = torch.index_select(self.value(x), 1, self.node_index)
        value = value.reshape(n, nodes, k_slots, h, dh)
        scores = torch.sum(q.unsqueeze(2) * key, dim=-1)  # (N, n, K, h)
        typed = torch.einsum("bnhd,hdt->bnth", q, self.rel_key)  # (N, n, 7, h)
        typed = torch.index_select(typed.reshape(n, nodes * N_DIRECTION_TYPES, h), 1,
                                   self.type_index).reshape(n, nodes, k_slots, h)
        bias = self.rel_bias.T[self.direction] + self.mask_bias.unsqueeze(-1)  # (n, K, h)
        scores = (scores + typed) * (1.0 / math.sqrt(dh)) + bias
        weights = torch.softmax(scores, dim=2)  # (N, n, K, h)
        out = torch.sum(weights.unsqueeze(-1) * value, dim=2)  # (N, n, h, dh)
        rel_value = self.rel_value.transpose(0, 1)[self.direction]  # (n, K, h, dh)
        out = out + torch.einsum("bnkh,nkhd->bnhd", weights, rel_value)
        return self.proj(out.reshape(n, nodes, dim))


class HexNeXtBlock(nn.Module):
    """``x += NeighbourAttention(LN x)``; ``x += fc2(GRN(GELU(fc1(LN x))))`` on (N, n, C).

    The GRN normalises over the nodes of the face (the hex analogue of the spatial axes).
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        neighbours: np.ndarray,
        direction: np.ndarray,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = NeighbourAttention(dim, heads, neighbours, direction)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.grn = GRN(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.grn(self.act(self.fc1(self.norm2(x)))))
