"""Event generation: ``simulate_events`` (in memory) and ``simulate_file`` (streamed to ROOT).

Events are simulated in chunks of ``config.chunk_events``; the chunk starting at event number e
draws its random numbers from ``SeedSequence([seed, e, stream])`` (stream 0 for the signal, 1 for
pile-up), so the contents depend only on (seed, config, event numbers) and never on the number of
worker processes, and files with different ``start_event`` hold different photons.

Photons that leave the active volume without converting are not written: each chunk draws photons
until it has its quota of converted ones, and the number of non-converted photons is reported in
the returned statistics and in the file's provenance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from xecreco.errors import UserError
from xecreco.geometry import design_geometry, direction_to_angles, xyz_to_uvw
from xecreco.io.schema import DEFAULT_TREE, SENTINEL
from xecreco.sim.config import SimConfig
from xecreco.sim.dead import dead_mask
from xecreco.sim.gate import gate_fraction, light_weight
from xecreco.sim.light import LightModel
from xecreco.sim.pileup import draw_pileup_counts, draw_pileup_energies, draw_pileup_times
from xecreco.sim.response import (
    Calibration,
    draw_photoelectrons,
    make_calibration,
    measure_npho,
)
from xecreco.sim.shower import simulate_showers
from xecreco.sim.sources import (
    draw_conversions,
    draw_directions,
    draw_energies,
    draw_vertices,
)
from xecreco.sim.timing import draw_sensor_times

MEV_PER_GEV = 1000.0
NS_PER_S = 1e9
#: sensor times are drawn where the expected light is above this fraction of the time threshold
#: (elsewhere the measured light cannot pass the threshold; they get the invalid time)
_TIMED_FRACTION = 0.5
#: extra candidates drawn per missing photon (most photons convert; this keeps loops short)
_OVERDRAW = 1.1


@dataclass
class _Detector:
    """Everything fixed for a file: light model, calibration, dead mask."""

    light: LightModel
    calibration: Calibration
    dead: np.ndarray
    is_mppc: np.ndarray


def _detector(config: SimConfig, dead: np.ndarray | None = None) -> _Detector:
    geometry = design_geometry()
    is_mppc = np.asarray(geometry.is_mppc, dtype=bool)
    return _Detector(
        light=LightModel(config, geometry),
        calibration=make_calibration(config, is_mppc),
        dead=dead_mask(config) if dead is None else dead,
        is_mppc=is_mppc,
    )


@dataclass
class _Photons:
    """Converted photons: source and first-interaction truth."""

    energy_mev: np.ndarray
    vertex: np.ndarray
    direction: np.ndarray
    conversion: np.ndarray
    depth_cm: np.ndarray


def _converted_photons(n, energy_fn, config, rng) -> tuple[_Photons, int]:
    """Draw photons until ``n`` have converted in the active volume; returns them and the
    number of non-converted photons drawn on the way."""
    parts, have, lost = [], 0, 0
    while have < n:
        m = int(np.ceil((n - have) * _OVERDRAW)) + 4
        energy = energy_fn(m)
        vertex = draw_vertices(m, config, rng)
        direction = draw_directions(m, config, rng)
        point, depth, ok = draw_conversions(energy, vertex, direction, config, rng)
        idx = np.flatnonzero(ok)[: n - have]
        # photons beyond the quota were never needed: count only the losses among those used
        used = (idx[-1] + 1) if len(idx) == n - have else m
        lost += int(used - len(idx))
        parts.append((energy[idx], vertex[idx], direction[idx], point[idx], depth[idx]))
        have += len(idx)
    cols = [np.concatenate(c) for c in zip(*parts)] if parts else [np.zeros(0)] * 5
    return _Photons(*cols), lost


def _light_of(photons: _Photons, detector: _Detector, config: SimConfig, rng):
    """Showers and light of converted photons: (expected pe (P, S), arrival ns after the photon's
    emission at its vertex (P, S), visible energy MeV (P,))."""
    showers = simulate_showers(photons.conversion, photons.direction, photons.depth_cm,
                               photons.energy_mev, config, rng)
    emitted = showers.energy * config.light_yield_per_mev
    collected, arrival = detector.light.collect(showers.centroid, emitted, showers.delay_ns)
    flight = np.linalg.norm(photons.conversion - photons.vertex, axis=1) / config.c_cm_per_ns
    collected *= detector.calibration.true_efficiency  # expected photo-electrons
    arrival += flight[:, None]
    return collected, arrival, showers.visible_mev


def simulate_chunk(
    n: int, config: SimConfig, seed: int, start_event: int = 0,
    dead: np.ndarray | None = None, detector: _Detector | None = None,
) -> tuple[dict, dict]:
    """Simulate one chunk of ``n`` events numbered from ``start_event``; returns
    ``(branches, stats)``."""
    run = config.run_for_seed(seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(start_event), 0]))
    det = detector if detector is not None else _detector(config, dead)
    is_mppc = det.is_mppc

    main, lost = _converted_photons(n, lambda m: draw_energies(m, config, rng), config, rng)
    time_truth = rng.uniform(-config.time_spread_ns, config.time_spread_ns, n)
    mean_pe, arrival, visible = _light_of(main, det, config, rng)
    arrival += time_truth[:, None]
    times = draw_sensor_times(arrival, mean_pe, is_mppc, config, rng,
                              needed=mean_pe >= _TIMED_FRACTION * config.time_threshold_pe,
                              fill=np.inf)

    # pile-up: extra photons through the same shower and light code, overlaid on their event;
    # drawn from their own stream so the signal photons do not depend on the pile-up settings.
    # The readout gate (xecreco.sim.gate) scales each photon's light by f(t0) / f(0), t0 its time
    # relative to the signal photon (the trigger): the signal keeps its light exactly. A sensor's
    # time is the earliest of the components whose light in the gate passes the time threshold.
    pile_rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(start_event), 1]))
    counts = draw_pileup_counts(n, config, pile_rng)
    n_pile = int(counts.sum())
    pile_lost = 0
    if n_pile:
        pile, pile_lost = _converted_photons(
            n_pile, lambda m: draw_pileup_energies(m, config, pile_rng), config, pile_rng)
        pile_time = draw_pileup_times(n_pile, config, pile_rng)
        owner = np.repeat(np.arange(n), counts)
        pile_t0 = pile_time - time_truth[owner]
        pile_fraction = gate_fraction(pile_t0, config)
        pile_full_pe, pile_arrival, _ = _light_of(pile, det, config, pile_rng)
        pile_pe = pile_full_pe * light_weight(pile_t0, config)[:, None]
        # the pulse's leading edge (its time statistics) has all of the photon's light
        pile_timed = pile_pe >= config.time_threshold_pe
        pile_times = draw_sensor_times(pile_arrival + pile_time[:, None], pile_full_pe, is_mppc,
                                       config, pile_rng, needed=pile_timed)
        np.add.at(mean_pe, owner, pile_pe)
        np.minimum.at(times, owner, np.where(pile_timed, pile_times, np.inf))
        pile_uvw = xyz_to_uvw(pile.conversion)
    else:
        pile = None
        pile_time = np.zeros(0)
        pile_fraction = np.zeros(0)
        pile_uvw = np.zeros((0, 3))

    nphe = draw_photoelectrons(mean_pe, config, rng)
    npho = measure_npho(nphe, det.calibration, is_mppc, config, rng)
    timed = np.flatnonzero((nphe >= config.time_threshold_pe) & np.isfinite(times))
    time_clean = np.full(npho.shape, SENTINEL, dtype=np.float32)
    time_clean.reshape(-1)[timed] = times.reshape(-1)[timed] / NS_PER_S
    npho_clean = npho.astype(np.float32)
    dead_rows = np.broadcast_to(det.dead, npho.shape)
    npho_out, time_out = npho_clean, time_clean
    if det.dead.any():
        npho_out, time_out = npho_clean.copy(), time_clean.copy()
        npho_out[:, det.dead] = SENTINEL
        time_out[:, det.dead] = SENTINEL

    emi = main.conversion - main.vertex
    emi /= np.linalg.norm(emi, axis=1, keepdims=True)
    theta, phi = direction_to_angles(emi)
    pile_energy = pile.energy_mev if pile is not None else np.zeros(0)

    def jagged(values):
        return ak.unflatten(np.asarray(values, dtype=np.float32), counts)

    branches = {
        "npho": npho_out,
        "time": time_out,
        "run": np.full(n, run, dtype=np.int32),
        "event": np.arange(start_event, start_event + n, dtype=np.int64),
        "energyTruth": main.energy_mev / MEV_PER_GEV,
        "timeTruth": time_truth,
        "uvwTruth": xyz_to_uvw(main.conversion),
        "xyzTruth": main.conversion,
        "xyzVTX": main.vertex,
        "emiVec": emi,
        "emiAng": np.stack([theta, phi], axis=1),
        "nphe": nphe.astype(np.float32),
        "dead": np.ascontiguousarray(dead_rows),
        "energyVisible": visible / MEV_PER_GEV,
        "nPileup": counts.astype(np.int32),
        "pileupEnergy": jagged(pile_energy / MEV_PER_GEV),
        "pileupTime": jagged(pile_time),
        "pileupU": jagged(pile_uvw[:, 0]),
        "pileupV": jagged(pile_uvw[:, 1]),
        "pileupW": jagged(pile_uvw[:, 2]),
        "pileupGateFraction": jagged(pile_fraction),
    }
    if det.dead.any():
        # Undamaged values for scoring inpainting; without dead channels they would only repeat
        # npho/time (a third of the file size), so they are written only when channels are dead.
        branches["nphoClean"] = npho_clean
        branches["timeClean"] = time_clean
    stats = {"events": n, "photons_not_converted": lost, "pileup_photons": n_pile,
             "pileup_photons_not_converted": pile_lost}
    return branches, stats


def _chunks(n: int, config: SimConfig, start_event: int):
    """(size, first event number) of every chunk of an n-event run."""
    size = config.chunk_events
    n_chunks = (n + size - 1) // size
    return [(min(size, n - j * size), start_event + j * size) for j in range(n_chunks)]


def _merge_stats(total: dict, stats: dict) -> None:
    for key, value in stats.items():
        total[key] = total.get(key, 0) + value


def _concatenate(parts: list[dict]) -> dict:
    out = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        jagged = isinstance(values[0], ak.Array)
        out[key] = ak.concatenate(values) if jagged else np.concatenate(values)
    return out


def simulate_events(n: int, config: SimConfig | None = None, seed: int = 0, start_event: int = 0,
                    return_stats: bool = False):
    """Simulate ``n`` converted photons in memory, numbered from ``start_event``.

    Returns ``{branch: array}`` with the file schema's branches (DESIGN.md section 2; jagged
    pile-up branches are awkward arrays), and with ``return_stats`` also the statistics dict
    (``photons_not_converted`` etc.). Identical to what :func:`simulate_file` writes.
    """
    config = config or SimConfig()
    _check_request(n, config, seed, start_event)
    det = _detector(config)
    parts, stats = [], {}
    for size, first in _chunks(n, config, start_event):
        branches, chunk_stats = simulate_chunk(size, config, seed, first, detector=det)
        parts.append(branches)
        _merge_stats(stats, chunk_stats)
    out = _concatenate(parts)
    return (out, stats) if return_stats else out


def _check_request(n: int, config: SimConfig, seed: int, start_event: int) -> int:
    """Validate a run request; returns its run number."""
    if n < 1:
        raise UserError(f"simulate: number of events must be >= 1 (got {n})")
    if int(seed) < 0:
        raise UserError(f"simulate: --seed must be >= 0 (got {seed})")
    if int(start_event) < 0:
        raise UserError(f"simulate: --first-event must be >= 0 (got {start_event})")
    return config.run_for_seed(seed)


def simulate_file(path, n: int, config: SimConfig | None = None, seed: int = 0, jobs: int = 1,
                  progress: bool = True, tree: str = DEFAULT_TREE, start_event: int = 0,
                  compression: str = "lz4") -> dict:
    """Simulate ``n`` events into the ROOT file ``path`` (tree ``tree``), streaming chunk by chunk.

    ``jobs`` worker processes simulate chunks in parallel; the contents do not depend on it.
    The workers are fresh interpreters (:mod:`xecreco.sim.workers`) that never re-import the
    caller's ``__main__``, so this works from scripts without an ``if __name__ == "__main__":``
    guard and from stdin (the guard is still good practice). Events are numbered from
    ``start_event``; the run number is ``config.run_for_seed(seed)``. Provenance stores the
    config, seed, run, version and statistics. Returns the statistics: events,
    photons_not_converted, pileup_photons, pileup_photons_not_converted, dead_channels.
    """
    from xecreco.io.provenance import make_provenance
    from xecreco.io.writer import RootWriter
    from xecreco.sim.workers import ChunkWorkers

    config = config or SimConfig()
    run = _check_request(n, config, seed, start_event)
    if jobs < 1:
        raise UserError(f"simulate: --jobs must be >= 1 (got {jobs})")
    path = Path(path)
    dead = dead_mask(config)
    chunks = _chunks(n, config, start_event)
    stats: dict = {}
    provenance = make_provenance(simulation={"config": config.to_dict(), "seed": int(seed),
                                             "run": run, "events": int(n),
                                             "start_event": int(start_event)})
    bar = None
    try:
        with RootWriter(path, tree=tree, compression=compression, provenance=provenance) as writer:
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=n, unit="ev", desc=f"simulate {path.name}")
            if jobs == 1 or len(chunks) == 1:
                det = _detector(config, dead)
                results = (simulate_chunk(size, config, seed, first, detector=det)
                           for size, first in chunks)
                _write_all(results, writer, stats, bar)
            else:
                with ChunkWorkers(min(jobs, len(chunks)), config, dead) as workers:
                    _write_all(workers.run(seed, chunks), writer, stats, bar)
            stats["dead_channels"] = int(dead.sum())
            provenance["simulation"]["stats"] = dict(stats)
            writer.provenance = provenance
    finally:
        if bar is not None:
            bar.close()
    return stats


def _write_all(results, writer, stats: dict, bar) -> None:
    for branches, chunk_stats in results:
        writer.write(branches)
        _merge_stats(stats, chunk_stats)
        if bar is not None:
            bar.update(chunk_stats["events"])
