"""Ablation of the regressor's research switches: same data, budget and seed, one fresh test sample.

On demand only (``benchmarks/run_all.py`` skips it unless ``--only ablation``); docs/ablation.md
describes it. Every variant is the ``cpu`` preset plus one change (:data:`VARIANTS`), trained on
the same simulated training file (flat 5-110 MeV, seed ``--train-seed``) for the same number of
optimizer steps with the same batch size, learning-rate schedule and run seed, then evaluated on
the same fresh sample of 52.83 MeV photons (seed ``--test-seed``, never trained on) through the
checkpoint reconstructor (``xecreco predict -r best.pt``). Resolutions use the validation
estimators with bootstrap errors: energy sigma68 of (E - E_true) / E_true (%) for all events and
for w >= 2 cm, u / v / w sigma68 (mm), time sigma68 (ps), the 68 % opening angle (mrad), and for
variants with ``<q>_err`` the 68 % coverage of the energy error. A second fresh sample with 2 %
scattered dead sensors and 3 dead readout groups (:data:`DEAD_TEST`), repaired by the bundled
inpainter, gives each headline's loss against the same events' clean values. The markdown table
goes to ``--markdown``.

Usage::

    python benchmarks/bench_ablation.py                       # all variants, default budget
    python benchmarks/bench_ablation.py --variants baseline,pe_rope --steps 100 --threads 1
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

#: dead-channel augmentation of the dead-channel variants (the test file's pattern, issue 14)
DEAD_AUGMENT = {"dead_fraction": 0.02, "dead_groups": 3}

#: variant -> (what it changes, training-config changes merged into the common config).
VARIANTS = {
    "baseline": ("cpu preset as bundled (geometric PE, multi-scale, 14 tokens, light summary)", {}),
    "baseline_seed1": ("the baseline with run seed + 1 (run-to-run spread of the same recipe)",
                       {"run": {"seed_offset": 1}}),
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
    "dead_augment": ("2 % dead + 3 dead readout groups as augmentation (left as sentinels)",
                     {"augment": DEAD_AUGMENT}),
    "dead_flag": ("that augmentation repaired by the neighbour average, plus the dead-flag input",
                  {"augment": {**DEAD_AUGMENT, "dead_fill": "neighbours"},
                   "model": {"dead_flag": True}}),
    "dead_flag_inpainter": ("2 % dead + 3 dead groups as augmentation repaired by the bundled "
                            "inpainter, plus the dead-flag input",
                            {"augment": {**DEAD_AUGMENT, "dead_fill": "inpainter"},
                             "model": {"dead_flag": True}}),
}


#: training spectrum of every variant (MeV), the bundled regressor's
#: (configs/bundled-regressor.yaml)
TRAIN_ENERGY_MEV = (5.0, 110.0)


def simulate(path: Path, n: int, seed: int, source: str, dead: dict | None = None) -> Path:
    """``n`` photons of ``source`` ("flat": :data:`TRAIN_ENERGY_MEV`; "signal": 52.83 MeV), kept
    when the file exists already; ``dead``: dead-channel fields of the sim config."""
    if not path.is_file():
        from xecreco.sim import simulate_file
        from xecreco.sim.config import SimConfig

        path.parent.mkdir(parents=True, exist_ok=True)
        config = SimConfig(source=source, energy_min_mev=TRAIN_ENERGY_MEV[0],
                           energy_max_mev=TRAIN_ENERGY_MEV[1], **(dead or {}))
        simulate_file(path, n, config, seed=seed, progress=False)
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
    seed += changes.get("run", {}).get("seed_offset", 0)
    changes = {k: v for k, v in changes.items() if k != "run"}
    if "curriculum" in changes:
        changes = _merge(changes, {"curriculum": {"steps": max(1, steps // 2)}})
    common = {
        "data": {"train_files": [str(train_file)], "val_fraction": 0.05,
                 "batch_size": batch_size, "step_events": 1024, "shuffle_buffer": 1024,
                 "scaling_events": 2048},
        "augment": {"dead_fraction": 0.01},
        "loss": {"reference_scale": "residual",
                 "weights": {"energy": 2.0, "time": 3.0, "w": 4.0}},
        "optim": {"lr": 2e-3, "warmup_steps": max(1, steps // 20)},
        "checkpoint": {"best_metric": "weighted", "eval_every_steps": steps,
                       "metric_weights": {"energy_sigma68_rel": 100.0, "time_sigma68": 10.0,
                                          "u_sigma68": 1.0, "v_sigma68": 1.0,
                                          "w_sigma68": 1.0, "angle_68": 0.5}},
        "run": {"max_steps": steps, "seed": seed, "threads": threads, "progress": False,
                "log_every": max(1, steps // 10)},
    }
    model = changes.get("model", {})
    cfg = _merge(common, {k: v for k, v in changes.items() if k != "model"})
    cfg["model"] = {"preset": "cpu", "overrides": model}
    return cfg


#: dead channels of the second test file: 2 % scattered plus 3 whole readout groups (issue 14
#: item 3), one fixed pattern drawn with this dead seed
DEAD_TEST = {"dead_fraction": 0.02, "dead_groups": 3, "dead_seed": 31}
#: headline resolutions whose dead-channel loss is reported (keys of :func:`resolutions`)
DEAD_HEADLINES = ("energy_deep_sigma68_pct", "u_sigma68_mm", "v_sigma68_mm", "w_sigma68_mm",
                  "time_sigma68_ps", "angle_68_mrad")


def _predict(reco, test_file: Path, branches=None, repair=None) -> tuple[dict, dict]:
    """(outputs, truth) of ``reco`` on every event of ``test_file``; ``branches`` renames the
    sensor branches (the clean values of a dead-channel file), ``repair`` maps each batch first."""
    from xecreco.io.reader import iterate_batches

    truth_names = ["energyTruth", "timeTruth", "uvwTruth", "emiAng"]
    outs, truth = [], {k: [] for k in truth_names}
    for batch in iterate_batches([test_file], truth=truth_names, step_events=1000,
                                 branches=branches):
        outs.append(reco.reconstruct(repair(batch) if repair else batch))
        for k in truth_names:
            truth[k].append(np.asarray(batch.truth[k], dtype=np.float64))
    out = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return out, {k: np.concatenate(v) for k, v in truth.items()}


def resolutions(out: dict, truth: dict, replicas: int) -> dict:
    """Headline resolutions of one prediction with bootstrap errors (see module doc)."""
    from xecreco.validation.estimators import quantile, sigma68
    from xecreco.validation.studies.angle import opening_angle_mrad

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


def dead_losses(reco, dead_file: Path, replicas: int) -> dict:
    """Losses (%) of the headline resolutions of the reconstructor ``reco`` on ``dead_file``'s
    events with its dead channels (:data:`DEAD_TEST`) repaired by the bundled inpainter, against
    the same events' clean values: ``dead_loss_<key>`` per headline and ``dead_loss_max_pct``
    (the worst)."""
    from xecreco.io.schema import BranchNames
    from xecreco.models.pipelines.inpaint import apply_dead_mask, resolve_inpainter
    from xecreco.validation.deadpatterns import file_dead_mask

    mask = file_dead_mask(dead_file)
    inpainter = resolve_inpainter(None)
    names = BranchNames()
    clean_branches = {**names.to_dict(), "npho": names.file_name("nphoClean"),
                      "time": names.file_name("timeClean")}
    clean = resolutions(*_predict(reco, dead_file, clean_branches), replicas)
    dead = resolutions(*_predict(reco, dead_file, clean_branches,
                                 lambda b: inpainter.inpaint(apply_dead_mask(b, mask))), replicas)
    r = {f"dead_loss_{k}": 100.0 * (dead[k] / clean[k] - 1.0) for k in DEAD_HEADLINES}
    r["dead_loss_max_pct"] = max(r.values())
    r["dead_sensors"] = int(mask.sum())
    return r


def evaluate(checkpoint, test_file: Path, replicas: int, dead_file: Path | None = None
             ) -> dict:
    """Resolutions of ``checkpoint`` (a path, or its checkpoint reconstructor) on ``test_file``
    (bootstrap errors; module doc), and with ``dead_file`` its dead-channel losses
    (:func:`dead_losses`)."""
    from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint

    reco = checkpoint if hasattr(checkpoint, "reconstruct") else \
        reconstructor_from_checkpoint(checkpoint, name="nn")
    r = resolutions(*_predict(reco, test_file), replicas)
    if dead_file is not None:
        r.update(dead_losses(reco, dead_file, replicas))
    return r


def run_variant(variant: str, train_file: Path, out_dir: Path, steps: int, batch_size: int,
                threads: int, seed: int) -> Path:
    """Train ``variant`` anew into ``out_dir/variant``; returns that run directory."""
    import torch

    from xecreco.train.api import train

    torch.set_num_threads(threads)
    run_dir = out_dir / variant
    if (run_dir / "last.pt").exists():  # a previous run of the same variant: train it anew
        import shutil

        shutil.rmtree(run_dir)
    train(train_config(variant, train_file, steps, batch_size, threads, seed), run_dir=run_dir)
    return run_dir


def variant_record(variant: str, run_dir: Path, test_file: Path, dead_file: Path | None,
                   replicas: int) -> dict:
    """The table record of a trained variant: its run's size and throughput (``result.json``)
    and the evaluation of its ``best.pt`` (:func:`evaluate`)."""
    from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint

    result = json.loads((run_dir / "result.json").read_text())
    reco = reconstructor_from_checkpoint(run_dir / "best.pt", name="nn")  # loaded once
    model = reco.members[0].model
    record = {"name": f"ablation_{variant}", "variant": variant,
              "change": VARIANTS[variant][0], "steps": result["total_steps"],
              "events_per_s": result["train_events_per_s"],
              "train_events": result["train_events"],
              "parameters": int(sum(p.numel() for p in model.parameters()))}
    record.update(evaluate(reco, test_file, replicas, dead_file))
    return record


def _cell(record: dict, key: str, digits: int = 3) -> str:
    value, error = record.get(key), record.get(key + "_err")
    if value is None:
        return "—"
    if error is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} ± {error:.1g}"


def _dead_cell(record: dict) -> str:
    """The worst dead-channel loss and the headline it hits (or a dash without a dead file)."""
    worst = record.get("dead_loss_max_pct")
    if worst is None:
        return "—"
    key = max(DEAD_HEADLINES, key=lambda k: record[f"dead_loss_{k}"])
    return f"{worst:+.1f} ({key.split('_')[0]})"


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
        "| u σ68 (mm) | v σ68 (mm) | w σ68 (mm) | t σ68 (ps) | angle 68 % (mrad) "
        "| E coverage 68 % | dead-channel loss, worst (%) | train ev/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
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
            f"| {_dead_cell(r)} | {r['events_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def ablation(variants, steps: int, batch_size: int, threads: int, train_events: int,
             test_events: int, data_dir: Path, out_dir: Path, seed: int = 0,
             train_seed: int = 1, test_seed: int = 9001, replicas: int = 40,
             dead: bool = True, train_variants: bool = True) -> tuple:
    """Train and evaluate ``variants``; returns (records, meta for :func:`markdown`).

    ``dead``: also score the dead-channel losses on a second fresh file (seed ``test_seed + 1``,
    :data:`DEAD_TEST`). ``train_variants=False`` only evaluates the runs already in ``out_dir``
    (e.g. with a new evaluation), failing for a variant that has none."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(VARIANTS)}")
    if not train_variants:
        missing = [v for v in variants if not (out_dir / v / "result.json").is_file()]
        if missing:
            raise SystemExit(f"{out_dir}: no finished run of {', '.join(missing)}; train them "
                             "first (leave out --evaluate-only)")
    lo, hi = (int(e) for e in TRAIN_ENERGY_MEV)
    train_file = simulate(data_dir / f"ablation_train_flat{lo}_{hi}_{train_events}_s{train_seed}"
                          ".root", train_events, train_seed, "flat")
    test_file = simulate(data_dir / f"ablation_test_signal_{test_events}_s{test_seed}.root",
                         test_events, test_seed, "signal")
    dead_file = None
    if dead:
        dead_file = simulate(data_dir / f"ablation_test_signal_dead_{test_events}_s"
                             f"{test_seed + 1}.root", test_events, test_seed + 1, "signal",
                             DEAD_TEST)
    records = []
    for variant in variants:
        print(f"[ablation] {variant} ...", file=sys.stderr, flush=True)
        run_dir = out_dir / variant
        if train_variants:
            run_variant(variant, train_file, out_dir, steps, batch_size, threads, seed)
        records.append(variant_record(variant, run_dir, test_file, dead_file, replicas))
    info = machine_info()
    meta = {"steps": steps, "batch_size": batch_size, "threads": threads, "seed": seed,
            "train_events": train_events, "train_seed": train_seed, "test_events": test_events,
            "test_seed": test_seed, "replicas": replicas,
            "dead_test": DEAD_TEST if dead else None,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{info.get('cpu')}, {info.get('cores')} cores, torch {info.get('torch')}"}
    for record in records:
        record["peak_rss_mb"] = peak_rss_mb()
    return records, meta


def merge(paths: list[Path]) -> tuple:
    """Records and meta of several ``results.json`` of one study (variants split over processes
    with ``--variants``): the budgets and samples must agree; rows follow :data:`VARIANTS`."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    keys = ("steps", "batch_size", "threads", "seed", "train_events", "train_seed",
            "test_events", "test_seed", "replicas")
    for path, run in zip(paths[1:], runs[1:]):
        differ = [k for k in keys if run["meta"][k] != runs[0]["meta"][k]]
        if differ:
            raise SystemExit(f"{path}: differs from {paths[0]} in {', '.join(differ)}; merge only "
                             "parts of one study")
    records = {r["variant"]: r for run in runs for r in run["records"]}
    order = [v for v in VARIANTS if v in records]
    return [records[v] for v in order], runs[0]["meta"]


def run(quick: bool = False) -> list[dict]:
    """Benchmark-record form for ``run_all.py --only ablation`` (quick: 2 variants, 100 steps)."""
    import tempfile

    variants = ["baseline", "pe_rope"] if quick else list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="xecreco-ablation-") as tmp:
        records, _meta = ablation(variants, 100 if quick else 2500, 32 if quick else 128, 1,
                                  1500 if quick else 120000, 1000 if quick else 10000,
                                  Path(tmp) / "data", Path(tmp) / "runs")
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=2500, help="optimizer steps per variant")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--train-events", type=int, default=120000)
    parser.add_argument("--test-events", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0, help="run seed (weights, data order)")
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--test-seed", type=int, default=9001)
    parser.add_argument("--replicas", type=int, default=40, help="bootstrap replicas")
    parser.add_argument("--data-dir", type=Path, default=Path("benchmarks/out/ablation/data"))
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/out/ablation/runs"))
    parser.add_argument("--markdown", type=Path, default=Path("benchmarks/out/ablation/results.md"))
    parser.add_argument("--json", action="store_true", help="also print the records (BENCH lines)")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="evaluate the finished runs in --out-dir again, without training")
    parser.add_argument("--no-dead", action="store_true",
                        help="skip the dead-channel test file and its losses")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS_JSON",
                        help="only merge the results.json of parts of one study into --markdown")
    args = parser.parse_args()
    if args.merge:
        records, meta = merge(args.merge)
    else:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
        records, meta = ablation(variants, args.steps, args.batch_size, args.threads,
                                 args.train_events, args.test_events, args.data_dir,
                                 args.out_dir, args.seed, args.train_seed, args.test_seed,
                                 args.replicas, dead=not args.no_dead,
                                 train_variants=not args.evaluate_only)
    table = markdown(records, meta)
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((args.markdown, table),
                       (args.markdown.with_suffix(".json"),
                        json.dumps({"meta": meta, "records": records}, indent=2, default=float))):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    print(table)
    if args.json:
        emit(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
