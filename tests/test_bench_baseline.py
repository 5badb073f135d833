"""The training record of benchmarks/bench_baseline.py: best of the repeats and its ratios."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_baseline import _train_record  # noqa: E402


def test_train_record_ratios_use_the_best_repeat_of_each_side():
    now = [{"events_per_s": 500.0, "steady_events_per_s": 610.0},
           {"events_per_s": 540.0, "steady_events_per_s": 660.0}]
    base = [{"events_per_s": 450.0, "steady_events_per_s": None},
            {"events_per_s": 400.0, "steady_events_per_s": 550.0}]
    record = _train_record("train_cpu_preset", now, base, 40, 6144, 2, 4.5, 5.0)
    assert record["name"] == "baseline_ratio_train_cpu_preset"
    assert record["ratio_vs_baseline"] == pytest.approx(540.0 / 450.0)
    assert record["steady_ratio_vs_baseline"] == pytest.approx(660.0 / 550.0)
    assert record["all_events_per_s"] == [500, 540]
    assert record["baseline_all_events_per_s"] == [450, 400]
    assert (record["target_ratio"], record["floor_ratio"]) == (3.0, 2.0)
