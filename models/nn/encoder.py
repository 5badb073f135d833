"""The shared detector encoder: per-face backbones turning sensor features into face tokens.

Input: sensor features ``(N, 4760, C)`` (from
:meth:`xecreco.normalization.NormalizationSpec.features`: channels [normalised npho, normalised
time], 0 at invalid sensors; more channels, e.g. validity flags or the regressor's dead flag,
with ``in_channels``).

- Rectangular faces (inner 93 x 44, outer refined grid, US and DS 24 x 6): the sensors are gathered
  into the face images of :func:`xecreco.geometry.face_image_index` (one sensor id per cell, -1 for
  empty cells, which read zeros), patchified by a stem of configurable stride, then ConvNeXt V2
  stages (each after the first starts with a stride-2 patchify downsample). Maps are
  channels-last (N, H, W, C).
- Top and bottom faces: the PMTs of :func:`xecreco.geometry.hex_graph` are embedded and passed
  through HexNeXt blocks on the geometric neighbour graph.
- Optional geometric positional encoding: the mean sensor position (cm / 100) of every stem cell
  or hex node is linearly embedded and added after the stem, so translation-equivariant blocks
  still know where on the detector a feature is.
- Tokens: K learned queries per face cross-attend to the last stage (several tokens for the big
  faces); with ``multiscale`` every earlier stage of a rectangular face adds one more token.
- FCMAE-style masking (``encode(features, keep)``, used by the masked models with
  ``masking.fcmae``): the features of sensors without input (``keep`` False) are zeroed, and
  after the stem, every ConvNeXt block, every downsampling and every HexNeXt block the features
  of cells without a visible sensor (a stem patch, a downsampled cell all of whose children are
  hidden, a hidden hex node) are set to zero again, x * (1 - mask), so hidden positions carry
  nothing the spatial operations could spread (as a sparse convolution over the visible cells).

:func:`build_encoder` returns an :class:`Encoder`; ``encoder(features)`` gives
``{face name: (N, K_face, token_dim)}`` in :data:`FACE_ORDER`. The MAE and inpainter reuse it
(``encoder.encode`` also returns the last feature map of every face).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xecreco.geometry import N_SENSORS, Face, design_geometry, face_image_index, hex_graph
from xecreco.models.nn.attention import QueryPooling
from xecreco.models.nn.convnext import ConvNeXtBlock, Patchify, as_pair, output_size
from xecreco.models.nn.hexnext import HexNeXtBlock

#: Face names used in configs and token dicts, in the canonical face order.
FACE_NAMES = {
    Face.INNER: "inner",
    Face.OUTER: "outer",
    Face.US: "us",
    Face.DS: "ds",
    Face.TOP: "top",
    Face.BOTTOM: "bottom",
}
FACE_ORDER = tuple(FACE_NAMES.values())
RECT_FACES = (Face.INNER, Face.OUTER, Face.US, Face.DS)
HEX_FACES = (Face.TOP, Face.BOTTOM)

#: Scale of the positional-encoding inputs: sensor positions are divided by this (cm).
POSITION_SCALE_CM = 100.0


def _stem_cell_positions(index: np.ndarray, stride) -> np.ndarray:
    """(3, H', W') mean sensor position (cm / 100) of every stem patch of a face image.

    ``index`` is the (H, W) sensor-id image; patches are taken after bottom/right padding like
    the stem does; empty cells and padding are ignored (an all-empty patch gets 0).
    """
    positions = design_geometry().position / POSITION_SCALE_CM
    stride_h, stride_w = as_pair(stride)
    out_h, out_w = output_size(index.shape, (stride_h, stride_w))
    padded = np.full((out_h * stride_h, out_w * stride_w), -1, dtype=np.int64)
    padded[: index.shape[0], : index.shape[1]] = index
    patches = padded.reshape(out_h, stride_h, out_w, stride_w).transpose(0, 2, 1, 3)
    patches = patches.reshape(out_h, out_w, stride_h * stride_w)
    valid = patches >= 0
    gathered = positions[np.where(valid, patches, 0)] * valid[..., None]
    counts = np.maximum(valid.sum(axis=-1, keepdims=True), 1)
    return (gathered.sum(axis=2) / counts).transpose(2, 0, 1).astype(np.float32)


def _patch_order_index(index: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """Sensor ids of a face image (H, W) padded at the bottom/right to multiples of ``stride``
    and listed patch by patch: (H' * W' * sh * sw,), -1 at empty and padding cells."""
    stride_h, stride_w = stride
    out_h, out_w = output_size(index.shape, stride)
    padded = np.full((out_h * stride_h, out_w * stride_w), -1, dtype=np.int64)
    padded[: index.shape[0], : index.shape[1]] = index
    return padded.reshape(out_h, stride_h, out_w, stride_w).transpose(0, 2, 1, 3).reshape(-1)


class RectFaceBackbone(nn.Module):
    """Gather one rectangular face into an image and run stem + ConvNeXt V2 stages.

    Maps are channels-last (N, H, W, C).

    Args:
        index: (H, W) sensor ids of the face image (-1 = empty cell, reads zeros).
        in_channels: feature channels C per sensor.
        dims, depths: channels and number of blocks of each stage.
        stem_stride: patch size of the stem (int or (sh, sw)).
        kernel_size, mlp_ratio: ConvNeXt block settings.
        positional_encoding: add an embedding of the stem cells' mean positions.
    """

    def __init__(
        self,
        index: np.ndarray,
        in_channels: int,
        dims: list[int],
        depths: list[int],
        stem_stride,
        kernel_size: int,
        mlp_ratio: float,
        positional_encoding: bool,
    ):
        super().__init__()
        index = np.asarray(index, dtype=np.int64)
        self.height, self.width = index.shape
        self.has_empty = bool((index < 0).any())
        # Empty cells point at an extra all-zero sensor appended after the 4760.
        gather = np.where(index >= 0, index, N_SENSORS).reshape(-1)
        # A face stored in id order (the inner face) is a plain slice: no gather needed.
        self.slice_start = int(gather[0]) if np.array_equal(
            gather, np.arange(gather[0], gather[0] + gather.size)) else None
        self.register_buffer("gather_index", torch.from_numpy(gather.copy()), persistent=False)
        self.stem = Patchify(in_channels, dims[0], stem_stride, norm_after=True)
        size = output_size((self.height, self.width), stem_stride)
        # Faces not stored in id order (the outer face's refined grid) gather the stem's input
        # straight from the sensor list in patch order (patch row, patch column, row in patch,
        # column in patch; empty and padding cells read 0): one gather instead of a
        # concatenation, a gather and a patch permute copy; the same values in the same order
        # (about 1.5x faster). Faces in id order keep the slice view, which is cheaper still.
        self.patch_gather = self.slice_start is None
        patches = _patch_order_index(index, as_pair(stem_stride))
        self.register_buffer("patch_index", torch.from_numpy(np.maximum(patches, 0)),
                             persistent=False)
        empty = patches < 0
        self.register_buffer("patch_valid", torch.from_numpy(~empty).reshape(1, -1, 1)
                             if empty.any() else None, persistent=False)
        self.stem_size = size
        if positional_encoding:
            cells = _stem_cell_positions(index, stem_stride)  # (3, H', W')
            self.register_buffer("cell_position",
                                 torch.from_numpy(cells.transpose(1, 2, 0).copy()),
                                 persistent=False)
            self.position_embed = nn.Linear(3, dims[0])
        else:
            self.position_embed = None
        stages = []
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            layers = []
            if i > 0:
                layers.append(Patchify(dims[i - 1], dim, 2, norm_before=True))
                size = output_size(size, 2)
            layers += [ConvNeXtBlock(dim, kernel_size, mlp_ratio, size) for _ in range(depth)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)

    def image(self, features: torch.Tensor) -> torch.Tensor:
        """Sensor features (N, 4760, C) -> channels-last face image (N, H, W, C)."""
        n, _, channels = features.shape
        if self.slice_start is not None:
            cells = features[:, self.slice_start:self.slice_start + self.height * self.width]
        else:
            if self.has_empty:
                features = torch.cat([features, features.new_zeros(n, 1, channels)], dim=1)
            cells = torch.index_select(features, 1, self.gather_index)
        return cells.reshape(n, self.height, self.width, channels)

    def stem_patches(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 4760, C) -> (N, H', W', sh * sw * C): the stem's patch vectors, equal to
        patchifying :meth:`image` (zero padding at the bottom/right)."""
        n, _, channels = features.shape
        cells = torch.index_select(features, 1, self.patch_index)
        if self.patch_valid is not None:
            cells = torch.where(self.patch_valid, cells, cells.new_zeros(()))
        return cells.reshape(n, self.stem_size[0], self.stem_size[1], -1)

    def forward(self, features: torch.Tensor, keep: torch.Tensor | None = None
                ) -> list[torch.Tensor]:
        """Channels-last maps (N, H_s, W_s, C_s) after every stage, from (N, 4760, C) features.

        ``keep`` (N, 4760) bool: sensors with input; given, the FCMAE masking of the module
        docstring is applied (the caller has zeroed the hidden sensors' features)."""
        if self.patch_gather:
            x = self.stem.project(self.stem_patches(features))
        else:
            x = self.stem(self.image(features))
        if self.position_embed is not None:
            x = x + self.position_embed(self.cell_position)
        if keep is None:
            maps = []
            for stage in self.stages:
                x = stage(x)
                maps.append(x)
            return maps
        visible = self.stem_patches(keep[..., None].to(x.dtype)).amax(dim=-1, keepdim=True)
        x = x * visible
        maps = []
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
                if isinstance(layer, Patchify):  # a cell is visible if any child is
                    visible = F.max_pool2d(visible.permute(0, 3, 1, 2), 2, ceil_mode=True
                                           ).permute(0, 2, 3, 1)
                x = x * visible
            maps.append(x)
        return maps


