"""Derive :class:`ClassicalCalibration` constants from a simulated sample with truth.

Two passes over the sample (``xecreco calibrate``):

1. uncorrected LSAF points, photon sums per sensor group and a sample of per-sensor time
   residuals (sensor time - true emission time - true time of flight) are collected; from them:
   - depth correction w_true - w_fit and linear u, v corrections, in bins of w_fit;
   - group weights of the photon sum (non-negative least squares of E_true / E_true = 1, low
     tail trimmed) and the energy scale versus corrected w (peak of E_true / sum);
   - effective light speed and time-walk tables (linear least squares of the residuals against
     distance and log10 npho bins, per sensor type), per-sensor time resolution tables (MAD);
2. the full reconstruction with those constants gives the global time offset;
3. on a pile-up sample (``pileup_files``, or the sample itself when it has pile-up truth) the
   logistic regression of ``pileup_prob`` on the pile-up features.

The main sample should be free of pile-up (it sets the energy scale).

Binned tables need :data:`MIN_PER_BIN` entries per bin; sparser bins are dropped.
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
from scipy.optimize import nnls

from xecreco.errors import UserError
from xecreco.geometry import design_geometry, uvw_to_xyz
from xecreco.geometry.constants import LXE_LIGHT_SPEED_CM_PER_NS
from xecreco.io.reader import iterate_batches
from xecreco.io.rootfile import count_entries, list_branches
from xecreco.io.schema import DEFAULT_TREE, BranchNames, Status
from xecreco.models.classical.calibration import ClassicalCalibration
from xecreco.models.classical.pileup import fit_logistic, pileup_features
from xecreco.models.classical.position import correct_position, incidence_tangents
from xecreco.models.classical.reconstructor import ClassicalReconstructor, vertex_of
from xecreco.models.classical.timing import light_path_cm, time_of_flight_ns

REQUIRED_TRUTH = ("energyTruth", "timeTruth", "uvwTruth", "xyzTruth")
W_EDGES_CM = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 18.0,
              22.0, 27.0, 33.0, 45.0)
LOG10_NPHO_EDGES = tuple(np.round(np.arange(1.75, 6.01, 0.25), 2))
MIN_PER_BIN = 20
TIME_SAMPLES_PER_EVENT = 40
#: a pile-up event for the logistic fit: pile-up photons with at least this energy in total (GeV)
PILEUP_LABEL_GEV = 0.005
MAD_TO_SIGMA = 1.4826


def robust_centre(values: np.ndarray, nsigma: float = 2.5, passes: int = 3) -> tuple[float, float]:
    """(centre, sigma) of the core of a distribution: median and MAD-sigma, iteratively trimmed."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return float("nan"), float("nan")
    centre, sigma = np.median(x), MAD_TO_SIGMA * np.median(np.abs(x - np.median(x)))
    for _ in range(passes):
        core = x[np.abs(x - centre) <= nsigma * max(sigma, 1e-12)]
        if len(core) < 5:
            break
        centre = np.median(core)
        sigma = MAD_TO_SIGMA * np.median(np.abs(core - centre))
    return float(centre), float(sigma)


def _binned(x, edges, min_count=MIN_PER_BIN):
    """(bin index per x, list of (bin centre = median x, member indices)) for populated bins."""
    index = np.digitize(x, edges) - 1
    bins = []
    for b in range(len(edges) - 1):
        members = np.flatnonzero(index == b)
        if len(members) >= min_count:
            bins.append((float(np.median(x[members])), members))
    return bins


def _robust_line(x, y, passes: int = 3) -> tuple[float, float]:
    """(offset, slope) of y = offset + slope x, refitted after trimming 3-sigma outliers."""
    keep = np.ones(len(x), dtype=bool)
    offset, slope = float(np.median(y)), 0.0
    for _ in range(passes):
        if keep.sum() < 3 or np.ptp(x[keep]) == 0:
            break
        slope, offset = np.polyfit(x[keep], y[keep], 1)
        resid = y - offset - slope * x
        sigma = MAD_TO_SIGMA * np.median(np.abs(resid[keep] - np.median(resid[keep])))
        keep = np.abs(resid) <= 3 * max(sigma, 1e-9)
    return float(offset), float(slope)


