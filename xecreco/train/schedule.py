"""Per-step learning-rate schedules: linear warm-up, then cosine, linear or constant decay.

The schedule is a pure function of the optimizer step, so resuming needs only the step count.
"""

from __future__ import annotations

import math


def lr_factor(step: int, total_steps: int, warmup_steps: int = 0, kind: str = "cosine",
              min_ratio: float = 0.0) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based).

    Warm-up rises linearly to 1 over ``warmup_steps`` steps (step 0 gets 1/warmup_steps), then the
    factor decays to ``min_ratio`` at ``total_steps - 1`` (cosine or linear) or stays 1 (constant).
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    span = max(1, total_steps - 1 - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    if kind == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif kind == "linear":
        shape = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    return min_ratio + (1.0 - min_ratio) * shape


def set_lr(optimizer, lr: float) -> None:
    """Set every parameter group's learning rate to ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
