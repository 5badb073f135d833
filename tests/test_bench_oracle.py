"""The position oracles of benchmarks/bench_oracle.py: each must reach what it claims to know."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_oracle import (  # noqa: E402
    _showers,
    centroid_projection_residuals,
    known_shape_fit,
    shower_features,
)


@pytest.fixture(scope="module")
def config():
    from xecreco.sim import SimConfig

    return SimConfig()


def test_known_shape_fit_recovers_the_shower_from_a_displaced_start(config):
    sample = _showers(40, seed=11, config=config)
    rng = np.random.default_rng(12)
    shift = known_shape_fit(sample, config, rng, start_spread_cm=0.5)
    # 1e5 photo-electrons locate a known pattern to a fraction of a millimetre; the start was
    # 5 mm off per coordinate
    assert np.median(np.linalg.norm(shift, axis=1)) < 0.06
    assert np.all(np.isfinite(shift))


def test_centroid_projection_is_unbiased_but_far_from_exact(config):
    train, test = _showers(3000, seed=21, config=config), _showers(1500, seed=22, config=config)
    residual = centroid_projection_residuals(train, test)
    assert np.all(np.abs(np.median(residual, axis=0)) < 0.1)  # cm
    # the shower's length fluctuates: the centroid alone misses the FI point by millimetres
    assert 0.15 < np.std(residual[:, 2]) < 2.0


def test_shower_features_give_the_offset_of_the_fi_point_from_the_centroid(config):
    fi, centroid, energy, _, direction = _showers(200, seed=31, config=config)
    from xecreco.geometry import xyz_to_uvw

    inputs, target = shower_features(fi, centroid, energy, direction, "moments")
    assert inputs.shape == (len(fi), 12) and target.shape == (len(fi), 3)
    # the target points back from the centroid towards the inner face: the FI is shallower
    assert np.median(target[:, 2]) < 0
    full, target_full = shower_features(fi, centroid, energy, direction, "centroids")
    assert full.shape[1] == 3 * centroid.shape[1] + centroid.shape[1] + 6
    np.testing.assert_allclose(target_full, target)
    # the mean carried in the inputs plus the target is the FI point in (u, v, w)
    np.testing.assert_allclose(full[:, -3:] + target_full, xyz_to_uvw(fi), atol=1e-4)
    with pytest.raises(ValueError):
        shower_features(fi, centroid, energy, direction, "everything")
