"""Masked-sensor network (MAE / neural inpainter): masks, decoders, loss, training, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _nn_helpers import fit_losses
from xecreco.errors import UserError
from xecreco.geometry import Face, face_ids
from xecreco.models.masked.network import build_masked_model, resolve_masked_config
from xecreco.models.masked.training import MaskedLoss

SMALL = {"preset": "cpu", "encoder": {"rect": {"dims": [8, 16]}, "hex": {"dim": 8}},
         "decoder": {"dim": 8, "hex_hidden": 8}}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _inputs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 4760, 4), np.float32)
    x[..., 0] = rng.random((n, 4760))
    x[..., 1] = rng.normal(size=(n, 4760))
    x[..., 2:] = 1.0
    return torch.from_numpy(x)


class _EchoInput(nn.Module):
    """Decoder stand-in returning the visible input npho feature of each cell (twice)."""

    def __init__(self, skip: int):
        super().__init__()
        self.skip = skip

    def forward(self, x):
        return x[:, self.skip:self.skip + 1].repeat(1, 2, 1, 1)


def test_config_defaults_and_errors():
    mae = resolve_masked_config({"preset": "cpu"}, task="mae")
    inp = resolve_masked_config({"preset": "cpu"}, task="inpainter")
    assert mae["masking"]["mode"] == "random" and mae["encoder"]["in_channels"] == 2
    assert inp["masking"]["mode"] == "dead" and inp["encoder"]["in_channels"] == 4
    assert resolve_masked_config(inp, task="inpainter") == inp
    with pytest.raises(UserError, match="masking.mode"):
        resolve_masked_config({"masking": {"mode": "patchy"}})
    with pytest.raises(UserError, match="unknown model config key 'decoder.width'"):
        resolve_masked_config({"decoder": {"width": 3}})


def test_every_sensor_gets_its_own_output_without_collisions():
    """With decoders that echo their input, each sensor's output is its own input: no outer
    PMT (coarse or central patch) shares a cell with another."""
    model = build_masked_model(resolve_masked_config(SMALL, task="inpainter")).eval()
    for decoder in model.rect_decoders.values():
        decoder.refine = _EchoInput(skip=decoder.project.out_channels)
    x = _inputs(1)
    x[0, :, 0] = torch.arange(4760, dtype=torch.float32) + 1.0
    with torch.no_grad():
        out = model(x, mask=torch.zeros(1, 4760, dtype=torch.bool))["sensors"]
    rect = np.concatenate([face_ids(f) for f in (Face.INNER, Face.OUTER, Face.US, Face.DS)])
    np.testing.assert_allclose(out[0, rect, 0].numpy(), rect + 1.0, rtol=1e-6)
    assert len(np.unique(out[0, face_ids(Face.OUTER), 0].numpy())) == 234
    assert torch.isfinite(out).all()


def test_masks_hide_only_valid_sensors():
    torch.manual_seed(0)
    valid = torch.ones(64, 4760, dtype=torch.bool)
    valid[:, :100] = False
    mae = build_masked_model(resolve_masked_config(dict(SMALL, masking={"ratio": 0.6}), task="mae"))
    mask = mae.draw_mask(valid)
    assert not mask[:, :100].any()
    assert mask[:, 100:].float().mean().item() == pytest.approx(0.6, abs=0.01)
    dead = build_masked_model(resolve_masked_config(SMALL, task="inpainter"))
    mask = dead.draw_mask(valid)
    fraction = mask.float().mean(dim=1)
    assert 0.01 < fraction.mean().item() < 0.05 and fraction.max().item() < 0.08
    # clusters: hidden sensors have hidden immediate neighbours far more often than by chance
    padded = torch.cat([mask, mask.new_zeros(64, 1)], dim=1)
    hidden_neighbour = padded[:, dead.neighbours].any(-1)
    together = (hidden_neighbour & mask).sum() / mask.sum()
    assert together.item() > 0.3
    # evaluation masks are reproducible
    dead.eval()
    x = _inputs(2)
    assert torch.equal(dead(x)["mask"], dead(x)["mask"])


def test_loss_counts_only_hidden_sensors():
    model = build_masked_model(resolve_masked_config(dict(SMALL, masking={"mode": "random"}),
                                                     task="inpainter"))
    x = _inputs(2)
    x[:, 5, 3] = 0.0  # sensor 5 has no valid time
    out = model(x)
    perfect = dict(out, sensors=out["target"].clone())
    assert float(MaskedLoss()(perfect)[0]) == 0.0
    wrong = out["target"].clone()
    wrong[~out["mask"]] += 10.0  # errors on visible sensors do not count
    assert float(MaskedLoss()(dict(out, sensors=wrong))[0]) == 0.0
    wrong = out["target"].clone()
    wrong[..., 0] += 1.0
    loss, parts = MaskedLoss(npho_weight=2.0, time_weight=0.5)(dict(out, sensors=wrong))
    assert parts == {"npho": pytest.approx(0.5), "time": 0.0} and float(loss) == pytest.approx(1.0)
    wrong[..., 0] += 2.0  # smooth-L1: linear beyond beta = 1
    assert MaskedLoss()(dict(out, sensors=wrong))[1]["npho"] == pytest.approx(2.5)


def test_a_few_steps_fit_a_batch():
    torch.manual_seed(3)
    model = build_masked_model(resolve_masked_config(SMALL, task="inpainter"))
    x = _inputs(2, seed=1)
    x[..., 0] = 0.5  # a learnable constant field
    x[..., 1] = -0.2
    losses = fit_losses(model, x, MaskedLoss(), steps=10, lr=1e-2)
    assert losses[-1] < 0.2 * losses[0]


@pytest.fixture(scope="module")
def trained_run(sim_file_pileup_dead, tmp_path_factory):
    from xecreco.train.api import train

    run_dir = tmp_path_factory.mktemp("inpainter_run")
    config = {
        "data": {"train_files": [str(sim_file_pileup_dead)], "batch_size": 8, "step_events": 64,
                 "shuffle_buffer": 16, "val_fraction": 0.1, "max_val_events": 16},
        "task": {"name": "inpainter"},
        "model": {"preset": "cpu", "overrides": {k: v for k, v in SMALL.items() if k != "preset"}},
        "optim": {"warmup_steps": 0, "lr": 3e-3},
        "checkpoint": {"best_metric": "npho_mae"},
        "run": {"max_steps": 2, "device": "cpu", "progress": False, "threads": 1, "log_every": 1},
    }
    summary = train(config, run_dir=run_dir)
    return run_dir, summary


def test_training_writes_an_inpainter_checkpoint(trained_run):
    from xecreco.train.checkpoint import load_checkpoint

    run_dir, summary = trained_run
    assert summary["step"] == 2
    ckpt = load_checkpoint(run_dir / "best.pt")
    assert ckpt["task"] == "inpainter"
    assert ckpt["model_config"]["masking"]["mode"] == "dead"
    for key in ("npho_mae", "npho_rel68", "time_mae_ns"):
        assert np.isfinite(ckpt["metrics"][key])


def test_checkpoint_inpaints_files(trained_run, sim_file_pileup_dead, tmp_path):
    import uproot

    from xecreco.models.pipelines.inpaint import inpaint_file
    from xecreco.models.registry import create_inpainter

    run_dir, _ = trained_run
    model = create_inpainter(str(run_dir / "best.pt"))
    assert model.name == "inpainter"
    out = tmp_path / "neural.root"
    stats = inpaint_file(sim_file_pileup_dead, out, model, step_events=100, progress=False)
    with uproot.open(out) as handle:
        tree = handle["tree"]
        inpainted = tree["inpainted"].array(library="np")
        npho = tree["npho"].array(library="np")
        dead = tree["dead"].array(library="np")
    assert np.array_equal(inpainted, dead) and stats["still_invalid"] == 0
    assert np.isfinite(npho).all() and np.all(npho[dead] >= 0) and np.all(npho[dead] < 9e9)


def test_wrong_checkpoints_are_user_errors(trained_run, tmp_path):
    from xecreco.models.inpaint.neural import inpainter_from_checkpoint
    from xecreco.train.checkpoint import load_checkpoint, save_checkpoint

    run_dir, _ = trained_run
    ckpt = load_checkpoint(run_dir / "best.pt")
    save_checkpoint(tmp_path / "reg.pt", dict(ckpt, task="regressor"))
    with pytest.raises(UserError, match="'regressor' checkpoint"):
        inpainter_from_checkpoint(tmp_path / "reg.pt")
    bad = dict(ckpt, model_config=dict(ckpt["model_config"], decoder={"dim": 4, "hex_hidden": 8}))
    save_checkpoint(tmp_path / "bad.pt", bad)
    with pytest.raises(UserError, match="does not match"):
        inpainter_from_checkpoint(tmp_path / "bad.pt")


def test_encoder_weights_can_seed_another_encoder(trained_run):
    from xecreco.models.nn.encoder import build_encoder
    from xecreco.models.masked.network import encoder_state_from_checkpoint
    from xecreco.train.checkpoint import load_checkpoint

    run_dir, _ = trained_run
    weights = encoder_state_from_checkpoint(run_dir / "best.pt")
    encoder = build_encoder(load_checkpoint(run_dir / "best.pt")["model_config"]["encoder"])
    encoder.load_state_dict(weights)
    assert set(weights) == set(encoder.state_dict())
