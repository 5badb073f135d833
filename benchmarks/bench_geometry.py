"""Solid-angle throughput: Omega / 4 pi of all 4760 sensors from the ~25 shower-centroid points
of one simulated event, as the fast simulation and the classical fit call it.

Reports events/s (one event = 25 points x 4760 sensors) and sensor-point evaluations/s for the
default path in float64 and float32, and for the exact formulas everywhere (for the ratio).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_info, peak_rss_mb  # noqa: E402

from xecreco.geometry import (  # noqa: E402
    N_SENSORS,
    design_geometry,
    solid_angle_fraction,
    uvw_to_xyz,
)

POINTS_PER_EVENT = 25


def _events(n_events: int, seed: int = 0) -> list[np.ndarray]:
    """Per event, 25 points along a shower axis starting at a random conversion point (cm)."""
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n_events):
        start = np.array([rng.uniform(-20, 20), rng.uniform(-60, 60), rng.exponential(5.4)])
        depth = np.linspace(0.0, 20.0, POINTS_PER_EVENT)
        uvw = start + depth[:, None] * np.array([0.0, 0.0, 1.0])
        uvw[:, 2] = np.clip(uvw[:, 2], 0.05, 41.0)
        events.append(uvw_to_xyz(uvw))
    return events


def _measure(name: str, events: list[np.ndarray], **kwargs) -> dict:
    solid_angle_fraction(events[0], **kwargs)  # warm caches
    start_wall = time.perf_counter()
    start_cpu = time.process_time()
    for points in events:
        solid_angle_fraction(points, **kwargs)
    wall = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    n = len(events)
    return {
        "name": name,
        "events_per_s": n / wall,
        "events_per_cpu_s": n / cpu,
        "evaluations_per_s": n * POINTS_PER_EVENT * N_SENSORS / wall,
        "points_per_event": POINTS_PER_EVENT,
        "n_events": n,
        "peak_rss_mb": peak_rss_mb(),
    }


def run(quick: bool = False) -> list[dict]:
    """Solid-angle benchmarks (see the module docstring)."""
    design_geometry()
    events = _events(50 if quick else 400)
    results = [
        _measure("solid_angle_float64", events),
        _measure("solid_angle_float32", events, dtype=np.float32),
        _measure(
            "solid_angle_exact_everywhere",
            events[: max(5, len(events) // 20)],
            exact_within=np.inf,
        ),
    ]
    base = results[0]["events_per_s"]
    for result in results:
        result["speed_vs_float64"] = result["events_per_s"] / base
        result["machine"] = machine_info()
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
