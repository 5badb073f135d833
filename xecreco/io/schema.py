"""The xecreco file schema: tree and branch names, shapes, units, sentinels and status codes.

This is the single home of the names and magic numbers of the input and prediction files; the
reader turns every sentinel into an explicit validity mask so nothing downstream tests them again.
``docs/file-format.md`` describes the same schema for users.

Input tree: :data:`INPUT_BRANCHES` (names, shapes, units), :class:`BranchNames` for files that name
them differently, :data:`INVALID_THRESHOLD` and :data:`SENTINEL`. Prediction tree
(:data:`DEFAULT_RECO_TREE`): :data:`RECO_ID_BRANCHES`, the input summaries
:data:`RECO_SUMMARY_BRANCHES`, and for each reconstruction R the branches ``R_<quantity>``
(:data:`OUTPUT_UNITS`), ``R_<quantity>_err`` and ``R_status`` (:class:`Status`), with
:data:`FILL_VALUE` where a value cannot be computed (:func:`reco_branch`, :func:`status_branch`,
:func:`reconstruction_names`). Inpainted input files add :data:`INPAINTED_BRANCH`.

Units in files follow the MEG II conventions: lengths cm, energies GeV, angles deg, per-sensor
times s, event times ns.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, fields
from enum import IntEnum

from xecreco.errors import UserError
from xecreco.io.batch import N_SENSORS

__all__ = [
    "DEFAULT_TREE",
    "DEFAULT_RECO_TREE",
    "INVALID_THRESHOLD",
    "SENTINEL",
    "N_SENSORS",
    "PROVENANCE_KEY",
    "BranchSpec",
    "INPUT_BRANCHES",
    "REQUIRED_BRANCHES",
    "ID_BRANCHES",
    "TRUTH_BRANCHES",
    "SIM_EXTRA_BRANCHES",
    "PILEUP_TRUTH_BRANCHES",
    "SENSOR_ARRAY_BRANCHES",
    "RECO_ID_BRANCHES",
    "RECO_SUMMARY_BRANCHES",
    "OUTPUT_UNITS",
    "Status",
    "FILL_VALUE",
    "FILL_THRESHOLD",
    "RECO_NAME_PATTERN",
    "INPAINTED_BRANCH",
    "BranchNames",
    "reco_branch",
    "status_branch",
    "reconstruction_names",
]

#: Default name of the input tree.
DEFAULT_TREE = "tree"
#: Default name of the prediction tree written by ``xecreco predict``.
DEFAULT_RECO_TREE = "reco"
#: Values above this (in absolute value), NaN and inf mark an invalid sensor value.
INVALID_THRESHOLD = 9.0e9
#: The MEG II sentinel written for dead sensors and for times of sensors with too little light.
SENTINEL = 1.0e10
#: Name of the TObjString holding the JSON provenance in every file xecreco writes.
PROVENANCE_KEY = "xecreco_provenance"


@dataclass(frozen=True)
class BranchSpec:
    """One branch of the input schema.

    Attributes:
        name: canonical branch name (the default name in files).
        shape: per-entry shape: ``()`` scalar, ``(4760,)`` sensor array, ``(3,)`` vector,
            ``None`` jagged (variable length per entry).
        units: units in the file ("" when dimensionless).
        group: "required", "id", "optional", "truth", "sim" or "pileup".
        description: one line.
    """

    name: str
    shape: tuple[int, ...] | None
    units: str
    group: str
    description: str


#: Every branch xecreco knows in an input file, in documentation order.
INPUT_BRANCHES: tuple[BranchSpec, ...] = (
    BranchSpec("npho", (N_SENSORS,), "photons", "required",
               "incident photons per sensor (nphe / efficiency; may be slightly negative)"),
    BranchSpec("time", (N_SENSORS,), "s", "required", "sensor time"),
    BranchSpec("run", (), "", "id", "run number"),
    BranchSpec("event", (), "", "id", "event number"),
    BranchSpec("relative_time", (N_SENSORS,), "s", "optional",
               "time minus the earliest well-lit sensor (not used by xecreco)"),
    BranchSpec("energyTruth", (), "GeV", "truth", "true photon energy"),
    BranchSpec("timeTruth", (), "ns", "truth", "true emission time at the vertex"),
    BranchSpec("uvwTruth", (3,), "cm", "truth", "true first-interaction point (u, v, w)"),
    BranchSpec("xyzTruth", (3,), "cm", "truth", "true first-interaction point (x, y, z)"),
    BranchSpec("xyzVTX", (3,), "cm", "truth", "photon vertex (x, y, z) on the target"),
    BranchSpec("emiVec", (3,), "", "truth", "unit emission direction, unit(xyzTruth - xyzVTX)"),
    BranchSpec("emiAng", (2,), "deg", "truth", "emission angles (theta, phi), phi = atan2(y, -x)"),
    BranchSpec("nphe", (N_SENSORS,), "photo-electrons", "sim", "photo-electrons per sensor"),
    BranchSpec("dead", (N_SENSORS,), "", "sim", "true where the sensor is dead (masked)"),
    BranchSpec("nphoClean", (N_SENSORS,), "photons", "sim", "npho before dead-channel masking"),
    BranchSpec("timeClean", (N_SENSORS,), "s", "sim", "time before dead-channel masking"),
    BranchSpec("energyVisible", (), "GeV", "sim", "energy deposited in the xenon"),
    BranchSpec("nPileup", (), "", "pileup", "number of pile-up photons overlaid"),
    BranchSpec("pileupEnergy", None, "GeV", "pileup", "energy of each pile-up photon"),
    BranchSpec("pileupTime", None, "ns", "pileup", "time of each pile-up photon"),
    BranchSpec("pileupU", None, "cm", "pileup", "u of each pile-up photon"),
    BranchSpec("pileupV", None, "cm", "pileup", "v of each pile-up photon"),
    BranchSpec("pileupW", None, "cm", "pileup", "w of each pile-up photon"),
    BranchSpec("pileupGateFraction", None, "", "pileup",
               "fraction of each pile-up photon's light inside the readout gate"),
)


def _group(name: str) -> tuple[str, ...]:
    return tuple(spec.name for spec in INPUT_BRANCHES if spec.group == name)


#: Branches every input file must have.
REQUIRED_BRANCHES: tuple[str, ...] = _group("required")
#: Event identifiers; when absent the reader uses run = 0 and event = entry.
ID_BRANCHES: tuple[str, ...] = _group("id")
#: Truth branches used for training and validation.
TRUTH_BRANCHES: tuple[str, ...] = _group("truth")
#: Extra branches written by the simulation.
SIM_EXTRA_BRANCHES: tuple[str, ...] = _group("sim")
#: Pile-up truth (the per-photon ones are jagged).
PILEUP_TRUTH_BRANCHES: tuple[str, ...] = _group("pileup")
#: Branches holding one value per sensor (4760 per entry).
SENSOR_ARRAY_BRANCHES: tuple[str, ...] = tuple(
    spec.name for spec in INPUT_BRANCHES if spec.shape == (N_SENSORS,)
)

# --------------------------------------------------------------------------- prediction tree

#: Identifier branches of the prediction tree (``entry`` is the global index in the input).
RECO_ID_BRANCHES: tuple[str, ...] = ("run", "event", "entry")
#: Per-event summaries of the input written beside the reconstructions: name -> (numpy dtype,
#: units, meaning). The validation scans use them (dead channels, collected light).
RECO_SUMMARY_BRANCHES: dict[str, tuple[str, str, str]] = {
    "nDead": ("int32", "", "sensors without a valid npho"),
    "nphoSum": ("float32", "photons", "sum of npho over the valid sensors"),
}

#: Physical outputs a reconstructor may produce (the ``R_<quantity>`` branches), with their file
#: units. ``R_<quantity>_err`` (same units) holds a predicted uncertainty where a model gives one.
OUTPUT_UNITS: dict[str, str] = {
    "energy": "GeV",
    "u": "cm",
    "v": "cm",
    "w": "cm",
    "x": "cm",
    "y": "cm",
    "z": "cm",
    "time": "ns",
    "theta": "deg",
    "phi": "deg",
    "npileup": "photons",
    "pileup_prob": "probability",
    "pileup_energy": "GeV",
}


class Status(IntEnum):
    """``R_status`` codes (int32) written for every event and reconstruction.

    OK: reconstructed normally.
    NO_VALID_SENSORS: no valid sensor in the event; outputs are the documented fill values.
    TOO_LITTLE_LIGHT: too little light on the inner face for a position fit; fallback values.
    FIT_FAILED: the position fit did not converge; the seed/weighted-mean position is used.
    NO_VALID_TIME: no sensor with a valid time; time output is the fill value.
    """

    OK = 0
    NO_VALID_SENSORS = 1
    TOO_LITTLE_LIGHT = 2
    FIT_FAILED = 3
    NO_VALID_TIME = 4


#: Value written to float outputs that cannot be computed (status != OK). Never NaN.
FILL_VALUE = -1.0e10
#: Outputs at or beyond this magnitude are fill values (never physical).
FILL_THRESHOLD = 1.0e9
#: A reconstruction name R: an identifier, so ``R_energy`` works in ``TTree::Draw``/RDataFrame.
RECO_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Branch of an inpainted input file: (4760,) bool, True where a sensor value was filled.
INPAINTED_BRANCH = "inpainted"

_STATUS_SUFFIX = "_status"


def reco_branch(name: str, quantity: str) -> str:
    """The branch of reconstruction ``name``'s output ``quantity`` (``quantity`` may end in
    ``_err``): ``f"{name}_{quantity}"``."""
    return f"{name}_{quantity}"


def status_branch(name: str) -> str:
    """The status branch of reconstruction ``name``: ``f"{name}_status"``."""
    return name + _STATUS_SUFFIX


def reconstruction_names(branches) -> list[str]:
    """Reconstruction names R of a prediction tree, from its ``R_status`` branches (sorted)."""
    names = []
    for branch in branches:
        if branch.endswith(_STATUS_SUFFIX):
            name = branch[: -len(_STATUS_SUFFIX)]
            if RECO_NAME_PATTERN.match(name):
                names.append(name)
    return sorted(names)


@dataclass(frozen=True)
class BranchNames:
    """Names of the branches in a file, keyed by their canonical names.

    Real files may name branches differently; set the field of the canonical name to the name used
    in the file, e.g. ``BranchNames(npho="nphoton", energyTruth="Egamma")``. Everything xecreco
    hands downstream (``EventBatch.truth``, ``EventBatch.extras``) is keyed by canonical names.
    """

    npho: str = "npho"
    time: str = "time"
    run: str = "run"
    event: str = "event"
    relative_time: str = "relative_time"
    energyTruth: str = "energyTruth"  # noqa: N815 - canonical MEG branch names
    timeTruth: str = "timeTruth"  # noqa: N815
    uvwTruth: str = "uvwTruth"  # noqa: N815
    xyzTruth: str = "xyzTruth"  # noqa: N815
    xyzVTX: str = "xyzVTX"  # noqa: N815
    emiVec: str = "emiVec"  # noqa: N815
    emiAng: str = "emiAng"  # noqa: N815
    nphe: str = "nphe"
    dead: str = "dead"
    nphoClean: str = "nphoClean"  # noqa: N815
    timeClean: str = "timeClean"  # noqa: N815
    energyVisible: str = "energyVisible"  # noqa: N815
    nPileup: str = "nPileup"  # noqa: N815
    pileupEnergy: str = "pileupEnergy"  # noqa: N815
    pileupTime: str = "pileupTime"  # noqa: N815
    pileupU: str = "pileupU"  # noqa: N815
    pileupV: str = "pileupV"  # noqa: N815
    pileupW: str = "pileupW"  # noqa: N815
    pileupGateFraction: str = "pileupGateFraction"  # noqa: N815

    def file_name(self, canonical: str) -> str:
        """The name in the file of a canonical branch; unknown names are used unchanged."""
        return getattr(self, canonical) if canonical in _FIELD_NAMES else canonical

    def to_dict(self) -> dict[str, str]:
        """Only the names that differ from the defaults (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}

    @classmethod
    def from_assignments(cls, items, option: str = "--branch") -> "BranchNames":
        """Build from command-line ``CANONICAL=NAME`` strings (``--branch energyTruth=Egamma``).

        UserError, one line, on a malformed item, an unknown canonical name (listing the valid
        ones) or a canonical name given twice with different names.
        """
        mapping: dict[str, str] = {}
        for item in items or ():
            canonical, sep, name = str(item).partition("=")
            canonical, name = canonical.strip(), name.strip()
            if not sep or not canonical or not name:
                raise UserError(f"{option} '{item}' must look like CANONICAL=NAME_IN_FILE, e.g. "
                                f"{option} energyTruth=Egamma")
            if canonical not in _FIELD_NAMES:
                close = difflib.get_close_matches(canonical, _FIELD_NAMES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise UserError(f"{option} '{item}': '{canonical}' is not a canonical branch "
                                f"name{hint}; valid names: {', '.join(_FIELD_NAMES)}")
            if mapping.get(canonical, name) != name:
                raise UserError(f"{option} maps '{canonical}' twice ('{mapping[canonical]}' and "
                                f"'{name}'); give it once")
            mapping[canonical] = name
        return cls.from_dict(mapping)

    @classmethod
    def of(cls, branches: "BranchNames | dict | None") -> "BranchNames":
        """``branches`` itself when it is a :class:`BranchNames`, else :meth:`from_dict` of it
        (``{canonical: name_in_file}`` or None for the defaults)."""
        return branches if isinstance(branches, cls) else cls.from_dict(branches)

    @classmethod
    def from_dict(cls, mapping: dict | None) -> "BranchNames":
        """Build from ``{canonical: name_in_file}``; an unknown canonical name is a UserError."""
        mapping = dict(mapping or {})
        for key, value in mapping.items():
            if key not in _FIELD_NAMES:
                close = difflib.get_close_matches(key, _FIELD_NAMES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise UserError(
                    f"unknown branch key '{key}' in branch names{hint}; known keys: "
                    f"{', '.join(_FIELD_NAMES)}"
                )
            if not isinstance(value, str) or not value:
                raise UserError(
                    f"branch name for '{key}' must be a non-empty string, got {value!r}"
                )
        return cls(**mapping)


_FIELD_NAMES = tuple(f.name for f in fields(BranchNames))
