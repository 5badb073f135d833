"""``xecreco geometry``: write the sensor table (id, face, type, x, y, z, normal, u, v, w) as CSV.

Library equivalent: :func:`xecreco.geometry.table.write_sensor_csv`.
"""

from __future__ import annotations

import click

from xecreco.geometry import design_geometry, load_asbuilt
from xecreco.geometry.table import write_sensor_csv
from xecreco.io.paths import check_output_file


@click.command("geometry")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="CSV file to write."
)
@click.option(
    "--asbuilt",
    type=click.Path(dir_okay=False),
    default=None,
    help="As-built geometry dump (sensor_directions.txt format) instead of the design geometry.",
)
def command(output, asbuilt):
    """Write the sensor table: id, face, type, x, y, z, nx, ny, nz, u, v, w (cm)."""
    check_output_file(output, [asbuilt])
    geometry = load_asbuilt(asbuilt) if asbuilt else design_geometry()
    path = write_sensor_csv(output, geometry)
    click.echo(f"wrote {geometry.n_sensors} sensors ({geometry.source} geometry) to {path}")
