"""ConvNeXt V2 building blocks for the rectangular faces (inner, outer, US, DS).

A block is ``x + MLP(GRN(LN(dwconv7x7(x))))`` (Woo et al. 2023, "ConvNeXt V2"). Feature maps are
channels-last ``(N, H, W, C)`` throughout: the norm and MLP act on the last axis directly and the
depthwise convolution sees a permuted view (``torch.channels_last`` memory), so no layout copies
are made. Stems and downsampling layers are patchify convolutions (kernel = stride) written as a
reshape plus a linear layer, which is the same operation and much cheaper to train on CPUs.
Only plain ops are used so the blocks export to ONNX.
"""

from __future__ import annotations

import torch
from torch import nn


class GRN(nn.Module):
    """Global response normalisation over the spatial axes of a channels-last tensor.

    ``x``: (N, ..., C). For each channel the L2 norm over all non-batch, non-channel axes is
    divided by its mean over channels; the result re-weights ``x``. ``gamma`` and ``beta`` start at
    zero, so a fresh GRN is the identity.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(range(1, x.dim() - 1))
        gx = torch.sqrt(torch.sum(x * x, dim=spatial, keepdim=True) + self.eps)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        # gamma * (x * nx) + beta + x, with the per-channel factor formed on the small tensor
        return torch.addcmul(self.beta, x, self.gamma * nx + 1.0)


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt V2 block on (N, H, W, C): depthwise k x k conv, LayerNorm, MLP with GRN.

    Args:
        dim: channels C (unchanged by the block).
        kernel_size: depthwise kernel (7 in ConvNeXt), "same" zero padding.
        mlp_ratio: hidden width of the pointwise MLP as a multiple of ``dim``.
        map_size: optional (H, W) of the maps the block will see; the kernel is then cut to at
            most (2H - 1, 2W - 1), which drops only taps that always fall on the zero padding.
    """

    def __init__(self, dim: int, kernel_size: int = 7, mlp_ratio: float = 4.0,
                 map_size: tuple[int, int] | None = None):
        super().__init__()
        hidden = max(1, int(round(dim * mlp_ratio)))
        kernel = (kernel_size, kernel_size)
        if map_size is not None:
            kernel = tuple(min(kernel_size, 2 * size - 1) for size in map_size)
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=(kernel[0] // 2, kernel[1] // 2),
                                groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.grn = GRN(hidden)
        self.pwconv2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = depthwise_nhwc(self.dwconv, x)
        return x + self.pwconv2(self.grn(self.act(self.pwconv1(self.norm(y)))))


@torch.compiler.disable
def depthwise_nhwc(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on a channels-last map (N, H, W, C) -> (N, H, W, C), outside torch.compile.

    Eager, the permuted view is a channels-last tensor and oneDNN's channels-last depthwise
    kernels run forward and backward. Under torch.compile inductor lays the convolution out
    its own way, and with these small maps its backward was slower than the whole eager
    training step (the cpu preset's model fwd + bwd at 597 vs 650 events/s, one thread);
    with the convolution kept eager here and everything around it compiled the same step ran
    at 911 vs 726 events/s (docs/performance.md, issue 13). Same values either way.
    """
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Patchify(nn.Module):
    """Non-overlapping (sh x sw) patches of an (N, H, W, C_in) map -> (N, H', W', C_out).

    Equivalent to a Conv2d with kernel = stride; the map is zero-padded on the bottom/right so
    odd sizes are not truncated (H' = ceil(H / sh), W' = ceil(W / sw)). ``norm_before`` /
    ``norm_after`` add a LayerNorm over C_in (ConvNeXt downsampling) / C_out (ConvNeXt stem).
    """

    def __init__(self, dim_in: int, dim_out: int, stride, norm_before: bool = False,
                 norm_after: bool = False):
        super().__init__()
        self.stride = as_pair(stride)
        self.norm_in = nn.LayerNorm(dim_in, eps=1e-6) if norm_before else None
        self.proj = nn.Linear(dim_in * self.stride[0] * self.stride[1], dim_out)
        self.norm_out = nn.LayerNorm(dim_out, eps=1e-6) if norm_after else None

    def project(self, patches: torch.Tensor) -> torch.Tensor:
        """The layer on patch vectors already formed: (N, H', W', sh * sw * C_in) in the order
        (row in patch, column in patch, channel) -> (N, H', W', C_out). Only for layers without
        ``norm_before`` (the norm acts on the map before patching)."""
        if self.norm_in is not None:
            raise ValueError("Patchify.project needs a layer without norm_before")
        x = self.proj(patches)
        return self.norm_out(x) if self.norm_out is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_in is not None:
            x = self.norm_in(x)
        sh, sw = self.stride
        if sh * sw > 1:
            x = pad_to_multiple(x, self.stride)
            n, height, width, channels = x.shape
            x = x.reshape(n, height // sh, sh, width // sw, sw, channels)
            x = x.permute(0, 1, 3, 2, 4, 5).reshape(n, height // sh, width // sw,
                                                    sh * sw * channels)
        x = self.proj(x)
        return self.norm_out(x) if self.norm_out is not None else x


def as_pair(stride) -> tuple[int, int]:
    """``2 -> (2, 2)``; ``[5, 3] -> (5, 3)``."""
    if isinstance(stride, int):
        return (stride, stride)
    first, second = stride
    return (int(first), int(second))


def pad_to_multiple(x: torch.Tensor, multiple) -> torch.Tensor:
    """Zero-pad (N, H, W, C) on the bottom/right so H, W are multiples of ``multiple``.

    Sizes are static (face images have fixed shapes), so this exports to a constant Pad in ONNX.
    """
    mult_h, mult_w = as_pair(multiple)
    pad_h = (-int(x.shape[1])) % mult_h
    pad_w = (-int(x.shape[2])) % mult_w
    if pad_h == 0 and pad_w == 0:
        return x
    return nn.functional.pad(x, (0, 0, 0, pad_w, 0, pad_h))


def output_size(size: tuple[int, int], stride) -> tuple[int, int]:
    """(H, W) after :func:`pad_to_multiple` and a patchify of the given stride."""
    stride_h, stride_w = as_pair(stride)
    return (-(-size[0] // stride_h), -(-size[1] // stride_w))
