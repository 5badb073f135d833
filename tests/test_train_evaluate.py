"""Validation in the training loop uses the one ``model_outputs`` path (vertex included)."""

from __future__ import annotations

import dataclasses

import torch

from xecreco.train.api import train
from xecreco.train.tasks import get_task

from train_helpers import SyntheticSource, TinyRegressor, tiny_config

torch.set_num_threads(1)


class VertexTiny(TinyRegressor):
    """A tiny regressor whose outputs depend on the vertex (like the light summary's input)."""

    uses_vertex = True

    def __init__(self):
        super().__init__(dropout=0.0)
        self.vertex_gain = torch.nn.Linear(3, 1)
        self.calls = 0

    def forward(self, features, vertex=None):
        self.calls += 1
        out = super().forward(features)
        shift = self.vertex_gain(torch.nan_to_num(vertex, nan=0.0)).squeeze(-1)
        return {k: (v + shift if v.ndim == 1 else v) for k, v in out.items()}


class VertexSource(SyntheticSource):
    """Synthetic events with a vertex (N, 3) cm per batch."""

    def _with_vertex(self, batches, salt):
        for i, batch in enumerate(batches):
            gen = torch.Generator().manual_seed(salt + i)
            batch["vertex"] = 5.0 * torch.randn(len(batch["features"]), 3, generator=gen)
            yield batch

    def train_batches(self, epoch, rank, world):
        return self._with_vertex(super().train_batches(epoch, rank, world), 100 * epoch)

    def val_batches(self, rank, world):
        return self._with_vertex(super().val_batches(rank, world), 7)


def test_validation_loss_of_vertex_model_is_the_training_loss_in_eval(tmp_path):
    seen = {}

    def check(step, trainer):
        if step != trainer.total_steps:
            return
        model = trainer.eval_model
        with torch.no_grad():
            model.load_state_dict(trainer.model.state_dict())
            model.eval()
            total, n = 0.0, 0
            for batch in trainer.source.val_batches(0, 1):
                loss, _ = trainer.module.__class__(model, trainer.loss)(batch)
                total += float(loss) * len(batch["features"])
                n += len(batch["features"])
        before = model.calls
        metrics = trainer.evaluate()
        seen["expected"], seen["got"] = total / n, metrics["val_loss"]
        seen["forwards"] = model.calls - before
        seen["batches"] = n // trainer.source.batch_size

    task = dataclasses.replace(
        get_task("regressor"), build_model=lambda config: VertexTiny(),
        build_source=lambda cfg, target_scaling=None: VertexSource(
            batch_size=cfg.data.batch_size, seed=cfg.run.seed, targets=cfg.task.targets),
        model_config=None, prepare_model=None)
    cfg = tiny_config(epochs=1)
    cfg["ema"] = {"enabled": False}
    train(cfg, run_dir=tmp_path / "run", task=task, callbacks=[check])
    assert abs(seen["got"] - seen["expected"]) <= 1e-6 * max(1.0, abs(seen["expected"]))
    assert seen["forwards"] == seen["batches"]  # one forward pass per validation batch
