"""The classical reconstruction (registered as ``classical``): MEG II-style, no learning.

Steps per batch (all vectorised over events):
1. seed at the brightest 3 x 3 inner patch, photon-weighted mean (u, v);
2. local solid-angle fit (LSAF) of (S, u, v, w) on the inner MPPCs around the seed
   (:mod:`.position`), then depth-dependent corrections to the first-interaction point;
3. dead-channel recovery, separated inner-face pile-up clusters replaced by the signal light
   model (:mod:`.pileup`), and the weighted photon sum -> energy (:mod:`.energy`);
4. propagation- and walk-corrected sensor times combined with outlier rejection, minus the time
   of flight from the vertex (:mod:`.timing`);
5. emission angles from the vertex (``xyzVTX`` when known, else the target centre) to the
   first-interaction point; pile-up probability (:mod:`.pileup`).

Outputs (file units): energy GeV; u, v, w, x, y, z cm; time ns; theta, phi deg; pileup_prob;
status (:class:`~xecreco.io.schema.Status`). Quantities that cannot be computed hold
:data:`~xecreco.io.schema.FILL_VALUE`, never NaN.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from xecreco.geometry import direction_to_angles, uvw_to_xyz
from xecreco.geometry.constants import TARGET_CENTRE_CM
from xecreco.io.schema import FILL_VALUE, Status
from xecreco.models.base import EventBatch
from xecreco.models.classical.calibration import (
    ClassicalCalibration,
    default_calibration,
    load_calibration,
)
from xecreco.models.classical.energy import (
    energy_from_sums,
    exclude_pileup_light,
    group_sums,
    recover_dead,
)
from xecreco.models.classical.pileup import (
    pileup_cluster_mask,
    pileup_probability,
    second_cluster_ratio,
    signal_light_model,
)
from xecreco.models.classical.position import (
    correct_position,
    find_seed,
    fit_lsaf,
    inner_grid,
    inner_image,
    weighted_mean_uv,
    window_data,
)
from xecreco.models.classical.timing import combine_times

OUTPUTS = ("energy", "u", "v", "w", "x", "y", "z", "time", "theta", "phi", "pileup_prob")
#: Extra per-event values returned by ``reconstruct`` (not written by predict): the pile-up
#: features (second-cluster ratio, timing chi2/ndf), used by the calibration fit, and the number
#: of inner sensors left out of the energy as separated pile-up clusters.
DIAGNOSTICS = ("diag_pileup_ratio", "diag_time_chi2_ndf", "diag_pileup_sensors")
#: Environment variable naming a calibration JSON for ``classical`` (e.g. under ``xecreco predict``).
CALIBRATION_ENV = "XECRECO_CLASSICAL_CALIBRATION"
#: Light-centroid depth (cm) assumed when the position fit fails (weighted-mean u, v are kept).
FALLBACK_DEPTH_CM = 5.0
#: Events reconstructed at once (the per-sensor work arrays are a few (N, 4760) float64).
CHUNK_EVENTS = 512


@dataclass
class ClassicalStages:
    """Intermediate results of one batch (used by the calibration fit and by ``reconstruct``)."""

    status: np.ndarray  # (N,) int32
    uvw_fit: np.ndarray  # (N, 3) LSAF point, cm
    uvw: np.ndarray  # (N, 3) corrected first-interaction point, cm
    fit_ok: np.ndarray  # (N,) bool
    sums: np.ndarray  # (N, 7) photon sums per sensor group after dead-channel recovery and
    #                   pile-up cluster exclusion
    npho_recovered: np.ndarray  # (N, 4760) photons after recovery (pile-up light kept)
    pileup_sensors: np.ndarray  # (N,) inner sensors left out as separated pile-up clusters


class ClassicalReconstructor:
    """MEG II-style classical reconstruction with calibration constants.

    Args:
        calibration: a :class:`ClassicalCalibration`, a path to a calibration JSON, or None:
            the file named by the environment variable ``XECRECO_CLASSICAL_CALIBRATION`` when
            set, else the shipped default (``models/bundled/classical_calibration.json``).
        name: output branch prefix (an identifier).
    """

    outputs = OUTPUTS

    def __init__(self, calibration=None, name: str = "classical"):
        if calibration is None:
            calibration = os.environ.get(CALIBRATION_ENV) or None
        if calibration is None:
            calibration = default_calibration()
        elif isinstance(calibration, (str, Path)):
            calibration = load_calibration(calibration)
        self.calibration: ClassicalCalibration = calibration
        self.name = name
        blob = json.dumps(calibration.to_dict(), sort_keys=True).encode()
        #: xxh64 of the calibration constants (recorded in prediction-file provenance)
        self.checksum = xxhash.xxh64_hexdigest(blob)

    def config(self) -> dict:
        """Plain dict describing this reconstructor (for provenance)."""
        return {"kind": "classical", "calibration": self.calibration.to_dict()}

    # -- stages ------------------------------------------------------------------------------
    def stages(self, batch: EventBatch, correct: bool = True) -> ClassicalStages:
        """Position fit, corrections and photon sums of a batch (``correct=False``: raw LSAF)."""
        cal = self.calibration
        n_events = len(batch)
        npho = np.asarray(batch.npho, dtype=np.float64)
        valid = np.asarray(batch.valid_npho, dtype=bool)
        grid = inner_grid(int(cal.window_half))
        status = np.full(n_events, int(Status.OK), dtype=np.int32)
        status[~valid.any(axis=1)] = int(Status.NO_VALID_SENSORS)
        inner_sum = inner_image(np.where(valid, npho, 0.0)).sum(axis=(1, 2))
        little = (status == Status.OK) & (inner_sum < cal.min_inner_npho)
        status[little] = int(Status.TOO_LITTLE_LIGHT)

        uvw_fit = np.full((n_events, 3), FILL_VALUE)
        scale = np.zeros(n_events)
        fit_ok = np.zeros(n_events, dtype=bool)
        todo = np.flatnonzero(status == Status.OK)
        if len(todo):
            rows, cols = find_seed(npho[todo], valid[todo])
            data = window_data(npho[todo], valid[todo], rows, cols, grid, cal.fit_rel_sigma)
            start = weighted_mean_uv(data, grid)
            result = fit_lsaf(data, start, grid, int(cal.fit_iterations))
            fallback = np.column_stack([start, np.full(len(todo), FALLBACK_DEPTH_CM)])
            fitted = np.where(result.ok[:, None], result.uvw, fallback)
            uvw_fit[todo] = fitted
            fit_ok[todo] = result.ok
            scale[todo] = result.scale
            status[todo[~result.ok]] = int(Status.FIT_FAILED)
        has_point = np.isin(np.arange(n_events), todo)
        uvw = uvw_fit.copy()
        if correct and has_point.any():
            uvw[has_point] = correct_position(uvw_fit[has_point], vertex_of(batch, todo), cal)
        light_xyz = np.zeros((n_events, 3))
        if has_point.any():
            light_xyz[has_point] = uvw_to_xyz(uvw_fit[has_point])
        recovered = recover_dead(npho, valid, light_xyz, has_point, cal)
        for_energy = recovered
        pileup_sensors = np.zeros(n_events, dtype=np.int64)
        fitted_rows = np.flatnonzero(fit_ok)
        if len(fitted_rows):
            expected = signal_light_model(uvw_fit[fitted_rows], scale[fitted_rows])
            mask = pileup_cluster_mask(recovered[fitted_rows], expected, uvw_fit[fitted_rows, :2])
            pileup_sensors[fitted_rows] = mask.sum(axis=1)
            for_energy = recovered.copy()
            for_energy[fitted_rows] = exclude_pileup_light(recovered[fitted_rows], mask, expected)
        sums = group_sums(for_energy)
        return ClassicalStages(
            status=status, uvw_fit=uvw_fit, uvw=uvw, fit_ok=fit_ok, sums=sums,
            npho_recovered=recovered, pileup_sensors=pileup_sensors,
        )

    def reconstruct(self, batch: EventBatch) -> dict[str, np.ndarray]:
        """Outputs of :data:`OUTPUTS` plus ``status`` for every event of ``batch``.

        Large batches are processed in chunks of :data:`CHUNK_EVENTS` (bounded memory).
        """
        n_events = len(batch)
        if n_events <= CHUNK_EVENTS:
            return self._reconstruct_chunk(batch)
        parts = [
            self._reconstruct_chunk(batch.select(slice(a, a + CHUNK_EVENTS)))
            for a in range(0, n_events, CHUNK_EVENTS)
        ]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _reconstruct_chunk(self, batch: EventBatch) -> dict[str, np.ndarray]:
        cal = self.calibration
        n_events = len(batch)
        st = self.stages(batch)
        status = st.status
        has_point = (status == Status.OK) | (status == Status.FIT_FAILED)
        no_light = status == Status.NO_VALID_SENSORS

        out = {name: np.full(n_events, FILL_VALUE) for name in OUTPUTS + DIAGNOSTICS}
        w_for_energy = np.where(has_point, st.uvw[:, 2], 0.0)
        energy = energy_from_sums(st.sums, w_for_energy, cal)
        out["energy"] = np.where(no_light, FILL_VALUE, energy)
        out["diag_pileup_sensors"] = st.pileup_sensors.astype(np.float64)

        if has_point.any():
            idx = np.flatnonzero(has_point)
            first_xyz = uvw_to_xyz(st.uvw[idx])
            light_xyz = uvw_to_xyz(st.uvw_fit[idx])
            vertex = vertex_of(batch, idx)
            for k, name in enumerate(("u", "v", "w")):
                out[name][idx] = st.uvw[idx, k]
            for k, name in enumerate(("x", "y", "z")):
                out[name][idx] = first_xyz[:, k]
            theta, phi = direction_to_angles(first_xyz - vertex)
            out["theta"][idx], out["phi"][idx] = theta, phi

            timing = combine_times(
                np.asarray(batch.time[idx]), np.asarray(batch.valid_time[idx]),
                st.npho_recovered[idx], light_xyz, first_xyz, vertex, cal,
            )
            timed = timing.n_used > 0
            out["time"][idx[timed]] = timing.time_ns[timed]
            no_time = idx[~timed]
            status[no_time[status[no_time] == Status.OK]] = int(Status.NO_VALID_TIME)

            ratio = second_cluster_ratio(
                st.npho_recovered[idx], np.ones((len(idx), st.npho_recovered.shape[1]), bool),
                st.uvw[idx, :2], cal.pileup_exclusion_cm,
            )
            chi2 = np.where(timed, timing.chi2_ndf, 1.0)
            out["pileup_prob"][idx] = pileup_probability(ratio, chi2, cal)
            out["diag_pileup_ratio"][idx] = ratio
            out["diag_time_chi2_ndf"][idx] = chi2

        result = {name: np.nan_to_num(v, nan=FILL_VALUE, posinf=FILL_VALUE, neginf=FILL_VALUE)
                  .astype(np.float32) for name, v in out.items()}
        result["status"] = status.astype(np.int32)
        return result


def vertex_of(batch: EventBatch, idx: np.ndarray) -> np.ndarray:
    """(len(idx), 3) photon vertex (cm): ``batch.vertex`` when known, else the target centre."""
    if batch.vertex is not None:
        vertex = np.asarray(batch.vertex, dtype=np.float64)[idx]
        return np.where(np.isfinite(vertex), vertex, np.asarray(TARGET_CENTRE_CM))
    return np.tile(np.asarray(TARGET_CENTRE_CM), (len(idx), 1))
