"""Where generated scans live: one module file per component structure, compiled by numba once.

A scan's source is written to `<cache>/scan_<hash>.py`, the hash of the source text (which
spells out the component's structure: units, sizes, connections, delays, gates, activations),
and imported from there; its functions carry `@njit(cache=True)`, so numba keeps the machine
code beside it (`__pycache__`), one entry per dtype. A second process, or a second
`timeloom run` of the same spec, loads that code instead of compiling.

The folder is `$TIMELOOM_CACHE_DIR`, else `$XDG_CACHE_HOME/timeloom`, else
`~/.cache/timeloom`; where it cannot be written, a temporary folder for this process.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

_loaded = {}  # hash -> module, this process


def folder() -> Path:
    env = os.environ.get("TIMELOOM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "timeloom"


def _writable(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
        return path
    except OSError:
        return Path(tempfile.mkdtemp(prefix="timeloom-scans-"))


def key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:24]


def load(source: str):
    """The module of this generated source (written and imported once per process)."""
    h = key(source)
    if h in _loaded:
        return _loaded[h]
    where = _writable(folder() / "scans")
    path = where / f"scan_{h}.py"
    if not path.exists() or path.read_text() != source:
        tmp = where / f".scan_{h}.{os.getpid()}.tmp"
        tmp.write_text(source)
        os.replace(tmp, path)  # atomic: another process never imports half a file
    name = f"timeloom_scan_{h}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[h] = module
    return module


def compiled_signatures(module) -> int:
    """How many machine-code versions the module's scans hold now (compiled or loaded from
    numba's cache): 0 before the first call."""
    return sum(len(f.signatures) for f in (module.forward, module.backward))


def loaded_from_cache(module) -> bool:
    """Whether every version this process uses came from numba's file cache (no compile)."""
    stats = [f.stats for f in (module.forward, module.backward)]
    return all(not s.cache_misses for s in stats) and any(s.cache_hits for s in stats)
