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

#: (record key, study, path inside the study's series entry, unit)
HEADLINES = (
    ("energy_w_lt_2cm_percent", "energy", ("by_depth", "w<2cm", "sigma_upper_percent"), "%"),
    ("energy_w_ge_2cm_percent", "energy", ("by_depth", "w>=2cm", "sigma_upper_percent"), "%"),
    ("u_mm", "position", ("u", "all", "sigma_mm"), "mm"),
    ("v_mm", "position", ("v", "all", "sigma_mm"), "mm"),
    ("w_mm", "position", ("w", "all", "sigma_mm"), "mm"),
    ("time_ps", "timing", ("sigma_ps",), "ps"),
    ("opening_angle_68_mrad", "angle", ("opening_angle", "containment68_mrad"), "mrad"),
)


def headline_numbers(summary: dict, reco: str) -> dict:
    """The headline resolutions of one reconstruction from a validation summary (None if absent)."""
    numbers = {}
    for key, study, path, _unit in HEADLINES:
        node = summary["studies"].get(study, {}).get("series", {}).get(reco, {})
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        numbers[key] = node.get("value") if isinstance(node, dict) else None
    return numbers


def run(quick: bool = False) -> list[dict]:
    from xecreco.models import available_reconstructors
    from xecreco.models.predict import predict_files
    from xecreco.sim import simulate_file
    from xecreco.validation.api import validate

    n_events = 2000 if quick else 20000
    recos = ["classical"] + (["default"] if "default" in available_reconstructors() else [])
    with tempfile.TemporaryDirectory(prefix="bench_physics_") as folder:
        folder = Path(folder)
        source = folder / "signal.root"
        simulate_file(source, n_events, seed=303, jobs=2, progress=False)
        predict_files([source], folder / "pred.root", recos, progress=False)
        summary = validate([folder / "pred.root"], folder / "report", recos=recos,
                           studies=["energy", "position", "angle", "timing"], progress=False,
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
