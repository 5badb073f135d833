"""Property-style fuzz of the inputs users hand to xecreco: mutated ROOT files, checkpoints and
YAML configs, fed to the reader, the inspection, reconstructors (classical and checkpoints),
checkpoint loading, the config loaders and, for a sample, the CLI.

The property, for every case: a correct result, or a :class:`UserError` of one line; never
another exception type, never a hang (each case runs under an alarm). Cases are drawn from a
seeded generator, so every run is the same; the default suite runs a few dozen, the slow one a
few hundred.
"""

from __future__ import annotations

import os
import pickle
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import uproot
import yaml

from xecreco.errors import UserError

torch.set_num_threads(1)

#: Seconds one case may take before it counts as a hang.
CASE_TIMEOUT_S = 60
#: Events in the base ROOT file.
BASE_EVENTS = 6
ROOT_KINDS = ("truncate", "flip", "drop", "rename", "retype", "values", "length", "empty_tree",
              "not_root", "tree_name")
CKPT_KINDS = ("truncate", "flip", "foreign_pickle", "plain_dict", "missing_key", "wrong_shape",
              "wrong_task", "bad_model_config", "bad_normalization", "bad_scaling", "root_file",
              "text", "empty")
YAML_KINDS = ("wrong_type", "unknown_key", "garbage", "empty", "deep", "scalar", "tag",
              "huge_number", "null_section", "bad_yaml")


class _Hang(Exception):
    pass


@contextmanager
def _deadline(seconds: int):
    def alarm(signum, frame):
        raise _Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _outcome(call) -> str:
    """'ok' or 'user error'; any other exception (or a hang) fails the test with the case."""
    with _deadline(CASE_TIMEOUT_S):
        try:
            call()
        except UserError as exc:
            text = str(exc)
            assert text and "\n" not in text.strip(), f"UserError of several lines: {text!r}"
            return "user error"
    return "ok"


# ------------------------------------------------------------------------------- ROOT files


@pytest.fixture(scope="module")
def base_arrays(sim_file_small) -> dict:
    with uproot.open(sim_file_small) as handle:
        arrays = handle["tree"].arrays(library="np", entry_stop=BASE_EVENTS)
    return {k: v for k, v in arrays.items() if v.dtype != object}


def _write_root(path: Path, arrays: dict, tree: str = "tree") -> None:
    with uproot.recreate(path) as handle:
        handle.mktree(tree, {k: (v.dtype, v.shape[1:]) for k, v in arrays.items()})
        if len(next(iter(arrays.values()))):
            handle[tree].extend(arrays)


def make_root_case(kind: str, rng: np.random.Generator, base: dict, folder: Path) -> Path:
    """A mutated input ROOT file of ``kind`` (see ROOT_KINDS) under ``folder``."""
    path = folder / f"{kind}.root"
    arrays = {k: v.copy() for k, v in base.items()}
    branches = sorted(arrays)
    if kind in ("truncate", "flip"):
        _write_root(path, arrays)
        data = bytearray(path.read_bytes())
        if kind == "truncate":
            data = data[: int(rng.integers(1, len(data)))]
        else:
            for pos in rng.integers(0, len(data), int(rng.integers(1, 64))):
                data[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        return path
    if kind == "not_root":
        path.write_bytes(rng.bytes(int(rng.integers(0, 4096))))
        return path
    if kind == "drop":
        for name in rng.choice(branches, int(rng.integers(1, 4)), replace=False):
            arrays.pop(str(name))
    elif kind == "rename":
        name = str(rng.choice(branches))
        arrays[name + "_x"] = arrays.pop(name)
    elif kind == "retype":
        name = str(rng.choice(branches))
        dtype = rng.choice(["int8", "int32", "int64", "float64", "bool", "uint16"])
        with np.errstate(all="ignore"):
            arrays[name] = np.nan_to_num(arrays[name], nan=0, posinf=0, neginf=0).astype(dtype)
    elif kind == "values":
        for _ in range(int(rng.integers(1, 4))):
            name = str(rng.choice([b for b in branches if arrays[b].dtype.kind == "f"]))
            flat = arrays[name].reshape(-1)
            pick = rng.integers(0, flat.size, int(rng.integers(1, max(2, flat.size))))
            flat[pick] = rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30, 1e10, 0.0, -5.0])
    elif kind == "length":
        name = str(rng.choice(["npho", "time", "uvwTruth", "xyzVTX", "emiAng"]))
        width = int(rng.choice([0, 1, 2, 4, 100, 4759, 4761]))
        arrays[name] = np.zeros((BASE_EVENTS, width), arrays[name].dtype) + 1.0
    elif kind == "empty_tree":
        arrays = {k: v[:0] for k, v in arrays.items()}
    elif kind == "tree_name":
        _write_root(path, arrays, tree="events")
        return path
    _write_root(path, arrays)
    return path


