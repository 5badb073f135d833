"""Run every benchmark (``benchmarks/bench_*.py``), each in its own process.

Writes ``benchmarks/results.json`` (all records plus the machine) and ``benchmarks/results.md``
(a markdown table), and refreshes the table in ``docs/performance.md`` between its markers.
Usage: ``python benchmarks/run_all.py [--quick] [--only NAME ...]``. With ``--only`` the other
benchmarks' records already in ``results.json`` are kept (each record carries the date it was
measured), so one benchmark can be refreshed without rerunning all; e.g. ``--only baseline``
reruns the side-by-side comparison with the build of 2026-11-27 (``bench_baseline.py``).
The benchmarks of :data:`ON_DEMAND` (the hours-long regressor ablation) run only when named in
``--only``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import machine_info  # noqa: E402

BEGIN, END = "<!-- bench-table-begin -->", "<!-- bench-table-end -->"
COLUMNS = ("name", "events_per_s", "peak_rss_mb")  # the table's own columns
#: benchmarks left out of a plain run (``--only NAME`` runs them): docs/ablation.md
ON_DEMAND = ("ablation",)


def run_script(script: Path, quick: bool) -> tuple[list[dict], str | None]:
    code = (
        "import sys, json; sys.path.insert(0, %r); import runpy; "
        "mod = runpy.run_path(%r); "
        "[print('BENCH ' + json.dumps(r)) for r in mod['run'](quick=%r)]"
    ) % (str(HERE), str(script), quick)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    records = [json.loads(line[6:]) for line in proc.stdout.splitlines() if line.startswith("BENCH ")]
    error = None
    if proc.returncode != 0:
        error = (proc.stderr.strip().splitlines() or ["failed"])[-1]
    for record in records:
        record.setdefault("benchmark", script.stem)
    return records, error


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def markdown_table(records: list[dict], machine: dict) -> str:
    """One row per measurement: name, events/s, peak RSS, and the other scalars as details."""
    lines = [
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{(machine.get('memory_gib') or 0):.0f} GiB, Python {machine.get('python')}, "
        f"torch {machine.get('torch', '-')}; latest run {machine.get('date')} (each row: its date).",
        "",
        "| benchmark | events/s | peak RSS (MB) | details |",
        "|---|---|---|---|",
    ]
    for record in records:
        details = ", ".join(
            f"{k} {format_value(v)}" for k, v in record.items()
            if k not in COLUMNS and k != "benchmark" and not isinstance(v, (dict, list))
            and v is not None
        )
        lines.append(f"| {record.get('name', '')} | {format_value(record.get('events_per_s', ''))} "
                     f"| {format_value(record.get('peak_rss_mb', ''))} | {details} |")
    return "\n".join(lines) + "\n"


def write_outputs(results: dict) -> str:
    """results.json, results.md and the table in docs/performance.md; returns the table."""
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown_table(results["results"], results["machine"])
    (HERE / "results.md").write_text(table)
    perf = HERE.parent / "docs" / "performance.md"
    if perf.exists() and BEGIN in perf.read_text():
        text = perf.read_text()
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1] if END in rest else ""
        perf.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples (smoke run)")
    parser.add_argument("--only", nargs="*", default=None, help="benchmark names (bench_<name>)")
    parser.add_argument("--render", action="store_true",
                        help="only re-render the tables from benchmarks/results.json")
    args = parser.parse_args()
    if args.render:
        print(write_outputs(json.loads((HERE / "results.json").read_text())))
        return 0
    machine = machine_info()
    machine["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    records, failures = [], {}
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if (args.only and name not in args.only) or (not args.only and name in ON_DEMAND):
            continue
        print(f"[bench] {script.name} ...", flush=True)
        got, error = run_script(script, args.quick)
        records += got
        if error:
            failures[script.name] = error
            print(f"[bench] {script.name} FAILED: {error}", flush=True)
        for record in got:
            record["date"] = machine["date"]
            print("   ", json.dumps(record), flush=True)
    previous = HERE / "results.json"
    if args.only and previous.is_file():
        rerun = {f"bench_{name}" for name in args.only}
        old = json.loads(previous.read_text())
        kept = [r for r in old.get("results", []) if r.get("benchmark") not in rerun]
        for record in kept:
            record.setdefault("date", old.get("machine", {}).get("date"))
        records = sorted(kept + records, key=lambda r: r.get("benchmark", ""))
        failures = {**{k: v for k, v in old.get("failures", {}).items()
                       if k.removesuffix(".py") not in rerun}, **failures}
    results = {"machine": machine, "results": records, "failures": failures}
    print(write_outputs(results))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
