"""Training augmentations on raw event batches (file units), before normalisation.

- dead channels: a random ``dead_fraction`` of each event's sensors, plus ``dead_groups`` whole
  readout groups of 8 x 4 neighbouring inner MPPCs (the simulation's tiles,
  :mod:`xecreco.sim.dead`; new tiles for every event), become invalid exactly as the reader
  marks them (``valid_npho`` and ``valid_time`` False, values set to 0);
- npho noise: npho *= 1 + npho_noise * N(0, 1) at valid sensors;
- time jitter: time += time_jitter_ns * 1e-9 * N(0, 1) s at sensors with a valid time;
- energy scale: per event factor f = 1 + energy_scale * N(0, 1) (clipped to [0.5, 1.5]) multiplying
  npho; the energy target is multiplied by the same f (returned to the caller);
- dead fill (``dead_fill``, last): ``sentinel`` leaves the invalid sensors as the reader marks
  them; ``neighbours`` and ``inpainter`` repair every sensor without a valid npho (the augmented
  dead ones and any the file has) with an inpainter, as inference repairs dead channels before
  the regressor, which records them in ``extras["inpainted"]`` (the regressor's dead flag,
  :func:`xecreco.normalization.not_measured`). The inpainter is passed in as ``fill`` (the
  training task builds it: the core does not import the models).
"""

from __future__ import annotations

import numpy as np

from xecreco.io.masks import store_where_valid
from xecreco.sim.dead import draw_group_masks


#: ``augment.dead_fill`` choices: the reader's invalid sensors, or repaired by an inpainter.
DEAD_FILLS = ("sentinel", "neighbours", "inpainter")


def augment_batch(batch, cfg, rng: np.random.Generator, fill=None):
    """(augmented copy of ``batch``, per-event energy factor (N,) or None); ``batch`` unchanged.

    ``fill``: the inpainter of ``cfg.dead_fill`` (an object with ``inpaint(batch)``, see the
    module docstring), applied last; None = sentinel (nothing filled)."""
    dead_groups = cfg.dead_groups
    active = (cfg.dead_fraction > 0 or dead_groups > 0 or cfg.npho_noise > 0
              or cfg.time_jitter_ns > 0 or cfg.energy_scale > 0)
    if not active:
        return (batch if fill is None else _fill(batch, fill)), None
    n, n_sensors = batch.npho.shape
    factor = None
    if cfg.dead_fraction > 0 or dead_groups > 0:
        # masked stores (one pass each) instead of copies plus fancy-indexed assignment
        if cfg.dead_fraction > 0:
            alive = rng.random((n, n_sensors)) >= cfg.dead_fraction
        else:
            alive = np.ones((n, n_sensors), dtype=bool)
        if dead_groups > 0:
            alive &= ~draw_group_masks(n, dead_groups, rng)
        valid_npho = batch.valid_npho & alive
        valid_time = batch.valid_time & alive
        npho = store_where_valid(np.asarray(batch.npho, dtype=np.float32), alive,
                                 out=np.empty((n, n_sensors), dtype=np.float32))
        time = store_where_valid(np.asarray(batch.time, dtype=np.float32), alive,
                                 out=np.empty((n, n_sensors), dtype=np.float32))
    else:
        npho = np.array(batch.npho, dtype=np.float32, copy=True)
        time = np.array(batch.time, dtype=np.float32, copy=True)
        valid_npho = np.array(batch.valid_npho, copy=True)
        valid_time = np.array(batch.valid_time, copy=True)
    if cfg.npho_noise > 0:
        noise = 1.0 + cfg.npho_noise * rng.standard_normal((n, n_sensors), dtype=np.float32)
        npho = np.where(valid_npho, npho * noise, npho)
    if cfg.time_jitter_ns > 0:
        jitter = (cfg.time_jitter_ns * 1e-9) * rng.standard_normal((n, n_sensors), dtype=np.float32)
        time = np.where(valid_time, time + jitter, time)
    if cfg.energy_scale > 0:
        factor = np.clip(1.0 + cfg.energy_scale * rng.standard_normal(n), 0.5, 1.5)
        npho = npho * factor[:, None].astype(np.float32)
    batch = batch.replace(npho=npho, time=time, valid_npho=valid_npho, valid_time=valid_time)
    return (batch if fill is None else _fill(batch, fill)), factor


def _fill(batch, fill):
    """``batch`` repaired by ``fill`` when it has invalid sensors (their ``extras["inpainted"]``
    set), else unchanged (no flag to set: every sensor was measured)."""
    if np.all(batch.valid_npho):
        return batch
    return fill.inpaint(batch)
