"""Information floor of the time resolution, beside what the reconstructions reach (issue 14:
is <= 0.8x classical physically reachable?).

The simulation times each sensor by its constant-fraction photon on top of the light arrival
time, with a spread sigma_i that depends only on its photo-electrons
(:func:`xecreco.sim.timing.expected_time_spread_ns`: Erlang order statistic, single-photon spread,
electronics). An estimator that knew every sensor's arrival time and walk exactly (the shower's
whole light pattern) would combine the sensor times with variance 1 / sum_i 1/sigma_i^2 over the
timed sensors: the floor no reconstruction from these times can beat (the Cramer-Rao bound of a
common shift with Gaussian errors). Per event the floor follows from the file's ``nphe``; its
median over events is reported next to the core sigma of ``classical`` and the bundled
``default`` on the same fresh 52.83 MeV photons (seed 3030), and the 0.8x classical target.

The gap between floor and reconstruction is what the unknown shower geometry costs (where the
light was emitted, and when); a floor above 0.8x classical would make the target unreachable.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, peak_rss_mb  # noqa: E402

SEED = 3030


def run(quick: bool = False) -> list[dict]:
    import uproot

    from xecreco.geometry import design_geometry
    from xecreco.models import available_reconstructors
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.sim import SimConfig, simulate_file
    from xecreco.sim.timing import expected_time_spread_ns
    from xecreco.validation.estimators import gauss_core_fit

    n_events = 300 if quick else 3000
    config = SimConfig()
    recos = ["classical"] + (["default"] if "default" in available_reconstructors() else [])
    is_mppc = np.asarray(design_geometry().is_mppc)
    with tempfile.TemporaryDirectory(prefix="bench_oracle_") as folder:
        source = Path(folder) / "signal.root"
        pred = Path(folder) / "pred.root"
        simulate_file(source, n_events, seed=SEED, progress=False)
        predict_files([source], pred, recos, progress=False)
        with uproot.open(source) as handle:
            nphe = handle["tree"]["nphe"].array(library="np")
        with uproot.open(pred) as handle:
            reco = handle["reco"].arrays(library="np")
    sigma = expected_time_spread_ns(np.asarray(nphe, np.float64), is_mppc[None, :], config)
    timed = np.asarray(nphe) >= config.time_threshold_pe
    floor_ps = 1000.0 / np.sqrt(np.where(timed, 1.0 / sigma**2, 0.0).sum(axis=1))
    record = {"name": "oracle_time_floor", "events": int(len(floor_ps)),
              "floor_median_ps": float(np.median(floor_ps)),
              "floor_p90_ps": float(np.percentile(floor_ps, 90))}
    for name in recos:
        ok = reco[f"{name}_status"] == 0
        residual = 1000.0 * (reco[f"{name}_time"][ok] - reco["timeTruth"][ok])
        record[f"{name}_sigma_ps"] = gauss_core_fit(residual).get("sigma")[0]
    if record.get("classical_sigma_ps"):
        record["target_0p8_classical_ps"] = 0.8 * record["classical_sigma_ps"]
    record["peak_rss_mb"] = peak_rss_mb()
    return [record]


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
