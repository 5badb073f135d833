"""A fixed, simulator-independent event sample and the bundled models' outputs on it.

Used by tests/test_throughput_reference.py to check that speed work leaves the fp32 outputs of
the bundled models unchanged (issue 13, item 5). The events come from a toy light model built only
on the sensor geometry and a seeded numpy generator (so changes to :mod:`xecreco.sim` do not move
the reference): a 52.83 MeV photon converting at a random (u, v, depth) in front of the inner
face emits light isotropically; sensor i sees ``Y * area_i * cos_i / (4 pi d_i^2)`` photons
(Gaussian noise of sqrt(mean) + 2 %) at ``t0 + d_i / v_light`` (80 ps jitter); 1 % of the sensors
are dead. ``python tests/_reference_events.py`` rewrites tests/data/bundled_reference.npz with the
outputs of the code as it is now (first on commit d9de2c2, before the speed work; rewritten when a bundled model is replaced,
with code that had just passed against the previous reference, so the chain of checks holds; when
the bundled regressor got its pile-up gate, its main network alone, ``main_*``, still matched the
previous ``reco_*`` within the tolerance, while the gated ``reco_*`` moved: the toy events look
like pile-up to the new head, so the expert reconstructs most of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REFERENCE_FILE = Path(__file__).resolve().parent / "data" / "bundled_reference.npz"
N_EVENTS = 64
SEED = 130013
#: photons emitted per event (the simulator's 52.83 MeV photons give ~7.8e5 seen in total)
_PHOTONS_EMITTED = 2.4e6
_LIGHT_SPEED_CM_PER_NS = 8.0
_DEAD_FRACTION = 0.01


def reference_batch(n_events: int = N_EVENTS, seed: int = SEED):
    """The toy :class:`~xecreco.io.batch.EventBatch` (file units: photons, s, cm)."""
    from xecreco.geometry import design_geometry, uvw_to_xyz
    from xecreco.geometry.constants import TARGET_CENTRE_CM
    from xecreco.io.batch import EventBatch

    geometry = design_geometry()
    rng = np.random.default_rng(seed)
    uvw = np.stack([rng.uniform(-20, 20, n_events), rng.uniform(-60, 60, n_events),
                    rng.uniform(0.5, 12.0, n_events)], axis=1)
    point = uvw_to_xyz(uvw)
    delta = geometry.position[None, :, :] - point[:, None, :]
    distance = np.linalg.norm(delta, axis=2)
    cosine = np.clip(-np.einsum("nsk,sk->ns", delta, geometry.normal) / distance, 0.0, None)
    mean = _PHOTONS_EMITTED * geometry.area[None, :] * cosine / (4 * np.pi * distance ** 2)
    npho = mean + rng.normal(size=mean.shape) * (np.sqrt(mean) + 0.02 * mean)
    t0 = rng.uniform(-1.0, 1.0, n_events)[:, None]
    time_ns = t0 + distance / _LIGHT_SPEED_CM_PER_NS + rng.normal(scale=0.08, size=mean.shape)
    dead = rng.random(mean.shape) < _DEAD_FRACTION
    valid_npho = ~dead
    valid_time = valid_npho & (npho >= 50.0)
    npho = np.where(valid_npho, npho, 0.0).astype(np.float32)
    time_s = np.where(valid_time, time_ns * 1e-9, 0.0).astype(np.float32)
    vertex = np.asarray(TARGET_CENTRE_CM) + rng.normal(scale=[2.0, 0.3, 8.0], size=(n_events, 3))
    ids = np.arange(n_events, dtype=np.int64)
    return EventBatch(npho=npho, time=time_s, valid_npho=valid_npho, valid_time=valid_time,
                      run=np.zeros(n_events, np.int64), event=ids, entry=ids.copy(),
                      vertex=vertex.astype(np.float32))


def regressor_network_outputs(batch) -> dict[str, np.ndarray]:
    """Raw (standardised) outputs of the bundled regressor's network on ``batch``, float64."""
    import torch

    from xecreco.models import bundled

    reco = bundled.bundled_regressor()
    member = reco.members[0]
    features = member.normalization.features(batch, flag=member.dead_flag)
    with torch.inference_mode():
        out = member.model(torch.from_numpy(features), torch.from_numpy(batch.vertex))
    return {k: v.double().numpy() for k, v in out.items()}


def regressor_physical_outputs(batch, pileup_expert: bool = True) -> dict[str, np.ndarray]:
    """The bundled reconstructor's physical outputs (file units) on ``batch``; with
    ``pileup_expert`` False its main network alone (without the pile-up gate)."""
    from xecreco.models import bundled

    reco = bundled.bundled_regressor(pileup_expert=pileup_expert)
    return {k: np.asarray(v) for k, v in reco.reconstruct(batch).items()}


def inpainter_outputs(batch) -> dict[str, np.ndarray]:
    """The bundled inpainter's predicted npho (photons) and time (ns) at the dead sensors."""
    from xecreco.models import bundled

    npho, time_s = bundled.bundled_inpainter().predict(batch)
    dead = ~batch.valid_npho
    return {"npho": npho[dead].astype(np.float32), "time_ns": (time_s[dead] * 1e9).astype(np.float32)}


def compute_reference() -> dict[str, np.ndarray]:
    """Every reference array, keyed ``net_<head>``, ``reco_<output>`` (the gated bundled
    reconstructor), ``main_<output>`` (its main network alone), ``inpaint_<q>``."""
    batch = reference_batch()
    arrays = {f"net_{k}": v for k, v in regressor_network_outputs(batch).items()}
    arrays.update({f"reco_{k}": v for k, v in regressor_physical_outputs(batch).items()})
    arrays.update({f"main_{k}": v
                   for k, v in regressor_physical_outputs(batch, pileup_expert=False).items()})
    arrays.update({f"inpaint_{k}": v for k, v in inpainter_outputs(batch).items()})
    return arrays


if __name__ == "__main__":
    import os

    REFERENCE_FILE.parent.mkdir(exist_ok=True)
    temp = REFERENCE_FILE.with_suffix(".tmp.npz")
    np.savez_compressed(temp, **compute_reference())
    os.replace(temp, REFERENCE_FILE)
    print(f"wrote {REFERENCE_FILE} ({REFERENCE_FILE.stat().st_size} bytes)")
