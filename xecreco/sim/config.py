"""Every physics parameter of the fast simulation, as one documented dataclass.

Values and their sources are in ``docs/simulation.md`` (physics.md sections 2-6). Units are in
the field names: ``_cm``, ``_mev``, ``_ns``, ``_hz``, ``_deg``; fractions are plain numbers.
YAML files hold a flat mapping of these field names (``configs/sim-default.yaml``), read by the
one typed-YAML loader (:mod:`xecreco.config`): unknown keys are a
:class:`~xecreco.errors.UserError` naming the closest valid key, values of the wrong type name the
key and the expected type.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from xecreco.config import build_dataclass, read_yaml_mapping
from xecreco.errors import UserError
from xecreco.geometry.constants import LXE_LIGHT_SPEED_CM_PER_NS, SPEED_OF_LIGHT_CM_PER_NS
from xecreco.sim.dead import GROUP_COLS, GROUP_ROWS

#: named sources -> photon energies in MeV (one value is a line, several are drawn uniformly)
SOURCE_LINES_MEV = {
    "signal": (52.83,),
    "cex": (54.9, 82.9),
    "li": (17.6,),
    "ni": (9.0,),
}
SOURCES = ("signal", "flat", "cex", "li", "ni", "list")
#: run number of a sample whose ``run_number`` is 0: this offset plus the event seed
RUN_FROM_SEED_OFFSET = 1000
#: largest run number (the ``run`` branch is int32)
MAX_RUN_NUMBER = 2**31 - 1


@dataclass
class SimConfig:
    """Fast-simulation parameters (see docs/simulation.md for values and sources)."""

    # --- source -----------------------------------------------------------------------------
    #: "signal" (52.83 MeV), "flat" (uniform energy_min..max), "cex" (54.9 / 82.9 MeV, equal
    #: shares), "li" (17.6 MeV), "ni" (9.0 MeV) or "list" (uniform choice among ``energies_mev``)
    source: str = "signal"
    #: energies for source "list", MeV
    energies_mev: list[float] = field(default_factory=list)
    #: flat spectrum range, MeV
    energy_min_mev: float = 15.0
    energy_max_mev: float = 60.0
    #: target foil: ellipse semi-axes (cm) and slant angle to the beam axis (deg)
    target_semi_major_cm: float = 13.5
    target_semi_minor_cm: float = 3.3
    target_slant_deg: float = 15.0
    #: direction acceptance: |cos(theta)| < cos_theta_max, azimuth 180 +- phi_half_width_deg
    cos_theta_max: float = 0.35
    phi_half_width_deg: float = 60.0
    #: photon emission time at the vertex (timeTruth): uniform in +- this half-width, ns
    time_spread_ns: float = 5.0
    #: run number written to every event; 0 = derived from the event seed as
    #: ``RUN_FROM_SEED_OFFSET + seed`` (1000 + seed), so samples of different seeds never share
    #: (run, event) identifiers (see :func:`run_number_for`)
    run_number: int = 0

    # --- liquid xenon -----------------------------------------------------------------------
    radiation_length_cm: float = 2.87
    critical_energy_mev: float = 11.7
    moliere_radius_cm: float = 5.2
    #: scintillation photons per MeV deposited
    light_yield_per_mev: float = 46000.0
    #: scintillation decay constant of gamma showers, ns
    decay_time_ns: float = 45.0
    #: effective light (group) speed for propagation delays, cm/ns
    light_speed_cm_per_ns: float = LXE_LIGHT_SPEED_CM_PER_NS
    #: speed of the photon and the shower front, cm/ns
    c_cm_per_ns: float = SPEED_OF_LIGHT_CM_PER_NS
    #: absorption length, cm (0 = no absorption; physics.md: > 100 cm, "300 cm or none")
    absorption_length_cm: float = 0.0
    #: Rayleigh scattering length, cm (0 = no scattering)
    rayleigh_length_cm: float = 40.0
    #: gamma attenuation length table: energies (MeV) and lengths (cm), interpolated in log(E);
    #: above the last energy it approaches ``attenuation_high_energy_cm`` (9/7 X0)
    attenuation_energies_mev: list[float] = field(default_factory=lambda: [9.0, 17.6, 52.8, 54.9, 82.9])
    attenuation_lengths_cm: list[float] = field(default_factory=lambda: [8.9, 7.25, 5.4, 5.25, 4.85])
    attenuation_high_energy_cm: float = 3.69

    # --- shower -----------------------------------------------------------------------------
    #: gamma-profile slope b (1/X0) and its event-by-event relative spread
    profile_b: float = 0.5
    profile_b_rel_spread: float = 0.10
    #: shower maximum t_max = ln(E/Ec) + profile_tmax_offset, X0 from the conversion point
    #: (physics.md section 3; floored at 0.2 X0 for the lowest energies)
    profile_tmax_offset: float = -0.5
    #: Gaussian spread of ln(t_max) event by event
    profile_ln_tmax_spread: float = 0.25
    #: correlation coefficient between the ln(t_max) and ln(b) fluctuations
    profile_ab_correlation: float = 0.5
    #: Grindhammer-Peters lateral profile: core and tail radii in Moliere radii, core fraction.
    #: physics.md's p ~ 0.75, Rt ~ 1.0 R_M contain only 81% within R_M with the core growth; the
    #: tail radius 0.65 R_M and p = 0.8 restore the stated 90% containment (89% here)
    lateral_core_radius: float = 0.2
    #: growth of the core radius per X0 of depth beyond t_max (relative)
    lateral_core_growth_per_x0: float = 0.1
    lateral_tail_radius: float = 0.65
    lateral_core_fraction: float = 0.8
    #: fall of the core fraction per X0 of depth beyond t_max (absolute)
    lateral_core_fraction_slope: float = 0.02
    #: macro-deposits drawn per shower
    n_deposits: int = 160
    #: longitudinal bins for the light centroids, as quantile edges of the deposits' depth order
    #: (finer at the start, where the light of shallow showers on the nearest MPPCs is most
    #: sensitive to the depth); each bin has a core centroid plus ``n_tail_sectors`` azimuthal tail
    #: centroids, so centroids = (len(edges) - 1) * (1 + sectors)
    centroid_depth_quantiles: list[float] = field(
        default_factory=lambda: [0.0, 0.03, 0.08, 0.16, 0.3, 0.55, 1.0])
    n_tail_sectors: int = 3
    #: lateral radius separating core and tail centroids, Moliere radii
    centroid_core_radius: float = 0.35
    #: random tilt of the shower axis, rad (Gaussian per projected angle)
    axis_tilt_rad: float = 0.03
    #: back-splash: conversions shallower than this depth (X0) lose a fraction of the energy
    #: backwards, exponentially distributed with mean backsplash_fraction * (1 - s / depth)
    backsplash_depth_x0: float = 1.0
    backsplash_fraction: float = 0.03

    # --- light collection and sensor response ------------------------------------------------
    #: sensors nearest to the shower that see every centroid; the others see the shower as one
    #: source at its energy centroid (speed / detail trade-off, see xecreco.sim.light)
    near_sensors: int = 512
    #: nominal MPPC photon detection efficiency and PMT quantum efficiency
    mppc_pde: float = 0.20
    pmt_qe: float = 0.16
    #: true per-channel relative efficiency spread (fixed detector property)
    efficiency_spread: float = 0.10
    #: relative error of the calibrated efficiency used for npho = nphe / efficiency
    calibration_error: float = 0.05
    #: seed of the detector calibration (efficiencies), independent of the event seed
    calibration_seed: int = 7
    #: MPPC Fresnel transmission T(theta) at the angles below (relative to normal incidence)
    fresnel_angles_deg: list[float] = field(default_factory=lambda: [0.0, 40.0, 60.0, 70.0, 80.0, 90.0])
    fresnel_transmission: list[float] = field(default_factory=lambda: [0.49, 0.47, 0.40, 0.32, 0.19, 0.0])
    #: MPPC pixels (saturation), and whether npho undoes the saturation (applied from 0.1% of
    #: the pixels on, where the loss exceeds 0.03 pe)
    mppc_pixels: int = 55692
    correct_saturation: bool = True
    #: Gaussian baseline noise, photo-electrons
    noise_pe: float = 2.0
    #: above this expected count the Poisson draw is replaced by a Gaussian
    gaussian_above_pe: float = 50.0

    # --- timing -----------------------------------------------------------------------------
    #: constant-fraction threshold: the k = f * N-th photon times the sensor
    cf_fraction: float = 0.03
    #: single-photon time spread, ns (MPPC) and PMT transit-time spread, ns
    mppc_sptr_ns: float = 0.15
    pmt_tts_ns: float = 0.5
    #: constant electronics term, ns
    electronics_ns: float = 0.04
    #: sensors with fewer photo-electrons than this get the invalid time (1e10)
    time_threshold_pe: float = 50.0

    # --- readout gate (physics.md section 6) ------------------------------------------------
    #: integrate each sensor's light in the gate [gate_start_ns, gate_end_ns] around the trigger
    #: (the signal photon's time); False = every photon's full light (the model before the gate)
    readout_gate: bool = True
    #: gate start and end relative to the trigger, ns (the profile is exp(-t/decay_time_ns))
    gate_start_ns: float = -20.0
    gate_end_ns: float = 100.0

    # --- pile-up ----------------------------------------------------------------------------
    #: rate of extra photons converting in the xenon, Hz (0 = no pile-up)
    pileup_rate_hz: float = 0.0
    #: pile-up window: extra photon times uniform in +- this, ns
    pileup_window_ns: float = 200.0
    #: pile-up spectrum: with probability pileup_low_fraction an exponential of mean
    #: pileup_low_mean_mev (cut at pileup_low_max_mev), otherwise ~1/E between pileup_min_mev
    #: and pileup_max_mev (radiative-decay-like falling shape)
    pileup_low_fraction: float = 0.5
    pileup_low_mean_mev: float = 3.0
    pileup_low_max_mev: float = 10.0
    pileup_min_mev: float = 1.0
    pileup_max_mev: float = 52.83

    # --- dead channels ----------------------------------------------------------------------
    #: fraction of scattered dead sensors drawn with dead_seed (not allowed with dead_list)
    dead_fraction: float = 0.0
    dead_seed: int = 11
    #: file with dead sensor ids (whitespace or comma separated, '#' comments), or "" for none
    dead_list: str = ""
    #: whole readout groups of dead MPPCs, drawn with dead_seed in addition to the scattered
    #: dead_fraction: the inner face is tiled into blocks of dead_group_rows (azimuth) x
    #: dead_group_cols (z) MPPCs (default 8 x 4 = 32 channels, one board's worth); this many
    #: distinct blocks are dead (xecreco.sim.dead)
    dead_groups: int = 0
    dead_group_rows: int = GROUP_ROWS
    dead_group_cols: int = GROUP_COLS

    # --- execution --------------------------------------------------------------------------
    #: events simulated per vectorised chunk (per-chunk seeds make output independent of jobs)
    chunk_events: int = 250

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise UserError for values that make no sense."""
        if self.source not in SOURCES:
            raise UserError(
                f"sim config: source {self.source!r} unknown; use one of {', '.join(SOURCES)}"
            )
        if self.source == "list" and not self.energies_mev:
            raise UserError("sim config: source 'list' needs energies_mev (a list of MeV values)")
        if any(float(e) <= 0 for e in self.energies_mev):
            raise UserError("sim config: energies_mev must all be positive (MeV)")
        if self.energies_mev and self.source != "list":
            raise UserError(
                f"sim config: energies_mev is given but source is {self.source!r}, which ignores "
                "it; use source 'list' or remove energies_mev"
            )
        if not 0 < self.energy_min_mev < self.energy_max_mev:
            raise UserError(
                "sim config: need 0 < energy_min_mev < energy_max_mev "
                f"(got {self.energy_min_mev}, {self.energy_max_mev})"
            )
        if self.pileup_rate_hz < 0:
            raise UserError("sim config: pileup_rate_hz must be >= 0")
        if not 0 <= self.dead_fraction < 1:
            raise UserError("sim config: dead_fraction must be in [0, 1)")
        if self.dead_list and (self.dead_fraction > 0 or self.dead_groups > 0):
            raise UserError(
                "sim config: dead_list fixes the dead channels; remove dead_fraction / "
                "dead_groups (or dead_list) to draw them instead"
            )
        if self.dead_groups < 0 or self.dead_group_rows < 1 or self.dead_group_cols < 1:
            raise UserError(
                "sim config: need dead_groups >= 0, dead_group_rows >= 1 and dead_group_cols >= 1"
            )
        if not 0 <= self.run_number <= MAX_RUN_NUMBER:
            raise UserError(
                f"sim config: run_number must be in [0, {MAX_RUN_NUMBER}] (0 = from the seed; "
                f"got {self.run_number})"
            )
        if not self.gate_start_ns < self.gate_end_ns:
            raise UserError(
                "sim config: need gate_start_ns < gate_end_ns "
                f"(got {self.gate_start_ns}, {self.gate_end_ns})"
            )
        if self.readout_gate and self.gate_end_ns <= 0:
            raise UserError(
                f"sim config: gate_end_ns {self.gate_end_ns} ns must be > 0: the gate has to "
                "hold the signal photon (trigger time 0)"
            )
        if self.n_deposits < 4 or self.n_tail_sectors < 1:
            raise UserError("sim config: need n_deposits >= 4 and n_tail_sectors >= 1")
        q = [float(x) for x in self.centroid_depth_quantiles]
        if len(q) < 2 or q[0] != 0.0 or q[-1] != 1.0 or any(b <= a for a, b in zip(q, q[1:])):
            raise UserError(
                "sim config: centroid_depth_quantiles must rise strictly from 0.0 to 1.0 "
                f"(got {self.centroid_depth_quantiles})"
            )
        if self.near_sensors < 0:
            raise UserError("sim config: near_sensors must be >= 0")
        if self.chunk_events < 1:
            raise UserError("sim config: chunk_events must be >= 1")
        if len(self.attenuation_energies_mev) != len(self.attenuation_lengths_cm):
            raise UserError(
                "sim config: attenuation_energies_mev and attenuation_lengths_cm differ in length"
            )
        if len(self.fresnel_angles_deg) != len(self.fresnel_transmission):
            raise UserError(
                "sim config: fresnel_angles_deg and fresnel_transmission differ in length"
            )
        positive = ("radiation_length_cm", "critical_energy_mev", "moliere_radius_cm",
                    "light_yield_per_mev", "decay_time_ns", "light_speed_cm_per_ns", "mppc_pde",
                    "pmt_qe", "profile_b", "cf_fraction", "pileup_window_ns")
        for name in positive:
            if not getattr(self, name) > 0:
                raise UserError(f"sim config: {name} must be > 0 (got {getattr(self, name)})")

    def run_for_seed(self, seed: int) -> int:
        """The run number written with event seed ``seed``: ``run_number`` if set, else
        ``RUN_FROM_SEED_OFFSET + seed``."""
        if self.run_number:
            return int(self.run_number)
        run = RUN_FROM_SEED_OFFSET + int(seed)
        if not 0 < run <= MAX_RUN_NUMBER:
            raise UserError(
                f"simulate: cannot derive a run number from seed {seed} (run = "
                f"{RUN_FROM_SEED_OFFSET} + seed must be in 1..{MAX_RUN_NUMBER}); give --run "
                "(run_number)"
            )
        return run

    @property
    def n_centroids(self) -> int:
        """Light centroids per shower."""
        return self.n_depth_bins * (1 + self.n_tail_sectors)

    @property
    def n_depth_bins(self) -> int:
        """Longitudinal centroid bins."""
        return len(self.centroid_depth_quantiles) - 1

    def to_dict(self) -> dict:
        """Plain dict of all fields (YAML/JSON serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict, origin: str = "sim config") -> "SimConfig":
        """Build from a flat mapping (:func:`xecreco.config.build_dataclass`); unknown keys raise
        UserError with the closest valid name, values of the wrong type name the key."""
        if not isinstance(values, dict):
            raise UserError(f"{origin}: expected a mapping of parameter names to values")
        try:
            return build_dataclass(cls, values, origin=origin,
                                   key_help="every key: configs/sim-default.yaml")
        except UserError as exc:  # name the file the values came from
            message = str(exc)
            if origin != "sim config" and message.startswith("sim config:"):
                message = origin + message[len("sim config"):]
            raise UserError(message) from None

    @classmethod
    def from_yaml(cls, path) -> "SimConfig":
        """Load a flat YAML mapping (:func:`xecreco.config.read_yaml_mapping`); missing keys keep
        their defaults."""
        values = read_yaml_mapping(path, "sim config")
        return cls.from_dict(values, origin=f"sim config {path}")

    def replace(self, **changes) -> "SimConfig":
        """A copy with some fields changed (validated)."""
        values = self.to_dict()
        values.update(changes)
        return SimConfig.from_dict(values)
