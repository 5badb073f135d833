"""Photon sources: energies, vertices on the target foil, directions, and the conversion point.

Energies are MeV inside the simulation (converted to GeV only when written). The vertex is drawn
uniformly on the MEG II target, an elliptical foil (semi-axes 13.5 x 3.3 cm) whose long axis lies
in the x-z plane at ``target_slant_deg`` to the beam and whose short axis is vertical. Directions
are uniform in cos(theta) within +-``cos_theta_max`` and in azimuth within
180 +- ``phi_half_width_deg`` deg (phi = atan2(y, -x) within +-half width). The first
interaction is at depth s ~ Exp(lambda(E)) past the inner photo-surface, lambda interpolated from
the configured attenuation table.
"""

from __future__ import annotations

import numpy as np

from xecreco.geometry import angles_to_direction
from xecreco.sim.config import SOURCE_LINES_MEV, SimConfig
from xecreco.sim.volume import entry_distance, inside_active


def draw_energies(n: int, config: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """(n,) photon energies in MeV for the configured source."""
    if config.source == "flat":
        return rng.uniform(config.energy_min_mev, config.energy_max_mev, n)
    lines = (
        np.asarray(config.energies_mev, dtype=np.float64)
        if config.source == "list"
        else np.asarray(SOURCE_LINES_MEV[config.source], dtype=np.float64)
    )
    return lines[rng.integers(0, len(lines), n)]


def draw_vertices(n: int, config: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) vertices (cm) uniform on the slanted elliptical target foil."""
    radius = np.sqrt(rng.uniform(0.0, 1.0, n))
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    along = config.target_semi_major_cm * radius * np.cos(angle)
    across = config.target_semi_minor_cm * radius * np.sin(angle)
    slant = np.radians(config.target_slant_deg)
    return np.stack([along * np.sin(slant), across, along * np.cos(slant)], axis=-1)


def draw_directions(n: int, config: SimConfig, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) unit directions uniform in the XEC acceptance."""
    cos_theta = rng.uniform(-config.cos_theta_max, config.cos_theta_max, n)
    phi = rng.uniform(-config.phi_half_width_deg, config.phi_half_width_deg, n)
    return angles_to_direction(np.degrees(np.arccos(cos_theta)), phi)


def attenuation_length_cm(energy_mev: np.ndarray, config: SimConfig) -> np.ndarray:
    """Gamma attenuation length (cm) at ``energy_mev``: log-energy interpolation of the table,
    approaching ``attenuation_high_energy_cm`` as 1/E above the last tabulated energy."""
    e_tab = np.asarray(config.attenuation_energies_mev, dtype=np.float64)
    l_tab = np.asarray(config.attenuation_lengths_cm, dtype=np.float64)
    order = np.argsort(e_tab)
    e_tab, l_tab = e_tab[order], l_tab[order]
    energy = np.asarray(energy_mev, dtype=np.float64)
    length = np.interp(np.log(energy), np.log(e_tab), l_tab)
    high = energy > e_tab[-1]
    if np.any(high):
        limit = config.attenuation_high_energy_cm
        length = np.where(high, limit + (l_tab[-1] - limit) * e_tab[-1] / energy, length)
    return length


def draw_conversions(
    energy_mev: np.ndarray, vertex: np.ndarray, direction: np.ndarray, config: SimConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-interaction points of photons.

    Returns ``(point (N, 3) cm, depth (N,) cm past the inner surface, converted (N,) bool)``;
    ``converted`` is False where the photon leaves the active volume (or misses it) without
    interacting.
    """
    entry = vertex + entry_distance(vertex, direction)[:, None] * direction
    depth = rng.exponential(attenuation_length_cm(energy_mev, config))
    point = entry + depth[:, None] * direction
    entered = inside_active(entry + 1e-4 * direction)
    return point, depth, entered & inside_active(point)