def fit_position(uvw_fit: np.ndarray, uvw_true: np.ndarray, vertex: np.ndarray) -> dict:
    """Depth and u, v correction tables (calibration fields) from OK events (vertex (N, 3) cm)."""
    w_fit = uvw_fit[:, 2]
    tangents = incidence_tangents(uvw_fit, vertex)
    result = {"w_table_cm": [], "w_shift_cm": []}
    for centre, members in _binned(w_fit, W_EDGES_CM):
        shift, _ = robust_centre(uvw_true[members, 2] - w_fit[members])
        result["w_table_cm"].append(centre)
        result["w_shift_cm"].append(shift)
    for axis, name in ((0, "u"), (1, "v")):
        table, offsets, slopes = [], [], []
        for centre, members in _binned(w_fit, W_EDGES_CM):
            x = uvw_fit[members, axis]
            offset, slope = _robust_line(tangents[members, axis], uvw_true[members, axis] - x)
            table.append(centre)
            offsets.append(offset)
            slopes.append(slope)
        result.update({f"{name}_table_cm": table, f"{name}_offset_cm": offsets,
                       f"{name}_incidence_cm": slopes})
    if not result["w_table_cm"]:
        raise UserError(f"calibration sample too small: need at least {MIN_PER_BIN} reconstructed events")
    return result


def fit_energy(sums: np.ndarray, energy_true: np.ndarray, w_cm: np.ndarray) -> dict:
    """Group weights (non-negative, low tail trimmed) and the energy scale table versus w."""
    design = sums / energy_true[:, None]
    keep = np.ones(len(sums), dtype=bool)
    weights = np.zeros(sums.shape[1])
    for _ in range(4):
        used = keep & np.all(np.isfinite(design), axis=1)
        weights, _ = nnls(design[used], np.ones(used.sum()))
        ratio = design @ weights
        centre, sigma = robust_centre(ratio[used])
        keep = np.abs(ratio - centre) <= 3.0 * sigma
    if not np.any(weights > 0):
        raise UserError("calibration failed: no sensor group carries light in the sample")
    weights = weights / np.max(weights)
    raw = sums @ weights
    table, scale = [], []
    for centre, members in _binned(w_cm, W_EDGES_CM):
        peak, _ = robust_centre(energy_true[members] / raw[members])
        table.append(centre)
        scale.append(peak)
    return {"group_weights": weights.tolist(), "energy_table_cm": table, "energy_scale": scale}


def fit_timing(resid: np.ndarray, dist: np.ndarray, log_npho: np.ndarray, is_mppc: np.ndarray) -> dict:
    """Light speed, walk and resolution tables from per-sensor residuals (ns) vs distance (cm).

    Model: resid = dist / v + walk[type, log10 npho bin]; linear least squares with 3-sigma
    trimming. Unpopulated bins copy their nearest populated neighbour.
    """
    edges = np.asarray(LOG10_NPHO_EDGES)
    centres = 0.5 * (edges[:-1] + edges[1:])
    n_bins = len(centres)
    b = np.clip(np.digitize(log_npho, edges) - 1, 0, n_bins - 1)
    column = b + np.where(is_mppc, 0, n_bins)
    keep = np.ones(len(resid), dtype=bool)
    inv_speed, walk = 1.0 / LXE_LIGHT_SPEED_CM_PER_NS, np.zeros(2 * n_bins)
    for _ in range(3):
        counts = np.bincount(column[keep], minlength=2 * n_bins)
        used_cols = np.flatnonzero(counts >= MIN_PER_BIN)
        col_map = -np.ones(2 * n_bins, dtype=int)
        col_map[used_cols] = np.arange(len(used_cols))
        rows = keep & (col_map[column] >= 0)
        a = np.zeros((rows.sum(), 1 + len(used_cols)))
        a[:, 0] = dist[rows]
        a[np.arange(rows.sum()), 1 + col_map[column[rows]]] = 1.0
        solution, *_ = np.linalg.lstsq(a, resid[rows], rcond=None)
        inv_speed = float(solution[0])
        walk = np.full(2 * n_bins, np.nan)
        walk[used_cols] = solution[1:]
        predicted = dist * inv_speed + np.nan_to_num(walk[column])
        r = resid - predicted
        sigma_col = np.array([
            MAD_TO_SIGMA * np.median(np.abs(r[keep & (column == c)] - np.median(r[keep & (column == c)])))
            if np.sum(keep & (column == c)) >= MIN_PER_BIN else np.nan
            for c in range(2 * n_bins)
        ])
        keep = (col_map[column] >= 0) & (np.abs(r) <= 3.0 * np.nan_to_num(sigma_col[column], nan=np.inf))
    if inv_speed <= 0:
        raise UserError("calibration failed: the fitted light speed is not positive (too few sensor times)")

    def fill(values):
        good = np.flatnonzero(np.isfinite(values))
        if len(good) == 0:
            return np.zeros_like(values)
        nearest = good[np.abs(np.arange(len(values))[:, None] - good[None, :]).argmin(axis=1)]
        return values[nearest]

    return {
        "light_speed_cm_ns": 1.0 / inv_speed,
        "walk_log10_npho": centres.tolist(),
        "walk_mppc_ns": fill(walk[:n_bins]).tolist(),
        "walk_pmt_ns": fill(walk[n_bins:]).tolist(),
        "sigma_mppc_ns": fill(sigma_col[:n_bins]).tolist(),
        "sigma_pmt_ns": fill(sigma_col[n_bins:]).tolist(),
    }


