"""Fast-simulation throughput: events/s writing ROOT files, with 1 and 2 worker processes, and
with pile-up; peak RSS of the main process and of the workers.

The DESIGN.md target is >= 1000 events/s (floor 300) on the 2-core machine without pile-up.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine_info, peak_rss_mb  # noqa: E402


def _children_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def _one(name: str, n: int, jobs: int, config, workdir: Path) -> dict:
    from xecreco.sim import simulate_file

    path = workdir / f"{name}.root"
    start = time.perf_counter()
    cpu0 = time.process_time()
    stats = simulate_file(path, n, config=config, seed=1, jobs=jobs, progress=False)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    record = {
        "name": name,
        "events": n,
        "jobs": jobs,
        "seconds": round(seconds, 3),
        "events_per_s": round(n / seconds, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "worker_peak_rss_mb": round(_children_peak_rss_mb(), 1) if jobs > 1 else None,
        "file_mb": round(path.stat().st_size / 2**20, 2),
        "pileup_photons": stats.get("pileup_photons", 0),
    }
    if jobs == 1:
        record["events_per_cpu_s"] = round(n / cpu, 1)
    path.unlink()
    return record


def run(quick: bool = False) -> list[dict]:
    """Measure simulation throughput; ``quick`` uses fewer events."""
    from xecreco.sim import SimConfig

    n = 500 if quick else 4000
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _one("sim_warmup", 50, 1, SimConfig(), workdir)
        results.append(_one("sim_signal_jobs1", n, 1, SimConfig(), workdir))
        results.append(_one("sim_signal_jobs2", n, 2, SimConfig(), workdir))
        results.append(_one("sim_signal_pileup_jobs1", n // 2, 1,
                            SimConfig(pileup_rate_hz=2.5e6), workdir))
    machine = machine_info()
    for record in results:
        record["machine"] = machine
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
