"""Check a ROOT file against the xecreco input schema (the library side of ``xecreco inspect``)."""

from __future__ import annotations

import json
from pathlib import Path

from xecreco.errors import UserError
from xecreco.io.reader import BatchReader
from xecreco.io.rootfile import open_root, open_tree
from xecreco.io.schema import (
    DEFAULT_TREE,
    ID_BRANCHES,
    PILEUP_TRUTH_BRANCHES,
    PROVENANCE_KEY,
    REQUIRED_BRANCHES,
    SIM_EXTRA_BRANCHES,
    TRUTH_BRANCHES,
    BranchNames,
)

__all__ = ["inspect_file", "format_report"]

_GROUPS = (
    ("required", REQUIRED_BRANCHES),
    ("ids", ID_BRANCHES),
    ("truth", TRUTH_BRANCHES),
    ("sim extras", SIM_EXTRA_BRANCHES),
    ("pile-up truth", PILEUP_TRUTH_BRANCHES),
)


def inspect_file(path, tree: str = DEFAULT_TREE, max_events: int = 1000,
                 branches: BranchNames | dict | None = None) -> dict:
    """Schema check and validity fractions of ``tree`` in ``path`` (first ``max_events`` events).

    Returns a JSON-serialisable dict: ``file``, ``size_bytes``, ``tree``, ``entries``,
    ``groups`` ({group: {"found": {name: type}, "missing": [names]}}), ``other_branches``,
    ``validity`` (:class:`~xecreco.io.validity.ReaderStats` counts over the events read) and
    ``provenance`` (stored xecreco provenance or None). UserError when the file cannot be read,
    has no such tree, lacks ``npho``/``time``, or the tree is empty.
    """
    path = Path(path)
    names = BranchNames.of(branches)
    with open_root(path) as handle:
        ttree = open_tree(handle, tree, path)
        entries = int(ttree.num_entries)
        types = {name: ttree[name].typename for name in ttree.keys()}
        provenance = str(handle[PROVENANCE_KEY]) if PROVENANCE_KEY in handle else None
    groups, known = {}, set()
    for group, members in _GROUPS:
        found = {c: types[names.file_name(c)] for c in members if names.file_name(c) in types}
        groups[group] = {"found": found, "missing": [c for c in members if c not in found]}
        known.update(names.file_name(c) for c in members)
    reader = BatchReader(path, tree=tree, branches=names, entry_stop=max(0, int(max_events)),
                         vertex=False, prefetch=False)
    if entries == 0:
        raise UserError(f"'{path}' tree '{tree}' has 0 entries; there is nothing to reconstruct")
    for _ in reader:
        pass
    return {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "tree": tree,
        "entries": entries,
        "groups": groups,
        "other_branches": {k: v for k, v in types.items() if k not in known},
        "validity": reader.stats.to_dict(),
        "provenance": provenance,
    }


def _percent(count: int, total: int) -> str:
    return f"{100.0 * count / total:.3g}%" if total else "n/a"


def _provenance_summary(text: str | None) -> str:
    """One line: version, creation time, command and the other records (full JSON: --json)."""
    if not text:
        return "none (not written by xecreco)"
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return "present but not valid JSON"
    standard = {"xecreco_version", "created_utc", "command_line", "python", "host", "libraries"}
    others = ", ".join(sorted(set(record) - standard)) or "none"
    command = " ".join(record.get("command_line", [])) or "?"
    return (f"xecreco {record.get('xecreco_version', '?')}, created "
            f"{record.get('created_utc', '?')}, command '{command}'; records: {others}")


def format_report(report: dict) -> str:
    """Human-readable text of an :func:`inspect_file` report."""
    lines = [
        f"file     {report['file']} ({report['size_bytes'] / 1e6:.3g} MB)",
        f"tree     {report['tree']}: {report['entries']} entries",
    ]
    for group, content in report["groups"].items():
        found = ", ".join(f"{k} ({v})" for k, v in content["found"].items()) or "none"
        missing = ", ".join(content["missing"]) or "none"
        lines.append(f"{group:14s} found: {found}; missing: {missing}")
    if report["other_branches"]:
        others = ", ".join(f"{k} ({v})" for k, v in report["other_branches"].items())
        lines.append(f"{'other':14s} {others}")
    v = report["validity"]
    total = v["sensors"]
    lines.append(
        f"validity over the first {v['events']} events: invalid npho "
        f"{_percent(v['invalid_npho'], total)}"
        f" (NaN {v['npho_nan']}, inf {v['npho_inf']}, sentinel {v['npho_sentinel']}); invalid time "
        f"{_percent(v['invalid_time'], total)} (NaN {v['time_nan']}, inf {v['time_inf']}, sentinel "
        f"{v['time_sentinel']}, too little light {v['time_low_light']}, invalid npho "
        f"{v['invalid_npho']}); events without a valid sensor {v['events_without_valid_sensor']}"
    )
    lines.append(f"provenance {_provenance_summary(report['provenance'])}")
    return "\n".join(lines)
