"""A regressor gated by its pile-up probability: a pile-up expert takes the events it flags.

A network trained on pile-up-free photons reconstructs them best, and one trained on pile-up
samples leaves the pile-up light out of the energy but loses resolution on clean photons. The
gated reconstructor keeps both: the *primary* network (with a ``pileup`` head) runs on every
event; the *expert* (a regressor trained on pile-up samples, with its own ``pileup`` head) runs
only where the primary's pile-up probability reaches :attr:`PileupGate.run_threshold`; where the
expert's own probability then reaches :attr:`PileupGate.use_threshold`, every output is the
expert's. Elsewhere the outputs are the primary's, bit for bit.

``pileup_prob`` is the expert's probability where the expert ran, the primary's elsewhere (there
it is below the run threshold), so a cut ``pileup_prob >= use_threshold`` selects exactly the
events whose outputs are the expert's. With a ``pileup_energy`` head in the expert,
``pileup_energy`` (GeV) is its estimate where it ran and 0 elsewhere.

The gate lives in the primary's checkpoint (``xecreco bundle --pileup-expert``): the key
``pileup_expert`` holds the expert's whole checkpoint payload and ``pileup_gate`` the two
thresholds, so one file is the reconstructor (``predict``, ``validate``, ``export``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xecreco.errors import UserError
from xecreco.io.schema import Status

#: Checkpoint keys of the gate (see the module docstring).
EXPERT_KEY = "pileup_expert"
GATE_KEY = "pileup_gate"


@dataclass(frozen=True)
class PileupGate:
    """The two thresholds of the gate, probabilities in (0, 1).

    Attributes:
        run_threshold: the expert runs where the primary's ``pileup_prob`` >= this.
        use_threshold: of those, the expert's outputs replace the primary's where the expert's
            ``pileup_prob`` >= this.
    """

    run_threshold: float
    use_threshold: float

    def __post_init__(self):
        for key in ("run_threshold", "use_threshold"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
                raise UserError(f"pile-up gate: {key} must be a probability in (0, 1), got "
                                f"{value!r}")

    def to_dict(self) -> dict:
        return {"run_threshold": float(self.run_threshold),
                "use_threshold": float(self.use_threshold)}

    @classmethod
    def from_dict(cls, values, source) -> "PileupGate":
        """The gate stored in a checkpoint; UserError naming ``source`` when malformed."""
        try:
            return cls(float(values["run_threshold"]), float(values["use_threshold"]))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{source}: malformed '{GATE_KEY}' entry (needs run_threshold and "
                            "use_threshold); re-bundle it with `xecreco bundle "
                            "--pileup-expert`") from None


def check_gate_pair(primary_heads, expert_heads, source) -> None:
    """UserError unless both networks have a ``pileup`` head and the expert gives every output
    of the primary."""
    if "pileup" not in primary_heads:
        raise UserError(f"{source}: a pile-up gate needs a 'pileup' head in the main network; "
                        "train one (model.trainable: [heads.pileup], docs/training.md)")
    if "pileup" not in expert_heads:
        raise UserError(f"{source}: the pile-up expert has no 'pileup' head; pass an expert "
                        "trained with the pileup target")
    missing = [h for h in primary_heads if h not in expert_heads]
    if missing:
        raise UserError(f"{source}: the pile-up expert lacks the heads {', '.join(missing)} of "
                        "the main network; train the expert with the same targets")


def gate_masks(gate: PileupGate, primary_prob: np.ndarray, primary_status: np.ndarray):
    """(N,) bool: where the expert runs (the primary's probability reaches the run threshold
    on an event it reconstructed)."""
    return (primary_prob >= gate.run_threshold) & (primary_status == int(Status.OK))


def merge_expert(primary: dict, expert: dict, run: np.ndarray, gate: PileupGate) -> dict:
    """The gated outputs: ``primary`` (all events) with ``expert`` (the events of ``run``, in
    order) where the expert's ``pileup_prob`` >= ``gate.use_threshold``; see the module
    docstring for ``pileup_prob`` and ``pileup_energy``. Both are dicts of (N,) / (n_run,)
    arrays of the same keys (``pileup_energy`` may be the expert's alone)."""
    out = {key: np.array(values, copy=True) for key, values in primary.items()}
    n = len(run)
    rows = np.flatnonzero(run)
    use = expert["pileup_prob"] >= gate.use_threshold
    for key, values in primary.items():
        if key in expert and key != "pileup_prob":
            out[key][rows[use]] = expert[key][use]
    out["pileup_prob"][rows] = expert["pileup_prob"]
    if "pileup_energy" in expert and "pileup_energy" not in primary:
        energy = np.zeros(n, dtype=np.asarray(expert["pileup_energy"]).dtype)
        energy[rows] = expert["pileup_energy"]
        out["pileup_energy"] = energy
    return out


def _reconstructor_base():
    from xecreco.models.regressor.reconstructor import CheckpointReconstructor

    return CheckpointReconstructor


class PileupGatedReconstructor(_reconstructor_base()):
    """The gated pair behind the Reconstructor interface (see the module docstring).

    It is the primary's :class:`~xecreco.models.regressor.reconstructor.CheckpointReconstructor`
    (``members`` is the primary alone, so explanations and attention maps show the network
    that reconstructs almost every event) with the expert run on the flagged events.

    Args:
        primary: the main network (with a ``pileup`` head).
        expert: the pile-up expert (with a ``pileup`` head and every head of the primary).
        gate: the thresholds.
        name, batch_size, device: as for ``CheckpointReconstructor``.
    """

    def __init__(self, primary, expert, gate: PileupGate, name: str,
                 batch_size: int, device: str = "cpu"):
        check_gate_pair(primary.model.head_names, expert.model.head_names, primary.path)
        super().__init__([primary], name, batch_size, device)
        CheckpointReconstructor = _reconstructor_base()
        self.expert = CheckpointReconstructor([expert], name, batch_size, device)
        self.gate = gate
        extra = tuple(q for q in ("pileup_energy",) if q in self.expert.outputs
                      and q not in self.outputs)
        self.outputs = self.outputs + extra
        # <q>_err only where both give it (the same outputs on every event)
        self.error_outputs = tuple(q for q in self.error_outputs
                                   if q in self.expert.error_outputs)
        self.input_extras = tuple(dict.fromkeys(self.input_extras + self.expert.input_extras))

    def prepare(self, batch) -> dict:
        """Network inputs of both networks (shared where their normalisation and dead flag
        agree, as for an ensemble)."""
        prepared = super().prepare(batch)
        key = self.expert.members[0].inputs_key
        if key not in prepared:
            prepared.update(self.expert.prepare(batch))
        return prepared

    def reconstruct(self, batch, prepared=None) -> dict:
        """The primary's outputs with the expert's on the events the gate gives it."""
        prepared = self.prepare(batch) if prepared is None else prepared
        out = super().reconstruct(batch, prepared)
        if len(batch) == 0:
            extra = {q: np.zeros(0, np.float32) for q in self.outputs if q not in out}
            return {**out, **extra}
        run = gate_masks(self.gate, out["pileup_prob"], out["status"])
        key = self.expert.members[0].inputs_key
        if run.any():
            features, reference = prepared[key]
            expert_out = self.expert.reconstruct(batch.select(run),
                                                 {key: (features[run], reference[run])})
        else:
            expert_out = {q: np.zeros(0, np.float32) for q in self.expert.outputs}
            expert_out["status"] = np.zeros(0, np.int32)
        merged = merge_expert(out, expert_out, run, self.gate)
        keep = set(self.outputs) | set(self.error_outputs) | {"status"}
        return {k: v for k, v in merged.items() if k in keep}


def gated_from_payload(payload: dict, primary, path, name: str, batch_size: int, device: str,
                       energy_calibration: bool = True,
                       time_combination: bool = True) -> PileupGatedReconstructor:
    """The gated reconstructor of a checkpoint payload holding :data:`EXPERT_KEY` and
    :data:`GATE_KEY`; ``primary`` is its own loaded member."""
    from xecreco.models.regressor.reconstructor import member_from_payload

    source = f"{path} ({EXPERT_KEY})"
    if not isinstance(payload.get(EXPERT_KEY), dict) or GATE_KEY not in payload:
        raise UserError(f"{path}: '{EXPERT_KEY}' needs a checkpoint payload and a '{GATE_KEY}' "
                        "entry; re-bundle it with `xecreco bundle --pileup-expert`")
    expert = member_from_payload(payload[EXPERT_KEY], source, energy_calibration,
                                 time_combination)
    gate = PileupGate.from_dict(payload[GATE_KEY], path)
    return PileupGatedReconstructor(primary, expert, gate, name, batch_size, device)