def _check_truth(files, tree: str, branches: dict | None = None) -> list[str]:
    names = BranchNames.from_dict(branches)
    pileup = []
    for path in files:
        present = set(list_branches(path, tree))
        missing = [names.file_name(b) for b in REQUIRED_TRUTH
                   if names.file_name(b) not in present]
        if missing:
            raise UserError(
                f"'{path}' has no truth branches {missing}; calibrate needs a simulated sample "
                "with truth (xecreco simulate), or map them with --branch CANONICAL=NAME"
            )
        pileup.append({names.file_name("nPileup"), names.file_name("pileupEnergy")} <= present)
    return ["nPileup", "pileupEnergy"] if all(pileup) else []


def fit_calibration(
    files,
    *,
    tree: str = DEFAULT_TREE,
    max_events: int | None = None,
    step_events: int = 1000,
    base: ClassicalCalibration | None = None,
    seed: int = 0,
    progress: bool = True,
    source: str = "",
    pileup_files=None,
    branches: dict | None = None,
) -> ClassicalCalibration:
    """Fit every calibration constant on simulated ``files`` (see module docstring).

    ``pileup_files``: a separate sample with pile-up truth for the ``pileup_prob`` regression
    (default: ``files`` themselves when they carry pile-up truth). ``branches``: ``{canonical:
    name in file}`` for files (and pile-up files) with other branch names.
    """
    files = [files] if isinstance(files, str) else list(files)
    pileup_truth = _check_truth(files, tree, branches)
    total = count_entries(files, tree)
    stop = total if max_events is None else min(total, int(max_events))
    if stop < MIN_PER_BIN:
        raise UserError(
            f"calibration sample has {stop} events; need at least {MIN_PER_BIN} "
            "(more than 5000 recommended)"
        )
    base = base or ClassicalCalibration()
    reco = ClassicalReconstructor(calibration=base)
    geometry = design_geometry()
    rng = np.random.default_rng(seed)
    truth_names = list(REQUIRED_TRUTH) + pileup_truth
    collected = {k: [] for k in ("uvw_fit", "ok", "sums", "energy", "uvw_true", "vertex")}
    t_resid, t_dist, t_logn, t_mppc = [], [], [], []
    done = 0
    for batch in iterate_batches(files, tree=tree, branches=branches, truth=truth_names,
                                 step_events=step_events, entry_stop=stop):
        st = reco.stages(batch, correct=False)
        ok = st.status == Status.OK
        collected["uvw_fit"].append(st.uvw_fit)
        collected["ok"].append(ok)
        collected["sums"].append(st.sums)
        collected["energy"].append(np.asarray(batch.truth["energyTruth"], float))
        collected["uvw_true"].append(np.asarray(batch.truth["uvwTruth"], float))
        collected["vertex"].append(vertex_of(batch, np.arange(len(batch))))
        idx = np.flatnonzero(ok)
        if len(idx):
            light = uvw_to_xyz(st.uvw_fit[idx])
            first = np.asarray(batch.truth["xyzTruth"], float)[idx]
            vertex = vertex_of(batch, idx)
            tof = time_of_flight_ns(vertex, first)
            t_true = np.asarray(batch.truth["timeTruth"], float)[idx]
            npho = st.npho_recovered[idx]
            usable = np.asarray(batch.valid_time)[idx] & (npho >= base.time_min_npho)
            dist = light_path_cm(light)
            for k in range(len(idx)):
                sensors = np.flatnonzero(usable[k])
                if len(sensors) > TIME_SAMPLES_PER_EVENT:
                    sensors = rng.choice(sensors, TIME_SAMPLES_PER_EVENT, replace=False)
                t_resid.append(batch.time[idx[k], sensors] * 1e9 - t_true[k] - tof[k])
                t_dist.append(dist[k, sensors])
                t_logn.append(np.log10(npho[k, sensors]))
                t_mppc.append(np.asarray(geometry.is_mppc)[sensors])
        done += len(batch)
        if progress:
            print(f"\rcalibrate pass 1: {done}/{stop} events", end="", file=sys.stderr)
    if progress:
        print(file=sys.stderr)
    data = {k: np.concatenate(v) for k, v in collected.items()}
    ok = data["ok"]
    if ok.sum() < MIN_PER_BIN:
        raise UserError(f"only {int(ok.sum())} events of the calibration sample could be fitted")
    constants = fit_position(data["uvw_fit"][ok], data["uvw_true"][ok], data["vertex"][ok])
    calibration = replace(base, **constants)
    w_corr = correct_position(data["uvw_fit"][ok], data["vertex"][ok], calibration)[:, 2]
    calibration = replace(calibration, **fit_energy(data["sums"][ok], data["energy"][ok], w_corr))
    calibration = replace(calibration, **fit_timing(
        np.concatenate(t_resid).astype(float), np.concatenate(t_dist),
        np.concatenate(t_logn), np.concatenate(t_mppc),
    ))
    calibration = replace(calibration, time_offset_ns=0.0)

    # pass 2: the full reconstruction with the new constants
    reco2 = ClassicalReconstructor(calibration=calibration)
    dt = []
    for batch in iterate_batches(files, tree=tree, branches=branches, truth=truth_names,
                                 step_events=step_events, entry_stop=stop):
        out = reco2.reconstruct(batch)
        good = out["status"] == Status.OK
        dt.append((out["time"].astype(float) - np.asarray(batch.truth["timeTruth"], float))[good])
    offset, _ = robust_centre(np.concatenate(dt))
    calibration = replace(calibration, time_offset_ns=offset)
    pileup_sources = list(pileup_files or []) or (files if pileup_truth else [])
    if pileup_sources:
        coef = fit_pileup(pileup_sources, calibration, tree=tree, step_events=step_events,
                          max_events=max_events, branches=branches)
        if coef is not None:
            calibration = replace(calibration, pileup_coef=coef)
    return replace(calibration, source=source or f"xecreco calibrate on {', '.join(files)} "
                   f"({stop} events)")


