"""Masked-model research switches: FCMAE-style masking inside the encoder (hidden positions
cannot leak) and per-face decoder widths; shapes, gradients, ONNX export of the inpainter, a
short DDP run of MAE pretraining. Defaults unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xecreco.models.masked.network import build_masked_model, decoder_dims, resolve_masked_config
from xecreco.models.nn.encoder import FACE_ORDER

torch.set_num_threads(1)

#: a narrow encoder (cpu preset structure) to keep the tests fast
ENCODER = {"token_dim": 16, "pool_heads": 2, "rect": {"dims": [8, 16]},
           "hex": {"dim": 8, "heads": 2}}


def _model(task="inpainter", **changes):
    cfg = resolve_masked_config({"encoder": ENCODER, **changes}, task=task)
    torch.manual_seed(0)
    model = build_masked_model(cfg)
    with torch.no_grad():  # every parameter non-zero, so every path carries signal
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    return model.eval()


def _features(n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 4760, 4)
    x[..., 0] = torch.rand(n, 4760, generator=gen) * 3
    x[..., 1] = torch.randn(n, 4760, generator=gen)
    x[..., 2:] = 1.0
    return x


def _mask(n=2, seed=1):
    mask = torch.rand(n, 4760, generator=torch.Generator().manual_seed(seed)) < 0.5
    mask[:, 0:2000] = True  # a large hidden region of the inner face (whole stem patches)
    return mask


def test_fcmae_hidden_inputs_cannot_leak_into_the_encoder():
    model = _model(masking={"fcmae": True})
    x = _features()
    keep = ~_mask()
    changed = x.clone()
    changed[..., :2] = torch.where(keep[..., None], x[..., :2], torch.randn_like(x[..., :2]) * 50)
    with torch.no_grad():
        tokens_a, maps_a = model.encoder.encode(x, keep)
        tokens_b, maps_b = model.encoder.encode(changed, keep)
    for name in FACE_ORDER:  # values at hidden sensors change nothing anywhere
        torch.testing.assert_close(maps_a[name], maps_b[name])
        torch.testing.assert_close(tokens_a[name], tokens_b[name])
    # cells without a visible sensor stay exactly zero through every stage
    inner = model.encoder.backbones["inner"]
    with torch.no_grad():
        stages = inner(x * keep[..., None], keep)
        plain = inner(x * keep[..., None])
    # the first 2000 ids are the first rows of the inner face: the top stem/stage cells
    assert float(stages[-1][:, 0].abs().max()) == 0.0
    assert float(plain[-1][:, 0].abs().max()) > 0.0  # without FCMAE they carry features
    # without keep the encoder is the plain one (the defaults' path)
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.encode(x)[1]["top"],
                                   _model().encoder.encode(x)[1]["top"])


def test_fcmae_outputs_at_visible_sensors_do_not_depend_on_hidden_values():
    model = _model(masking={"fcmae": True})
    x, mask = _features(), _mask()
    changed = x.clone()
    changed[..., :2] = torch.where(mask[..., None], torch.randn_like(x[..., :2]) * 50, x[..., :2])
    with torch.no_grad():
        a = model(x, mask)["sensors"]
        b = model(changed, mask)["sensors"]
    torch.testing.assert_close(a, b)  # hidden-sensor predictions too: nothing leaks


@pytest.mark.parametrize("changes", [{"masking": {"fcmae": True}},
                                     {"decoder": {"scale_by_face": True}}])
def test_switch_shapes_and_gradients(changes):
    model = _model(task="mae", **changes).train()
    out = model(_features(), _mask())
    assert out["sensors"].shape == (2, 4760, 2)
    out["sensors"].square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_per_face_decoder_widths_follow_the_face_size():
    cfg = resolve_masked_config({"decoder": {"scale_by_face": True, "dim": 16}}, task="mae")
    dims = decoder_dims(cfg["decoder"])
    # sqrt(4092/73) = 7.5 capped at 4, sqrt(234/73) = 1.79, sqrt(144/73) = 1.40
    assert dims == {"inner": 64, "outer": 29, "us": 22, "ds": 22}
    model = build_masked_model(cfg)
    assert model.rect_decoders["inner"].project.out_channels == 64
    assert model.face_context["outer"].out_features == 29
    plain = resolve_masked_config({}, task="mae")
    assert set(decoder_dims(plain["decoder"]).values()) == {plain["decoder"]["dim"]}
    keys = build_masked_model(plain).state_dict().keys()
    assert "context.weight" in keys and not any(k.startswith("face_context") for k in keys)


def test_fcmae_inpainter_exports_to_onnx(tmp_path):
    pytest.importorskip("onnxruntime")
    from _nn_helpers import randomise

    from xecreco.models.export.inpainter import export_inpainter_onnx
    from xecreco.normalization import NormalizationSpec
    from xecreco.train.checkpoint import save_checkpoint

    cfg = resolve_masked_config({"encoder": ENCODER, "masking": {"fcmae": True},
                                 "decoder": {"scale_by_face": True}}, task="inpainter")
    torch.manual_seed(2)
    model = randomise(build_masked_model(cfg), 2)
    ckpt = tmp_path / "fcmae.pt"
    save_checkpoint(ckpt, {
        "format": "xecreco-checkpoint", "format_version": 1, "task": "inpainter",
        "model_config": cfg, "normalization": NormalizationSpec().to_dict(),
        "target_scaling": {}, "state_dict": model.state_dict(), "ema_state_dict": None,
        "train_state": {}, "metrics": {}, "xecreco_version": "test"})
    result = export_inpainter_onnx(ckpt, tmp_path / "fcmae.onnx", check_events=4)
    assert (tmp_path / "fcmae.onnx").is_file()
    assert result["max_rel_diff"] < 1e-3


@pytest.mark.slow
def test_ddp_mae_with_fcmae_and_face_widths(tmp_path):
    from train_helpers import dump_params, write_training_file

    from xecreco.train.api import train

    path = tmp_path / "train.root"
    write_training_file(path, 96)
    cfg = {
        "task": {"name": "mae"},
        "data": {"train_files": [str(path)], "val_fraction": 0.2, "batch_size": 8,
                 "step_events": 48, "shuffle_buffer": 48, "scaling_events": 64},
        "model": {"overrides": {"encoder": ENCODER, "masking": {"fcmae": True},
                                "decoder": {"scale_by_face": True}}},
        "optim": {"warmup_steps": 1},
        "checkpoint": {"best_metric": "val_loss", "eval_every_steps": 2},
        "run": {"max_steps": 2, "progress": False, "threads": 1, "log_every": 1},
    }
    result = train(cfg, run_dir=tmp_path / "mae", nproc=2, callbacks=(dump_params,))
    assert result["world"] == 2 and result["finished"]
    dumps = [torch.load(tmp_path / "mae" / f"params_rank{r}.pt", weights_only=True)
             for r in (0, 1)]
    for name in dumps[0]:
        assert torch.equal(dumps[0][name], dumps[1][name]), name
    assert np.isfinite(result["best_value"])
