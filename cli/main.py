"""The ``xecreco`` command group.

Commands live in their own modules (``xecreco.cli.<command>``, each exposing ``command``) and are
imported only when invoked, so ``xecreco --help`` stays fast and does not import torch.
Errors: a :class:`~xecreco.errors.UserError` is printed as one line and exits with status 2;
any other exception is printed as one line and exits with status 1. ``--debug`` re-raises with the
full traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from xecreco import __version__
from xecreco.errors import UserError

#: command name -> (module, one-line help shown in ``xecreco --help``)
COMMANDS = {
    "info": ("xecreco.cli.info", "Versions, registered reconstructors and the geometry summary."),
    "geometry": ("xecreco.cli.geometry", "Write the sensor table (id, face, type, x, y, z, ...)."),
    "inspect": ("xecreco.cli.inspect", "Check a ROOT file against the xecreco input schema."),
    "simulate": ("xecreco.cli.simulate", "Simulate photons in the XEC and write them to ROOT."),
    "calibrate": ("xecreco.cli.calibrate", "Derive classical-reconstruction calibration constants."),
    "predict": ("xecreco.cli.predict", "Run reconstructions on ROOT files, write a prediction tree."),
    "validate": ("xecreco.cli.validate", "Physics validation report from prediction files."),
    "explain": ("xecreco.cli.explain", "What a network looks at: occlusion, saliency, attention."),
    "display": ("xecreco.cli.display", "Draw events on the unrolled detector (PNG or PDF)."),
    "train": ("xecreco.cli.train", "Train a regressor, MAE or inpainter from a YAML config."),
    "export": ("xecreco.cli.export", "Export a checkpoint to ONNX and check it with onnxruntime."),
    "bundle": ("xecreco.cli.bundle", "Write a trained checkpoint as a bundled model file."),
    "inpaint": ("xecreco.cli.inpaint", "Repair dead channels in a ROOT file."),
    "demo": ("xecreco.cli.demo", "End-to-end demo: simulate, inpaint, reconstruct, validate."),
}


class LazyGroup(click.Group):
    """A click group that imports each command module on first use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, _ = COMMANDS[name]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="xecreco")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx, debug):
    """xecreco: reconstruct photons in the MEG II liquid-xenon calorimeter.

    ROOT in, ROOT out. Run `xecreco COMMAND --help` for each command.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main(argv=None) -> int:
    """Entry point of the ``xecreco`` script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="xecreco", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("xecreco: aborted", err=True)
        return 130
    except UserError as exc:
        if debug:
            raise
        click.echo(f"xecreco: error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("xecreco: interrupted", err=True)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI never shows a traceback without --debug
        if debug:
            raise
        click.echo(
            f"xecreco: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback)",
            err=True,
        )
        return 1
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
