"""Fast vectorised Monte-Carlo of photons in the MEG II liquid-xenon calorimeter.

``simulate_events(n, config, seed)`` returns the file schema's branches in memory;
``simulate_file(path, n, config, seed, jobs)`` streams them to a ROOT file. Every physics parameter
is a documented field of :class:`SimConfig` (``docs/simulation.md``).
"""

from xecreco.sim.config import SimConfig
from xecreco.sim.runner import simulate_events, simulate_file

__all__ = ["SimConfig", "simulate_events", "simulate_file"]
