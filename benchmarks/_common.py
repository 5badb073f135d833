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


def emit(results: list[dict]) -> None:
    """Print results as JSON lines (what run_all.py collects)."""
    for result in results:
        print("BENCH " + json.dumps(result))
