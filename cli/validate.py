"""``xecreco validate``: physics validation report from prediction files.

    xecreco validate PRED.root... -o DIR [--reco NAME ...] [--study NAME ...] [--label L ...]
    xecreco validate --data SIM.root -r RECO... -o DIR
    xecreco validate PRED.root... -o DIR --input SIM.root --worst N
    xecreco validate --data SIM.root -r RECO --dead-patterns [--inpainter NAME] -o DIR

The second form first predicts the reconstructions on the simulated files into
DIR/predictions.root (``xecreco.models.pipelines.predict.predict_files``), then validates that file.
``--worst N`` adds the gallery of the N worst events per reconstruction and observable, drawn
from the simulated input (``--input``; with ``--data`` the data files themselves).
``--dead-patterns`` predicts the same events once per dead-channel pattern of each file
(:mod:`xecreco.validation.deadpatterns`) and validates them labelled by pattern.
"""

from __future__ import annotations

import click

from xecreco.cli.options import branch_names, input_options
from xecreco.errors import UserError

#: the study names of xecreco.validation.studies.STUDIES (kept here so --help imports nothing)
STUDY_CHOICES = ("energy", "position", "angle", "timing", "pileup", "deadchannels", "scan",
                 "calibration")


@click.command("validate")
@click.argument("predictions", nargs=-1, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Report folder (index.html, summary.json, histograms.root, plots/).")
@click.option("--reco", "recos", multiple=True,
              help="Reconstruction to include (repeatable; default: all in the files).")
@click.option("--study", "studies", multiple=True, type=click.Choice(STUDY_CHOICES),
              help="Study to run (repeatable; default: all).")
@click.option("--label", "labels", multiple=True,
              help="One label per prediction file (e.g. raw, inpainted): events are matched by "
                   "(run, event) and compared side by side; repeat a label to concatenate files.")
@click.option("--tree", default="reco", show_default=True, help="Prediction tree name.")
@click.option("--data", "data_files", multiple=True, type=click.Path(dir_okay=False),
              help="Simulated input file(s): predict with -r first, then validate.")
@click.option("-r", "--reconstructor", "reconstructors", multiple=True,
              help="With --data: registered reconstructor name or checkpoint path (repeatable).")
@input_options(tree_flag="--data-tree", tree_dest="data_tree",
               tree_help="Input tree of --data and --input files (--branch maps their branches).")
@click.option("--input", "input_files", multiple=True, type=click.Path(dir_okay=False),
              help="Simulated input file(s) of the prediction files, for --worst (events are "
                   "matched by run and event).")
@click.option("--worst", default=0, show_default=True, type=click.IntRange(min=0),
              help="Add a gallery of the N events with the largest |residual| per "
                   "reconstruction and observable (energy, u, v, w, time), drawn with the "
                   "event display; needs --input (or --data).")
@click.option("--dead-patterns", "dead_patterns", is_flag=True,
              help="With --data (simulated files with dead channels): predict the same events "
                   "clean (nphoClean/timeClean) and with only the scattered dead channels, only "
                   "the dead readout groups, and both, each repaired by the inpainter; the "
                   "dead-channel study reports every headline resolution's loss per pattern.")
@click.option("--inpainter", default=None,
              help="With --dead-patterns: inpainter name or checkpoint that repairs the "
                   "patterns [default: the bundled inpainter].")
@click.option("--bootstrap", default=40, show_default=True, type=click.IntRange(2, 1000),
              help="Bootstrap replicas for the errors of the robust widths.")
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "pdf", "svg"]),
              help="Plot format (repeatable; default: png and pdf). The page shows the first.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(predictions, output, recos, studies, labels, tree, data_files, reconstructors,
            data_tree, branch_items, input_files, worst, dead_patterns, inpainter, bootstrap,
            formats, progress):
    """Physics validation report: resolutions, biases, containment, pile-up ROC, dead channels.

    PREDICTIONS are prediction files written by `xecreco predict` (tree `reco`, truth copied).
    """
    from xecreco.validation.api import validate, validate_data

    branches = branch_names(branch_items).to_dict() or None
    formats = tuple(formats) or ("png", "pdf")
    if data_files:
        if predictions:
            raise UserError("give either prediction files or --data input files, not both")
        if not reconstructors:
            raise UserError("--data needs at least one -r/--reconstructor to predict with")
        if labels:
            raise UserError("--label compares several prediction files; it does not apply to "
                            "--data")
        if input_files:
            raise UserError("--input names the inputs of prediction files; with --data the "
                            "data files are the input (drop --input)")
        if recos:
            raise UserError("--reco selects reconstructions in prediction files; with --data "
                            "choose them with -r/--reconstructor")
        summary = validate_data(list(data_files), list(reconstructors), output, tree=data_tree,
                                branches=branches, studies=list(studies) or None,
                                progress=progress, worst=worst, formats=formats,
                                bootstrap_replicas=bootstrap, dead_patterns=dead_patterns,
                                inpainter=inpainter)
    else:
        if not predictions:
            raise UserError("no prediction files given; usage: xecreco validate PRED.root... "
                            "-o DIR (or --data SIM.root -r RECO -o DIR)")
        if dead_patterns or inpainter:
            raise UserError("--dead-patterns and --inpainter predict from simulated files: use "
                            "them with --data SIM.root")
        if reconstructors:
            raise UserError("-r/--reconstructor is used with --data only; to select "
                            "reconstructions in prediction files use --reco")
        if branches and not input_files:
            raise UserError("--branch maps branches of --data or --input files; prediction "
                            "files always have xecreco's names (drop --branch)")
        if branches and not worst:
            raise UserError("--branch maps branches of the --input files, which are read for "
                            "--worst only: add --worst N or drop --branch")
        if input_files and not worst:
            raise UserError("--input files are read for the worst-event gallery only: add "
                            "--worst N or drop --input")
        given = click.get_current_context().get_parameter_source("data_tree")
        if given is click.core.ParameterSource.COMMANDLINE and not input_files:
            raise UserError("--data-tree names the tree of --data or --input files; prediction "
                            "files are read from --tree (drop --data-tree)")
        summary = validate(list(predictions), output, recos=list(recos) or None,
                           studies=list(studies) or None, labels=list(labels) or None,
                           progress=progress, tree=tree, bootstrap_replicas=bootstrap,
                           formats=formats, input_files=list(input_files) or None,
                           input_tree=data_tree, input_branches=branches, worst=worst)
    for name, reason in summary["skipped"].items():
        click.echo(f"skipped {name}: {reason}", err=True)
    click.echo(f"report: {summary['outputs']['index_html']}")