def _read_and_reconstruct(path: Path) -> None:
    from xecreco.io.reader import iterate_batches
    from xecreco.models.registry import create_reconstructor

    reco = create_reconstructor("classical")
    for batch in iterate_batches([path], step_events=4):
        out = reco.reconstruct(batch)
        _assert_sane(out, len(batch))


def _assert_sane(out: dict, n: int) -> None:
    """A correct result: one value per event, no NaN (fill values where not computable)."""
    assert "status" in out and len(out["status"]) == n
    for key, values in out.items():
        values = np.asarray(values)
        assert len(values) == n, key
        assert not np.any(np.isnan(values)), key


def _training_targets(path: Path) -> None:
    """The reader with the truth branches training needs, then the physical targets."""
    from xecreco.io.reader import iterate_batches
    from xecreco.normalization import NormalizationSpec
    from xecreco.train.targets import compute_targets, truth_branches

    targets = ["energy", "time", "u", "v", "w", "direction"]
    spec = NormalizationSpec()
    for batch in iterate_batches([path], truth=truth_branches(targets), step_events=4):
        out = compute_targets(batch, targets, spec.time_reference_ns(batch))
        assert all(len(v) == len(batch) for v in out.values())


def _inspect(path: Path) -> None:
    from xecreco.io.inspection import format_report, inspect_file

    format_report(inspect_file(path))


