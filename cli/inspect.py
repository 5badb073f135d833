"""``xecreco inspect FILE``: check a ROOT file against the xecreco input schema."""

from __future__ import annotations

import json

import click

from xecreco.cli.options import branch_names, input_options


@click.command("inspect")
@click.argument("file", type=click.Path())
@input_options
@click.option("--max-events", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Events read to measure the fractions of invalid npho and time values.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(file, tree, branch_items, max_events, as_json):
    """Tree, entries, branches found and missing (required, truth, simulation extras, pile-up),
    their types, and the fractions of invalid npho and time values in FILE."""
    from xecreco.io.inspection import format_report, inspect_file

    report = inspect_file(file, tree=tree, max_events=max_events,
                          branches=branch_names(branch_items))
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
