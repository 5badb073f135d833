"""Curriculum learning (config section ``curriculum``): easy events first, harder ones phased in.

"Easy" follows the design notes (high-energy, central events first): every training event gets
a difficulty d in [0, 1], the mean of the enabled criteria, each computed from its standardised
target z (the training events' mean and scale) as the fraction of a unit Gaussian on the easy side
of the event:

- ``energy``: Phi(-z_E). Low energies are hard (fewer photons, worse photostatistics and relatively
  more noise); the highest energies are easiest.
- ``edge``: 2 Phi(max(|z_u|, |z_v|)) - 1. Events near the lateral (u, v) edges of the acceptance
  are hard (part of the shower and its light leave the inner face's coverage); central events are
  easy.
- ``depth``: Phi(z_w). Deep first interactions are hard (the light spreads over more sensors, the
  shower may leak out of the back); shallow ones are easy.

At optimizer step s the events with d <= tau(s) are trained on, tau(s) = start + (1 - start) x
min(1, s / steps): from the easiest events at the start to all events after ``steps`` steps (at
least the easiest event of a batch is always kept). Only the training batches are selected;
validation always uses every event. The selection depends on the step alone, so resumed runs
select the same events.
"""

from __future__ import annotations

import math

import torch

from xecreco.errors import UserError

#: criterion -> standardised targets it needs.
CRITERIA = {"energy": ("energy",), "edge": ("u", "v"), "depth": ("w",)}


def _phi(z: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF."""
    return 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))


def difficulty(targets: dict, criteria) -> torch.Tensor:
    """(N,) difficulty in [0, 1] of events with standardised ``targets`` (see the module doc)."""
    parts = []
    for name in criteria:
        if name == "energy":
            parts.append(_phi(-targets["energy"].float()))
        elif name == "edge":
            edge = torch.maximum(targets["u"].float().abs(), targets["v"].float().abs())
            parts.append(2.0 * _phi(edge) - 1.0)
        elif name == "depth":
            parts.append(_phi(targets["w"].float()))
    return torch.stack(parts).mean(0)


class Curriculum:
    """Selects the events of a training batch allowed at a step.

    Args:
        steps: optimizer steps over which the threshold rises to 1 (all events).
        start: threshold at step 0, in (0, 1].
        criteria: names of :data:`CRITERIA`.
        targets: the trained targets (every criterion's targets must be among them).
    """

    def __init__(self, steps: int, start: float, criteria, targets):
        self.steps, self.start = int(steps), float(start)
        self.criteria = list(criteria)
        for name in self.criteria:
            missing = [t for t in CRITERIA[name] if t not in targets]
            if missing:
                raise UserError(f"config key 'curriculum.criteria': '{name}' needs the "
                                f"target(s) {', '.join(missing)} in task.targets")

    def threshold(self, step: int) -> float:
        """tau(step)."""
        return self.start + (1.0 - self.start) * min(1.0, step / max(1, self.steps))

    def select(self, batch: dict, step: int) -> dict:
        """``batch`` restricted to its events with difficulty <= tau(step) (the easiest one at
        least); the batch itself once the threshold reached 1."""
        tau = self.threshold(step)
        if tau >= 1.0:
            return batch
        d = difficulty(batch["targets"], self.criteria)
        keep = d <= tau
        if not bool(keep.any()):
            keep = d == d.min()
        if bool(keep.all()):
            return batch
        return _take(batch, keep)


def _take(batch: dict, keep: torch.Tensor) -> dict:
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            out[key] = value[keep]
        elif isinstance(value, dict):
            out[key] = {k: v[keep] if torch.is_tensor(v) else v[keep.cpu().numpy()]
                        for k, v in value.items()}
        else:
            out[key] = value
    return out


def from_config(cfg) -> Curriculum | None:
    """The run's curriculum (None when ``curriculum.enabled`` is false)."""
    c = cfg.curriculum
    if not c.enabled:
        return None
    return Curriculum(c.steps, c.start, c.criteria, cfg.task.targets)
