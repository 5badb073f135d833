"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED_DIR / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` (design and as-built geometry); tests using it skip without it."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip("../shared/reference is absent: geometry reference files are not available here")
    return REFERENCE_DIR


# --- simulated sample files (xecreco.sim), shared by every area's tests -------------------------
#: seeds and sizes of the shared simulated samples (fixed so results are reproducible)
SIM_SMALL_EVENTS = 300
SIM_SMALL_SEED = 20260101
SIM_PILEUP_DEAD_EVENTS = 200
SIM_PILEUP_DEAD_SEED = 20260102
#: pile-up photon rate of ``sim_file_pileup_dead`` (Hz): about one extra photon per +-200 ns window
SIM_PILEUP_RATE_HZ = 2.5e6
SIM_DEAD_FRACTION = 0.02


@pytest.fixture(scope="session")
def sim_file_small(tmp_path_factory) -> Path:
    """ROOT file (tree ``tree``) of 300 simulated 52.83 MeV signal photons, fixed seed.

    No pile-up, no dead channels; all truth and simulation-extra branches of DESIGN.md section 2.
    """
    from xecreco.sim import SimConfig, simulate_file

    path = tmp_path_factory.mktemp("sim_small") / "signal_small.root"
    simulate_file(path, SIM_SMALL_EVENTS, config=SimConfig(), seed=SIM_SMALL_SEED, progress=False)
    return path


@pytest.fixture(scope="session")
def sim_file_pileup_dead(tmp_path_factory) -> Path:
    """ROOT file of 200 signal photons with pile-up (~1 extra photon per event) and 2% dead channels.

    Dead sensors carry 1e10 in ``npho`` and ``time`` and ``dead = True``; ``nphoClean`` /
    ``timeClean`` keep the undamaged values; pile-up truth branches are jagged.
    """
    from xecreco.sim import SimConfig, simulate_file

    config = SimConfig(pileup_rate_hz=SIM_PILEUP_RATE_HZ, dead_fraction=SIM_DEAD_FRACTION)
    path = tmp_path_factory.mktemp("sim_pileup_dead") / "signal_pileup_dead.root"
    simulate_file(
        path, SIM_PILEUP_DEAD_EVENTS, config=config, seed=SIM_PILEUP_DEAD_SEED, progress=False
    )
    return path


# --- small synthetic input files (xecreco.io), no simulation needed -----------------------------
@pytest.fixture
def input_file_factory(tmp_path):
    """Callable writing a synthetic input ROOT file; returns ``(path, arrays_written)``.

    ``make(n, name="input.root", seed=0, tree="tree", truth=True, pileup=False, jagged=False,
    compression="lz4", rename=None, **writer_options)``: npho ~ exponential (mean 400 photons,
    float32), time = 1e-7 s + N(0, 2 ns) (float32), run 7, event 100 + i; ``truth`` adds
    energyTruth (GeV) and uvwTruth (cm); ``pileup`` adds nPileup and jagged pileupEnergy;
    ``jagged`` writes npho/time as variable-length (counted) arrays of 4760; ``rename`` maps
    canonical -> file branch names. Written with :class:`xecreco.io.writer.RootWriter`.
    """
    import awkward as ak
    import numpy as np

    from xecreco.io.writer import RootWriter

    def make(n, name="input.root", seed=0, tree="tree", truth=True, pileup=False, jagged=False,
             compression="lz4", rename=None, **writer_options):
        rng = np.random.default_rng(seed)
        arrays = {
            "npho": rng.exponential(400.0, (n, 4760)).astype(np.float32),
            "time": (1e-7 + rng.normal(0.0, 2e-9, (n, 4760))).astype(np.float32),
            "run": np.full(n, 7, dtype=np.int32),
            "event": np.arange(100, 100 + n, dtype=np.int32),
        }
        if truth:
            arrays["energyTruth"] = rng.uniform(0.015, 0.06, n).astype(np.float32)
            arrays["uvwTruth"] = rng.normal(0.0, 10.0, (n, 3)).astype(np.float32)
        if pileup:
            counts = rng.integers(0, 3, n)
            arrays["nPileup"] = counts.astype(np.int32)
            arrays["pileupEnergy"] = ak.unflatten(
                rng.uniform(0.001, 0.05, int(counts.sum())).astype(np.float32), counts
            )
        written = dict(arrays)
        if jagged:
            for key in ("npho", "time"):
                arrays[key] = ak.unflatten(arrays[key].ravel(), np.full(n, 4760))
        rename = rename or {}
        arrays = {rename.get(k, k): v for k, v in arrays.items()}
        schema = None
        if n == 0:
            schema = {k: (v.dtype, v.shape[1:]) for k, v in arrays.items() if isinstance(v, np.ndarray)}
        path = tmp_path / name
        with RootWriter(path, tree=tree, compression=compression, schema=schema,
                        **writer_options) as writer:
            writer.write(arrays)
        return path, written

    return make
