"""The docs say what is true now: the CLI reference is current and the README tour runs."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from xecreco.cli.main import main
from xecreco.cli.reference import cli_reference_markdown

REPO = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    committed = (REPO / "docs" / "cli.md").read_text()
    assert committed == cli_reference_markdown(), "docs/cli.md is stale: run `make docs`"


def _xecreco_lines(shell: str) -> list[str]:
    commands = []
    for line in shell.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("xecreco "):
            commands.append(line)
    return commands


def _tour_blocks() -> tuple[list[str], str, list[str]]:
    """The shell commands and the Python snippet of the README's quick tour, and the commands
    of its second shell block (looking at events and at the model)."""
    readme = (REPO / "README.md").read_text()
    tour = readme.split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    shells = re.findall(r"```bash\n(.*?)```", tour, re.S)
    python = re.search(r"```python\n(.*?)```", tour, re.S).group(1)
    return _xecreco_lines(shells[0]), python, _xecreco_lines(shells[1])


def test_readme_quick_tour_runs(tmp_path, monkeypatch):
    commands, python, _ = _tour_blocks()
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)
    for command in commands:
        args = shlex.split(command)[1:]
        assert main(args) == 0, f"README command failed: {command}"
    assert (tmp_path / "report" / "index.html").is_file()
    namespace: dict = {}
    exec(compile(python, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert "out" in namespace and len(namespace["out"]["energy"]) > 0


@pytest.mark.slow
def test_readme_views_run(tmp_path, monkeypatch):
    """The README's second block (gallery, display, explain) runs on the tour's files."""
    tour, _, views = _tour_blocks()
    assert len(views) == 3
    monkeypatch.chdir(tmp_path)
    for command in tour + views:
        assert main(shlex.split(command)[1:]) == 0, f"README command failed: {command}"
    assert (tmp_path / "event.png").is_file()
    assert (tmp_path / "explain" / "index.html").is_file()
    assert "Worst events" in (tmp_path / "report-worst" / "index.html").read_text()
