"""A tiny stand-in regressor and an in-memory batch source for the training-engine tests.

They follow the contracts of the real ones (model: features (N, 4760, C) -> dict of standardised
outputs; source: the interface of :class:`xecreco.train.data.RootSource`) so the loop, resume and
DDP tests do not depend on the ROOT reader or the real network.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from xecreco.train.tasks import get_task

N_SENSORS = 4760
SCALAR = ("energy", "time", "u", "v", "w")


class TinyRegressor(nn.Module):
    """Pools 16 sensor groups, one hidden layer, the regressor's output names."""

    def __init__(self, channels: int = 2, hidden: int = 16, dropout: float = 0.1):
        super().__init__()
        self.groups = 16
        self.body = nn.Sequential(nn.Linear(self.groups * channels, hidden), nn.GELU(), nn.Dropout(dropout))
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, 1) for name in SCALAR + ("npileup",)})
        self.direction = nn.Linear(hidden, 3)

    def forward(self, features):
        n, s, c = features.shape
        pooled = 10 * features[:, : s - s % self.groups].reshape(n, self.groups, -1, c).mean(2).reshape(n, -1)
        h = self.body(pooled)
        out = {name: head(h).squeeze(-1) for name, head in self.heads.items()}
        d = self.direction(h) + torch.tensor([-1.0, 0.0, 0.0])
        out["direction"] = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return out


def tiny_model(model_config: dict) -> nn.Module:
    return TinyRegressor(hidden=int(model_config.get("hidden", 16)))


class SyntheticSource:
    """Deterministic random events whose targets depend linearly on the pooled features."""

    normalization = {"scheme": "synthetic"}
    target_scaling = {"mean": {}, "scale": {}}

    def __init__(self, n_events=256, batch_size=16, seed=0, targets=SCALAR + ("direction",), n_val=64):
        self.n_events, self.batch_size, self.seed = n_events, batch_size, seed
        self.targets = list(targets)
        self.n_val = n_val
        gen = np.random.default_rng(1234)
        self.weights = gen.normal(size=(16, len(SCALAR))).astype(np.float32)

    def _events(self, rng, n):
        features = rng.normal(size=(n, N_SENSORS, 2)).astype(np.float32)
        pooled = features[:, : N_SENSORS - N_SENSORS % 16, 0].reshape(n, 16, -1).mean(2) * 10
        values = pooled @ self.weights / 4.0  # about unit variance, like standardised targets
        targets = {name: values[:, i].copy() for i, name in enumerate(SCALAR) if name in self.targets}
        if "direction" in self.targets:
            d = np.stack([-np.ones(n), 0.3 * values[:, 0], 0.3 * values[:, 1]], axis=1)
            targets["direction"] = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
        return features, targets

    def steps_per_epoch(self, world):
        return (self.n_events // world) // self.batch_size

    def train_batches(self, epoch, rank, world):
        rng = np.random.default_rng([self.seed, epoch, rank])
        for _ in range(self.steps_per_epoch(world)):
            features, targets = self._events(rng, self.batch_size)
            yield {"features": torch.from_numpy(features),
                   "targets": {k: torch.from_numpy(v) for k, v in targets.items()}}

    def val_batches(self, rank, world):
        rng = np.random.default_rng([self.seed, 999, rank])
        for _ in range(self.n_val // world // self.batch_size):
            features, targets = self._events(rng, self.batch_size)
            yield {"features": torch.from_numpy(features),
                   "targets": {k: torch.from_numpy(v) for k, v in targets.items()},
                   "truth": {k: v.astype(np.float64) for k, v in targets.items()}}

    def to_physical(self, name, values):
        return np.asarray(values)

    def affine(self, name):
        return 0.0, 1.0


def synthetic_source(cfg, target_scaling=None):
    return SyntheticSource(batch_size=cfg.data.batch_size, seed=cfg.run.seed, targets=cfg.task.targets)


def tiny_task():
    """The regressor task with the tiny model and the synthetic source (picklable for spawn)."""
    return dataclasses.replace(get_task("regressor"), build_model=tiny_model, build_source=synthetic_source,
                               model_config=None)


def tiny_config(**run) -> dict:
    return {
        "data": {"batch_size": 16},
        "model": {"preset": "tiny", "overrides": {"hidden": 16}},
        "optim": {"lr": 1e-2, "warmup_steps": 2},
        "ema": {"decay": 0.9},
        "checkpoint": {"best_metric": "energy_sigma68_rel"},
        "run": {"epochs": 2, "progress": False, "log_every": 2, "threads": 1, **run},
    }


def dump_params(step, trainer):
    """Callback: each rank saves its final parameters as ``params_rank<r>.pt`` in the run dir."""
    if step == trainer.total_steps:
        torch.save({k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
                   trainer.run_dir / f"params_rank{trainer.info.rank}.pt")


def write_training_file(path, n, seed=0):
    """Events whose energy (GeV) is the light sum / 1.5e7 and whose time shifts all sensors."""
    from xecreco.io.writer import RootWriter

    rng = np.random.default_rng(seed)
    energy = rng.uniform(0.02, 0.06, n)
    shape = rng.exponential(1.0, (n, 4760))
    npho = (shape / shape.sum(1, keepdims=True) * energy[:, None] * 1.5e7).astype(np.float32)
    t0 = rng.uniform(-2.0, 2.0, n)  # ns
    time = ((40.0 + t0[:, None] + rng.normal(0, 0.5, (n, 4760))) * 1e-9).astype(np.float32)
    theta = rng.uniform(70, 110, n)
    phi = rng.uniform(-60, 60, n)
    arrays = {
        "npho": npho, "time": time,
        "run": np.full(n, 1, np.int32), "event": np.arange(n, dtype=np.int32),
        "energyTruth": energy.astype(np.float32), "timeTruth": t0.astype(np.float32),
        "uvwTruth": rng.normal(0, 10, (n, 3)).astype(np.float32),
        "emiAng": np.stack([theta, phi], 1).astype(np.float32),
        "xyzVTX": np.zeros((n, 3), np.float32),
    }
    with RootWriter(path, tree="tree") as writer:
        writer.write(arrays)
    return arrays
