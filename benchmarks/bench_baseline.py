"""Side-by-side throughput against the build of 2026-11-27 (commit d9de2c2), issue 13.

Installs the baseline commit in a second environment under /tmp (``git archive`` of the commit,
with ``xecreco.models`` / ``validation`` / ``cli`` linked where the package layout expects them,
run with ``PYTHONPATH`` pointing there and the same venv), then measures in ONE run, on the same
simulated file (flat 15-60 MeV photons, like the bundled regressor's training sample):

- ``xecreco train configs/train-cpu.yaml`` (each build's own preset file, ``run.max_steps`` small,
  validation capped): the trainer's own events/s (optimizer steps with data loading, shuffle-buffer
  fills included; validation and checkpoints excluded), the steady rate of the log windows after
  the first (worker start-up, first buffer fill and compilation left out) and the wall time;
  ``--train-compiled`` adds the current build with ``run.compile=true``;
- ``xecreco predict FILE -o OUT -r default`` (ROOT to ROOT): the command's own events/s (model
  loading, reading, normalisation, inference and writing) and the wall time with interpreter start.

Runs alternate (baseline, now, baseline, now, ...) and the best of ``--repeats`` is kept, so
load from other users of the machine hits both builds alike. The same run measures the machine's
fp32 GEMM peak (best of several ``torch.mm`` of 2048 x 2048 matrices on all cores) and reports
the fraction of it that inference (model forward alone, and the whole predict command) and a
training step (3 x the forward FLOPs of :func:`xecreco.models.nn.flops.flops_per_event` per event)
reach. Outputs and both environments live under /tmp, never in the repository.

The same run times the levers on the model alone (interleaved, best of 4): bf16 autocast of
inference and of a training step and, with ``--with-compile`` (minutes of compilation),
torch.compile. ``--predict-only`` runs the predict comparison alone (no training runs, no
levers); the predict record also gives events per CPU-second of each build's command (its
process tree) and their ratio, every repeat's rate and the load average at start and end.
``--train-only`` runs the training comparison (and the GEMM peak) alone; ``--steps N`` sets the
optimizer steps per training run. Usage: ``python benchmarks/bench_baseline.py [--quick]
[--repeats N] [--base-dir DIR] [--with-compile] [--predict-only] [--train-only]
[--train-compiled] [--steps N]`` or ``python benchmarks/run_all.py --only baseline``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, machine_info, peak_rss_mb  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BASELINE_COMMIT = "d9de2c2"
DEFAULT_BASE_DIR = Path(tempfile.gettempdir()) / "xecreco-base"
#: package directories mapped into ``xecreco`` by pyproject's package-dir
_MAPPED = {"models": "models", "validation": "validation", "cli": "cli"}
TARGET_TRAIN_RATIO, FLOOR_TRAIN_RATIO = 3.0, 2.0
TARGET_PREDICT_RATIO, FLOOR_PREDICT_RATIO = 1.5, 1.3


def install_baseline(base_dir: Path, commit: str = BASELINE_COMMIT) -> Path:
    """The PYTHONPATH entry of the baseline build (extracted once under ``base_dir``)."""
    path_dir = base_dir / "path"
    stamp = base_dir / f"commit-{commit}"
    if stamp.is_file() and (path_dir / "xecreco" / "__init__.py").is_file():
        return path_dir
    if base_dir.exists():
        shutil.rmtree(base_dir)
    src = base_dir / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    shutil.copytree(src / "xecreco", path_dir / "xecreco")
    for name, folder in _MAPPED.items():
        (path_dir / "xecreco" / name).symlink_to(src / folder, target_is_directory=True)
    stamp.write_text(commit + "\n")
    return path_dir


def _environment(pythonpath: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def _simulate(path: Path, n_events: int) -> None:
    from xecreco.sim import SimConfig, simulate_file

    simulate_file(path, n_events, config=SimConfig(source="flat"), seed=13, progress=False)


def _train_once(config_file: Path, data: Path, run_dir: Path, env: dict, steps: int,
                extra: tuple = ()) -> dict:
    """One ``xecreco train`` run; ``extra``: more ``--set`` overrides (e.g. run.compile=true).

    ``events_per_s`` is the trainer's own rate over all steps (the first step's setup and any
    compilation included); ``steady_events_per_s`` the rate of the log windows after the first
    (``run.log_every`` = a quarter of the steps), i.e. without worker start-up, the first
    shuffle-buffer fill and compilation."""
    log_every = max(1, steps // 4)
    command = [sys.executable, "-m", "xecreco", "train", str(config_file), "-o", str(run_dir),
               "--set", f"data.train_files=[{data}]", "--set", f"run.max_steps={steps}",
               "--set", "run.progress=false", "--set", "data.max_val_events=256",
               "--set", f"run.log_every={log_every}", "--set", f"checkpoint.every_steps={steps}"]
    for override in extra:
        command += ["--set", override]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env, cwd=run_dir.parent)
    wall = time.perf_counter() - start
    result = json.loads((run_dir / "result.json").read_text())
    with open(run_dir / "train.csv", newline="") as handle:
        windows = [float(row["events_per_s"]) for row in csv.DictReader(handle)][1:]
    steady = len(windows) / sum(1.0 / w for w in windows) if windows else None
    return {"events_per_s": result["train_events_per_s"], "wall_s": wall,
            "events": result["train_events"], "steady_events_per_s": steady}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _predict_once(data: Path, out: Path, env: dict, n_events: int) -> dict:
    command = [sys.executable, "-m", "xecreco", "predict", str(data), "-o", str(out),
               "-r", "default", "--no-progress"]
    start, cpu = time.perf_counter(), _children_cpu_s()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=out.parent)
    if proc.returncode != 0 and "no-progress" in proc.stderr:  # a build without the flag
        command.remove("--no-progress")
        start, cpu = time.perf_counter(), _children_cpu_s()
        proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=out.parent)
    wall = time.perf_counter() - start
    cpu = _children_cpu_s() - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"predict failed: {proc.stderr.strip().splitlines()[-1:]}")
    match = re.search(r"; ([0-9.]+) events/s\)", proc.stdout + proc.stderr)
    out.unlink(missing_ok=True)
    return {"events_per_s": float(match.group(1)) if match else n_events / wall,
            "events_per_s_incl_start": n_events / wall, "wall_s": wall,
            "events_per_cpu_s": n_events / cpu if cpu > 0 else 0.0}


def gemm_peak_flops(size: int = 2048, repeats: int = 8) -> float:
    """Best fp32 FLOP/s of ``torch.mm`` of two (size x size) matrices on all intra-op threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best


