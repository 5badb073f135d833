"""Third-party reconstructors registered through the entry-point group xecreco.reconstructors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import uproot

from test_predict import REPO, write_input
from xecreco.models import registry
from xecreco.models.pipelines.predict import predict_files

PLUGIN_SOURCE = textwrap.dedent(
    '''
    import numpy as np


    class ToyPlugin:
        """Energy = number of valid sensors * 1e-3 GeV; u, v, w = entry, 1, 2."""

        outputs = ("energy", "u", "v", "w")

        def __init__(self, name="toyplugin"):
            self.name = name

        def reconstruct(self, batch):
            n = len(batch)
            return {
                "energy": batch.valid_npho.sum(axis=1) * 1e-3,
                "u": batch.entry.astype(np.float32),
                "v": np.ones(n), "w": np.full(n, 2.0),
                "status": np.zeros(n, dtype=np.int32),
            }
    '''
)


@pytest.fixture()
def plugin_dir(tmp_path):
    """A directory that, on sys.path, makes ``toyplugin`` an installed entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_xec_plugin.py").write_text(PLUGIN_SOURCE)
    info = site / "toy_xec_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-xec-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[xecreco.reconstructors]\ntoyplugin = toy_xec_plugin:ToyPlugin\n"
    )
    return site


def test_entry_point_plugin_runs_through_predict(plugin_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_RECONSTRUCTORS", dict(registry._RECONSTRUCTORS))
    assert "toyplugin" in registry.available_reconstructors()
    source = write_input(tmp_path / "in.root", 9, seed=3, dead=(10,))
    out = tmp_path / "out.root"
    predict_files([source], out, ["toyplugin"], progress=False)
    with uproot.open(out) as handle:
        data = handle["reco"].arrays(library="np")
    np.testing.assert_array_equal(data["toyplugin_u"], np.arange(9, dtype=np.float32))
    np.testing.assert_allclose(data["toyplugin_energy"], 4759e-3, rtol=1e-6)
    assert "toyplugin_x" in data  # derived from u, v, w


@pytest.mark.slow
def test_entry_point_plugin_from_the_command_line(plugin_dir, tmp_path):
    source = write_input(tmp_path / "in.root", 5, seed=4)
    out = tmp_path / "out.root"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-m", "xecreco.cli.main", "predict", str(source), "-o", str(out), "-r",
         "toyplugin", "--name", "toyplugin=mine", "--no-progress"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    with uproot.open(out) as handle:
        assert handle["reco"]["mine_energy"].array(library="np").shape == (5,)
    assert Path(out).exists()
