"""``xecreco simulate``: simulate photons in the XEC and write them to a ROOT file.

A thin wrapper of :func:`xecreco.sim.simulate_file`; command-line options override the
``--config`` YAML file, which overrides the built-in defaults (``configs/sim-default.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import click

from xecreco.errors import UserError


def parse_source(text: str) -> dict:
    """``--source`` value -> SimConfig fields: a named source or a comma list of MeV energies."""
    from xecreco.sim.config import SOURCES

    name = text.strip().lower()
    if name in SOURCES and name != "list":
        return {"source": name}
    try:
        energies = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(
            f"--source {text!r}: use signal, flat, cex, li, ni or a comma list of energies in MeV "
            "(e.g. 17.6,52.83)"
        ) from None
    if not energies or any(e <= 0 for e in energies):
        raise UserError(f"--source {text!r}: energies must be positive numbers in MeV")
    return {"source": "list", "energies_mev": energies}


def parse_energy_range(text: str) -> dict:
    """``--energy LOW:HIGH`` (MeV) -> flat-spectrum fields."""
    parts = text.split(":")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise UserError(f"--energy {text!r}: expected LOW:HIGH in MeV, e.g. 15:60") from None
    if not 0 < low < high:
        raise UserError(f"--energy {text!r}: need 0 < LOW < HIGH (MeV)")
    return {"energy_min_mev": low, "energy_max_mev": high}


def parse_dead(text: str) -> dict:
    """``--dead`` value -> a fraction in [0, 1) or an existing list file."""
    try:
        fraction = float(text)
    except ValueError:
        path = Path(text)
        if not path.is_file():
            raise UserError(
                f"--dead {text!r}: neither a fraction in [0, 1) nor an existing file of sensor ids"
            ) from None
        return {"dead_list": str(path), "dead_fraction": 0.0}
    if not 0 <= fraction < 1:
        raise UserError(f"--dead {text}: the fraction of dead channels must be in [0, 1)")
    return {"dead_fraction": fraction, "dead_list": ""}


def check_conflicts(source, energy, dead, dead_groups) -> None:
    """Options that contradict each other are one-line errors (never silently dropped)."""
    if energy is not None and source is not None and source.strip().lower() != "flat":
        raise UserError(
            f"--energy {energy} draws a flat spectrum but --source {source} gives other "
            "energies; use one of them (--energy implies --source flat)"
        )
    if dead_groups and dead is not None:
        try:
            float(dead)
        except ValueError:
            raise UserError(
                f"--dead-groups {dead_groups} draws dead channels but --dead {dead} is a list "
                "file that fixes them; use a --dead FRACTION with --dead-groups, or the file alone"
            ) from None


@click.command("simulate")
@click.option("-n", "--events", "n_events", required=True, type=click.IntRange(min=1),
              help="Number of converted photons (events) to write.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output ROOT file (written under a temporary name, renamed on success).")
@click.option("--source", default=None,
              help="signal (52.83 MeV), flat, cex (54.9/82.9), li (17.6), ni (9.0), or "
                   "'E1,E2,...' MeV.")
@click.option("--energy", default=None,
              help="Flat spectrum range LOW:HIGH in MeV (implies --source flat).")
@click.option("--pileup-rate", type=float, default=None,
              help="Pile-up photon rate in Hz (0 = none).")
@click.option("--dead", default=None,
              help="Dead channels: a FRACTION in [0,1) or a FILE of sensor ids.")
@click.option("--dead-groups", type=click.IntRange(min=0), default=None,
              help="Whole readout groups of dead MPPCs (8 x 4 blocks by default), drawn in "
                   "addition to a --dead FRACTION.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Event seed.")
@click.option("--run", "run_number", type=click.IntRange(min=1, max=2**31 - 1), default=None,
              help="Run number written to every event [default: 1000 + seed].")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes (the output does not depend on it).")
@click.option("--config", "config_path", default=None,
              type=click.Path(dir_okay=False, path_type=Path),
              help="YAML file of simulation parameters (see configs/sim-default.yaml).")
@click.option("--first-event", type=click.IntRange(min=0), default=0, show_default=True,
              help="Number of the first event (also selects the random streams).")
@click.option("--tree", default="tree", show_default=True, help="Output tree name.")
@click.option("--no-progress", is_flag=True, help="Do not show the progress bar.")
def command(n_events, output, source, energy, pileup_rate, dead, dead_groups, seed, run_number,
            jobs, config_path, first_event, tree, no_progress):
    """Simulate photons in the XEC and write them to a ROOT file."""
    from xecreco.io.paths import check_output_file
    from xecreco.sim import SimConfig, simulate_file

    check_output_file(output, [config_path, dead if dead and Path(dead).is_file() else None])
    check_conflicts(source, energy, dead, dead_groups)
    config = SimConfig.from_yaml(config_path) if config_path is not None else SimConfig()
    changes: dict = {}
    if source is not None:
        changes.update(parse_source(source))
    if energy is not None:
        changes.update(parse_energy_range(energy))
        changes["source"] = "flat"
    if pileup_rate is not None:
        changes["pileup_rate_hz"] = pileup_rate
    if dead is not None:
        changes.update(parse_dead(dead))
    if dead_groups is not None:
        changes["dead_groups"] = dead_groups
    if run_number is not None:
        changes["run_number"] = run_number
    if changes:
        config = config.replace(**changes)
    stats = simulate_file(output, n_events, config=config, seed=seed, jobs=jobs,
                          progress=not no_progress, tree=tree, start_event=first_event)
    click.echo(
        f"wrote {stats['events']} events to {output} (tree '{tree}', run "
        f"{config.run_for_seed(seed)}, events {first_event}-{first_event + stats['events'] - 1}); "
        f"{stats['photons_not_converted']} photons left the xenon without converting "
        "(not written); "
        f"{stats.get('pileup_photons', 0)} pile-up photons; {stats['dead_channels']} dead channels"
    )
