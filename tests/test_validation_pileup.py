"""Pile-up study numbers against a direct computation on a synthetic table."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from xecreco.sim.config import SimConfig
from xecreco.sim.gate import in_time_fraction
from xecreco.validation.data import Dataset, Series
from xecreco.validation.studies import pileup
from xecreco.validation.studies.base import Context

N = 4000


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(5)
    n_pu = rng.poisson(0.8, N)
    counts = n_pu.tolist()
    energy = ak.unflatten(rng.uniform(0.001, 0.03, n_pu.sum()), counts)  # GeV
    gate = ak.unflatten(rng.uniform(0.0, 0.93, n_pu.sum()), counts)
    time = ak.unflatten(rng.uniform(-200, 200, n_pu.sum()), counts)
    pu_u = ak.unflatten(rng.uniform(-30, 30, n_pu.sum()), counts)
    pu_v = ak.unflatten(rng.uniform(-60, 60, n_pu.sum()), counts)
    in_gate = ak.to_numpy(ak.sum(energy * gate, axis=1)) * 1000 / in_time_fraction(SimConfig())
    e_true = np.full(N, 0.05283)
    e_reco = e_true * (1 + rng.normal(0, 0.015, N)) + in_gate / 1000 * 0.5
    score = 1 / (1 + np.exp(-(in_gate - 3 + rng.normal(0, 2, N))))
    truth = {"nPileup": n_pu, "pileupEnergy": energy, "pileupGateFraction": gate,
             "pileupTime": time, "pileupU": pu_u, "pileupV": pu_v, "timeTruth": np.zeros(N),
             "uvwTruth": np.column_stack([rng.uniform(-20, 20, N), rng.uniform(-50, 50, N),
                                          np.ones(N)]),
             "energyTruth": e_true}
    series = Series(name="r", reco="r", label=None,
                    values={"energy": e_reco, "pileup_prob": score}, status=np.zeros(N, np.int32))
    data = Dataset(files=[], run=np.zeros(N, int), event=np.arange(N), truth=truth,
                   series=[series])
    return data, in_gate, score, e_reco / e_true - 1


def test_pileup_study_matches_direct_computation(table, tmp_path):
    data, in_gate, score, rel = table
    res = pileup.run(data, Context(plot_dir=tmp_path, bootstrap_replicas=5, formats=("png",)))
    ident = res.summary["r"]["identification"]
    pos, neg = in_gate >= 5.0, data.truth["nPileup"] == 0
    # AUC: probability that a positive outscores a negative (Mann-Whitney)
    auc = np.mean(score[pos][:, None] > score[neg][None, :])
    assert ident["auc"] == pytest.approx(auc, abs=2e-3)
    assert ident["n_positive"] == pos.sum() and ident["n_negative"] == neg.sum()
    thr = np.sort(score[neg])[int(np.ceil(0.95 * (neg.sum() - 1)))]
    assert np.mean(score[neg] > thr) <= 0.05
    assert ident["efficiency_at_fake_5pct"] == pytest.approx(np.mean(score[pos] > thr))
    # efficiency vs pile-up energy: bin by bin
    for b in ident["efficiency_at_fake_5pct_vs_energy_MeV"]:
        sel = (in_gate >= b["low"]) & (in_gate < b["high"]) & (in_gate > 0)
        if b["n"]:
            assert b["n"] == sel.sum() or b is ident["efficiency_at_fake_5pct_vs_energy_MeV"][-1]
            assert b["efficiency"]["value"] == pytest.approx(np.mean(score[sel] > thr), abs=0.02)
    assert {"efficiency_at_fake_5pct_vs_time_separation_ns",
            "efficiency_at_fake_5pct_vs_distance_cm"} <= set(ident)
    big = res.summary["r"]["pileup_ge_5MeV"]
    assert big["high_tail_fraction"]["value"] == pytest.approx(np.mean(rel[pos] > 0.03))
    assert big["n"] == pos.sum()
    assert (tmp_path / "pileup_efficiency.png").is_file()
    assert (tmp_path / "pileup_roc.png").is_file()
