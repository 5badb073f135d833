"""The ``local`` preset of the masked-sensor network (the fast neural inpainter)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nn_helpers import fit_losses
from xecreco.errors import UserError
from xecreco.geometry import N_SENSORS, Face, face_ids
from xecreco.models.masked.local import LOCAL_DEFAULTS, neighbourhood_table
from xecreco.models.masked.network import build_masked_model, resolve_masked_config
from xecreco.models.masked.training import MaskedLoss

SMALL = {"preset": "local", "local": {"hidden": 16, "context_dim": 8, "k_inner": 24, "k_pmt": 8}}


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _inputs(n=2, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, N_SENSORS, 4), np.float32)
    x[..., 0] = rng.random((n, N_SENSORS))
    x[..., 1] = rng.normal(size=(n, N_SENSORS))
    x[..., 2:] = 1.0
    return torch.from_numpy(x)


def test_local_config_defaults_and_errors():
    config = resolve_masked_config({"preset": "local"}, task="inpainter")
    assert config["local"] == LOCAL_DEFAULTS and "encoder" not in config
    assert config["masking"]["mode"] == "dead" and config["validity_channels"] is True
    assert resolve_masked_config(config, task="inpainter") == config
    with pytest.raises(UserError, match="local.depth"):
        resolve_masked_config({"preset": "local", "local": {"depth": -1}})
    with pytest.raises(UserError, match="local.k_inner"):
        resolve_masked_config({"preset": "local", "local": {"k_inner": 0}})
    with pytest.raises(UserError, match="validity_channels"):
        resolve_masked_config({"preset": "local"}, task="mae")
    with pytest.raises(UserError, match="unknown model preset 'loca'.*local"):
        resolve_masked_config({"preset": "loca"})


def test_inner_neighbourhood_slots_are_the_same_grid_offsets_everywhere():
    """On the MPPC grid, slot j of every interior sensor is the same (row, column) offset, and
    the 8 nearest slots are the 3 x 3 ring."""
    ids = face_ids(Face.INNER)
    table, offset = neighbourhood_table(ids, 24)
    rows, cols = ids // 44, ids % 44
    interior = (rows >= 3) & (rows <= 89) & (cols >= 3) & (cols <= 40)
    d_row = table[interior] // 44 - rows[interior, None]
    d_col = table[interior] % 44 - cols[interior, None]
    assert np.all(d_row == d_row[0]) and np.all(d_col == d_col[0])
    ring = {(int(a), int(b)) for a, b in zip(d_row[0, :8], d_col[0, :8])}
    assert ring == {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)}
    # offsets are (u, v, w) differences in units of 10 cm: the nearest MPPC is ~1.5 cm away
    assert 0.14 < np.linalg.norm(offset[interior][0, 0]) < 0.16
    # PMT faces: k nearest of the same face, no self, no other face
    pmt = face_ids(Face.US)
    table, _ = neighbourhood_table(pmt, 18)
    assert np.isin(table, pmt).all() and not (table == pmt[:, None]).any()


def test_only_unknown_sensors_are_predicted_and_every_sensor_has_its_own_output():
    model = build_masked_model(resolve_masked_config(SMALL, task="inpainter")).eval()
    x = _inputs(2)
    query = torch.zeros(2, N_SENSORS, dtype=torch.bool)
    query[0, face_ids(Face.OUTER)] = True
    query[1, 17] = True
    with torch.no_grad():
        out = model.local(x, query)
    keep = ~query
    assert torch.equal(out[keep], x[..., :2][keep])  # visible sensors pass through
    outer = out[0, face_ids(Face.OUTER), 0].numpy()
    assert len(np.unique(outer)) == 234  # each outer PMT is its own query, no shared cells
    assert not torch.equal(out[1, 17], x[1, 17, :2])
    # the model's forward predicts the hidden and the invalid sensors
    x[0, 5, 2:] = 0.0
    with torch.no_grad():
        result = model(x, mask=torch.zeros(2, N_SENSORS, dtype=torch.bool))
    changed = (result["sensors"] != x[..., :2]).any(-1)
    assert changed[0, 5] and changed.sum() == 1


def test_untrained_correction_zero_gives_the_visible_neighbour_mean():
    model = build_masked_model(resolve_masked_config(SMALL, task="inpainter")).eval()
    net = model.local.nets["inner"]
    for mlp in (net.mlp_npho, net.mlp_time):
        torch.nn.init.zeros_(mlp[-1].weight)
        torch.nn.init.zeros_(mlp[-1].bias)
    x = _inputs(1, seed=4)
    sensor = 44 * 40 + 20
    near = net.table[sensor, :8]
    x[0, near[0], 2] = 0.0  # nearest neighbour without valid npho: left out of the npho mean
    x[0, near[1], 3] = 0.0  # second one without valid time: left out of the time mean
    mask = torch.zeros(1, N_SENSORS, dtype=torch.bool)
    mask[0, sensor] = True
    with torch.no_grad():
        out = model(x, mask=mask)["sensors"][0, sensor]
    npho_from = near[1:]
    time_from = torch.cat([near[:1], near[2:]])
    assert float(out[0]) == pytest.approx(float(x[0, npho_from, 0].mean()), rel=1e-5)
    assert float(out[1]) == pytest.approx(float(x[0, time_from, 1].mean()), rel=1e-5)


def test_times_cannot_disturb_npho_and_shift_the_time_prediction_exactly():
    """Pile-up robustness: npho predictions ignore the times; shifting every time (e.g. a pile-up
    photon moving the event's time reference) shifts the predicted times by the same amount."""
    torch.manual_seed(0)
    model = build_masked_model(resolve_masked_config(SMALL, task="inpainter")).eval()
    x = _inputs(2, seed=2)
    mask = torch.zeros(2, N_SENSORS, dtype=torch.bool)
    mask[:, ::37] = True
    with torch.no_grad():
        before = model(x, mask=mask)["sensors"]
        shifted = x.clone()
        shifted[..., 1] += 40.0  # 200 ns
        after = model(shifted, mask=mask)["sensors"]
        scrambled = x.clone()
        scrambled[..., 1] = torch.randn(2, N_SENSORS) * 100.0
        noisy = model(scrambled, mask=mask)["sensors"]
    assert torch.equal(after[..., 0], before[..., 0]) and torch.equal(noisy[..., 0], before[..., 0])
    np.testing.assert_allclose((after[..., 1] - before[..., 1])[mask].numpy(), 40.0, atol=1e-4)


def test_local_preset_learns_a_field_in_a_few_steps():
    torch.manual_seed(3)
    model = build_masked_model(resolve_masked_config(SMALL, task="inpainter"))
    x = _inputs(4, seed=1)
    x[..., 0] = torch.linspace(0.0, 2.0, N_SENSORS)  # smooth field: neighbours predict it
    x[..., 1] = -0.2
    losses = fit_losses(model, x, MaskedLoss(beta=0.2), steps=15, lr=3e-3)
    assert losses[-1] < 0.3 * losses[0]


@pytest.fixture(scope="module")
def local_run(sim_file_pileup_dead, tmp_path_factory):
    from xecreco.train.api import train

    run_dir = tmp_path_factory.mktemp("local_inpainter_run")
    config = {
        "data": {"train_files": [str(sim_file_pileup_dead)], "batch_size": 16, "step_events": 64,
                 "shuffle_buffer": 32, "val_fraction": 0.2, "max_val_events": 32,
                 "scaling_events": 1},
        "normalization": {"npho_scale": 100.0},
        "task": {"name": "inpainter"},
        "model": {"preset": "local", "overrides": {"local": SMALL["local"]}},
        "optim": {"warmup_steps": 0, "lr": 3e-3},
        "loss": {"beta": 0.2},
        "checkpoint": {"best_metric": "npho_mae"},
        "run": {"max_steps": 4, "device": "cpu", "progress": False, "threads": 1, "log_every": 1},
    }
    summary = train(config, run_dir=run_dir)
    return run_dir, summary


def test_local_checkpoint_round_trip_and_inpaints(local_run, sim_file_pileup_dead, tmp_path):
    import uproot

    from xecreco.io.reader import iterate_batches
    from xecreco.models.pipelines.inpaint import inpaint_file
    from xecreco.models.inpaint.neural import inpainter_from_checkpoint
    from xecreco.models.masked.network import encoder_state_from_checkpoint
    from xecreco.train.checkpoint import load_checkpoint

    run_dir, summary = local_run
    assert summary["step"] == 4
    ckpt = load_checkpoint(run_dir / "best.pt")
    assert ckpt["task"] == "inpainter" and ckpt["model_config"]["preset"] == "local"
    assert np.isfinite(ckpt["metrics"]["npho_mae"])
    inpainter = inpainter_from_checkpoint(run_dir / "best.pt")
    model = build_masked_model(ckpt["model_config"]).eval()
    model.load_state_dict(ckpt["ema_state_dict"] or ckpt["state_dict"])
    batch = next(iterate_batches([sim_file_pileup_dead], step_events=8))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, inpainter.model.state_dict()[name]), name
    npho, _ = inpainter.predict(batch)
    dead = ~batch.valid_npho
    assert dead.any() and np.isfinite(npho[dead]).all() and (npho[dead] >= 0).all()
    out = tmp_path / "local.root"
    stats = inpaint_file(sim_file_pileup_dead, out, inpainter, step_events=50, progress=False)
    with uproot.open(out) as handle:
        inpainted = handle["tree"]["inpainted"].array(library="np")
        dead_branch = handle["tree"]["dead"].array(library="np")
    assert np.array_equal(inpainted, dead_branch) and stats["still_invalid"] == 0
    with pytest.raises(UserError, match="no shared encoder"):
        encoder_state_from_checkpoint(run_dir / "best.pt")


@pytest.mark.parametrize("name", ["train-inpainter.yaml", "bundled-inpainter.yaml"])
def test_inpainter_configs_load_and_use_the_local_preset(name):
    from pathlib import Path

    from xecreco.models.tasks.masked import make_task
    from xecreco.train.config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg.task.name == "inpainter" and cfg.run.threads == 1 and cfg.data.workers == 0
    config = make_task("inpainter").model_config(cfg)
    assert config["preset"] == "local" and config["masking"]["mode"] == "dead"
