"""The ablation benchmark (benchmarks/bench_ablation.py): its variants are valid configs that
differ from the baseline in one switch each, it is left out of a plain run_all, and a tiny run
writes the table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_are_valid_and_differ_in_one_switch(tmp_path):
    from xecreco.train.config import load_config
    from xecreco.train.tasks import get_task

    bench = _load("bench_ablation")
    assert len(bench.VARIANTS) >= 8
    for required in ("baseline", "single_scale", "one_token_per_face", "no_light_summary",
                     "pe_sinusoidal", "pe_rope", "perceiver", "mc_dropout", "quantiles",
                     "physics_losses", "curriculum"):
        assert required in bench.VARIANTS
    task = get_task("regressor")
    base = task.resolved_model_config(load_config(bench.train_config(
        "baseline", tmp_path / "t.root", 100, 32, 1, 0)))
    seen = set()
    for variant in bench.VARIANTS:
        cfg = load_config(bench.train_config(variant, tmp_path / "t.root", 100, 32, 1, 0))
        assert cfg.run.max_steps == 100 and cfg.data.batch_size == 32
        assert cfg.run.seed == (1 if variant == "baseline_seed1" else 0)
        assert cfg.loss.reference_scale == "residual"  # the bundled recipe's scaling
        model = task.resolved_model_config(cfg)
        key = (repr(model), repr(cfg.loss), repr(cfg.curriculum), repr(cfg.augment),
               cfg.run.seed)
        assert key not in seen, variant  # every variant is a different experiment
        seen.add(key)
        if variant == "baseline":
            assert model == base
    run_all = _load("run_all")
    assert "ablation" in run_all.ON_DEMAND


@pytest.mark.slow
def test_tiny_ablation_writes_the_table(tmp_path):
    bench = _load("bench_ablation")
    records, meta = bench.ablation(["baseline", "pe_sinusoidal"], steps=3, batch_size=8,
                                   threads=1, train_events=120, test_events=60,
                                   data_dir=tmp_path / "data", out_dir=tmp_path / "runs",
                                   replicas=5)
    assert [r["variant"] for r in records] == ["baseline", "pe_sinusoidal"]
    assert all(r["events"] > 0 and r["energy_sigma68_pct"] > 0 for r in records)
    table = bench.markdown(records, meta)
    assert table.count("\n| ") == 3 and "pe_sinusoidal" in table


def test_merge_joins_parts_of_one_study_in_variant_order(tmp_path):
    import json

    bench = _load("bench_ablation")
    meta = {"steps": 10, "batch_size": 8, "threads": 1, "seed": 0, "train_events": 100,
            "train_seed": 1, "test_events": 50, "test_seed": 9001, "replicas": 5}
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(json.dumps({"meta": meta, "records": [{"variant": "pe_rope"}]}))
    b.write_text(json.dumps({"meta": meta, "records": [{"variant": "baseline"}]}))
    records, merged = bench.merge([a, b])
    assert [r["variant"] for r in records] == ["baseline", "pe_rope"] and merged == meta
    c.write_text(json.dumps({"meta": dict(meta, steps=20), "records": []}))
    with pytest.raises(SystemExit, match="steps"):
        bench.merge([a, c])
