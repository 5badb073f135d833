"""Install layout: the top-level folders install as subpackages of the xecreco namespace only."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("models", "validation", "cli")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("xecreco-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_wheel_maps_folders_into_namespace(wheel_names):
    for sub in SUBPACKAGES:
        assert f"xecreco/{sub}/__init__.py" in wheel_names, f"xecreco.{sub} missing from wheel"
    tops = {name.split("/", 1)[0] for name in wheel_names}
    assert not tops & set(SUBPACKAGES), f"generic top-level package in wheel: {tops & set(SUBPACKAGES)}"
    assert all(top == "xecreco" or top.endswith((".dist-info", ".data")) for top in tops), tops


def test_wheel_ships_package_data(wheel_names):
    assert "xecreco/models/registry.py" in wheel_names
    assert "xecreco/cli/main.py" in wheel_names


def test_installed_namespace_resolves_to_repo_folders():
    import xecreco.cli.main
    import xecreco.models
    import xecreco.validation

    assert Path(xecreco.models.__file__).resolve().parent == REPO / "models"
    assert Path(xecreco.validation.__file__).resolve().parent == REPO / "validation"
    assert Path(xecreco.cli.main.__file__).resolve().parent == REPO / "cli"
    site = Path(sysconfig.get_paths()["purelib"])
    for sub in SUBPACKAGES:
        assert not (site / sub).exists(), f"site-packages has a top-level '{sub}'"
