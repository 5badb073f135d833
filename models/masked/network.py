"""Masked-sensor network shared by MAE pretraining and the neural inpainter.

The network (:class:`MaskedSensorModel`) hides a set of sensors, encodes what is left with the
shared encoder (:func:`xecreco.models.nn.encoder.build_encoder`) and predicts the normalised npho and
time of every sensor with per-face decoders:

- rectangular faces (inner, outer, US, DS): the last feature map is projected, upsampled
  (bilinear) to the full face image, concatenated with the visible input image and decoded by a
  3 x 3 and a 1 x 1 convolution; cells are averaged into sensors (the outer PMTs that cover
  several cells of the refined 45 x 72 grid get the mean of their own cells, so each of the 234
  outer PMTs has its own output and the coarse grid never collides with the central patch);
- hexagonal faces (top, bottom): node features of the HexNeXt graph plus the visible input of the
  node go through a per-node MLP.

A global context vector (the mean of all face tokens, projected) is added in every decoder.

The ``local`` preset replaces encoder and decoders by
:class:`xecreco.models.masked.local.LocalInpaintBody`: a small network evaluated only at the
hidden and invalid sensors from their same-face neighbourhoods plus a global context (visible
sensors pass through), fast enough to train on one CPU thread; it needs the validity channels
(inpainter only).

Masks (``masking`` section of the model config, drawn with torch's RNG in training and with a
fixed-seed generator in evaluation so validation losses are comparable):

- ``random`` (MAE pretraining): each valid sensor is hidden with probability ``ratio``;
- ``dead`` (inpainter): realistic dead-channel patterns: a per-event fraction drawn uniformly in
  [0, ``max_fraction``] of scattered sensors plus clusters (seeds at rate ``cluster_rate`` whose
  immediate neighbours are hidden with probability ``cluster_fill``), plus a per-event number,
  uniform in 0..``max_groups``, of whole readout groups (distinct 8 x 4 blocks of inner MPPCs,
  the simulation's tiles of :mod:`xecreco.sim.dead`; ``max_groups`` 0 draws none).

Invalid input sensors are never hidden on purpose and never enter the loss.

Research switches (off by default): ``masking.fcmae`` applies FCMAE-style masking inside the
encoder (:meth:`xecreco.models.nn.encoder.Encoder.encode` with ``keep``: hidden and invalid
sensors' features are zeroed again after every spatial operation, so nothing is computed at or
spread through masked positions); ``decoder.scale_by_face`` gives each rectangular-face decoder
the width ``min(max_scale, sqrt(n_face / n_min)) x decoder.dim`` with n_face its sensor count
(inner 4092, outer 234, US/DS 144) and n_min the smallest face's (top/bottom, 73), each with its
own context projection (:func:`decoder_dims`).

The training task (``mae``) is :mod:`xecreco.models.tasks.masked`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xecreco.errors import UserError
from xecreco.sim.dead import GROUP_COLS, GROUP_ROWS, check_group_count, sensor_group_index
from xecreco.geometry import N_SENSORS, face_image_index, hex_graph
from xecreco.models.nn.encoder import FACE_NAMES, HEX_FACES, RECT_FACES, build_encoder
from xecreco.models.regressor.presets import merge_config

__all__ = [
    "LOCAL_PRESET",
    "MASKED_CONFIG_VERSION",
    "MASKED_PRESETS",
    "MaskedSensorModel",
    "build_masked_model",
    "encoder_state_from_checkpoint",
    "masked_inputs",
    "resolve_masked_config",
]

#: Format version of the masked-model config dict.
MASKED_CONFIG_VERSION = 1

_MASKING = {
    "mode": "random",
    "ratio": 0.5,
    "max_fraction": 0.05,
    "cluster_rate": 0.002,
    "cluster_fill": 0.5,
    "max_groups": 0,
    "eval_seed": 1234,
    "fcmae": False,
}


#: Preset of the fast neighbourhood body (:mod:`xecreco.models.masked.local`), which needs no
#: encoder; every other preset name is a regressor encoder preset.
LOCAL_PRESET = "local"


def _preset(name: str, mode: str, validity: bool) -> dict:
    from xecreco.models.masked.local import LOCAL_DEFAULTS
    from xecreco.models.regressor.presets import PRESETS

    if name == LOCAL_PRESET:
        return {"preset": name, "config_version": MASKED_CONFIG_VERSION,
                "validity_channels": validity, "local": copy.deepcopy(LOCAL_DEFAULTS),
                "masking": dict(_MASKING, mode=mode)}
    if name not in PRESETS:
        raise UserError(f"unknown model preset '{name}': use one of "
                        f"{', '.join([*PRESETS, LOCAL_PRESET])}")
    encoder = copy.deepcopy(PRESETS[name]["encoder"])
    config = {
        "preset": name,
        "config_version": MASKED_CONFIG_VERSION,
        "encoder": encoder,
        "validity_channels": validity,
        "decoder": {"dim": 12 if name == "cpu" else 64, "hex_hidden": 32 if name == "cpu" else 128,
                    "scale_by_face": False, "max_scale": 4.0},
        "masking": dict(_MASKING, mode=mode),
    }
    return config


#: (task, preset) -> default config, filled on first use. MAE keeps the regressor's 2 input
#: channels so its encoder weights transfer; the inpainter adds two validity channels.
MASKED_PRESETS: dict[tuple[str, str], dict] = {}


def _defaults(task: str, preset: str) -> dict:
    key = (task, preset)
    if key not in MASKED_PRESETS:
        MASKED_PRESETS[key] = _preset(preset, "random" if task == "mae" else "dead",
                                      task == "inpainter")
    return copy.deepcopy(MASKED_PRESETS[key])


def resolve_masked_config(config: dict | None, task: str = "inpainter") -> dict:
    """The complete config of a masked-sensor model from ``{"preset": ..., **overrides}``.

    ``task`` ("mae" or "inpainter") picks the defaults: random masking and 2 input channels for
    MAE, dead-channel masking and validity channels for the inpainter. A complete config (as
    stored in checkpoints) resolves to itself.
    """
    config = dict(config or {})
    preset = config.get("preset", "cpu")
    base = _defaults(task, preset)
    merged = merge_config(base, config)
    masking = merged["masking"]
    if masking["mode"] not in ("random", "dead"):
        raise UserError(f"model config key 'masking.mode': '{masking['mode']}' is not "
                        "random or dead")
    for key in ("ratio", "max_fraction", "cluster_rate", "cluster_fill"):
        if not 0.0 <= float(masking[key]) < 1.0:
            raise UserError(f"model config key 'masking.{key}' must be in [0, 1), "
                            f"got {masking[key]}")
    groups = masking["max_groups"]
    if not (isinstance(groups, int) and not isinstance(groups, bool)):
        raise UserError(f"model config key 'masking.max_groups' must be a whole number of "
                        f"readout groups, got {groups!r}")
    check_group_count(groups, GROUP_ROWS, GROUP_COLS, "model config key 'masking.max_groups'")
    if "encoder" in merged:
        merged["encoder"]["in_channels"] = 4 if merged["validity_channels"] else 2
    else:
        local = merged["local"]
        for key in ("k_inner", "k_pmt", "hidden", "context_dim", "base_slots"):
            if not (isinstance(local[key], int) and local[key] >= 1):
                raise UserError(f"model config key 'local.{key}' must be a positive integer, "
                                f"got {local[key]!r}")
        if not (isinstance(local["depth"], int) and local["depth"] >= 0):
            raise UserError(f"model config key 'local.depth' must be an integer >= 0, "
                            f"got {local['depth']!r}")
        if not float(local["time_clip"]) > 0:
            raise UserError(f"model config key 'local.time_clip' must be > 0 (time feature "
                            f"units), got {local['time_clip']!r}")
        if not merged["validity_channels"]:
            raise UserError(f"the '{LOCAL_PRESET}' preset needs validity_channels: true "
                            "(train it with task.name inpainter)")
    return merged


def decoder_dims(decoder: dict) -> dict[str, int]:
    """Width of each rectangular-face decoder (``decoder.scale_by_face``; else ``decoder.dim``
    for all): ``round(dim x min(max_scale, sqrt(n_face / n_min)))``."""
    from xecreco.geometry import FACE_COUNTS

    dim = int(decoder["dim"])
    if not decoder.get("scale_by_face"):
        return {FACE_NAMES[f]: dim for f in RECT_FACES}
    smallest = min(FACE_COUNTS.values())
    cap = float(decoder.get("max_scale", 4.0))
    return {FACE_NAMES[f]: int(round(dim * min(cap, float(np.sqrt(FACE_COUNTS[f] / smallest)))))
            for f in RECT_FACES}


def _neighbour_table() -> torch.Tensor:
    """(4760, K) immediate same-face neighbours (pad = 4760), from the inpainting tables."""
    from xecreco.models.inpaint.neighbours import immediate_neighbours, padded_rows

    table = padded_rows(immediate_neighbours(), np.arange(N_SENSORS))
    return torch.from_numpy(np.where(table >= 0, table, N_SENSORS).astype(np.int64))


class _RectDecoder(nn.Module):
    """Feature map + visible input image -> per-cell (npho, time) of one rectangular face."""

    def __init__(self, index: np.ndarray, map_channels: int, in_channels: int, dim: int):
        super().__init__()
        index = np.asarray(index, dtype=np.int64)
        self.height, self.width = index.shape
        self.register_buffer("cell_sensor", torch.from_numpy(index.reshape(-1).copy()),
                             persistent=False)
        self.project = nn.Conv2d(map_channels, dim, 1)
        self.refine = nn.Sequential(
            nn.Conv2d(dim + in_channels, dim, 3, padding=1), nn.GELU(), nn.Conv2d(dim, 2, 1))

    def image(self, sensors: torch.Tensor) -> torch.Tensor:
        """(N, 4760, C) sensor values -> (N, C, H, W) face image (empty cells 0)."""
        n, _, channels = sensors.shape
        padded = torch.cat([sensors, sensors.new_zeros(n, 1, channels)], dim=1)
        index = torch.where(self.cell_sensor >= 0, self.cell_sensor,
                            torch.full_like(self.cell_sensor, N_SENSORS))
        cells = padded[:, index]
        return cells.transpose(1, 2).reshape(n, channels, self.height, self.width)

    def forward(self, fmap, sensors, context):
        """``fmap`` channels-last (N, H_s, W_s, C) last encoder map, ``sensors`` (N, 4760, C_in)
        visible inputs, ``context`` (N, dim) -> (N, H*W, 2) per-cell predictions."""
        image = self.image(sensors)
        x = self.project(fmap.permute(0, 3, 1, 2).contiguous())
        x = F.interpolate(x, size=(self.height, self.width), mode="bilinear", align_corners=False)
        x = x + context[:, :, None, None]
        x = self.refine(torch.cat([x, image], dim=1))
        return x.flatten(2).transpose(1, 2)  # (N, H*W, 2)


class _HexDecoder(nn.Module):
    """Node features + visible node input -> per-PMT (npho, time) of a hexagonal face."""

    def __init__(self, map_channels: int, in_channels: int, dim: int, hidden: int):
        super().__init__()
        self.project = nn.Linear(map_channels + in_channels, dim)
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 2))

    def forward(self, nodes, node_input, context):
        x = self.project(torch.cat([nodes, node_input], dim=-1)) + context[:, None, :]
        return self.mlp(x)


class MaskedSensorModel(nn.Module):
    """Encoder + per-face decoders predicting normalised (npho, time) of every sensor.

    ``forward(features, mask=None)``: ``features`` (N, 4760, 4) float = [npho feature, time
    feature, valid npho (0/1), valid time (0/1)] (see :func:`masked_inputs`); ``mask`` (N, 4760)
    bool sensors to hide in addition to the invalid ones (None: draw one, see the module doc).
    Returns ``{"sensors": (N, 4760, 2) prediction, "mask": the hidden valid sensors,
    "target": the input features (N, 4760, 2), "valid_npho", "valid_time"}``.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.validity_channels = bool(config["validity_channels"])
        self.masking = dict(config["masking"])
        in_channels = 4 if self.validity_channels else 2
        if "local" in config:
            from xecreco.models.masked.local import LocalInpaintBody

            self.local = LocalInpaintBody(config["local"], in_channels)
        else:
            self.local = None
            self._build_encoder_decoders(config, in_channels)
        hex_ids = []
        for face in HEX_FACES:
            ids = np.array(hex_graph(face).sensor_ids, dtype=np.int64)
            self.register_buffer(f"ids_{FACE_NAMES[face]}", torch.from_numpy(ids), persistent=False)
            hex_ids.append(ids)
        counts = np.zeros(N_SENSORS, dtype=np.float32)
        for face in RECT_FACES:
            index = face_image_index(face)
            cells = torch.from_numpy(index.reshape(-1).astype(np.int64))
            self.register_buffer(f"cells_{FACE_NAMES[face]}", cells, persistent=False)
            np.add.at(counts, index[index >= 0], 1.0)
        for ids in hex_ids:
            np.add.at(counts, ids, 1.0)
        if (counts == 0).any():
            raise ValueError(f"{int((counts == 0).sum())} sensors have no decoder output")
        self.register_buffer("inv_count", torch.from_numpy(1.0 / counts), persistent=False)
        self.register_buffer("sensor_cells", torch.from_numpy(_sensor_cells(hex_ids)),
                             persistent=False)
        self.register_buffer("neighbours", _neighbour_table(), persistent=False)
        groups = sensor_group_index()  # readout-group tile of each sensor, -1 for PMTs
        self.n_group_tiles = int(groups.max()) + 1
        self.register_buffer("group_index", torch.from_numpy(
            np.where(groups < 0, self.n_group_tiles, groups)), persistent=False)

    def _build_encoder_decoders(self, config: dict, in_channels: int) -> None:
        """The shared encoder plus the per-face decoders (every preset but ``local``)."""
        self.encoder = build_encoder(config["encoder"])
        dec = config["decoder"]
        dim = int(dec["dim"])
        dims = decoder_dims(dec)
        token_dim = int(config["encoder"]["token_dim"])
        if dec.get("scale_by_face"):  # one context projection per decoder width
            self.context = None
            self.face_context = nn.ModuleDict(
                {name: nn.Linear(token_dim, d) for name, d in dims.items()})
        else:
            self.context = nn.Linear(token_dim, dim)
        self.hex_context = nn.Linear(token_dim, int(config["encoder"]["hex"]["dim"]))
        rect_channels = int(config["encoder"]["rect"]["dims"][-1])
        hex_channels = int(config["encoder"]["hex"]["dim"])
        self.rect_decoders = nn.ModuleDict()
        for face in RECT_FACES:
            self.rect_decoders[FACE_NAMES[face]] = _RectDecoder(
                face_image_index(face), rect_channels, in_channels, dims[FACE_NAMES[face]])
        self.hex_decoders = nn.ModuleDict()
        for face in HEX_FACES:
            self.hex_decoders[FACE_NAMES[face]] = _HexDecoder(
                hex_channels, in_channels, hex_channels, int(dec["hex_hidden"]))

    def _face_outputs(self, x: torch.Tensor, keep: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """{face name: (N, H*W, 2) per-cell or (N, n_nodes, 2) per-PMT output} of the
        encoder + decoders."""
        tokens, maps = self.encoder.encode(x, keep)  # keep: FCMAE masking in the encoder
        pooled = torch.cat(list(tokens.values()), dim=1).mean(dim=1)
        context = self.context(pooled) if self.context is not None else None
        hex_context = self.hex_context(pooled)
        out = {}
        for face in RECT_FACES:
            name = FACE_NAMES[face]
            face_context = context if context is not None else self.face_context[name](pooled)
            out[name] = self.rect_decoders[name](maps[name], x, face_context)
        for face in HEX_FACES:
            name = FACE_NAMES[face]
            ids = getattr(self, f"ids_{name}")
            out[name] = self.hex_decoders[name](maps[name], x[:, ids], hex_context)
        return out

    # -- masks --------------------------------------------------------------------------------
    def draw_mask(self, valid: torch.Tensor, generator: torch.Generator | None = None):
        """(N, 4760) bool sensors to hide among the ``valid`` ones (see the module doc)."""
        m = self.masking
        n = valid.shape[0]

        def uniform(*shape):
            return torch.rand(*shape, generator=generator, device="cpu").to(valid.device)

        if m["mode"] == "random":
            mask = uniform(n, N_SENSORS) < float(m["ratio"])
        else:
            fraction = uniform(n, 1) * float(m["max_fraction"])
            mask = uniform(n, N_SENSORS) < fraction
            seeds = uniform(n, N_SENSORS) < float(m["cluster_rate"])
            padded = torch.cat([seeds, seeds.new_zeros(n, 1)], dim=1)
            near = padded[:, self.neighbours].any(dim=-1)
            mask = mask | seeds | (near & (uniform(n, N_SENSORS) < float(m["cluster_fill"])))
            if int(m["max_groups"]) > 0:
                mask = mask | self._group_mask(n, int(m["max_groups"]), uniform)
        return mask & valid

    def _group_mask(self, n: int, max_groups: int, uniform) -> torch.Tensor:
        """(N, 4760) bool: per event a number of readout groups uniform in 0..``max_groups``,
        distinct tiles drawn uniformly (the ranks of uniform keys below the event's count)."""
        counts = (uniform(n, 1) * (max_groups + 1)).floor().clamp(max=max_groups)
        ranks = uniform(n, self.n_group_tiles).argsort(dim=1).argsort(dim=1)
        hit = ranks < counts
        hit = torch.cat([hit, hit.new_zeros(n, 1)], dim=1)
        return hit[:, self.group_index]

    # -- network ------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
        target = features[..., :2]
        valid_npho = features[..., 2] > 0.5
        valid_time = features[..., 3] > 0.5
        if mask is None:
            generator = None
            if not self.training:
                generator = torch.Generator().manual_seed(int(self.masking["eval_seed"]))
            mask = self.draw_mask(valid_npho, generator)
        mask = mask & valid_npho
        show_npho = (valid_npho & ~mask).to(target.dtype)
        show_time = (valid_time & ~mask).to(target.dtype)
        x = torch.stack([target[..., 0] * show_npho, target[..., 1] * show_time], dim=-1)
        if self.validity_channels:
            x = torch.cat([x, show_npho[..., None], show_time[..., None]], dim=-1)
        if self.local is not None:
            out = self.local(x, mask | ~valid_npho)
        else:
            keep = show_npho > 0 if self.masking.get("fcmae") else None
            out = self._assemble(self._face_outputs(x, keep))
        return {"sensors": out, "mask": mask, "target": target, "valid_npho": valid_npho,
                "valid_time": valid_time}

    def _assemble(self, faces: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-face cell / node outputs -> (N, 4760, 2) sensor outputs, the mean of each sensor's
        cells (a gather from the fixed ``sensor_cells`` table rather than a scatter-add, which
        ONNX exports as a scatter that keeps one of the repeated cells instead of summing)."""
        joined = torch.cat([faces[FACE_NAMES[f]] for f in (*RECT_FACES, *HEX_FACES)], dim=1)
        joined = torch.cat([joined, joined.new_zeros(joined.shape[0], 1, joined.shape[2])], dim=1)
        return joined[:, self.sensor_cells].sum(dim=2) * self.inv_count[None, :, None]


def _sensor_cells(hex_ids: list[np.ndarray]) -> np.ndarray:
    """(4760, max cells) int64: for every sensor, its positions in the concatenation of the
    rectangular face images (flattened, in ``RECT_FACES`` order) and the hex node lists (in
    ``HEX_FACES`` order); padded with the index one past the end (an appended zero row)."""
    cells: list[list[int]] = [[] for _ in range(N_SENSORS)]
    start = 0
    for face in RECT_FACES:
        index = face_image_index(face).reshape(-1)
        for cell in np.flatnonzero(index >= 0):
            cells[index[cell]].append(start + int(cell))
        start += index.size
    for ids in hex_ids:
        for node, sensor in enumerate(ids):
            cells[sensor].append(start + node)
        start += len(ids)
    table = np.full((N_SENSORS, max(len(c) for c in cells)), start, dtype=np.int64)
    for sensor, row in enumerate(cells):
        table[sensor, : len(row)] = row
    return table


def masked_inputs(spec, batch, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 4760, 4) float32 network input: normalised [npho, time] and the validity flags,
    written into ``out`` when given (e.g. a slot of the training shuffle buffer)."""
    if out is None:
        out = np.empty((len(batch), N_SENSORS, 4), dtype=np.float32)
    spec.features(batch, out=out[..., :2])
    out[..., 2] = batch.valid_npho
    out[..., 3] = batch.valid_time
    return out


def build_masked_model(model_config: dict) -> MaskedSensorModel:
    """A :class:`MaskedSensorModel` from a resolved config (:func:`resolve_masked_config`)."""
    return MaskedSensorModel(model_config)


def encoder_state_from_checkpoint(path) -> dict:
    """The encoder weights of an ``mae`` (or ``inpainter``) checkpoint, keyed like
    ``build_encoder(config)`` expects them (for seeding a regressor's encoder with
    ``regressor.encoder.load_state_dict(...)``; MAE keeps the regressor's 2 input channels)."""
    from xecreco.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    if ckpt.get("task") not in ("mae", "inpainter"):
        raise UserError(f"checkpoint '{path}' is a '{ckpt.get('task')}' checkpoint, not an mae one")
    if "encoder" not in ckpt.get("model_config", {}):
        raise UserError(f"checkpoint '{path}' uses the '{LOCAL_PRESET}' preset, which has no "
                        "shared encoder to seed a regressor with")
    weights = ckpt.get("ema_state_dict") or ckpt["state_dict"]
    return {k[len("encoder."):]: v for k, v in weights.items() if k.startswith("encoder.")}
