"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
REFERENCE_DIR = SHARED_DIR / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` (design and as-built geometry); tests using it skip without it."""
    if not REFERENCE_DIR.is_dir():
        pytest.skip("../shared/reference is absent: geometry reference files are not available here")
    return REFERENCE_DIR
