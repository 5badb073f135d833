"""Physics table: resolutions of every bundled reconstruction next to the classical one.

Simulates 52.83 MeV signal photons (20k; 2k with --quick; default simulation, no pile-up, no dead
channels, seed 303), predicts them with ``classical`` and the bundled ``default`` regressor (when
installed) and runs the validation suite's energy, position, angle and timing studies. Reports each
headline number per reconstruction and the ML / classical ratio (target <= 0.8).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, peak_rss_mb  # noqa: E402


def run(quick: bool = False) -> list[dict]:
    from xecreco.models import available_reconstructors
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.sim import simulate_file
    from xecreco.validation.api import validate
    from xecreco.validation.headlines import HEADLINE_STUDIES, headline_numbers

    n_events = 2000 if quick else 20000
    recos = ["classical"] + (["default"] if "default" in available_reconstructors() else [])
    with tempfile.TemporaryDirectory(prefix="bench_physics_") as folder:
        folder = Path(folder)
        source = folder / "signal.root"
        simulate_file(source, n_events, seed=303, jobs=2, progress=False)
        predict_files([source], folder / "pred.root", recos, progress=False)
        summary = validate([folder / "pred.root"], folder / "report", recos=recos,
                           studies=list(HEADLINE_STUDIES), progress=False,
                           formats=("png",))
    table = {reco: headline_numbers(summary, reco) for reco in recos}
    results = [{"name": f"physics_{reco}", "events": n_events, **numbers}
               for reco, numbers in table.items()]
    if "default" in table:
        ratios = {}
        for key, value in table["default"].items():
            ref = table["classical"].get(key)
            ratios[f"{key}_ratio"] = value / ref if value is not None and ref else None
        results.append({"name": "physics_ratio_default_over_classical", **ratios,
                        "peak_rss_mb": peak_rss_mb()})
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
