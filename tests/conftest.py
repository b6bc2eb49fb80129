"""Shared fixtures: the example specs and random batches shaped for any program."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture(params=SPECS, ids=[p.stem for p in SPECS])
def spec_path(request):
    return request.param