def _model_rates(batch_train: int = 128, batch_infer: int = 1024, repeats: int = 4,
                 with_compile: bool = False) -> dict:
    """In-process events/s of the bundled regressor's forward (inference) and of a training
    step (forward, backward, AdamW) of the cpu preset; current build, all cores; fp32, bf16
    autocast and (``with_compile``, minutes of compilation) torch.compile, interleaved."""
    import torch

    from xecreco.models import bundled
    from xecreco.models.nn.flops import flops_per_event
    from xecreco.models.regressor.network import build_model

    from xecreco.train.acceleration import autocast, compile_module

    member = bundled.bundled_regressor().members[0]
    model = member.model
    channels = 3 if member.dead_flag else 2  # the dead flag is a third input channel
    x, v = torch.rand(batch_infer, 4760, channels), torch.zeros(batch_infer, 3)
    net = build_model("cpu").train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    xt, vt = x[:batch_train, :, :2].clone(), v[:batch_train].clone()  # the preset: 2 channels
    forward = {"": model, "_compiled": compile_module(model) if with_compile else None}
    train_forward = {"": net, "_compiled": compile_module(net) if with_compile else None}

    def infer(suffix, precision):
        with torch.inference_mode(), autocast(precision):
            forward[suffix](x, v)

    def step(suffix, precision):
        with autocast(precision):
            outputs = train_forward[suffix](xt, vt)
        loss = sum(o.float().square().mean() for o in outputs.values())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    variants = [("", "fp32"), ("", "bf16")] + ([("_compiled", "fp32")] if with_compile else [])
    rates = {"flops_per_event": flops_per_event(model, in_channels=channels)}
    for suffix, precision in variants:  # warm-up (and compilation)
        infer(suffix, precision)
        step(suffix, precision)
    best: dict[str, float] = {}
    for _ in range(repeats):  # interleaved, best of the repeats
        for suffix, precision in variants:
            tag = f"{precision}{suffix}"
            for kind, call, events in (("infer", infer, batch_infer),
                                       ("train_step", step, batch_train)):
                start = time.perf_counter()
                call(suffix, precision)
                rate = events / (time.perf_counter() - start)
                best[f"{kind}_{tag}"] = max(best.get(f"{kind}_{tag}", 0.0), rate)
    rates["infer_events_per_s"] = best["infer_fp32"]
    rates["train_step_events_per_s"] = best["train_step_fp32"]
    rates["levers"] = {k + "_events_per_s": v for k, v in best.items()}
    return rates


