"""The headline resolutions of a validation summary, as one flat dict per reconstruction.

Used by the physics benchmark, the bundled-model test and the docs tables, so that "the energy
resolution" means the same number everywhere: the upper-side sigma of the Gaussian + low
exponential tail fit by depth class, Gaussian core sigmas for u, v, w and time, and the 68 %
containment of the opening angle.
"""

from __future__ import annotations

#: (key, study, path inside the study's series entry, unit)
HEADLINES = (
    ("energy_w_lt_2cm_percent", "energy", ("by_depth", "w<2cm", "sigma_upper_percent"), "%"),
    ("energy_w_ge_2cm_percent", "energy", ("by_depth", "w>=2cm", "sigma_upper_percent"), "%"),
    ("u_mm", "position", ("u", "all", "sigma_mm"), "mm"),
    ("v_mm", "position", ("v", "all", "sigma_mm"), "mm"),
    ("w_mm", "position", ("w", "all", "sigma_mm"), "mm"),
    ("time_ps", "timing", ("sigma_ps",), "ps"),
    ("opening_angle_68_mrad", "angle", ("opening_angle", "containment68_mrad"), "mrad"),
)

#: The studies the headline numbers come from.
HEADLINE_STUDIES = ("energy", "position", "angle", "timing")


def headline_numbers(summary: dict, reco: str) -> dict[str, float | None]:
    """``{key: value}`` of one reconstruction in a ``validate`` summary; None where the study
    did not run or its fit failed."""
    numbers = {}
    for key, study, path, _unit in HEADLINES:
        node = summary.get("studies", {}).get(study, {}).get("series", {}).get(reco, {})
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        numbers[key] = node.get("value") if isinstance(node, dict) else None
    return numbers