def _root_cases(count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [(i, ROOT_KINDS[i % len(ROOT_KINDS)], int(rng.integers(0, 2**31))) for i in range(count)]


def _run_root_cases(cases, base, tmp_path):
    seen = {}
    for index, kind, seed in cases:
        folder = tmp_path / f"r{index}"
        folder.mkdir()
        path = make_root_case(kind, np.random.default_rng(seed), base, folder)
        for target in (_read_and_reconstruct, _training_targets, _inspect):
            try:
                seen[(kind, _outcome(lambda: target(path)))] = True
            except Exception as exc:  # noqa: BLE001 - the failure names the case
                raise AssertionError(f"ROOT case {index} ({kind}, seed {seed}), "
                                     f"{target.__name__}: {type(exc).__name__}: {exc}") from exc
    return seen


def test_fuzz_root_files(base_arrays, tmp_path):
    seen = _run_root_cases(_root_cases(20, seed=18), base_arrays, tmp_path)
    assert ("truncate", "user error") in seen and ("values", "ok") in seen


@pytest.mark.slow
def test_fuzz_root_files_many(base_arrays, tmp_path):
    _run_root_cases(_root_cases(150, seed=1818), base_arrays, tmp_path)


# ------------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    from _nn_helpers import make_checkpoint

    path = tmp_path_factory.mktemp("fuzz_ckpt") / "base.pt"
    make_checkpoint(path, seed=2)
    return path


class _Foreign:
    """A class a checkpoint must never unpickle."""

    def __reduce__(self):
        return (os.getcwd, ())


def make_checkpoint_case(kind: str, rng: np.random.Generator, base: Path, folder: Path,
                         root_file: Path) -> Path:
    """A mutated checkpoint of ``kind`` (see CKPT_KINDS) under ``folder``."""
    path = folder / f"{kind}.pt"
    if kind in ("truncate", "flip"):
        data = bytearray(base.read_bytes())
        if kind == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for pos in rng.integers(0, len(data), int(rng.integers(1, 32))):
                data[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        return path
    if kind == "foreign_pickle":
        with open(path, "wb") as handle:
            pickle.dump({"format": "xecreco-checkpoint", "x": _Foreign()}, handle)
        return path
    if kind == "root_file":
        path.write_bytes(root_file.read_bytes())
        return path
    if kind == "text":
        path.write_text("model:\n  preset: cpu\n")
        return path
    if kind == "empty":
        path.write_bytes(b"")
        return path
    payload = torch.load(base, weights_only=True)
    if kind == "plain_dict":
        payload = {"weights": payload["state_dict"]}
    elif kind == "missing_key":
        payload.pop(str(rng.choice(["model_config", "normalization", "target_scaling",
                                    "state_dict", "format", "task"])))
    elif kind == "wrong_shape":
        state = payload["state_dict"]
        name = str(rng.choice(sorted(state)))
        state[name] = torch.zeros(tuple(int(s) + 1 for s in state[name].shape) or (2,))
    elif kind == "wrong_task":
        payload["task"] = str(rng.choice(["mae", "inpainter", "classifier", "", "7"]))
    elif kind == "bad_model_config":
        config = payload["model_config"]
        choice = int(rng.integers(0, 6))
        if choice == 0:
            payload["model_config"] = "cpu-but-a-string"
        elif choice == 1:
            config["preset"] = "huge"
        elif choice == 2:
            config["heads"] = ["energy", "colour"]
        elif choice == 3:
            config["encoder"]["token_dim"] = "wide"
        elif choice == 4:
            config["encoder"]["in_channels"] = 3
        else:
            config["config_version"] = 99
    elif kind == "bad_normalization":
        options = [{"npho_scheme": "cube"}, {"npho_scale": -1.0}, {"time_scale_ns": 0.0},
                   {"unknown": 1}, [1, 2]]
        payload["normalization"] = options[int(rng.integers(0, len(options)))]
    elif kind == "bad_scaling":
        options = [{"mean": {"energy": 0.05}, "scale": {}},
                   {"mean": {"u": 0.0}, "scale": {"u": -1.0}}, {"mean": {}, "scale": {}}, "none"]
        payload["target_scaling"] = options[int(rng.integers(0, len(options)))]
    torch.save(payload, path)
    return path


def _checkpoint_targets(path: Path):
    from _nn_helpers import sim_batch

    from xecreco.models.registry import create_inpainter, create_reconstructor
    from xecreco.train.checkpoint import load_checkpoint

    def reconstruct():
        reco = create_reconstructor(str(path))
        _assert_sane(reco.reconstruct(sim_batch(3, seed=1)), 3)

    return (("load_checkpoint", lambda: load_checkpoint(path)),
            ("create_reconstructor", reconstruct),
            ("create_inpainter", lambda: create_inpainter(str(path))))


def _run_checkpoint_cases(count, seed, base, root_file, tmp_path):
    rng = np.random.default_rng(seed)
    seen = {}
    for index in range(count):
        kind = CKPT_KINDS[index % len(CKPT_KINDS)]
        case_seed = int(rng.integers(0, 2**31))
        folder = tmp_path / f"c{index}"
        folder.mkdir()
        path = make_checkpoint_case(kind, np.random.default_rng(case_seed), base, folder,
                                    root_file)
        for name, target in _checkpoint_targets(path):
            try:
                seen[(kind, name, _outcome(target))] = True
            except Exception as exc:  # noqa: BLE001
                raise AssertionError(f"checkpoint case {index} ({kind}, seed {case_seed}), "
                                     f"{name}: {type(exc).__name__}: {exc}") from exc
    return seen


def test_fuzz_checkpoints(base_checkpoint, sim_file_small, tmp_path):
    seen = _run_checkpoint_cases(len(CKPT_KINDS), 12, base_checkpoint, sim_file_small, tmp_path)
    assert ("foreign_pickle", "create_reconstructor", "user error") in seen
    assert ("root_file", "create_reconstructor", "user error") in seen


@pytest.mark.slow
def test_fuzz_checkpoints_many(base_checkpoint, sim_file_small, tmp_path):
    _run_checkpoint_cases(120, 1212, base_checkpoint, sim_file_small, tmp_path)


# ------------------------------------------------------------------------------- YAML configs

TRAIN_BASE = {"data": {"batch_size": 16, "val_fraction": 0.1},
              "optim": {"lr": 1e-3, "betas": [0.9, 0.99]},
              "task": {"targets": ["energy", "u"]}, "run": {"max_steps": 3, "seed": 1}}
SIM_BASE = {"source": "flat", "energy_min_mev": 20.0, "energy_max_mev": 50.0,
            "pileup_rate_hz": 0.0}
WRONG_VALUES = ("fast", 1.5, -3, [1, [2]], {"a": 1}, None, True, "", 1e400, "1e-3x")


def _mutate_mapping(mapping: dict, rng: np.random.Generator, kind: str) -> str:
    """YAML text of a mutated copy of ``mapping``."""
    config = yaml.safe_load(yaml.safe_dump(mapping))
    paths = []

    def walk(node, prefix):
        for key, value in node.items():
            paths.append(prefix + [key])
            if isinstance(value, dict):
                walk(value, prefix + [key])

    walk(config, [])

    def set_at(path, value):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    target = paths[int(rng.integers(0, len(paths)))]
    if kind == "wrong_type":
        set_at(target, WRONG_VALUES[int(rng.integers(0, len(WRONG_VALUES)))])
    elif kind == "unknown_key":
        set_at(target[:-1] + [target[-1] + "_typo"], 1)
    elif kind == "null_section":
        set_at(target, None)
    elif kind == "huge_number":
        set_at(target, float(rng.choice([1e308, -1e308, 2**80])))
    elif kind == "garbage":
        data = rng.bytes(int(rng.integers(1, 512)))
        return data if rng.random() < 0.5 else data.decode("latin-1")
    elif kind == "empty":
        return str(rng.choice(["", "\n", "# only a comment\n", "---\n"]))
    elif kind == "deep":
        depth = int(rng.integers(50, 3000))
        return "a: " + "[" * depth + "]" * depth + "\n" if rng.random() < 0.5 else (
            "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v: 1\n")
    elif kind == "scalar":
        return str(rng.choice(["42\n", "- a\n- b\n", "just text\n", "[1, 2, 3]\n", "null\n"]))
    elif kind == "tag":
        return str(rng.choice(["!!python/object/apply:os.getcwd []\n",
                               "a: !!python/name:os.system\n", "a: !custom 3\n"]))
    elif kind == "bad_yaml":
        return str(rng.choice(["a: [1, 2\n", "a: b: c\n", "\tx: 1\n", "a: 'unclosed\n",
                               "{a: 1\n", "a: 1\na: 2\n"]))
    return yaml.safe_dump(config)


def _write_text(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))


def _config_targets(path: Path, folder: Path):
    from xecreco.sim import SimConfig
    from xecreco.train.config import load_config

    return (("train load_config", lambda: load_config(path)),
            ("SimConfig.from_yaml", lambda: SimConfig.from_yaml(path)))


def _run_yaml_cases(count, seed, tmp_path):
    rng = np.random.default_rng(seed)
    seen = {}
    for index in range(count):
        kind = YAML_KINDS[index % len(YAML_KINDS)]
        base = TRAIN_BASE if index % 2 == 0 else SIM_BASE
        case_seed = int(rng.integers(0, 2**31))
        folder = tmp_path / f"y{index}"
        folder.mkdir()
        path = folder / "config.yaml"
        _write_text(path, _mutate_mapping(base, np.random.default_rng(case_seed), kind))
        for name, target in _config_targets(path, folder):
            try:
                seen[(kind, name, _outcome(target))] = True
            except Exception as exc:  # noqa: BLE001
                raise AssertionError(f"YAML case {index} ({kind}, seed {case_seed}), {name}: "
                                     f"{type(exc).__name__}: {exc}") from exc
    return seen


def test_fuzz_yaml_configs(tmp_path):
    seen = _run_yaml_cases(30, 7, tmp_path)
    assert ("garbage", "train load_config", "user error") in seen


@pytest.mark.slow
def test_fuzz_yaml_configs_many(tmp_path):
    _run_yaml_cases(300, 77, tmp_path)


# ------------------------------------------------------------------------------- through the CLI


def _cli(args, capsys) -> str:
    """Run ``xecreco ARGS``: exit 0, or exit 2 with one ``xecreco: error:`` line; never the
    internal-error exit 1 or a traceback."""
    from xecreco.cli.main import main

    capsys.readouterr()
    with _deadline(CASE_TIMEOUT_S):
        code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit {code}: {err}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 or lines[-1].startswith(("Error:", "Usage:")) or (
            lines[0].startswith("Usage:")), err
    return "ok" if code == 0 else "user error"


def test_fuzz_through_the_cli(base_arrays, base_checkpoint, sim_file_small, tmp_path, capsys):
    rng = np.random.default_rng(99)
    for i, kind in enumerate(("truncate", "drop", "values", "length", "not_root")):
        folder = tmp_path / f"cli_r{i}"
        folder.mkdir()
        path = make_root_case(kind, rng, base_arrays, folder)
        _cli(["inspect", path], capsys)
        _cli(["predict", path, "-o", folder / "out.root", "-r", "classical", "--no-progress"],
             capsys)
    for i, kind in enumerate(("truncate", "foreign_pickle", "wrong_shape", "root_file")):
        folder = tmp_path / f"cli_c{i}"
        folder.mkdir()
        path = make_checkpoint_case(kind, rng, base_checkpoint, folder, sim_file_small)
        assert _cli(["export", path, "-o", folder / "x.onnx"], capsys) == "user error"
        assert _cli(["predict", sim_file_small, "-o", folder / "p.root", "-r", path,
                     "--no-progress"], capsys) == "user error"
    for i, kind in enumerate(("garbage", "wrong_type", "deep", "tag")):
        folder = tmp_path / f"cli_y{i}"
        folder.mkdir()
        path = folder / "config.yaml"
        _write_text(path, _mutate_mapping(SIM_BASE, rng, kind))
        _cli(["simulate", "-n", "2", "--config", path, "-o", folder / "s.root"], capsys)
        _write_text(path, _mutate_mapping(TRAIN_BASE, rng, kind))
        assert _cli(["train", path, "-o", folder / "run"], capsys) == "user error"
