"""Ablation of the regressor's research switches: same data, budget and seed, one fresh test sample.

On demand only (``benchmarks/run_all.py`` skips it unless ``--only ablation``); docs/ablation.md
describes it. Every variant is the ``cpu`` preset plus one change (:data:`VARIANTS`), trained on
the same simulated training file (flat 15-60 MeV, seed ``--train-seed``) for the same number of
optimizer steps with the same batch size, learning-rate schedule and run seed, then evaluated on
the same fresh sample (seed ``--test-seed``, never trained on) through the checkpoint
reconstructor (``xecreco predict -r best.pt``). Resolutions use the validation estimators with
bootstrap errors: energy sigma68 of (E - E_true) / E_true (%) for all events and for w >= 2 cm,
u / v / w sigma68 (mm), time sigma68 (ps), the 68 % opening angle (mrad), and for variants with
``<q>_err`` the 68 % coverage of the energy error. The markdown table goes to ``--markdown``.

Usage::

    python benchmarks/bench_ablation.py                       # all variants, default budget
    python benchmarks/bench_ablation.py --variants baseline,rope --steps 100 --threads 1
    python benchmarks/run_all.py --only ablation [--quick]    # as a benchmark record
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_info, peak_rss_mb  # noqa: E402

#: variant -> (what it changes, training-config changes merged into the common config).
VARIANTS = {
    "baseline": ("cpu preset as bundled (geometric PE, multi-scale, 14 tokens, light summary)", {}),
    "pe_sinusoidal": ("fixed sin/cos face-index encoding instead of the geometric one",
                      {"model": {"fusion": {"position": "sinusoidal"}}}),
    "pe_rope": ("rotary encoding by the face centroids (relative face displacements)",
                {"model": {"fusion": {"position": "rope"}}}),
    "pe_none": ("no token position encoding (learned per-token embedding only)",
                {"model": {"fusion": {"position": "none"}}}),
    "perceiver": ("8 latents cross-attending to every face cell and token",
                  {"model": {"fusion": {"type": "perceiver", "latents": 8}}}),
    "single_scale": ("no multi-scale tokens (last stage only: 10 tokens)",
                     {"model": {"encoder": {"multiscale": False}}}),
    "one_token_per_face": ("1 token per face (6, + 4 multi-scale)",
                           {"model": {"encoder": {"tokens": {"inner": 1, "outer": 1}}}}),
    "more_inner_tokens": ("8 inner and 4 outer tokens (20 in all)",
                          {"model": {"encoder": {"tokens": {"inner": 8, "outer": 4}}}}),
    "no_light_summary": ("no light summary (no light/centroid references)",
                         {"model": {"summary": None}}),
    "mc_dropout": ("dropout 0.1 in fusion and heads, 8 MC-dropout passes in predict",
                   {"model": {"dropout": 0.1, "mc_samples": 8}}),
    "quantiles": ("15.87/84.13 % quantile heads (pinball loss)", {"model": {"quantiles": True}}),
    "physics_losses": ("timing-consistency (0.01 / ns^2) and energy-conservation (1.0) terms",
                       {"loss": {"timing": 0.01, "energy_conservation": 1.0}}),
    "curriculum": ("easy (high-energy, central) events first, all after half the steps",
                   {"curriculum": {"enabled": True, "start": 0.5}}),
}


def simulate(path: Path, n: int, seed: int) -> Path:
    """A flat 15-60 MeV sample of ``n`` photons (kept when the file exists already)."""
    if not path.is_file():
        from xecreco.sim import simulate_file
        from xecreco.sim.config import SimConfig

        path.parent.mkdir(parents=True, exist_ok=True)
        simulate_file(path, n, SimConfig(source="flat"), seed=seed, progress=False)
    return path


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def train_config(variant: str, train_file: Path, steps: int, batch_size: int, threads: int,
                 seed: int) -> dict:
    """The training config of ``variant`` (everything but its change is common)."""
    changes = VARIANTS[variant][1]
    if "curriculum" in changes:
        changes = _merge(changes, {"curriculum": {"steps": max(1, steps // 2)}})
    common = {
        "data": {"train_files": [str(train_file)], "val_fraction": 0.05,
                 "batch_size": batch_size, "step_events": 1024, "shuffle_buffer": 1024,
                 "scaling_events": 2048},
        "augment": {"dead_fraction": 0.01},
        "optim": {"lr": 2e-3, "warmup_steps": max(1, steps // 20)},
        "checkpoint": {"best_metric": "weighted", "eval_every_steps": steps},
        "run": {"max_steps": steps, "seed": seed, "threads": threads, "progress": False,
                "log_every": max(1, steps // 10)},
    }
    model = changes.get("model", {})
    cfg = _merge(common, {k: v for k, v in changes.items() if k != "model"})
    cfg["model"] = {"preset": "cpu", "overrides": model}
    return cfg


def evaluate(checkpoint: Path, test_file: Path, replicas: int) -> dict:
    """Resolutions of ``checkpoint`` on ``test_file`` with bootstrap errors (see module doc)."""
    from xecreco.io.reader import iterate_batches
    from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint
    from xecreco.validation.estimators import quantile, sigma68
    from xecreco.validation.studies.angle import opening_angle_mrad

    reco = reconstructor_from_checkpoint(checkpoint, name="nn")
    truth_names = ["energyTruth", "timeTruth", "uvwTruth", "emiAng"]
    outs, truth = [], {k: [] for k in truth_names}
    for batch in iterate_batches([test_file], truth=truth_names, step_events=1000):
        outs.append(reco.reconstruct(batch))
        for k in truth_names:
            truth[k].append(np.asarray(batch.truth[k], dtype=np.float64))
    out = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    truth = {k: np.concatenate(v) for k, v in truth.items()}
    ok = out["status"] == 0
    e_true = truth["energyTruth"]
    rel = 100.0 * (out["energy"] - e_true) / e_true
    deep = truth["uvwTruth"][:, 2] >= 2.0
    r: dict = {"events": int(ok.sum())}

    def est(key, values, scale=1.0):
        e = sigma68(values, replicas=replicas)
        r[key] = None if e.value is None else e.value * scale
        r[key + "_err"] = None if e.error is None else e.error * scale

    est("energy_sigma68_pct", rel[ok])
    est("energy_deep_sigma68_pct", rel[ok & deep])
    r["energy_median_pct"] = float(np.median(rel[ok]))
    for i, q in enumerate("uvw"):
        est(f"{q}_sigma68_mm", (out[q] - truth["uvwTruth"][:, i])[ok], 10.0)
    est("time_sigma68_ps", (out["time"] - truth["timeTruth"])[ok], 1000.0)
    angle = opening_angle_mrad(out["theta"][ok], out["phi"][ok], truth["emiAng"][ok, 0],
                               truth["emiAng"][ok, 1])
    e = quantile(angle, 0.6827, replicas=replicas)
    r["angle_68_mrad"], r["angle_68_mrad_err"] = e.value, e.error
    if "energy_err" in out:
        pull = (out["energy"] - e_true)[ok] / out["energy_err"][ok]
        r["energy_coverage68"] = float(np.mean(np.abs(pull) <= 1.0))
    return r


def run_variant(variant: str, train_file: Path, test_file: Path, out_dir: Path, steps: int,
                batch_size: int, threads: int, seed: int, replicas: int) -> dict:
    import torch

    from xecreco.train.api import train

    torch.set_num_threads(threads)
    run_dir = out_dir / variant
    if (run_dir / "last.pt").exists():  # a previous run of the same variant: train it anew
        import shutil

        shutil.rmtree(run_dir)
    cfg = train_config(variant, train_file, steps, batch_size, threads, seed)
    start = time.perf_counter()
    result = train(cfg, run_dir=run_dir)
    seconds = time.perf_counter() - start
    from xecreco.train.checkpoint import load_checkpoint

    from xecreco.models.regressor.network import build_model

    model = build_model(load_checkpoint(run_dir / "best.pt")["model_config"])
    record = {"name": f"ablation_{variant}", "variant": variant,
              "change": VARIANTS[variant][0], "steps": steps, "batch_size": batch_size,
              "train_seconds": seconds, "events_per_s": result["train_events_per_s"],
              "train_events": result["train_events"],
              "parameters": int(sum(p.numel() for p in model.parameters()))}
    record.update(evaluate(run_dir / "best.pt", test_file, replicas))
    return record


def _cell(record: dict, key: str, digits: int = 3) -> str:
    value, error = record.get(key), record.get(key + "_err")
    if value is None:
        return "—"
    if error is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {error:.1g}"


def markdown(records: list[dict], meta: dict) -> str:
    """The results table (one row per variant) with the run's budget."""
    lines = [
        f"Budget: {meta['steps']} steps x {meta['batch_size']} events, {meta['threads']} "
        f"thread(s), run seed {meta['seed']}; training file {meta['train_events']} photons "
        f"(seed {meta['train_seed']}), test file {meta['test_events']} fresh photons (seed "
        f"{meta['test_seed']}); {meta['date']}, {meta['machine']}. Errors: bootstrap "
        f"({meta['replicas']} replicas).",
        "",
        "| variant | change | params | E σ68 (%) | E σ68 w≥2 cm (%) | E median (%) "
        "| u σ68 (mm) | v σ68 (mm) | w σ68 (mm) | t σ68 (ps) | angle 68 % (mrad) | E coverage 68 % "
        "| train ev/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        coverage = r.get("energy_coverage68")
        lines.append(
            f"| {r['variant']} | {r['change']} | {r['parameters']:,} "
            f"| {_cell(r, 'energy_sigma68_pct')} | {_cell(r, 'energy_deep_sigma68_pct')} "
            f"| {r['energy_median_pct']:+.2f} | {_cell(r, 'u_sigma68_mm')} "
            f"| {_cell(r, 'v_sigma68_mm')} | {_cell(r, 'w_sigma68_mm')} "
            f"| {_cell(r, 'time_sigma68_ps')} | {_cell(r, 'angle_68_mrad')} "
            f"| {'—' if coverage is None else f'{100 * coverage:.1f} %'} "
            f"| {r['events_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def ablation(variants, steps: int, batch_size: int, threads: int, train_events: int,
             test_events: int, data_dir: Path, out_dir: Path, seed: int = 0,
             train_seed: int = 1, test_seed: int = 9001, replicas: int = 40) -> tuple:
    """Train and evaluate ``variants``; returns (records, markdown table)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(VARIANTS)}")
    train_file = simulate(data_dir / f"ablation_train_{train_events}_s{train_seed}.root",
                          train_events, train_seed)
    test_file = simulate(data_dir / f"ablation_test_{test_events}_s{test_seed}.root",
                         test_events, test_seed)
    records = []
    for variant in variants:
        print(f"[ablation] {variant} ...", file=sys.stderr, flush=True)
        records.append(run_variant(variant, train_file, test_file, out_dir, steps, batch_size,
                                   threads, seed, replicas))
    info = machine_info()
    meta = {"steps": steps, "batch_size": batch_size, "threads": threads, "seed": seed,
            "train_events": train_events, "train_seed": train_seed, "test_events": test_events,
            "test_seed": test_seed, "replicas": replicas,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{info.get('cpu')}, {info.get('cores')} cores, torch {info.get('torch')}"}
    for record in records:
        record["peak_rss_mb"] = peak_rss_mb()
    return records, markdown(records, meta)


def run(quick: bool = False) -> list[dict]:
    """Benchmark-record form for ``run_all.py --only ablation`` (quick: 2 variants, 100 steps)."""
    import tempfile

    variants = ["baseline", "pe_rope"] if quick else list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="xecreco-ablation-") as tmp:
        records, _ = ablation(variants, 100 if quick else 2000, 32 if quick else 128, 1,
                              1500 if quick else 40000, 1000 if quick else 10000,
                              Path(tmp) / "data", Path(tmp) / "runs")
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per variant")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train-events", type=int, default=40000)
    parser.add_argument("--test-events", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0, help="run seed (weights, data order)")
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--test-seed", type=int, default=9001)
    parser.add_argument("--replicas", type=int, default=40, help="bootstrap replicas")
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/out/ablation/data"))
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/out/ablation/runs"))
    parser.add_argument("--markdown", type=Path, default=Path("benchmarks/out/ablation/results.md"))
    parser.add_argument("--json", action="store_true", help="also print the records (BENCH lines)")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    records, table = ablation(variants, args.steps, args.batch_size, args.threads,
                              args.train_events, args.test_events, args.data_dir, args.out_dir,
                              args.seed, args.train_seed, args.test_seed, args.replicas)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.markdown.with_name(f".{args.markdown.name}.tmp")
    tmp.write_text(table)
    tmp.replace(args.markdown)
    (args.markdown.with_suffix(".json")).write_text(json.dumps(records, indent=2, default=float))
    print(table)
    if args.json:
        emit(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
