"""Physics table: resolutions of every bundled reconstruction next to the classical one, at the
signal line and on an energy scan from 10 to 100 MeV.

Headline part: 52.83 MeV signal photons (20k; 2k with --quick; default simulation, no pile-up,
no dead channels, seed 303), predicted with ``classical`` and the bundled ``default`` regressor
(when installed), through the validation suite's energy, position, angle and timing studies;
each headline number per reconstruction and the ML / classical ratio (target <= 0.8).

Scan part: :data:`SCAN_ENERGIES_MEV`, one file per line (``--source E``, seed
``SCAN_SEED + i`` for line i; fresh: the bundled models never saw these seeds), predicted with
the same reconstructions and run through the validation suite's ``scan`` study
(:mod:`xecreco.validation.studies.scan`). Per reconstruction and line: the energy upper sigma
and median(E/E_true) - 1 (%), for all events and w >= 2 cm, the u, v, w core sigma (mm), each with
its statistical error (``*_err``: fit or bootstrap); per depth bin of the pooled lines the u, v, w
core sigma (``<q>_mm``) and sigma68 (``<q>68_mm``; the core fit of a narrow depth bin can fail);
for every other reconstruction the ratios to classical (errors propagated as if independent). A
summary record per reconstruction gives the worst line and the depth bins with >= 200 events
where it is worse than classical (on the core sigma, on sigma68 where a core fit failed).

Settings (environment, since ``run_all.py`` passes only --quick; or the options of this script):
``BENCH_PHYSICS_SCAN_EVENTS`` events per line (default 500; 200 with --quick),
``BENCH_PHYSICS_DATA`` a folder that keeps the simulated files and the scan report
(``scan_<E>MeV_n<N>_seed<S>.root``, reused when present; default: a temporary folder),
``BENCH_PHYSICS_JOBS`` simulation workers (default 2), ``BENCH_PHYSICS_PARTS`` ``headline``,
``scan`` or both (default), ``BENCH_PHYSICS_RECOS`` comma-separated reconstructors to compare
(default ``classical`` and the bundled ``default``; checkpoint paths allowed); ratios divide by
``classical`` (else by the first).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, peak_rss_mb  # noqa: E402

#: the scan's true energies, MeV (the MEG II calibration lines 17.6, 52.83, 83 among them).
SCAN_ENERGIES_MEV = (10.0, 17.6, 25.0, 40.0, 52.83, 70.0, 83.0, 100.0)
#: event seed of the first line; line i uses SCAN_SEED + i.
SCAN_SEED = 4000
#: default events per line (quick: QUICK_SCAN_EVENTS).
SCAN_EVENTS = 500
QUICK_SCAN_EVENTS = 200


def default_recos() -> list[str]:
    from xecreco.models import available_reconstructors

    return ["classical"] + (["default"] if "default" in available_reconstructors() else [])


def scan_files(folder: Path, n_events: int, *, jobs: int = 2, seed: int = SCAN_SEED,
               energies=SCAN_ENERGIES_MEV) -> list[Path]:
    """One simulated file per line in ``folder`` (kept and reused when already there)."""
    import uproot

    from xecreco.sim import SimConfig, simulate_file

    paths = []
    for i, energy in enumerate(energies):
        path = folder / f"scan_{energy:g}MeV_n{n_events}_seed{seed + i}.root"
        if path.is_file():
            with uproot.open(path) as handle:
                if handle["tree"].num_entries == n_events:
                    paths.append(path)
                    continue
        config = SimConfig(source="list", energies_mev=[float(energy)])
        simulate_file(path, n_events, config=config, seed=seed + i, jobs=jobs, progress=False)
        paths.append(path)
    return paths


def headline(recos: list[str], quick: bool, jobs: int) -> list[dict]:
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.sim import simulate_file
    from xecreco.validation.api import validate
    from xecreco.validation.headlines import HEADLINE_STUDIES, headline_numbers

    n_events = 2000 if quick else 20000
    with tempfile.TemporaryDirectory(prefix="bench_physics_") as folder:
        folder = Path(folder)
        source = folder / "signal.root"
        simulate_file(source, n_events, seed=303, jobs=jobs, progress=False)
        predict_files([source], folder / "pred.root", recos, progress=False)
        summary = validate([folder / "pred.root"], folder / "report", recos=None,
                           studies=list(HEADLINE_STUDIES), progress=False, formats=("png",))
    names = summary["reconstructions"]
    table = {reco: headline_numbers(summary, reco) for reco in names}
    results = [{"name": f"physics_{reco}", "events": n_events, **numbers}
               for reco, numbers in table.items()]
    ref = reference(names)
    for other in [n for n in names if n != ref]:
        ratios = {}
        for key, value in table[other].items():
            base = table[ref].get(key)
            ratios[f"{key}_ratio"] = value / base if value is not None and base else None
        results.append({"name": f"physics_ratio_{other}_over_{ref}", **ratios,
                        "peak_rss_mb": peak_rss_mb()})
    return results


def reference(names) -> str:
    """The reconstruction the ratios divide by: ``classical`` when present, else the first."""
    return "classical" if "classical" in names else list(names)[0]


def _ratio(a: dict, b: dict) -> tuple[float | None, float | None]:
    """a / b of two ``{"value", "error"}`` with the error of independent measurements."""
    va, vb = a.get("value"), b.get("value")
    if va is None or not vb:
        return None, None
    r = va / vb
    ea, eb = a.get("error") or 0.0, b.get("error") or 0.0
    return r, abs(r) * math.hypot(ea / va if va else 0.0, eb / vb)


def _put(record: dict, key: str, pair: dict) -> None:
    record[key] = pair.get("value")
    record[key + "_err"] = pair.get("error")


#: (record key, depth class, path in a line's class entry) of the per-line numbers.
LINE_FIELDS = (
    ("e_sigma_up_pct", "all", ("energy", "sigma_upper_percent")),
    ("e_sigma_up_deep_pct", "w>=2cm", ("energy", "sigma_upper_percent")),
    ("e_sigma68_deep_pct", "w>=2cm", ("energy", "sigma68_percent")),
    ("e_median_pct", "all", ("energy", "median_percent")),
    ("e_median_deep_pct", "w>=2cm", ("energy", "median_percent")),
    ("e_peak_deep_pct", "w>=2cm", ("energy", "peak_percent")),
    *((f"{q}_mm", "all", ("position", q, "sigma_mm")) for q in ("u", "v", "w")),
    *((f"{q}_deep_mm", "w>=2cm", ("position", q, "sigma_mm")) for q in ("u", "v", "w")),
)


def _get(node: dict, path) -> dict:
    for part in path:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node if isinstance(node, dict) else {}


def scan_records(summary: dict, n_events: int) -> list[dict]:
    """Flat records of the ``scan`` study in a validation summary (see the module docstring)."""
    from xecreco.validation.studies.scan import MIN_DEPTH_BIN_EVENTS

    series = summary["studies"]["scan"]["series"]
    names = list(series)
    ref = reference(names)
    records = []
    for name in names:
        lines = series[name]["lines"]
        worst = {"abs_median_deep_pct": (0.0, None), "e_ratio_deep": (0.0, None),
                 "position_ratio": (0.0, None)}
        failed_fits = []
        for i, line in enumerate(lines):
            rec = {"name": f"physics_scan_{name}_{line['energy_MeV']:g}MeV",
                   "events": line["all"]["energy"]["n"],
                   "events_deep": line["w>=2cm"]["energy"]["n"]}
            for key, cname, path in LINE_FIELDS:
                _put(rec, key, _get(line[cname], path))
            for cname, tag in (("all", ""), ("w>=2cm", "_deep")):
                status = line[cname]["energy"]["fit_status"]
                if status != "ok":  # "poor" keeps its values, "failed" has none
                    rec[f"e_fit{tag}"] = status
                if status == "failed" and cname == "w>=2cm":
                    failed_fits.append(f"{line['energy_MeV']:g}")
            m = rec["e_median_deep_pct"]
            if m is not None and abs(m) > worst["abs_median_deep_pct"][0]:
                worst["abs_median_deep_pct"] = (abs(m), line["energy_MeV"])
            if name != ref:
                base = series[ref]["lines"][i]
                for key, cname, path in LINE_FIELDS:
                    if "median" in key or "peak" in key:
                        continue
                    r, e = _ratio(_get(line[cname], path), _get(base[cname], path))
                    rec[f"ratio_{key}"], rec[f"ratio_{key}_err"] = r, e
                    slot = "e_ratio_deep" if key == "e_sigma_up_deep_pct" else (
                        "position_ratio" if key.endswith("_mm") else None)
                    if slot and r is not None and r > worst[slot][0]:
                        worst[slot] = (r, line["energy_MeV"])
            records.append(rec)
        worse_bins = []
        for j, b in enumerate(series[name]["depth_bins"]["u"]):
            rec = {"name": f"physics_scan_depth_{name}_w{b['low']:g}-{b['high']:g}cm",
                   "events": b["n"]}
            for q in ("u", "v", "w"):
                _put(rec, f"{q}_mm", series[name]["depth_bins"][q][j]["sigma"])
                _put(rec, f"{q}68_mm", series[name]["depth_bins"][q][j]["sigma68"])
            if name != ref:
                for q in ("u", "v", "w"):
                    mine, base = series[name]["depth_bins"][q][j], series[ref]["depth_bins"][q][j]
                    r, e = _ratio(mine["sigma"], base["sigma"])
                    r68, e68 = _ratio(mine["sigma68"], base["sigma68"])
                    rec[f"ratio_{q}"], rec[f"ratio_{q}_err"] = r, e
                    rec[f"ratio_{q}68"], rec[f"ratio_{q}68_err"] = r68, e68
                    # judged on the core sigma; on sigma68 where a core fit failed
                    judged, tag = (r, "") if r is not None else (r68, " (sigma68)")
                    if b["n"] >= MIN_DEPTH_BIN_EVENTS and judged is not None and judged > 1.0:
                        worse_bins.append(f"{q}@w{b['low']:g}-{b['high']:g}{tag}")
            records.append(rec)
        summ = {"name": f"physics_scan_summary_{name}", "events_per_line": n_events,
                "lines": len(lines),
                "max_abs_median_deep_pct": worst["abs_median_deep_pct"][0],
                "max_abs_median_deep_at_MeV": worst["abs_median_deep_pct"][1],
                "energy_fit_failed_deep_at_MeV": ", ".join(failed_fits) or "none"}
        if name != ref:
            summ.update({"max_ratio_e_sigma_up_deep": worst["e_ratio_deep"][0],
                         "max_ratio_e_sigma_up_deep_at_MeV": worst["e_ratio_deep"][1],
                         "max_ratio_position": worst["position_ratio"][0],
                         "max_ratio_position_at_MeV": worst["position_ratio"][1],
                         "depth_bins_worse_than_reference": ", ".join(worse_bins) or "none",
                         "reference": ref})
        records.append(summ)
    return records


def scan(recos: list[str], n_events: int, jobs: int, data_dir: str | None) -> list[dict]:
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.validation.api import validate

    with tempfile.TemporaryDirectory(prefix="bench_physics_scan_") as tmp:
        keep = Path(data_dir) if data_dir else Path(tmp)
        keep.mkdir(parents=True, exist_ok=True)
        files = scan_files(keep, n_events, jobs=jobs)
        pred = Path(tmp) / "scan_pred.root"
        predict_files(files, pred, recos, progress=False)
        summary = validate([pred], keep / "scan_report", studies=["scan"], progress=False,
                           formats=("png",))
    records = scan_records(summary, n_events)
    records[-1]["peak_rss_mb"] = peak_rss_mb()
    return records


def run(quick: bool = False, *, scan_events: int | None = None, data_dir: str | None = None,
        jobs: int | None = None, parts=None, recos=None) -> list[dict]:
    env = os.environ
    scan_events = int(scan_events or env.get("BENCH_PHYSICS_SCAN_EVENTS")
                      or (QUICK_SCAN_EVENTS if quick else SCAN_EVENTS))
    data_dir = data_dir or env.get("BENCH_PHYSICS_DATA") or None
    jobs = int(jobs or env.get("BENCH_PHYSICS_JOBS") or 2)
    parts = parts or [p for p in env.get("BENCH_PHYSICS_PARTS", "headline,scan").split(",") if p]
    recos = recos or [r for r in env.get("BENCH_PHYSICS_RECOS", "").split(",") if r] \
        or default_recos()
    results = []
    if "headline" in parts:
        results += headline(recos, quick, jobs)
    if "scan" in parts:
        results += scan(recos, scan_events, jobs, data_dir)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--scan-events", type=int, default=None, help="events per scan line")
    parser.add_argument("--data", default=None, help="folder keeping the simulated scan files")
    parser.add_argument("--jobs", type=int, default=None, help="simulation workers")
    parser.add_argument("--parts", default=None, help="headline,scan")
    parser.add_argument("-r", "--reco", action="append", default=None,
                        help="reconstructor (repeatable; default classical and default)")
    args = parser.parse_args()
    emit(run(quick=args.quick, scan_events=args.scan_events, data_dir=args.data, jobs=args.jobs,
             parts=args.parts.split(",") if args.parts else None, recos=args.reco))
