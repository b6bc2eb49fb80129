"""Shared fixtures: the example specs and random batches shaped for any program."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (reproducible); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Compiled scans cost a numba compile per component structure and dtype (seconds each, then
# cached on disk). Tests run the interpreted scan unless they ask for the compiled one
# (Network(..., jit=True)): tests/runtime/test_compiled_scan.py holds it equal to the
# interpreter and the reference on every example spec and on random graphs, test_gradients
# checks it against finite differences, and test_run_cli trains through it end to end.
os.environ.setdefault("TIMELOOM_JIT", "0")

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


@pytest.fixture(params=SPECS, ids=[p.stem for p in SPECS])
def spec_path(request):
    return request.param
