"""Regressor model configs: the presets and their resolution (name + overrides -> full dict).

:func:`resolve_model_config` turns a preset name plus overrides into the plain dict that
checkpoints store and :func:`xecreco.models.regressor.network.build_model` builds from.

Presets:
- ``cpu`` (default, ~0.15 M parameters, ~7 MFLOP per event): inner face patchified 4 x 4
  (24 x 11 cells), outer refined grid 5 x 3 (one cell per coarse PMT, 9 x 24), US/DS 2 x 1,
  two ConvNeXt stages of 16 and 32 channels with one block each, one HexNeXt block of width 16
  per hex face, token width 64 (4 inner + 2 outer + 1 per other face + 1 multi-scale token per
  rectangular face = 14 tokens), one fusion layer. Built for >= 1,000 events/s inference and
  >= 300 events/s training on 2 CPU cores.
- ``upstream`` (~33 M parameters, ~1.1 GFLOP per event): the scale of the original model, for
  GPUs: token width 1024, 2 fusion layers with 8 heads, ConvNeXt 32 -> 64 channels (2 + 3 blocks)
  at full inner-face resolution, outer grid patchified 3 x 2 (one cell per dense-patch PMT),
  4 HexNeXt blocks of width 64, 10 tokens (4 inner, 2 outer, 1 per other face).

``dead_flag`` (both presets: false) gives the encoder a third input channel per sensor, 1 where
the sensor was not measured (dead or inpainted; :func:`xecreco.normalization.not_measured`);
``encoder.in_channels`` follows it (2 + dead_flag) and need not be given. Configs without the key
(older checkpoints) resolve to false.
"""

from __future__ import annotations

import copy
import difflib

from xecreco.errors import UserError
from xecreco.models.nn.encoder import FACE_ORDER
from xecreco.models.nn.heads import HEAD_WIDTHS

#: Format version of the model config dict (bumped when its meaning changes).
MODEL_CONFIG_VERSION = 3
#: Light-summary settings of both presets (``summary: null`` switches the block off).
_SUMMARY = {"crop": 9, "hidden": 128, "npho_scheme": "log1p", "vertex": True}

_CPU = {
    "preset": "cpu",
    "config_version": MODEL_CONFIG_VERSION,
    "encoder": {
        "in_channels": 2,
        "token_dim": 64,
        "positional_encoding": True,
        "multiscale": True,
        "pool_heads": 2,
        "tokens": {"inner": 4, "outer": 2, "us": 1, "ds": 1, "top": 1, "bottom": 1},
        "rect": {
            "dims": [16, 32],
            "depths": [1, 1],
            "kernel_size": 7,
            "mlp_ratio": 2.0,
            "stem_stride": {"inner": [4, 4], "outer": [5, 3], "us": [2, 1], "ds": [2, 1]},
        },
        "hex": {"dim": 16, "depth": 1, "heads": 2, "mlp_ratio": 2.0},
    },
    "fusion": {"layers": 1, "heads": 4, "mlp_ratio": 2.0, "type": "transformer",
               "position": "geometric", "latents": 8},
    "summary": _SUMMARY,
    "heads": ["energy", "time", "u", "v", "w", "direction"],
    "head_hidden": 64,
    "uncertainty": False,
    "quantiles": False,
    "dropout": 0.0,
    "mc_samples": 0,
    "dead_flag": False,
}

_UPSTREAM = {
    "preset": "upstream",
    "config_version": MODEL_CONFIG_VERSION,
    "encoder": {
        "in_channels": 2,
        "token_dim": 1024,
        "positional_encoding": True,
        "multiscale": False,
        "pool_heads": 8,
        "tokens": {"inner": 4, "outer": 2, "us": 1, "ds": 1, "top": 1, "bottom": 1},
        "rect": {
            "dims": [32, 64],
            "depths": [2, 3],
            "kernel_size": 7,
            "mlp_ratio": 4.0,
            "stem_stride": {"inner": [1, 1], "outer": [3, 2], "us": [1, 1], "ds": [1, 1]},
        },
        "hex": {"dim": 64, "depth": 4, "heads": 4, "mlp_ratio": 4.0},
    },
    "fusion": {"layers": 2, "heads": 8, "mlp_ratio": 4.0, "type": "transformer",
               "position": "geometric", "latents": 8},
    "summary": _SUMMARY,
    "heads": ["energy", "time", "u", "v", "w", "direction"],
    "head_hidden": 512,
    "uncertainty": False,
    "quantiles": False,
    "dropout": 0.0,
    "mc_samples": 0,
    "dead_flag": False,
}

