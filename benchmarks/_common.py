"""Helpers shared by the benchmark scripts: machine description, peak RSS, result records.

Every ``benchmarks/bench_*.py`` defines ``run(quick: bool = False) -> list[dict]``; each dict is
one measurement with at least ``name`` and, where it applies, ``events_per_s`` and
``peak_rss_mb``. ``benchmarks/run_all.py`` runs each script in its own process (so peak RSS is
that benchmark's own) and collects ``benchmarks/results.json`` and a markdown table.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from contextlib import contextmanager


def machine_info() -> dict:
    """CPU model, core count, memory and Python/torch versions of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gb, "python": sys.version.split()[0]}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def load_average() -> float | None:
    """The machine's 1-minute load average now (None where the OS does not give it); other
    users' load depresses wall-clock rates, so benchmarks record it at start and end."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@contextmanager
def timed():
    """Context manager yielding a dict whose ``seconds`` is filled on exit (wall clock)."""
    record = {}
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = time.perf_counter() - start


def timed_training(config: dict, run_dir) -> dict:
    """Run ``xecreco.train.api.train(config)`` in ``run_dir`` and measure it: ``{"events_per_s"
    (the trainer's), "events_per_s_after_first_step" (harmonic mean of the logged steps without
    the warm-up step), "wall_s_incl_setup", "peak_rss_mb", "torch_threads", "machine"}``."""
    import csv
    from pathlib import Path

    import torch

    from xecreco.train.api import train

    start = time.perf_counter()
    result = train(config, run_dir=run_dir)
    wall = time.perf_counter() - start
    with open(Path(run_dir) / "train.csv", newline="") as handle:
        per_step = [float(row["events_per_s"]) for row in csv.DictReader(handle)]
    steady = per_step[1:] or per_step
    return {"events_per_s": result["train_events_per_s"],
            "events_per_s_after_first_step": len(steady) / sum(1.0 / v for v in steady),
            "wall_s_incl_setup": wall, "peak_rss_mb": peak_rss_mb(),
            "torch_threads": torch.get_num_threads(), "machine": machine_info()}


def emit(results: list[dict]) -> None:
    """Print results as JSON lines (what run_all.py collects)."""
    for result in results:
        print("BENCH " + json.dumps(result))