def _predict_record(table: dict, repeats: int, n_events: int, load_start, load_end) -> dict:
    """The predict comparison: best of the repeats of each build (the command's events/s, with
    interpreter start, and per CPU-second of the command's process tree) and their ratios."""
    def best(runs, key="events_per_s"):
        return max(r[key] for r in runs)

    base, now = best(table["baseline"]), best(table["now"])
    return {"name": "baseline_ratio_predict_default", "events_per_s": now,
            "baseline_events_per_s": base, "ratio_vs_baseline": now / base,
            "target_ratio": TARGET_PREDICT_RATIO, "floor_ratio": FLOOR_PREDICT_RATIO,
            "events_per_s_incl_start": best(table["now"], "events_per_s_incl_start"),
            "baseline_events_per_s_incl_start": best(table["baseline"],
                                                     "events_per_s_incl_start"),
            "events_per_cpu_s": best(table["now"], "events_per_cpu_s"),
            "baseline_events_per_cpu_s": best(table["baseline"], "events_per_cpu_s"),
            "ratio_per_cpu_s": (best(table["now"], "events_per_cpu_s")
                                / best(table["baseline"], "events_per_cpu_s")),
            "all_events_per_s": {k: [round(r["events_per_s"]) for r in v]
                                 for k, v in table.items()},
            "load_average_start": load_start, "load_average_end": load_end,
            "repeats": repeats, "events": n_events, "baseline_commit": BASELINE_COMMIT}


def _train_record(label: str, runs: list, base_runs: list, steps: int, n_events: int,
                  repeats: int, load_start, load_end) -> dict:
    """A training comparison: best of the repeats of each side (whole-run and steady rates,
    see :func:`_train_once`) and their ratios, every repeat's rates and the load average."""
    def best(table, key="events_per_s"):
        values = [r[key] for r in table if r.get(key)]
        return max(values) if values else None

    now, base = best(runs), best(base_runs)
    steady, base_steady = best(runs, "steady_events_per_s"), best(base_runs,
                                                                   "steady_events_per_s")
    return {"name": f"baseline_ratio_{label}", "events_per_s": now,
            "baseline_events_per_s": base, "ratio_vs_baseline": now / base,
            "steady_events_per_s": steady, "baseline_steady_events_per_s": base_steady,
            "steady_ratio_vs_baseline": steady / base_steady if steady and base_steady else None,
            "target_ratio": TARGET_TRAIN_RATIO, "floor_ratio": FLOOR_TRAIN_RATIO,
            "all_events_per_s": [round(r["events_per_s"]) for r in runs],
            "baseline_all_events_per_s": [round(r["events_per_s"]) for r in base_runs],
            "load_average_start": load_start, "load_average_end": load_end,
            "repeats": repeats, "events": n_events, "baseline_commit": BASELINE_COMMIT,
            "steps": steps}


