"""Predict peak memory: flat in the number of events.

Simulates one signal file (20k events; 2k with --quick) and predicts it once and ten times over
(the same file listed ten times: 200k events) in separate processes, each with a fresh peak RSS.
Reconstruction: the bundled ``default`` regressor when installed, else ``classical``.
Target: peak RSS flat in the number of events, < 1.5 GB at 200k events.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit  # noqa: E402

CHILD = """
import json, sys, time, resource
from xecreco.models.pipelines.predict import predict_files
inputs, output, reco = json.loads(sys.argv[1])
start = time.perf_counter()
summary = predict_files(inputs, output, [reco], progress=False)
print(json.dumps({"events": summary["events"], "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _predict_in_child(inputs: list[str], output: str, reco: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([inputs, output, reco])],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict]:
    from xecreco.models import available_reconstructors
    from xecreco.sim import simulate_file

    n_events = 2000 if quick else 20000
    reco = "default" if "default" in available_reconstructors() else "classical"
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as folder:
        source = str(Path(folder) / "signal.root")
        simulate_file(source, n_events, seed=21, jobs=2, progress=False)
        for copies in (1, 10):
            got = _predict_in_child([source] * copies, str(Path(folder) / f"pred{copies}.root"), reco)
            results.append({
                "name": f"predict_memory_{reco}_{got['events']}ev",
                "events": got["events"],
                "events_per_s": got["events"] / got["seconds"],
                "peak_rss_mb": got["peak_rss_mb"],
            })
    results.append({
        "name": "predict_memory_ratio_10x_events",
        "rss_ratio": results[1]["peak_rss_mb"] / results[0]["peak_rss_mb"],
    })
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
