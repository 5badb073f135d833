"""Curriculum learning: difficulty of events from their standardised targets, the rising
threshold, the selection inside the training loop; and one DDP run (gloo, 2 ranks) of the real
regressor with every training-path research switch on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xecreco.errors import UserError
from xecreco.train.api import train
from xecreco.train.config import load_config
from xecreco.train.curriculum import CRITERIA, Curriculum, difficulty

from train_helpers import dump_params, tiny_config, tiny_task, write_training_file


def test_difficulty_follows_energy_edge_and_depth():
    t = {"energy": torch.tensor([3.0, 0.0, -3.0]), "u": torch.tensor([0.0, 0.0, 2.5]),
         "v": torch.tensor([0.0, -2.5, 0.0]), "w": torch.tensor([-2.0, 0.0, 2.0])}
    energy = difficulty(t, ["energy"])
    assert float(energy[0]) < 0.01 and float(energy[1]) == pytest.approx(0.5)
    assert float(energy[2]) > 0.99  # low energy: hard
    edge = difficulty(t, ["edge"])
    assert float(edge[0]) == 0.0 and float(edge[1]) > 0.98  # central easy, edge hard
    depth = difficulty(t, ["depth"])
    assert float(depth[0]) < 0.05 and float(depth[2]) > 0.95  # shallow easy, deep hard
    both = difficulty(t, ["energy", "edge"])
    torch.testing.assert_close(both, (energy + edge) / 2)


def test_threshold_and_selection():
    cur = Curriculum(steps=10, start=0.4, criteria=["energy"], targets=["energy", "u"])
    assert cur.threshold(0) == pytest.approx(0.4) and cur.threshold(5) == pytest.approx(0.7)
    assert cur.threshold(20) == 1.0
    energy = torch.tensor([2.0, 0.5, 0.0, -0.5, -2.0])  # difficulties 0.02 0.31 0.5 0.69 0.98
    batch = {"features": torch.arange(5.0)[:, None], "targets": {"energy": energy},
             "truth": {"energy": np.arange(5.0)}}
    early = cur.select(batch, 0)
    assert early["features"][:, 0].tolist() == [0.0, 1.0]
    assert early["truth"]["energy"].tolist() == [0.0, 1.0]
    assert cur.select(batch, 5)["features"].shape[0] == 4  # tau 0.7
    assert cur.select(batch, 10) is batch
    hard = {"features": torch.zeros(2, 1), "targets": {"energy": torch.tensor([-3.0, -2.0])}}
    assert cur.select(hard, 0)["targets"]["energy"].tolist() == [-2.0]  # the easiest one stays
    with pytest.raises(UserError, match="curriculum.criteria"):
        Curriculum(10, 0.5, ["edge"], targets=["energy"])
    with pytest.raises(UserError, match="curriculum.start"):
        load_config({"curriculum": {"enabled": True, "start": 0}})
    with pytest.raises(UserError, match="curriculum.criteria.*" + ", ".join(CRITERIA)):
        load_config({"curriculum": {"enabled": True, "criteria": ["energy", "bogus"]}})
    assert load_config({"curriculum": {"criteria": list(CRITERIA)}}).curriculum.criteria
    assert load_config({}).curriculum.enabled is False


def test_loop_trains_on_the_easy_events_first(tmp_path):
    plain = train(tiny_config(max_steps=4), run_dir=tmp_path / "plain", task=tiny_task())
    cfg = tiny_config(max_steps=4)
    cfg["curriculum"] = {"enabled": True, "start": 0.3, "steps": 4, "criteria": ["energy"]}
    easy = train(cfg, run_dir=tmp_path / "easy", task=tiny_task())
    assert easy["step"] == 4
    assert plain["train_events"] == 4 * 16
    assert easy["train_events"] < 0.8 * plain["train_events"]


@pytest.mark.slow
def test_ddp_real_regressor_with_training_switches(tmp_path):
    """Dropout, quantile heads, perceiver fusion, the curriculum and both physics terms in one
    gloo run of 2 ranks: it finishes and both ranks end with the same weights."""
    path = tmp_path / "train.root"
    write_training_file(path, 160)
    cfg = {
        "data": {"train_files": [str(path)], "val_fraction": 0.2, "batch_size": 16,
                 "step_events": 64, "shuffle_buffer": 64, "scaling_events": 128},
        "model": {"overrides": {"encoder": {"token_dim": 16, "pool_heads": 2,
                                            "rect": {"dims": [8, 16]},
                                            "hex": {"dim": 8, "heads": 2}},
                                "fusion": {"heads": 2, "type": "perceiver", "latents": 4},
                                "head_hidden": 16, "dropout": 0.1, "quantiles": True}},
        "loss": {"timing": 0.01, "energy_conservation": 1.0},
        "curriculum": {"enabled": True, "start": 0.5, "steps": 2},
        "optim": {"warmup_steps": 1},
        "run": {"max_steps": 2, "progress": False, "threads": 1, "log_every": 1},
        "checkpoint": {"best_metric": "weighted", "eval_every_steps": 2},
    }
    result = train(cfg, run_dir=tmp_path / "ddp", nproc=2, callbacks=(dump_params,))
    assert result["world"] == 2 and result["finished"]
    dumps = [torch.load(tmp_path / "ddp" / f"params_rank{r}.pt", weights_only=True)
             for r in (0, 1)]
    for name in dumps[0]:
        assert torch.equal(dumps[0][name], dumps[1][name]), name