#: Preset name -> resolved model config (copy before changing).
PRESETS: dict[str, dict] = {"cpu": _CPU, "upstream": _UPSTREAM}
DEFAULT_PRESET = "cpu"


def merge_config(base: dict, overrides: dict, path: str = "") -> dict:
    """Deep-merge ``overrides`` into a copy of ``base``; unknown keys are a UserError.

    Shared by every model config built on the encoder (the regressor's and the masked models'):
    sections merge key by key, the per-face maps (``tokens``, ``stem_stride``) must name faces,
    and ``summary: null`` switches the light summary off."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        where = f"{path}.{key}" if path else key
        if key not in base:
            hint = difflib.get_close_matches(key, list(base), n=1)
            suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
            raise UserError(f"unknown model config key '{where}'{suggestion}; known keys: "
                            f"{', '.join(sorted(base))}")
        if key == "summary" and value is None:
            merged[key] = None
        elif isinstance(base[key], dict) and key not in ("tokens", "stem_stride"):
            if not isinstance(value, dict):
                raise UserError(f"model config key '{where}' must be a mapping, got {value!r}")
            merged[key] = merge_config(base[key], value, where)
        elif isinstance(base[key], dict):
            if not isinstance(value, dict) or set(value) - set(FACE_ORDER):
                raise UserError(f"model config key '{where}' must map faces "
                                f"({', '.join(FACE_ORDER)}) to values, got {value!r}")
            merged[key].update(value)
        else:
            _check_type(where, base[key], value)
            merged[key] = copy.deepcopy(value)
    return merged


def _check_type(where: str, default, value) -> None:
    """UserError unless ``value`` has the type of the preset's ``default`` (an int where a
    float is expected is fine; None defaults accept anything)."""
    if default is None:
        return
    if isinstance(default, bool):
        ok, want = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, want = isinstance(value, str), "a string"
    elif isinstance(default, list):
        ok, want = isinstance(value, list), "a list"
    else:
        return
    if not ok:
        raise UserError(f"model config key '{where}' must be {want}, got {value!r}")


def resolve_model_config(config: dict | str | None = None) -> dict:
    """A complete model config from a preset name, a partial dict or a full dict.

    A dict may name its ``preset`` (default ``cpu``); its other keys override that preset's
    values (nested sections merge key by key). Unknown keys and bad values raise UserError.
    The result is what checkpoints store.
    """
    if config is None:
        config = {}
    if isinstance(config, str):
        config = {"preset": config}
    if not isinstance(config, dict):
        raise UserError(f"model config must be a mapping or a preset name, got {config!r}")
    if config.get("config_version") == 1 and "summary" not in config:
        config = {**config, "summary": None}  # version 1 had no light summary
    if config.get("config_version") == 2 and isinstance(config.get("summary"), dict):
        config = {**config, "summary": {"vertex": False, **config["summary"]}}  # nor vertex
    preset = config.get("preset", DEFAULT_PRESET)
    if not isinstance(preset, str) or preset not in PRESETS:
        raise UserError(f"unknown model preset '{preset}': use one of {', '.join(PRESETS)}")
    resolved = merge_config(PRESETS[preset], config)
    _resolve_in_channels(resolved, config)
    _check(resolved)
    return resolved


def input_channels(config: dict) -> int:
    """Feature channels per sensor of a resolved regressor config: [npho, time] plus the dead
    flag when ``dead_flag`` is on."""
    return 3 if config.get("dead_flag") else 2


def _resolve_in_channels(resolved: dict, given: dict) -> None:
    """``encoder.in_channels`` from ``dead_flag`` (UserError when the config sets another)."""
    want = input_channels(resolved)
    encoder = given.get("encoder")
    stated = encoder.get("in_channels") if isinstance(encoder, dict) else None
    if stated is not None and stated != want:
        raise UserError(f"model config 'encoder.in_channels' = {stated!r} does not match "
                        f"dead_flag: {str(resolved['dead_flag']).lower()} ({want} channels: npho, "
                        f"time{', dead flag' if want == 3 else ''}); drop encoder.in_channels")
    resolved["encoder"]["in_channels"] = want


def _check(config: dict) -> None:
    """Value checks that would otherwise surface as obscure tensor-shape errors."""
    if config["config_version"] > MODEL_CONFIG_VERSION:
        raise UserError(f"model config version {config['config_version']} is newer than this "
                        f"xecreco supports ({MODEL_CONFIG_VERSION}): upgrade xecreco")
    heads = config["heads"]
    unknown = [h for h in heads if not isinstance(h, str) or h not in HEAD_WIDTHS]
    if unknown or not heads:
        raise UserError("model config 'heads' must be a non-empty list of "
                        f"{', '.join(HEAD_WIDTHS)}; "
                        f"got {heads!r}")
    enc = config["encoder"]
    rect = enc["rect"]
    if len(rect["dims"]) != len(rect["depths"]) or not rect["dims"]:
        raise UserError("model config 'encoder.rect.dims' and 'encoder.rect.depths' must be "
                        "non-empty lists of the same length")
    sizes = {"encoder.token_dim": enc["token_dim"], "encoder.hex.dim": enc["hex"]["dim"],
             "head_hidden": config["head_hidden"],
             **{f"encoder.rect.dims[{i}]": v for i, v in enumerate(rect["dims"])}}
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"model config '{key}' = {value!r} must be a positive integer")
    d = enc["token_dim"]
    for key, width, heads_ in (("encoder.pool_heads", d, enc["pool_heads"]),
                               ("fusion.heads", d, config["fusion"]["heads"]),
                               ("encoder.hex.heads", enc["hex"]["dim"], enc["hex"]["heads"])):
        if heads_ < 1 or width % heads_:
            raise UserError(f"model config '{key}' = {heads_} must divide the width {width}")
    _check_research_options(config)
    summary = config["summary"]
    if summary is not None:
        from xecreco.normalization import NPHO_SCHEMES

        if summary["npho_scheme"] not in NPHO_SCHEMES:
            raise UserError(f"model config 'summary.npho_scheme' = {summary['npho_scheme']!r}: "
                            f"use one of {', '.join(NPHO_SCHEMES)}")
        if int(summary["crop"]) < 1 or int(summary["crop"]) % 2 == 0:
            raise UserError(f"model config 'summary.crop' = {summary['crop']!r} must be a "
                            "positive odd number")
    if any(not isinstance(k, int) or isinstance(k, bool) or k < 1
           for k in enc["tokens"].values()):
        raise UserError("model config 'encoder.tokens' must give at least 1 token (an integer) "
                        "per face")


def _check_research_options(config: dict) -> None:
    """The fusion, uncertainty and dropout switches (docs/models.md, "Research switches")."""
    from xecreco.models.nn.positional import POSITION_MODES

    fusion = config["fusion"]
    if fusion["type"] not in ("transformer", "perceiver"):
        raise UserError(f"model config 'fusion.type' = {fusion['type']!r}: use transformer or "
                        "perceiver")
    if fusion["position"] not in POSITION_MODES:
        raise UserError(f"model config 'fusion.position' = {fusion['position']!r}: use one of "
                        f"{', '.join(POSITION_MODES)}")
    if fusion["position"] == "rope" and fusion["type"] != "transformer":
        raise UserError("model config 'fusion.position' rope needs fusion.type transformer "
                        "(the perceiver's latents have no positions)")
    if fusion["type"] == "perceiver" and int(fusion["latents"]) < 2:
        raise UserError(f"model config 'fusion.latents' = {fusion['latents']!r} must be >= 2")
    if not 0.0 <= float(config["dropout"]) < 1.0:
        raise UserError(f"model config 'dropout' = {config['dropout']!r} must be in [0, 1)")
    if int(config["mc_samples"]) < 0 or int(config["mc_samples"]) == 1:
        raise UserError(f"model config 'mc_samples' = {config['mc_samples']!r}: 0 (off) or >= 2 "
                        "stochastic passes")
    if int(config["mc_samples"]) and not float(config["dropout"]) > 0:
        raise UserError("model config 'mc_samples' needs 'dropout' > 0 (MC dropout)")
    if config["quantiles"] and config["uncertainty"]:
        raise UserError("model config: 'quantiles' and 'uncertainty' both give <q>_err; "
                        "choose one")
