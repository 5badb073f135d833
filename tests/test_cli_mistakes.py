"""Every command against the same classes of mistake (issue 18): output equals input, output in a
missing folder, conflicting options, renamed branches, a foreign file given as checkpoint /
config / dead list, interrupted runs.

Each case must give one clear error line and a non-zero exit, or a correct result; never a
silent wrong answer, never a destroyed input, never a half-written final file.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from xecreco.cli.main import main

N_EVENTS = 50
RENAMES = {"npho": "nphoton", "time": "tpmt", "energyTruth": "Egamma", "uvwTruth": "uvwMC"}
BRANCH_ARGS = [a for c, n in RENAMES.items() for a in ("--branch", f"{c}={n}")]


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Small inputs shared by the cases: a simulated sample (flat spectrum, 50 events), the same
    events with renamed branches in tree 'T', a prediction file, a checkpoint, a config, a dead
    list and the foreign files (ROOT, text, empty, random bytes)."""
    from _nn_helpers import make_checkpoint
    from xecreco.io.writer import RootWriter
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.sim import SimConfig, simulate_file

    root = tmp_path_factory.mktemp("mistakes")
    sim = root / "sim.root"
    simulate_file(sim, N_EVENTS, config=SimConfig().replace(source="flat"), seed=5,
                  progress=False)
    keep = ["npho", "time", "run", "event", "energyTruth", "uvwTruth", "xyzTruth", "xyzVTX",
            "timeTruth", "emiAng", "emiVec", "dead"]
    with uproot.open(sim) as handle:
        arrays = handle["tree"].arrays(keep, library="np")
    renamed = root / "renamed.root"
    with RootWriter(renamed, tree="T") as writer:
        writer.write({RENAMES.get(k, k): np.stack(v) if v.dtype == object else v
                      for k, v in arrays.items()})
    pred = root / "pred.root"
    predict_files(sim, pred, ["classical"], progress=False)
    ckpt = root / "model.pt"
    make_checkpoint(ckpt)
    config = root / "train.yaml"
    config.write_text(f"data:\n  train_files: [{sim}]\n  batch_size: 8\n  workers: 0\n"
                      "  scaling_events: 40\n")
    dead = root / "dead.txt"
    dead.write_text("1, 2, 3\n")
    text = root / "notes.txt"
    text.write_text("hello\nworld\n")
    empty = root / "empty.bin"
    empty.write_bytes(b"")
    noise = root / "noise.bin"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return {"sim": sim, "renamed": renamed, "pred": pred, "ckpt": ckpt, "config": config,
            "dead": dead, "text": text, "empty": empty, "noise": noise, "root": root}


def run(argv, capsys) -> tuple[int, str]:
    """Run ``xecreco ARGV`` in-process; (exit status, stderr)."""
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, *fragments: str) -> None:
    """Exit 2 with one ``xecreco: error:`` line (or click's usage error) naming ``fragments``."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, (rc, err)
    errors = [line for line in lines if line.startswith(("xecreco: error:", "Error:"))]
    assert len(errors) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary files or folders xecreco may leave while writing."""
    return sorted(p.name for p in Path(folder).iterdir()
                  if p.name.startswith(".") and (".tmp" in p.name or ".parts" in p.name))