def fit_pileup(files, calibration: ClassicalCalibration, *, tree: str = DEFAULT_TREE,
               step_events: int = 1000, max_events: int | None = None,
               branches: dict | None = None) -> list | None:
    """Logistic-regression coefficients of ``pileup_prob`` from a sample with pile-up truth.

    Label: pile-up photons with at least :data:`PILEUP_LABEL_GEV` in total. None when either
    class has fewer than :data:`MIN_PER_BIN` events.
    """
    energy_name = BranchNames.from_dict(branches).file_name("pileupEnergy")
    for path in files:
        present = set(list_branches(path, tree))
        if energy_name not in present:
            raise UserError(f"'{path}' has no '{energy_name}' branch; the pile-up sample needs "
                            "pile-up truth (xecreco simulate --pileup-rate ...)")
    reco = ClassicalReconstructor(calibration=calibration)
    features, labels = [], []
    for batch in iterate_batches(files, tree=tree, branches=branches, truth=["pileupEnergy"],
                                 step_events=step_events, entry_stop=max_events):
        out = reco.reconstruct(batch)
        good = out["status"] == Status.OK
        energy = np.asarray([float(np.sum(e)) for e in batch.truth["pileupEnergy"]])
        features.append(pileup_features(out["diag_pileup_ratio"], out["diag_time_chi2_ndf"])[good])
        labels.append((energy >= PILEUP_LABEL_GEV)[good])
    x, y = np.concatenate(features), np.concatenate(labels).astype(float)
    if min(y.sum(), len(y) - y.sum()) < MIN_PER_BIN:
        return None
    return fit_logistic(x, y).tolist()
