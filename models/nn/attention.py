"""Attention layers written in plain tensor ops (matmul, softmax), so ONNX export works.

No ``nn.MultiheadAttention`` or ``scaled_dot_product_attention``: their fused kernels either do
not export or export to ops some runtimes lack.

- :class:`MultiHeadAttention`: queries (N, Lq, D) attend to keys/values (N, Lk, D).
- :class:`TransformerLayer`: pre-norm self-attention + MLP block used to fuse face tokens.
- :class:`QueryPooling`: K learned queries cross-attend to a set of features and return K tokens
  (learned-query pooling of a face feature map into several tokens).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MultiHeadAttention(nn.Module):
    """Scaled dot-product multi-head attention in plain ops.

    Args:
        dim: model width D of the queries (and of the output).
        heads: number of heads; ``dim`` must be divisible by it.
        kv_dim: width of the key/value inputs (default ``dim``).
    """

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        kv_dim = dim if kv_dim is None else kv_dim
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        # a child module (no parameters, same op as torch.softmax) so that a forward hook on it
        # sees the attention weights (N, heads, Lq, Lk) without changing any output
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, query: torch.Tensor, context: torch.Tensor, rotary=None) -> torch.Tensor:
        """``query`` (N, Lq, D), ``context`` (N, Lk, D_kv) -> (N, Lq, D).

        ``rotary``: optional (cos, sin) of :func:`xecreco.models.nn.positional.rope_angles`
        (self-attention, Lq = Lk tokens): queries and keys are rotated (RoPE)."""
        n, lq, d = query.shape
        lk = context.shape[1]
        q = self.q(query).reshape(n, lq, self.heads, self.head_dim).transpose(1, 2)
        kv = self.kv(context).reshape(n, lk, 2, self.heads, self.head_dim)
        k = kv[:, :, 0].transpose(1, 2)
        v = kv[:, :, 1].transpose(1, 2)
        if rotary is not None:
            from xecreco.models.nn.positional import apply_rope

            q, k = apply_rope(q, *rotary), apply_rope(k, *rotary)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        weights = self.softmax(scores)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(n, lq, d)
        return self.proj(out)


class Mlp(nn.Module):
    """Two-layer GELU MLP ``dim -> hidden -> dim``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer on (N, L, D) tokens: x += MHA(LN x); x += MLP(LN x).

    ``dropout`` > 0 drops elements of both residual branches (training, and MC-dropout
    inference); ``forward(x, rotary)`` applies RoPE in the attention when given."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, int(round(dim * mlp_ratio))))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor, rotary=None) -> torch.Tensor:
        y = self.norm1(x)
        if self.dropout is None:
            x = x + self.attn(y, y, rotary)
            return x + self.mlp(self.norm2(x))
        x = x + self.dropout(self.attn(y, y, rotary))
        return x + self.dropout(self.mlp(self.norm2(x)))


class QueryPooling(nn.Module):
    """K learned queries attend over a feature set (N, L, C) and give K tokens (N, K, D).

    Cheap form for large feature maps: the queries live in the feature width C (no per-cell key
    or value projection); each head scores the layer-normed features of its channel group
    against its query, pools them with the softmax weights, and the pooled (K, C) features are
    projected to the token width D. With K = 1 this is an attention-weighted global pool; with
    K > 1 each query can specialise on a region or a pattern. ``heads`` is reduced to the
    largest divisor of ``in_dim`` not above it (gcd), so any feature width works.
    """

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, heads: int):
        super().__init__()
        heads = math.gcd(in_dim, heads)
        self.heads = heads
        self.head_dim = in_dim // heads
        self.num_queries = num_queries
        self.norm = nn.LayerNorm(in_dim)
        self.queries = nn.Parameter(torch.randn(num_queries, in_dim) * 0.02)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n, length, channels = features.shape
        h, dh, k = self.heads, self.head_dim, self.num_queries
        x = self.norm(features).reshape(n, length, h, dh).transpose(1, 2)  # (N, h, L, dh)
        q = self.queries.reshape(k, h, dh).transpose(0, 1)  # (h, K, dh)
        scores = torch.matmul(x, q.transpose(-2, -1)) * (1.0 / math.sqrt(dh))  # (N, h, L, K)
        weights = torch.softmax(scores, dim=2)
        pooled = torch.matmul(weights.transpose(-2, -1), x)  # (N, h, K, dh)
        return self.proj(pooled.transpose(1, 2).reshape(n, k, channels))