# ------------------------------------------------------------------------------- output == input
def _same_as_input_cases():
    # (id, argv builder, the input that must survive); the output path is spelled differently
    # from the input in most cases: ./, sub/.., a symbolic link
    return [
        ("predict", lambda f, o: ["predict", f["sim"], "-o", o("sim"), "-r", "classical",
                                  "--no-progress"], "sim"),
        ("predict-checkpoint", lambda f, o: ["predict", f["sim"], "-o", o("ckpt"), "-r",
                                             f["ckpt"], "--no-progress"], "ckpt"),
        ("inpaint", lambda f, o: ["inpaint", f["sim"], "-o", o("sim"), "-m", "neighbour-average",
                                  "--no-progress"], "sim"),
        ("inpaint-dead-list", lambda f, o: ["inpaint", f["sim"], "-o", o("dead"), "--dead",
                                            f["dead"], "-m", "neighbour-average",
                                            "--no-progress"], "dead"),
        ("export", lambda f, o: ["export", f["ckpt"], "-o", o("ckpt")], "ckpt"),
        ("calibrate", lambda f, o: ["calibrate", f["sim"], "-o", o("sim"), "--no-progress"],
         "sim"),
        ("geometry", lambda f, o: ["geometry", "--asbuilt", f["text"], "-o", o("text")], "text"),
        ("validate", lambda f, o: ["validate", f["pred"], "-o", o("pred"), "--no-progress"],
         "pred"),
        ("train", lambda f, o: ["train", f["config"], "-o", o("config")], "config"),
    ]


@pytest.mark.parametrize("spelling", ["dot", "updown", "symlink"])
@pytest.mark.parametrize("case", _same_as_input_cases(), ids=lambda c: c[0])
def test_output_equal_to_input_is_refused(case, spelling, files, capsys):
    _, build, key = case
    before = digest(files[key])

    def other_spelling(name):
        target = files[name]
        if spelling == "dot":
            return f"{target.parent}/./{target.name}"
        if spelling == "updown":
            return f"{target.parent}/sub/../{target.name}" if (target.parent / "sub").is_dir() \
                else str(target)
        link = target.parent / f"link-{target.name}"
        if not link.exists():
            link.symlink_to(target)
        return str(link)

    (files["root"] / "sub").mkdir(exist_ok=True)
    rc, err = run(build(files, other_spelling), capsys)
    assert rc != 0, err
    assert digest(files[key]) == before
    assert_one_line_error(rc, err)
    assert not leftovers(files["root"])


def test_simulate_refuses_to_overwrite_its_config(files, tmp_path, capsys):
    config = tmp_path / "sim.yaml"
    config.write_text("pileup_rate_hz: 0\n")
    rc, err = run(["simulate", "-n", 5, "--config", config, "-o", config, "--no-progress"],
                  capsys)
    assert_one_line_error(rc, err, "also an input")
    assert config.read_text() == "pileup_rate_hz: 0\n"


# ------------------------------------------------------------------------------- missing folder
MISSING_FOLDER_CASES = [
    ("predict", lambda f, out: ["predict", f["sim"], "-o", out("x.root"), "-r", "classical",
                                "--no-progress"]),
    ("inpaint", lambda f, out: ["inpaint", f["sim"], "-o", out("x.root"), "-m",
                                "neighbour-average", "--no-progress"]),
    ("export", lambda f, out: ["export", f["ckpt"], "-o", out("x.onnx")]),
    ("calibrate", lambda f, out: ["calibrate", f["sim"], "-o", out("c.json"), "--no-progress"]),
    ("geometry", lambda f, out: ["geometry", "-o", out("g.csv")]),
    ("simulate", lambda f, out: ["simulate", "-n", 5, "-o", out("s.root"), "--no-progress"]),
]


@pytest.mark.parametrize("case", MISSING_FOLDER_CASES, ids=lambda c: c[0])
def test_output_file_in_a_missing_folder_is_refused_and_no_folder_is_made(case, files, tmp_path,
                                                                         capsys):
    """One policy (docs/cli-conventions.md): a file's folder must exist."""
    _, build = case
    missing = tmp_path / "nodir"
    rc, err = run(build(files, lambda name: missing / name), capsys)
    assert_one_line_error(rc, err, "does not exist")
    assert not missing.exists()


def test_validate_creates_its_report_folder(files, tmp_path, capsys):
    """Output folders (a report, a training run) are the output itself and are created."""
    report = tmp_path / "new" / "report"
    rc, err = run(["validate", files["pred"], "-o", report, "--study", "energy", "--bootstrap",
                   2, "--format", "png", "--no-progress"], capsys)
    assert rc == 0, err
    assert (report / "summary.json").is_file() and not leftovers(report)


