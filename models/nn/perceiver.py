"""Perceiver-style latent fusion (``fusion.type: perceiver``): K learned latent tokens
cross-attend to the features of every face, then self-attend.

The context is the concatenation, over the six faces, of every cell of the last rectangular
feature map and every hexagonal PMT node (each projected to the token width D by a per-face
linear map, plus a learned embedding of its face) and of the face tokens (which carry the token
embeddings). This is the hierarchical-attention option of the design notes: the fusion sees the
spatial features themselves, not only the pooled face tokens, at a cost linear in the number of
cells (K x L attention scores instead of L x L; about 330 cells + 14 tokens for the ``cpu``
preset). Plain tensor ops (ONNX-exportable).
"""

from __future__ import annotations

import torch
from torch import nn

from xecreco.models.nn.attention import Mlp, MultiHeadAttention, TransformerLayer


class PerceiverFusion(nn.Module):
    """Latents <- CrossAttention(latents, [face cells; face tokens]) -> self-attention layers.

    Args:
        face_channels: {face name: channels of its last feature map}, in face order.
        dim: token width D.
        latents: number K of latent tokens (>= 2: the event embedding is the first latent and
            the mean of the others).
        heads, mlp_ratio: attention settings.
        layers: self-attention layers over the latents after the cross-attention.
        dropout: residual dropout of the self-attention layers.
    """

    def __init__(self, face_channels: dict, dim: int, latents: int, heads: int,
                 mlp_ratio: float, layers: int, dropout: float = 0.0):
        super().__init__()
        self.faces = tuple(face_channels)
        self.project = nn.ModuleDict({name: nn.Linear(c, dim) for name, c in face_channels.items()})
        self.face_embed = nn.Parameter(torch.zeros(len(self.faces), dim))
        nn.init.trunc_normal_(self.face_embed, std=0.02)
        self.latents = nn.Parameter(torch.randn(latents, dim) * 0.02)
        self.norm_latents = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.cross = MultiHeadAttention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, int(round(dim * mlp_ratio))))
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, mlp_ratio, dropout)
                                    for _ in range(layers))

    def context(self, maps: dict, tokens: torch.Tensor) -> torch.Tensor:
        """(N, L, D): projected cells / nodes of every face plus the face tokens (N, T, D)."""
        parts = []
        for i, name in enumerate(self.faces):
            fmap = maps[name]
            cells = fmap.flatten(1, 2) if fmap.dim() == 4 else fmap
            parts.append(self.project[name](cells) + self.face_embed[i])
        parts.append(tokens)
        return torch.cat(parts, dim=1)

    def forward(self, maps: dict, tokens: torch.Tensor) -> torch.Tensor:
        """``maps`` {face: channels-last (N, H, W, C) or (N, nodes, C)}, ``tokens`` (N, T, D)
        -> latents (N, K, D)."""
        context = self.norm_context(self.context(maps, tokens))
        x = self.latents.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        x = x + self.cross(self.norm_latents(x), context)
        x = x + self.mlp(self.norm_mlp(x))
        for layer in self.layers:
            x = layer(x)
        return x