def run(quick: bool = False, repeats: int | None = None, base_dir: Path = DEFAULT_BASE_DIR,
        keep: bool = False, with_compile: bool = False, predict_only: bool = False,
        train_only: bool = False, train_compiled: bool = False,
        steps: int | None = None) -> list[dict]:
    """Baseline vs current build: one record each for training, predict and the GEMM peak
    (``predict_only``: the predict record alone, the quick check of a predict change;
    ``train_only``: the training records and the GEMM peak; ``train_compiled``: also the
    current build with ``run.compile=true``, a record of its own)."""
    repeats = repeats or (1 if quick else 3)
    load_start = load_average()
    n_events = 2048 if quick else 6144
    steps = steps or (12 if quick else 40)
    base_path = install_baseline(Path(base_dir))
    builds = {"baseline": (_environment(base_path), base_path.parent / "src"),
              "now": (_environment(None), REPO)}
    work = Path(tempfile.mkdtemp(prefix="xecreco-bench-baseline-"))
    try:
        data = work / "flat.root"
        _simulate(data, n_events)
        variants = [(name, env, tree, ()) for name, (env, tree) in builds.items()]
        if train_compiled:
            variants.append(("now_compiled", builds["now"][0], REPO, ("run.compile=true",)))
        train = {name: [] for name, *_ in variants}
        predict = {name: [] for name in builds}
        for repeat in range(repeats):
            for name, env, tree, extra in variants:
                if predict_only:
                    break
                run_dir = work / f"train_{name}_{repeat}"
                train[name].append(_train_once(tree / "configs" / "train-cpu.yaml", data,
                                               run_dir, env, steps, extra))
                shutil.rmtree(run_dir, ignore_errors=True)
            for name, (env, _) in builds.items():
                if train_only:
                    break
                predict[name].append(_predict_once(data, work / f"pred_{name}.root", env,
                                                   n_events))
        load_end = load_average()
        if predict_only:
            return [_predict_record(predict, repeats, n_events, load_start, load_end)]
        peak = gemm_peak_flops()
        if train_only:
            from xecreco.models.nn.flops import flops_per_event
            from xecreco.models.regressor.network import build_model

            rates = {"flops_per_event": flops_per_event(build_model("cpu"))}
        else:
            rates = _model_rates(with_compile=with_compile)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    import torch

    from xecreco.train.acceleration import cpu_has_native_bf16

    flops = rates["flops_per_event"]
    machine = machine_info()
    records = []
    for name, label in (("now", "train_cpu_preset"), ("now_compiled", "train_cpu_preset_compiled")):
        if name in train:
            record = _train_record(label, train[name], train["baseline"], steps, n_events,
                                   repeats, load_start, load_end)
            record["fraction_of_fp32_peak"] = 3.0 * flops * record["events_per_s"] / peak
            if record["steady_events_per_s"]:
                record["steady_fraction_of_fp32_peak"] = (3.0 * flops
                                                          * record["steady_events_per_s"] / peak)
            records.append(record)
    if train_only:
        return records + [{"name": "baseline_fp32_peak", "gemm_gflop_per_s": peak / 1e9,
                           "torch_threads": torch.get_num_threads(), "flops_per_event": flops,
                           "machine": machine}]
    record = _predict_record(predict, repeats, n_events, load_start, load_end)
    record["fraction_of_fp32_peak"] = flops * record["events_per_s"] / peak
    records.append(record)
    records.append({
        "name": "baseline_fp32_peak", "gemm_gflop_per_s": peak / 1e9,
        "torch_threads": torch.get_num_threads(), "flops_per_event": flops,
        "model_infer_events_per_s": rates["infer_events_per_s"],
        "model_infer_fraction_of_peak": flops * rates["infer_events_per_s"] / peak,
        "model_train_step_events_per_s": rates["train_step_events_per_s"],
        "model_train_step_fraction_of_peak": 3.0 * flops * rates["train_step_events_per_s"] / peak,
        "cpu_native_bf16": cpu_has_native_bf16(), **rates["levers"],
        "peak_rss_mb": peak_rss_mb(), "machine": machine,
    })
    return records


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sample, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="alternating repeats (best kept)")
    parser.add_argument("--base-dir", type=Path, default=DEFAULT_BASE_DIR,
                        help="where the baseline build is extracted (default: /tmp/xecreco-base)")
    parser.add_argument("--keep", action="store_true", help="keep the sample and run folders")
    parser.add_argument("--with-compile", action="store_true",
                        help="also time torch.compile'd forward and training step (minutes)")
    parser.add_argument("--predict-only", action="store_true",
                        help="only the predict comparison (no training runs, no model levers)")
    parser.add_argument("--train-only", action="store_true",
                        help="only the training comparison and the GEMM peak")
    parser.add_argument("--train-compiled", action="store_true",
                        help="also train the current build with run.compile=true")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps per training run (default 40; 12 with --quick)")
    args = parser.parse_args()
    emit(run(quick=args.quick, repeats=args.repeats, base_dir=args.base_dir, keep=args.keep,
             with_compile=args.with_compile, predict_only=args.predict_only,
             train_only=args.train_only, train_compiled=args.train_compiled, steps=args.steps))