@pytest.mark.parametrize("mistake", [["--set", "model.preset=nope"],
                                     ["--set", "data.train_files=[nomatch_*.root]"],
                                     ["--set", "optim.lerning_rate=1"]],
                         ids=["bad-preset", "no-files", "bad-key"])
def test_failed_train_leaves_no_run_folder(mistake, files, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r1"
    rc, err = run(["train", files["config"], *mistake, "-o", run_dir], capsys)
    assert_one_line_error(rc, err)
    assert not (tmp_path / "runs").exists()  # nor the parent folder the run made for it
    (tmp_path / "runs" / "other").mkdir(parents=True)
    rc, err = run(["train", files["config"], *mistake, "-o", run_dir], capsys)
    assert rc == 2 and not run_dir.exists()
    assert (tmp_path / "runs" / "other").is_dir()  # a parent that existed before stays
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    rc, err = run(["train", files["config"], *mistake, "-o", existing], capsys)
    assert rc == 2
    assert (existing / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------- conflicting options
CONFLICT_CASES = [
    ("inpaint-dead-and-dead-branch",
     lambda f: ["inpaint", f["sim"], "-o", f["root"] / "c.root", "--dead", f["dead"],
                "--dead-branch", "dead", "--no-progress"], "--dead"),
    ("inpaint-dead-branch-not-bool",
     lambda f: ["inpaint", f["sim"], "-o", f["root"] / "c.root", "--dead-branch", "npho",
                "-m", "neighbour-average", "--no-progress"], "not a bool array"),
    ("predict-branch-twice",
     lambda f: ["predict", f["sim"], "-o", f["root"] / "c.root", "-r", "classical",
                "--branch", "npho=a", "--branch", "npho=b", "--no-progress"], "twice"),
    ("predict-unknown-name",
     lambda f: ["predict", f["sim"], "-o", f["root"] / "c.root", "-r", "classical",
                "--name", "nope=X", "--no-progress"], "nope"),
    ("validate-data-and-predictions",
     lambda f: ["validate", f["pred"], "--data", f["sim"], "-r", "classical", "-o",
                f["root"] / "rep", "--no-progress"], "not both"),
    ("validate-reconstructor-without-data",
     lambda f: ["validate", f["pred"], "-r", "classical", "-o", f["root"] / "rep",
                "--no-progress"], "--data"),
    ("train-resume-without-run-dir",
     lambda f: ["train", f["config"], "--resume"], "-o RUN_DIR"),
]

SIMULATE_CONFLICTS = [
    ("simulate-energy-and-named-source", ["--energy", "20:30", "--source", "li"]),
    ("simulate-energy-and-energy-list", ["--energy", "20:30", "--source", "17.6,52.8"]),
]


@pytest.mark.parametrize("case", CONFLICT_CASES, ids=lambda c: c[0])
def test_conflicting_options_are_one_line(case, files, capsys):
    _, build, fragment = case
    rc, err = run(build(files), capsys)
    assert_one_line_error(rc, err, fragment)
    assert not (files["root"] / "c.root").exists()


@pytest.mark.parametrize("extra", [extra for _, extra in SIMULATE_CONFLICTS],
                         ids=[name for name, _ in SIMULATE_CONFLICTS])
def test_simulate_conflicting_options(extra, tmp_path, capsys):
    out = tmp_path / "s.root"
    rc, err = run(["simulate", "-n", 5, "-o", out, "--no-progress", *extra], capsys)
    assert_one_line_error(rc, err, "--energy")
    assert not out.exists()


# ------------------------------------------------------------------------------- renamed branches
def test_predict_with_renamed_branches_matches_canonical_input(files, tmp_path, capsys):
    canonical, renamed = tmp_path / "c.root", tmp_path / "r.root"
    assert run(["predict", files["sim"], "-o", canonical, "-r", "classical", "--no-progress"],
               capsys)[0] == 0
    rc, err = run(["predict", files["renamed"], "--tree", "T", *BRANCH_ARGS, "-o", renamed,
                   "-r", "classical", "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(canonical) as a, uproot.open(renamed) as b:
        ta, tb = a["reco"].arrays(library="np"), b["reco"].arrays(library="np")
    # truth arrives under canonical names, reconstruction identical to the canonical file
    for key in ("classical_energy", "classical_u", "energyTruth", "uvwTruth"):
        np.testing.assert_array_equal(np.stack(ta[key]) if ta[key].dtype == object else ta[key],
                                      np.stack(tb[key]) if tb[key].dtype == object else tb[key])


@pytest.mark.parametrize("command", ["predict", "inpaint", "inspect", "display"])
def test_renamed_branches_without_mapping_name_the_option(command, files, tmp_path, capsys):
    argv = {"predict": ["predict", files["renamed"], "--tree", "T", "-o", tmp_path / "x.root",
                        "-r", "classical", "--no-progress"],
            "inpaint": ["inpaint", files["renamed"], "--tree", "T", "-o", tmp_path / "x.root",
                        "-m", "neighbour-average", "--no-progress"],
            "inspect": ["inspect", files["renamed"], "--tree", "T"],
            "display": ["display", files["renamed"], "--tree", "T", "--entry", "1",
                        "-o", tmp_path / "x.png"]}[command]
    rc, err = run(argv, capsys)
    assert_one_line_error(rc, err, "'npho'", "--branch npho=")


def test_explain_renamed_truth_without_mapping_is_one_line(files, tmp_path, capsys):
    rc, err = run(["explain", files["renamed"], "--tree", "T", "-r", "classical",
                   "-o", tmp_path / "ex", "--no-progress"], capsys)
    assert_one_line_error(rc, err, "energyTruth")


def test_display_and_explain_with_renamed_branches(files, tmp_path, capsys):
    """display and explain read renamed branches through --tree/--branch like the canonical file."""
    out = tmp_path / "ev.png"
    rc, err = run(["display", files["renamed"], "--tree", "T", *BRANCH_ARGS, "--entry", "1",
                   "-p", files["pred"], "-o", out], capsys)
    assert rc == 0 and out.is_file(), err
    results = {}
    for name, argv in {"renamed": [files["renamed"], "--tree", "T", *BRANCH_ARGS],
                       "canonical": [files["sim"]]}.items():
        rc, err = run(["explain", *argv, "-r", "classical", "-o", tmp_path / name,
                       "--events", "50", "--no-progress"], capsys)
        assert rc == 0, err
        results[name] = json.loads((tmp_path / name / "explain.json").read_text())["occlusion"]
    assert results["renamed"] == results["canonical"]


@pytest.mark.parametrize("command", ["predict", "inpaint", "inspect"])
def test_unknown_canonical_branch_lists_the_valid_ones(command, files, tmp_path, capsys):
    argv = {"predict": ["predict", files["sim"], "-o", tmp_path / "x.root", "-r", "classical"],
            "inpaint": ["inpaint", files["sim"], "-o", tmp_path / "x.root"],
            "inspect": ["inspect", files["sim"]]}[command]
    rc, err = run([*argv, "--branch", "energyTruh=Egamma"], capsys)
    assert_one_line_error(rc, err, "energyTruh", "did you mean 'energyTruth'", "npho, time")


def test_inspect_and_inpaint_with_renamed_branches(files, tmp_path, capsys):
    rc, err = run(["inspect", files["renamed"], "--tree", "T", *BRANCH_ARGS, "--json"], capsys)
    assert rc == 0, err
    out = tmp_path / "inp.root"
    rc, err = run(["inpaint", files["renamed"], "--tree", "T", *BRANCH_ARGS, "-o", out,
                   "--dead", files["dead"], "-m", "neighbour-average", "--no-progress"], capsys)
    assert rc == 0, err
    with uproot.open(out) as handle:
        tree = handle["T"]
        assert {"nphoton", "tpmt", "Egamma", "inpainted"} <= set(tree.keys())
        filled = tree["inpainted"].array(library="np")
    assert filled[:, [1, 2, 3]].all()


def _studies(report: Path) -> dict:
    import json

    return json.loads((report / "summary.json").read_text())["studies"]


def test_validate_data_with_renamed_branches_and_format(files, tmp_path, capsys):
    """validate --data reads renamed branches with --data-tree/--branch (same numbers as the
    canonical file) and writes its plots in the --format asked for."""
    canonical, renamed = tmp_path / "c", tmp_path / "r"
    common = ["-r", "classical", "--study", "energy", "--bootstrap", 2, "--no-progress"]
    rc, err = run(["validate", "--data", files["sim"], "-o", canonical, *common], capsys)
    assert rc == 0, err
    rc, err = run(["validate", "--data", files["renamed"], "--data-tree", "T", *BRANCH_ARGS,
                   "-o", renamed, "--format", "svg", *common], capsys)
    assert rc == 0, err
    assert _studies(renamed) == _studies(canonical)
    assert {p.suffix for p in (renamed / "plots").iterdir()} == {".svg"}
    assert {p.suffix for p in (canonical / "plots").iterdir()} == {".png", ".pdf"}
    assert not leftovers(renamed) and not leftovers(canonical)


def test_validate_input_with_renamed_branches(files, tmp_path, capsys):
    """--input files of the worst-event gallery are read with --data-tree/--branch too."""
    argv = ["validate", files["pred"], "--input", files["renamed"], "--data-tree", "T",
            "--worst", 1, "--study", "energy", "--bootstrap", 2, "--format", "png",
            "--no-progress"]
    rc, err = run([*argv, "-o", tmp_path / "bare"], capsys)
    assert_one_line_error(rc, err, "'npho'", "--branch npho=")
    rc, err = run([*argv, *BRANCH_ARGS, "-o", tmp_path / "mapped"], capsys)
    assert rc == 0, err
    import json

    summary = json.loads((tmp_path / "mapped" / "summary.json").read_text())
    assert summary["worst_events"]["classical"]["energy"][0]["input_file"] == str(
        files["renamed"])


@pytest.mark.parametrize("argv", [["--data", "{sim}", "-r", "classical", "--reco", "classical"],
                                  ["{pred}", "--branch", "npho=nphoton"],
                                  ["{pred}", "--input", "{sim}"],
                                  ["{pred}", "--data-tree", "T"]],
                         ids=["reco-with-data", "branch-without-inputs", "input-without-worst",
                              "data-tree-without-inputs"])
def test_validate_options_that_would_be_ignored_are_refused(argv, files, tmp_path, capsys):
    argv = [a.format(**files) if isinstance(a, str) else a for a in argv]
    rc, err = run(["validate", *argv, "-o", tmp_path / "rep", "--no-progress"], capsys)
    assert_one_line_error(rc, err)
    assert not (tmp_path / "rep").exists()


@pytest.fixture(scope="module")
def calibration_inputs(files):
    """400 simulated events (enough to calibrate), with xecreco's names and renamed in tree T."""
    from xecreco.io.writer import RootWriter
    from xecreco.sim import SimConfig, simulate_file

    root = files["root"]
    sim = root / "calib-sim.root"
    simulate_file(sim, 400, config=SimConfig(), seed=7, progress=False)
    keep = ["npho", "time", "run", "event", "energyTruth", "uvwTruth", "xyzTruth", "xyzVTX",
            "timeTruth"]
    with uproot.open(sim) as handle:
        arrays = handle["tree"].arrays(keep, library="np")
    arrays = {k: np.stack(v) if v.dtype == object else v for k, v in arrays.items()}
    canonical, renamed = root / "calib.root", root / "calib-renamed.root"
    with RootWriter(canonical, tree="tree") as writer:
        writer.write(arrays)
    with RootWriter(renamed, tree="T") as writer:
        writer.write({RENAMES.get(k, k): v for k, v in arrays.items()})
    return canonical, renamed


def test_calibrate_with_renamed_branches_matches_canonical_input(calibration_inputs, tmp_path,
                                                                 capsys):
    import json

    canonical, renamed = calibration_inputs
    rc, err = run(["calibrate", renamed, "--tree", "T", "-o", tmp_path / "x.json",
                   "--no-progress"], capsys)
    assert_one_line_error(rc, err, "energyTruth", "--branch")
    assert not leftovers(tmp_path) and not (tmp_path / "x.json").exists()
    for name, argv in (("a.json", [canonical]), ("b.json", [renamed, "--tree", "T",
                                                           *BRANCH_ARGS])):
        rc, err = run(["calibrate", *argv, "-o", tmp_path / name, "--no-progress"], capsys)
        assert rc == 0, err
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert "--branch energyTruth=Egamma" in b.pop("source")
    a.pop("source")
    assert a == b


# ------------------------------------------------------------------------------- foreign files
FOREIGN = ["sim", "text", "empty", "noise"]
FOREIGN_CASES = [
    ("export-checkpoint", lambda f, x, o: ["export", x, "-o", o / "y.onnx"]),
    ("predict-checkpoint", lambda f, x, o: ["predict", f["sim"], "-o", o / "p.root", "-r", x,
                                            "--no-progress"]),
    ("inpaint-model", lambda f, x, o: ["inpaint", f["sim"], "-o", o / "i.root", "--model", x,
                                       "--no-progress"]),
    ("inpaint-dead-list", lambda f, x, o: ["inpaint", f["sim"], "-o", o / "i.root", "--dead", x,
                                           "-m", "neighbour-average", "--no-progress"]),
    ("train-config", lambda f, x, o: ["train", x, "-o", o / "run"]),
    ("simulate-config", lambda f, x, o: ["simulate", "-n", 5, "--config", x, "-o",
                                         o / "s.root", "--no-progress"]),
    ("simulate-dead-list", lambda f, x, o: ["simulate", "-n", 5, "--dead", x, "-o",
                                            o / "s.root", "--no-progress"]),
    ("validate-predictions", lambda f, x, o: ["validate", x, "-o", o / "rep", "--no-progress"]),
    ("inspect-input", lambda f, x, o: ["inspect", x]),
]


@pytest.mark.parametrize("kind", FOREIGN)
@pytest.mark.parametrize("case", FOREIGN_CASES, ids=lambda c: c[0])
def test_foreign_file_is_one_line(case, kind, files, tmp_path, capsys):
    name, build = case
    if kind == "sim" and name in ("validate-predictions", "inspect-input"):
        pytest.skip("a simulated ROOT file is a valid input here")
    if kind == "empty" and name == "simulate-config":
        # an empty YAML file is an empty mapping: the defaults, a correct result
        rc, err = run(build(files, files[kind], tmp_path), capsys)
        assert rc == 0, err
        return
    rc, err = run(build(files, files[kind], tmp_path), capsys)
    if kind == "empty" and name == "train-config":
        assert_one_line_error(rc, err, "data.train_files")  # empty YAML: no training files
    else:
        assert_one_line_error(rc, err, str(files[kind].name))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["sim", "text", "empty", "noise"])
def test_foreign_checkpoint_says_not_a_checkpoint(kind, files, tmp_path, capsys):
    rc, err = run(["export", files[kind], "-o", tmp_path / "y.onnx"], capsys)
    assert_one_line_error(rc, err, "is not a checkpoint")


# ------------------------------------------------------------------------------- interrupted runs
def _kill_while_writing(argv, output: Path, ready: str | None = None,
                        timeout: float = 60.0, settle: float = 0.2) -> bool:
    """Start ``xecreco ARGV`` and kill -9 it, with every process it started, once its
    temporary output exists (``ready``: a glob next to ``output``, default
    ``.NAME.*.tmp``), ``settle`` seconds later.

    Returns True when it was killed part-way, False when it finished first.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "xecreco", *map(str, argv)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    pattern = ready or f".{output.name}.*.tmp"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if output.parent.is_dir() and list(output.parent.glob(pattern)):
                time.sleep(settle)  # let it write a little
                if proc.poll() is not None:
                    return False
                os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker processes
                proc.wait()
                return True
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return False


@pytest.fixture(scope="module")
def big_input(files):
    """A larger input (many copies of the sample) so that writing takes long enough to kill."""
    from xecreco.io.writer import RootWriter

    path = files["root"] / "big.root"
    with uproot.open(files["sim"]) as handle:
        arrays = handle["tree"].arrays(["npho", "time", "run", "event", "energyTruth"],
                                       library="ak", how=dict)
    with RootWriter(path, tree="tree") as writer:
        for k in range(40):
            chunk = dict(arrays)
            chunk["event"] = arrays["event"] + k * N_EVENTS
            writer.write({key: ak.to_numpy(v) for key, v in chunk.items()})
    return path


INTERRUPT_CASES = [
    pytest.param("predict", lambda f, b, o: ["predict", b, "-o", o, "-r", "classical",
                                             "--step", 50, "--no-progress"], id="predict"),
    pytest.param("inpaint", lambda f, b, o: ["inpaint", b, "-o", o, "-m", "neighbour-average",
                                             "--step", 50, "--no-progress"], id="inpaint",
                 marks=pytest.mark.slow),
    pytest.param("simulate", lambda f, b, o: ["simulate", "-n", 3000, "-o", o, "--no-progress"],
                 id="simulate", marks=pytest.mark.slow),
    pytest.param("predict-nproc-2", lambda f, b, o: ["predict", b, "-o", o, "-r", "classical",
                                                     "--step", 50, "--nproc", 2,
                                                     "--no-progress"],
                 id="predict-nproc-2"),  # about 10 s
]

#: what must exist before the kill: for --nproc 2, a worker's part file being written inside
#: the parts folder .NAME.<pid>.<random>.tmp/
READY = {"predict-nproc-2": ".out.root.*.tmp/.part-*.tmp"}


@pytest.mark.parametrize("name, build", INTERRUPT_CASES)
def test_kill_9_leaves_no_final_file_and_rerun_cleans_up(name, build, files, big_input,
                                                          tmp_path, capsys):
    out = tmp_path / "out.root"
    argv = build(files, big_input, out)
    if not _kill_while_writing(argv, out, READY.get(name)):
        pytest.skip(f"{name} finished before it could be killed")
    assert not out.exists()  # nothing half-written under the final name
    assert leftovers(tmp_path)  # the killed process could not clean up its temporary file
    rc, err = run(argv, capsys)
    assert rc == 0, err
    assert out.is_file() and not leftovers(tmp_path)
    with uproot.open(out) as handle:
        entries = (handle["reco"] if name.startswith("predict") else handle["tree"]).num_entries
    assert entries == (3000 if name == "simulate" else 40 * N_EVENTS)


def test_kill_9_during_validate_keeps_the_old_report_and_rerun_cleans_up(files, tmp_path,
                                                                          capsys):
    report = tmp_path / "rep"
    argv = ["validate", files["pred"], "-o", report, "--bootstrap", 4, "--format", "png",
            "--no-progress"]
    rc, err = run([*argv, "--study", "energy"], capsys)
    assert rc == 0, err
    before = digest(report / "summary.json")
    if not _kill_while_writing(argv, report / "index.html", settle=1.0):
        pytest.skip("validate finished before it could be killed")
    assert digest(report / "summary.json") == before  # the earlier report is untouched
    assert leftovers(report)  # the killed run's .index.html.<pid>.<random>.tmp/ folder
    rc, err = run(argv, capsys)
    assert rc == 0, err
    assert not leftovers(report)
    assert digest(report / "summary.json") != before  # all studies now


def _dead_pid() -> int:
    """The id of a process that has exited (reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporary_files_and_folders_are_removed_only_when_their_process_is_gone(
        tmp_path):
    from xecreco.io.paths import check_output_file

    out = tmp_path / "x.root"
    dead = _dead_pid()
    stale_file = tmp_path / f".x.root.{dead}.tmp"
    stale_file.write_bytes(b"half")
    stale_dir = tmp_path / f".x.root.{dead}.0a1b2c3d.tmp"
    (stale_dir / "sub").mkdir(parents=True)
    (stale_dir / "sub" / "part-00000.root").write_bytes(b"part")
    live_dir = tmp_path / f".x.root.{os.getppid()}.0a1b2c3d.tmp"  # a running process
    live_dir.mkdir()
    other = tmp_path / f".y.root.{dead}.tmp"  # another output's temporary file
    other.write_bytes(b"")
    check_output_file(out)
    assert leftovers(tmp_path) == sorted([live_dir.name, other.name])


def test_stale_temporary_name_with_an_all_digit_random_part_is_removed(tmp_path):
    """temp_path's random part is 8 hex digits, all decimal ones 2 % of the time: such a name
    must still read as .NAME.<pid>.<random>.tmp (not .NAME.<pid>.<pid>.tmp of another output)."""
    from xecreco.io.paths import remove_stale_temps

    dead = _dead_pid()
    out = tmp_path / "calib.json"
    stale = tmp_path / f".calib.json.{dead}.66163380.tmp"
    stale.write_bytes(b"half")
    other = tmp_path / f".calib.json.{dead}.root.{dead}.12345678.tmp"  # output calib.json.N.root
    other.write_bytes(b"")
    assert remove_stale_temps(out) == [stale]
    assert leftovers(tmp_path) == [other.name]


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_temporary_file_of_a_reused_pid_is_stale(tmp_path):
    """A pid that now belongs to a process started after the temporary file was last written is
    not its writer (pid reuse): the file is removed; the same pid with a fresh file is kept."""
    from xecreco.io.paths import remove_stale_temps

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        out = tmp_path / "x.root"
        old = tmp_path / f".x.root.{other.pid}.0a1b2c3d.tmp"
        old.write_bytes(b"half")
        hour_ago = time.time() - 3600
        os.utime(old, (hour_ago, hour_ago))
        fresh = tmp_path / f".x.root.{other.pid}.1a2b3c4d.tmp"
        fresh.write_bytes(b"half")
        assert remove_stale_temps(out) == [old]
        assert leftovers(tmp_path) == [fresh.name]
    finally:
        other.kill()
        other.wait()


def test_calibration_json_killed_before_rename_is_cleaned_up_on_rerun(tmp_path):
    """save_calibration's temporary name carries the writer's pid: a run that dies between
    writing and renaming leaves it, the next run writing the same file removes it."""
    from xecreco.io.paths import check_output_file

    out = tmp_path / "calib.json"
    script = ("import os, sys\n"
              "from xecreco.models.classical import calibration as c\n"
              "os.replace = lambda src, dst: os._exit(9)  # die between write and rename\n"
              "c.save_calibration(c.ClassicalCalibration(), sys.argv[1])\n")
    child = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True)
    assert child.returncode == 9, child.stderr
    assert not out.exists() and len(leftovers(tmp_path)) == 1
    check_output_file(out)
    assert not leftovers(tmp_path)


def test_atomic_output_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    """One write policy for every output file: whole under the final name, or the old file
    untouched and no temporary left behind."""
    from xecreco.io.paths import atomic_output

    out = tmp_path / "result.txt"
    out.write_text("old")
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic_output(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("half-way")
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    with atomic_output(out) as tmp:
        assert tmp.parent == out.parent and tmp.name.startswith(".result.txt.")
        tmp.write_text("new")
        assert out.read_text() == "old"  # nothing under the final name until the block ends
    assert out.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