class HexFaceBackbone(nn.Module):
    """Embed the PMTs of a hexagonal face and run HexNeXt blocks on its neighbour graph.

    Args:
        graph: a :class:`xecreco.geometry.HexGraph` (``sensor_ids``, ``neighbours``, ``direction``,
            ``position``).
        in_channels, dim, depth, heads, mlp_ratio: layer sizes.
        positional_encoding: add an embedding of each PMT's position.
    """

    def __init__(self, graph, in_channels: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float, positional_encoding: bool):
        super().__init__()
        ids = np.array(graph.sensor_ids, dtype=np.int64)
        self.register_buffer("sensor_ids", torch.from_numpy(ids), persistent=False)
        self.embed = nn.Linear(in_channels, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        if positional_encoding:
            position = np.asarray(graph.position, dtype=np.float32) / POSITION_SCALE_CM
            self.register_buffer("node_position", torch.from_numpy(position), persistent=False)
            self.position_embed = nn.Linear(3, dim)
        else:
            self.position_embed = None
        self.blocks = nn.Sequential(
            *[HexNeXtBlock(dim, heads, graph.neighbours, graph.direction, mlp_ratio)
              for _ in range(depth)]
        )

    def forward(self, features: torch.Tensor, keep: torch.Tensor | None = None
                ) -> list[torch.Tensor]:
        """[(N, n_nodes, dim)] node features after the blocks (a one-element list), from
        (N, 4760, C) features; ``keep`` (N, 4760) bool applies the FCMAE masking (hidden nodes
        zeroed after the embedding and after every block)."""
        x = self.embed(torch.index_select(features, 1, self.sensor_ids))
        if self.position_embed is not None:
            x = x + self.position_embed(self.node_position)
        if keep is None:
            return [self.blocks(self.norm(x))]
        visible = torch.index_select(keep, 1, self.sensor_ids)[..., None].to(x.dtype)
        x = self.norm(x) * visible
        for block in self.blocks:
            x = block(x) * visible
        return [x]


class Encoder(nn.Module):
    """All six face backbones plus learned-query pooling into face tokens.

    Attributes:
        token_dim: width D of every token.
        num_tokens: {face name: tokens it contributes}.
        face_descriptor: (n_tokens_total, 7) float buffer, per token [face centroid (cm / 100),
            face mean normal, MPPC fraction], the input of the geometric token encoding.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        in_channels = int(config["in_channels"])
        rect = config["rect"]
        hexc = config["hex"]
        self.token_dim = int(config["token_dim"])
        positional = bool(config["positional_encoding"])
        multiscale = bool(config["multiscale"])
        pool_heads = int(config["pool_heads"])
        self.backbones = nn.ModuleDict()
        self.poolers = nn.ModuleDict()
        self.num_tokens: dict[str, int] = {}
        geometry = design_geometry()
        descriptors = []
        for face in RECT_FACES + HEX_FACES:
            name = FACE_NAMES[face]
            k_last = int(config["tokens"][name])
            if face in RECT_FACES:
                dims = [int(d) for d in rect["dims"]]
                self.backbones[name] = RectFaceBackbone(
                    face_image_index(face), in_channels, dims, [int(d) for d in rect["depths"]],
                    rect["stem_stride"][name], int(rect["kernel_size"]),
                    float(rect["mlp_ratio"]), positional,
                )
                stage_dims = dims
            else:
                dim = int(hexc["dim"])
                self.backbones[name] = HexFaceBackbone(
                    hex_graph(face), in_channels, dim, int(hexc["depth"]), int(hexc["heads"]),
                    float(hexc["mlp_ratio"]), positional,
                )
                stage_dims = [dim]
            poolers = nn.ModuleList()
            for i, dim in enumerate(stage_dims):
                last = i == len(stage_dims) - 1
                if last or multiscale:
                    k = k_last if last else 1
                    poolers.append(QueryPooling(dim, self.token_dim, k, pool_heads))
                else:
                    poolers.append(nn.Identity())
            self.poolers[name] = poolers
            self.num_tokens[name] = k_last + (len(stage_dims) - 1 if multiscale else 0)
            members = geometry.face == int(face)
            descriptor = np.concatenate([
                geometry.position[members].mean(axis=0) / POSITION_SCALE_CM,
                geometry.normal[members].mean(axis=0),
                [geometry.is_mppc[members].mean()],
            ])
            descriptors += [descriptor] * self.num_tokens[name]
        self.register_buffer(
            "face_descriptor", torch.tensor(np.array(descriptors), dtype=torch.float32),
            persistent=False,
        )

    @property
    def total_tokens(self) -> int:
        """Number of tokens over all faces."""
        return sum(self.num_tokens.values())

    def encode(self, features: torch.Tensor, keep: torch.Tensor | None = None):
        """``(tokens, maps)``: ``tokens[face]`` (N, K, D); ``maps[face]`` the last feature map
        (channels-last (N, H, W, C) for rectangular faces, (N, n_nodes, C) for hex faces).

        ``keep`` (N, 4760) bool, optional: FCMAE masking (module docstring); the features of
        sensors not kept are zeroed first."""
        tokens: dict[str, torch.Tensor] = {}
        maps: dict[str, torch.Tensor] = {}
        if keep is not None:
            features = features * keep[..., None].to(features.dtype)
        for name in FACE_ORDER:
            stage_maps = self.backbones[name](features, keep)
            face_tokens = []
            for fmap, pooler in zip(stage_maps, self.poolers[name]):
                if isinstance(pooler, nn.Identity):
                    continue
                face_tokens.append(pooler(fmap.flatten(1, 2) if fmap.dim() == 4 else fmap))
            tokens[name] = torch.cat(face_tokens, dim=1) if len(face_tokens) > 1 else face_tokens[0]
            maps[name] = stage_maps[-1]
        return tokens, maps

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``features`` (N, 4760, C) -> {face name: (N, K_face, token_dim)}."""
        return self.encode(features)[0]


def build_encoder(config: dict) -> Encoder:
    """The encoder described by the ``encoder`` section of a resolved model config.

    Keys: ``in_channels``, ``token_dim``, ``positional_encoding``, ``multiscale``, ``pool_heads``,
    ``tokens`` ({face: K}), ``rect`` (``dims``, ``depths``, ``kernel_size``, ``mlp_ratio``,
    ``stem_stride`` {face: int or [sh, sw]}), ``hex`` (``dim``, ``depth``, ``heads``,
    ``mlp_ratio``). :func:`xecreco.models.regressor.presets.resolve_model_config` fills and checks them.
    """
    return Encoder(config)
