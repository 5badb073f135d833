"""Fast-simulation throughput: events/s writing ROOT files, with 1 and 2 worker processes, and
with pile-up; peak RSS of the main process and of the workers.

The DESIGN.md target is >= 1000 events/s (floor 300) on the 2-core machine without pile-up.

``python benchmarks/bench_sim.py --versus REF [--events N] [--rounds R]`` measures this tree
against the build of git commit REF side by side: ``git archive REF xecreco`` is unpacked into a
temporary folder and each round runs the same ``simulate_file(N events, seed 1, jobs 1)`` once
per build, alternately, each in a fresh single-threaded process (interleaved, so the load of a
shared machine affects both alike). It prints wall-clock events/s and events per CPU-second of
every run, their medians and the ratio.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
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


_MEASURE = """
import json, sys, time
from xecreco.sim import SimConfig, simulate_file
n, path = int(sys.argv[1]), sys.argv[2]
simulate_file(path, 50, SimConfig(), seed=0, progress=False)
start, cpu = time.perf_counter(), time.process_time()
simulate_file(path, n, SimConfig(), seed=1, jobs=1, progress=False)
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({"events_per_s": n / wall, "events_per_cpu_s": n / cpu}))
"""


def versus(ref: str, n: int = 2000, rounds: int = 3) -> dict:
    """Interleaved side-by-side throughput of this tree and of git commit ``ref``."""
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "ref"
        old.mkdir()
        archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "xecreco"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        builds = {ref: str(old), "this tree": str(repo)}
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   MKL_NUM_THREADS="1")
        runs: dict = {name: [] for name in builds}
        for _ in range(rounds):
            for name, root in builds.items():
                out = subprocess.run(
                    [sys.executable, "-c", _MEASURE, str(n), str(Path(tmp) / "o.root")],
                    check=True, capture_output=True, text=True, cwd=tmp,
                    env=dict(env, PYTHONPATH=root)).stdout
                runs[name].append(json.loads(out.splitlines()[-1]))
    summary = {"events": n, "rounds": rounds, "machine": machine_info(), "runs": runs}
    for key in ("events_per_s", "events_per_cpu_s"):
        med = {name: statistics.median(r[key] for r in rs) for name, rs in runs.items()}
        summary[key] = {name: round(v, 1) for name, v in med.items()}
        summary[key + "_ratio"] = round(med["this tree"] / med[ref], 3)
    return summary


if __name__ == "__main__":
    if "--versus" in sys.argv:
        args = sys.argv[1:]

        def _arg(flag, default):
            return type(default)(args[args.index(flag) + 1]) if flag in args else default

        print(json.dumps(versus(_arg("--versus", "HEAD"), _arg("--events", 2000),
                                _arg("--rounds", 3)), indent=1))
    else:
        emit(run(quick="--quick" in sys.argv))
