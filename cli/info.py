"""``xecreco info``: versions, registered reconstructors, inpainters and training tasks, and the
geometry summary."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

import click
import numpy as np

from xecreco import __version__
from xecreco.geometry import Face, design_geometry

#: packages whose versions are reported (read from package metadata: nothing is imported)
REPORTED_PACKAGES = ("numpy", "scipy", "torch", "uproot", "awkward", "onnxruntime")


def package_versions() -> dict[str, str]:
    """Installed version of each of :data:`REPORTED_PACKAGES` ("not installed" if absent)."""
    versions = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def geometry_summary() -> list[str]:
    """One line per face of the design geometry: count, sensor type, radius and z range (cm)."""
    geo = design_geometry()
    radius = np.hypot(geo.position[:, 0], geo.position[:, 1])
    lines = []
    for face in Face:
        mask = geo.face == face
        kind = "MPPC" if geo.is_mppc[mask].all() else "PMT"
        r_lo, r_hi = radius[mask].min(), radius[mask].max()
        z_lo, z_hi = geo.position[mask, 2].min(), geo.position[mask, 2].max()
        r_text = f"r = {r_lo:.2f} cm" if r_hi - r_lo < 0.01 else f"r = {r_lo:.2f}-{r_hi:.2f} cm"
        z_text = f"z = {z_lo:+.2f} to {z_hi:+.2f} cm"
        lines.append(f"{face.name.lower():<7}{int(mask.sum()):>5} {kind:<5}{r_text:<24}{z_text}")
    return lines


def registered_names(kind: str = "reconstructors") -> str:
    """Comma-separated registered reconstructor, inpainter or task names (or why they could not
    be listed)."""
    try:
        from xecreco import models

        names = getattr(models, f"available_{kind}")()
    except Exception as exc:  # noqa: BLE001 - info must report a broken model install, not die
        return f"unavailable ({type(exc).__name__}: {exc})"
    return ", ".join(names) if names else "none"


@click.command("info")
def command():
    """Versions, registered reconstructors and the geometry summary."""
    click.echo(f"xecreco {__version__}")
    click.echo(f"python {platform.python_version()} ({platform.machine()}, {platform.system()})")
    for name, ver in package_versions().items():
        click.echo(f"{name} {ver}")
    click.echo(f"reconstructors: {registered_names('reconstructors')}")
    click.echo(f"inpainters: {registered_names('inpainters')}")
    click.echo(f"training tasks: {registered_names('tasks')}")
    geo = design_geometry()
    click.echo(f"geometry: {geo.n_sensors} sensors ({int(geo.is_mppc.sum())} MPPC, "
               f"{int((~geo.is_mppc).sum())} PMT), design")
    for line in geometry_summary():
        click.echo(f"  {line}")
