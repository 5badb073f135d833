"""The command group: version, help, one-line errors and --debug."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xecreco import __version__
from xecreco.cli import main as cli_main
from xecreco.errors import UserError


def test_version(capsys):
    assert cli_main.main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_command(capsys):
    assert cli_main.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli_main.COMMANDS:
        assert name in out


def test_unknown_command_is_an_error(capsys):
    assert cli_main.main(["no-such-command"]) != 0


def test_user_error_is_one_line_and_debug_raises(monkeypatch, capsys):
    import click

    @click.command()
    def boom():
        raise UserError("file 'x.root': no tree 'tree'; pass --tree")

    monkeypatch.setitem(cli_main.COMMANDS, "boom", ("xecreco.cli._boom", "test"))
    monkeypatch.setattr(cli_main.LazyGroup, "get_command", lambda self, ctx, name: boom)
    assert cli_main.main(["boom"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no tree 'tree'" in err
    with pytest.raises(UserError):
        cli_main.main(["--debug", "boom"])


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "xecreco", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and __version__ in result.stdout
