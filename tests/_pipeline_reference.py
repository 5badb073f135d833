"""A fixed simulated sample and what ``xecreco predict`` and ``xecreco inpaint`` write for it.

Used by tests/test_restructure_reference.py as the behaviour-unchanged evidence of the
restructuring (issue 12, item 5). The sample: :data:`N_EVENTS` signal photons from
:func:`xecreco.sim.simulate_file` with seed :data:`SEED` and :data:`DEAD_FRACTION` dead channels
(single process, so the contents are fixed). Both commands run through the command line
(:func:`xecreco.cli.main.main`, in process), which calls the library pipelines:

- ``predict SAMPLE -o PRED -r classical -r default``: every branch of the prediction tree is kept;
- ``inpaint SAMPLE -o REPAIRED --dead-branch dead`` with the default inpainter (the bundled neural
  inpainter): ``npho`` and ``time`` are kept where the output differs from the input (the
  repaired sensors), the flat indices of those sensors and of the ``inpainted`` flags, and the
  list of output branches. Every other value must equal the input file, which the test checks
  directly.

A fingerprint of the sample itself (per-event light sums, truth) is stored too, so a change in
the simulator is told apart from a change in the pipelines.

``python tests/_pipeline_reference.py`` rewrites tests/data/pipeline_reference.npz from the code
as it is now (first on commit ae8698b, before the restructuring; rewritten when a bundled model is
replaced).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REFERENCE_FILE = Path(__file__).resolve().parent / "data" / "pipeline_reference.npz"
N_EVENTS = 200
SEED = 20261212
DEAD_FRACTION = 0.02
STEP_EVENTS = 100
RECONSTRUCTORS = ("classical", "default")


def simulate_sample(directory: Path) -> Path:
    """Write the fixed sample into ``directory``; returns its path."""
    from xecreco.sim import SimConfig, simulate_file

    path = Path(directory) / "sample.root"
    simulate_file(path, N_EVENTS, config=SimConfig(dead_fraction=DEAD_FRACTION), seed=SEED,
                  progress=False, jobs=1)
    return path


def _cli(args: list[str]) -> None:
    from xecreco.cli.main import main

    status = main([str(a) for a in args])
    if status != 0:
        raise RuntimeError(f"xecreco {' '.join(map(str, args))} exited with status {status}")


def run_predict(sample: Path, directory: Path) -> Path:
    """``xecreco predict SAMPLE -r classical -r default``; returns the prediction file."""
    out = Path(directory) / "prediction.root"
    args = ["predict", sample, "-o", out, "--step", STEP_EVENTS, "--no-progress"]
    for name in RECONSTRUCTORS:
        args += ["-r", name]
    _cli(args)
    return out


def run_inpaint(sample: Path, directory: Path) -> Path:
    """``xecreco inpaint SAMPLE --dead-branch dead`` (default inpainter); returns the output."""
    out = Path(directory) / "repaired.root"
    _cli(["inpaint", sample, "-o", out, "--dead-branch", "dead", "--step", STEP_EVENTS,
          "--no-progress"])
    return out


def read_tree(path: Path, tree: str) -> dict[str, np.ndarray]:
    """Every branch of ``tree`` as a numpy array (jagged branches as awkward arrays)."""
    import awkward as ak
    import uproot

    with uproot.open(path) as handle:
        arrays = handle[tree].arrays(library="ak")
    out = {}
    for name in arrays.fields:
        try:
            out[name] = ak.to_numpy(arrays[name])
        except (ValueError, TypeError):
            out[name] = arrays[name]
    return out


def sample_fingerprint(sample: dict) -> dict[str, np.ndarray]:
    """A few numbers per event that change whenever the simulated sample changes."""
    npho = np.where(sample["npho"] < 9e9, sample["npho"], 0.0).astype(np.float64)
    return {"npho_sum": npho.sum(axis=1), "dead_count": sample["dead"].sum(axis=1),
            "energyTruth": sample["energyTruth"].astype(np.float64),
            "uvwTruth": sample["uvwTruth"].astype(np.float64)}


def repaired_values(sample: dict, repaired: dict) -> dict[str, np.ndarray]:
    """The values inpaint wrote where it changed the input, and where that was."""
    out = {}
    for name in ("npho", "time"):
        changed = np.flatnonzero(repaired[name].ravel() != sample[name].ravel())
        out[f"{name}_changed"] = changed
        out[f"{name}_values"] = repaired[name].ravel()[changed]
    out["inpainted_flat"] = np.flatnonzero(repaired["inpainted"].ravel())
    return out


def reference_numbers(directory: Path) -> dict[str, np.ndarray]:
    """Simulate, run both pipelines in ``directory`` and collect every number the test checks."""
    directory = Path(directory)
    sample_path = simulate_sample(directory)
    sample = read_tree(sample_path, "tree")
    prediction = read_tree(run_predict(sample_path, directory), "reco")
    repaired = read_tree(run_inpaint(sample_path, directory), "tree")
    numbers = {f"sample_{k}": v for k, v in sample_fingerprint(sample).items()}
    numbers["predict__branches"] = np.array(list(prediction))
    numbers.update({f"predict_{k}": np.asarray(v) for k, v in prediction.items()})
    numbers["inpaint__branches"] = np.array(list(repaired))
    numbers.update({f"inpaint_{k}": v for k, v in repaired_values(sample, repaired).items()})
    return numbers


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        numbers = reference_numbers(Path(tmp))
    REFERENCE_FILE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE_FILE, **numbers)
    print(f"wrote {len(numbers)} arrays to {REFERENCE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
