"""The neural regressor: encoder -> transformer fusion of face tokens -> task heads.

``build_model(model_config)`` builds it from a *resolved* model config (a plain dict, stored
verbatim in checkpoints, so a model is always rebuilt from its checkpoint alone). Use
:func:`resolve_model_config` to turn a preset name plus overrides into one.

Forward: ``model(features)`` with ``features`` (N, 4760, C) float32 (normalised, see
:mod:`xecreco.normalization`; C = 2, or 3 with ``dead_flag``: channel 2 is 1 at sensors that
were not measured, dead or inpainted, and only the encoder sees it, the light summary uses
channels 0 and 1) returns a dict of *standardised* outputs: "energy", "time", "u",
"v", "w" (N,), "direction" (N, 3) unit vector, "npileup" (N,), "pileup" (N,) logit for the
enabled heads, plus "<name>_logvar" (N,) when ``uncertainty`` is on and "<name>_lo",
"<name>_hi" (N,) for the scalar heads but "pileup" when ``quantiles`` is on. Destandardising (:class:`TargetScaling`) and the
time reference are applied by :mod:`xecreco.models.regressor.reconstructor` and the ONNX wrapper.

Presets and config resolution: :mod:`xecreco.models.regressor.presets`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from xecreco.errors import UserError
from xecreco.models.nn.attention import TransformerLayer
from xecreco.models.nn.perceiver import PerceiverFusion
from xecreco.models.nn.positional import rope_angles, sinusoidal_table
from xecreco.models.nn.heads import TaskHead
from xecreco.models.nn.encoder import FACE_ORDER, POSITION_SCALE_CM, build_encoder
from xecreco.models.nn.light_summary import LightSummary
from xecreco.models.regressor.presets import resolve_model_config

#: Outputs that get a physics reference from the light summary, in buffer order.
REFERENCED_OUTPUTS = ("energy", "u", "v")


class Regressor(nn.Module):
    """Encoder + CLS token + transformer fusion (+ light summary) + task heads.

    With a light summary (``summary`` in the config, :mod:`xecreco.models.nn.light_summary`)
    the heads also see the summary vector, and the energy, u and v heads predict corrections to
    references: energy = ``light_gain`` x collected light, (u, v) = the light centroid around the
    inner-face peak. With a ``pileup_energy`` head (the summed in-gate pile-up energy) the energy
    reference becomes ``light_gain`` x collected light minus that head's estimate (GeV, >= 0,
    detached: the pile-up head learns from its own target only), so the energy head corrects a
    reference that already leaves the pile-up light out instead of having to learn a
    subtraction of up to tens of MeV. The references enter in standardised units, so
    :meth:`calibrate_references` must be given the target scaling (the trainer does this before
    the first step; the values
    are persistent buffers and travel with the weights).

    Fusion options (model config, docs/models.md): ``fusion.position`` picks the token
    position encoding (``geometric``, ``sinusoidal``, ``rope``, ``none``; see
    :mod:`xecreco.models.nn.positional`), ``fusion.type: perceiver`` replaces the CLS-token
    transformer by :class:`~xecreco.models.nn.perceiver.PerceiverFusion` over all face features,
    ``dropout`` drops units in the fusion and heads (``mc_samples`` > 0: MC-dropout uncertainties
    at prediction), ``quantiles`` adds 68 % interval outputs to the scalar heads.

    Attributes:
        config: the resolved model config it was built from.
        head_names: the enabled heads, in config order.
    """

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config["encoder"])
        dim = self.encoder.token_dim
        n_tokens = self.encoder.total_tokens
        self.token_embed = nn.Parameter(torch.zeros(n_tokens, dim))
        nn.init.trunc_normal_(self.token_embed, std=0.02)
        fusion = config["fusion"]
        self.position = fusion["position"]
        self.geometry_embed = (nn.Linear(self.encoder.face_descriptor.shape[1], dim)
                               if config["encoder"]["positional_encoding"]
                               and self.position == "geometric" else None)
        face_index = [i for i, name in enumerate(FACE_ORDER)
                      for _ in range(self.encoder.num_tokens[name])]
        self.register_buffer("sinusoidal", sinusoidal_table(face_index, dim)
                             if self.position == "sinusoidal" else None, persistent=False)
        heads, dropout = int(fusion["heads"]), float(config["dropout"])
        if self.position == "rope":  # CLS at the target centre, tokens at their face centroids
            centroids = self.encoder.face_descriptor[:, :3].numpy() * POSITION_SCALE_CM
            cos, sin = rope_angles(np.concatenate([np.zeros((1, 3)), centroids]), dim // heads)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if fusion["type"] == "perceiver":
            rect_c = int(config["encoder"]["rect"]["dims"][-1])
            hex_c = int(config["encoder"]["hex"]["dim"])
            channels = {name: (hex_c if name in ("top", "bottom") else rect_c)
                        for name in FACE_ORDER}
            self.perceiver = PerceiverFusion(channels, dim, int(fusion["latents"]), heads,
                                             float(fusion["mlp_ratio"]), int(fusion["layers"]),
                                             dropout)
            self.cls_token = None
            self.fusion = nn.ModuleList()
        else:
            self.perceiver = None
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.fusion = nn.ModuleList(
                TransformerLayer(dim, heads, float(fusion["mlp_ratio"]), dropout)
                for _ in range(int(fusion["layers"]))
            )
        self.norm = nn.LayerNorm(dim)
        summary = config.get("summary")
        self.summary = None if summary is None else LightSummary(
            summary["npho_scheme"], int(summary["crop"]), int(summary["hidden"]), dim,
            int(config["encoder"]["in_channels"]), bool(summary["vertex"]))
        if self.summary is not None:
            n_ref = len(REFERENCED_OUTPUTS)
            # physical reference -> standardised units: (reference - mean) / scale; off until
            # calibrated (reference_on = 0)
            self.register_buffer("reference_mean", torch.zeros(n_ref))
            self.register_buffer("reference_scale", torch.ones(n_ref))
            self.register_buffer("light_gain", torch.zeros(()))
            self.register_buffer("reference_on", torch.zeros(()))
        self.head_names = tuple(config["heads"])
        # with a pileup_energy head the energy reference leaves out the estimated pile-up light:
        # (mean, scale) GeV turn that head's standardised output into GeV
        self.subtracts_pileup = self.summary is not None and {"energy", "pileup_energy"} <= set(
            self.head_names)
        if self.subtracts_pileup:
            self.register_buffer("pileup_energy_affine", torch.tensor([0.0, 1.0]))
        head_in = (2 if self.summary is None else 3) * dim
        self.heads = nn.ModuleDict(
            {name: TaskHead(name, head_in, int(config["head_hidden"]), bool(config["uncertainty"]),
                            dropout, bool(config["quantiles"]))
             for name in self.head_names}
        )

    def event_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 4760, C) -> (N, 2 D): the fused CLS token and the mean of the fused face tokens
        (with the perceiver fusion: the first latent and the mean of the others)."""
        if self.perceiver is not None:
            tokens, maps = self.encoder.encode(features)
        else:
            tokens, maps = self.encoder(features), None
        x = torch.cat([tokens[name] for name in FACE_ORDER], dim=1)
        embed = self.token_embed
        if self.geometry_embed is not None:
            embed = embed + self.geometry_embed(self.encoder.face_descriptor)
        if self.sinusoidal is not None:
            embed = embed + self.sinusoidal
        x = x + embed.unsqueeze(0)
        if self.perceiver is not None:
            x = self.perceiver(maps, x)
        else:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            rotary = (self.rope_cos, self.rope_sin) if self.position == "rope" else None
            for layer in self.fusion:
                x = layer(x, rotary)
        x = self.norm(x)
        return torch.cat([x[:, 0], x[:, 1:].mean(dim=1)], dim=1)

    @property
    def dead_flag(self) -> bool:
        """Whether the features carry the dead flag as channel 2 (``dead_flag`` in the config;
        :meth:`xecreco.normalization.NormalizationSpec.features` with ``flag=True``)."""
        return bool(self.config.get("dead_flag", False))

    @property
    def uses_vertex(self) -> bool:
        """Whether ``forward`` uses the event vertex (the light summary's incidence inputs)."""
        return self.summary is not None and self.summary.use_vertex

    def forward(self, features: torch.Tensor,
                vertex: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Standardised outputs of every enabled head (see the module docstring).

        ``vertex`` (N, 3) cm: the photon vertex (``xyzVTX``), used when :attr:`uses_vertex`;
        None or non-finite rows mean the target centre.
        """
        embedding = self.event_embedding(features)
        references = None
        if self.summary is not None:
            summary, references = self.summary(features, vertex)
            embedding = torch.cat([embedding, summary.to(embedding.dtype)], dim=1)
        out: dict[str, torch.Tensor] = {}
        for name in self.head_names:
            out.update(self.heads[name](embedding))
        if references is not None:
            physical = {"energy": self.light_gain * references["light"],
                        "u": references["u"], "v": references["v"]}
            if self.subtracts_pileup:  # the head's estimate, not a path for the energy's gradient
                mean, scale = self.pileup_energy_affine
                pileup_gev = (out["pileup_energy"].detach() * scale + mean).clamp(min=0.0)
                physical["energy"] = physical["energy"] - pileup_gev.to(physical["energy"].dtype)
            for i, name in enumerate(REFERENCED_OUTPUTS):
                if name in out:
                    standardised = (physical[name] - self.reference_mean[i]) / \
                        self.reference_scale[i]
                    shift = self.reference_on * standardised.to(out[name].dtype)
                    out[name] = out[name] + shift
                    for bound in ("_lo", "_hi"):  # quantiles move with the central value
                        if name + bound in out:
                            out[name + bound] = out[name + bound] + shift
        return out

    @torch.no_grad()
    def calibrate_references(self, features: torch.Tensor, energy_gev: torch.Tensor | None,
                             scaling) -> None:
        """Switch the light-summary references on (no-op without a summary).

        Args:
            features: (N, 4760, C) input features of some training events.
            energy_gev: (N,) their true energies (GeV), to set ``light_gain`` as the median of
                energy / collected light; None when the model has no energy head.
            scaling: the :class:`xecreco.normalization.TargetScaling` of the targets.
        """
        if self.summary is None:
            return
        for i, name in enumerate(REFERENCED_OUTPUTS):
            if name in self.head_names:
                self.reference_mean[i] = float(scaling.mean[name])
                self.reference_scale[i] = float(scaling.scale[name])
        if self.subtracts_pileup:
            self.pileup_energy_affine[0] = float(scaling.mean["pileup_energy"])
            self.pileup_energy_affine[1] = float(scaling.scale["pileup_energy"])
        if "energy" in self.head_names:
            _, references = self.summary(features)
            light = references["light"].double()
            lit = light > 0
            if not bool(lit.any()):
                raise UserError("cannot calibrate the energy reference: no light in the "
                                "calibration events; check the training files' npho branch")
            ratio = energy_gev.double().to(light.device)[lit] / light[lit]
            self.light_gain.fill_(float(torch.median(ratio)))
        self.reference_on.fill_(1.0)

    @torch.no_grad()
    def reference_residuals(self, features: torch.Tensor, truth: dict) -> dict[str, np.ndarray]:
        """Target minus light-summary reference, physical units ((N,) GeV for energy, cm for u
        and v), of the referenced outputs that are heads here and in ``truth`` ({name: (N,)});
        empty without a summary. Call after :meth:`calibrate_references` (energy needs
        ``light_gain``). With a ``pileup_energy`` head the energy reference leaves out the true
        in-gate pile-up energy (``truth["pileup_energy"]``), as a perfect pile-up head would."""
        if self.summary is None:
            return {}
        references = {}
        for start in range(0, len(features), 1024):  # bounded memory for large samples
            _, part = self.summary(features[start:start + 1024])
            for key, value in part.items():
                references.setdefault(key, []).append(value.double())
        references = {key: torch.cat(parts).cpu().numpy() for key, parts in references.items()}
        physical = {"energy": float(self.light_gain) * references["light"],
                    "u": references["u"], "v": references["v"]}
        if self.subtracts_pileup and "pileup_energy" in truth:
            physical["energy"] = physical["energy"] - np.asarray(truth["pileup_energy"],
                                                                 dtype=np.float64)
        return {name: np.asarray(truth[name], dtype=np.float64) - physical[name]
                for name in REFERENCED_OUTPUTS if name in self.head_names and name in truth}


def build_model(model_config: dict | str | None = None) -> Regressor:
    """A :class:`Regressor` from a model config (resolved with :func:`resolve_model_config`)."""
    return Regressor(resolve_model_config(model_config))
