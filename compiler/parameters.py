"""Template parameters: find and replace "$name" (whole value, keeps its type) and "${name}"."""
from __future__ import annotations

import re

PARAM = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def substitute(value, params, unknown):
    """Replace "$name" (whole value, keeps its type) and "${name}" (inside strings)."""
    if isinstance(value, dict):
        return {substitute(k, params, unknown): substitute(v, params, unknown) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, params, unknown) for v in value]
    if isinstance(value, str) and "$" in value:
        whole = PARAM.fullmatch(value)
        if whole:
            if whole.group(1) not in params:
                unknown(whole.group(1))
            return params[whole.group(1)]

        def repl(m):
            if m.group(1) not in params:
                unknown(m.group(1))
            return str(params[m.group(1)])
        return PARAM.sub(repl, value)
    return value


def references(value, path):
    """(path, parameter name, text) of every "$name" / "${name}" in a template body (keys included)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                for m in PARAM.finditer(k):
                    yield path + (k,), m.group(1), m.group(0)
            yield from references(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from references(v, path + (i,))
    elif isinstance(value, str):
        for m in PARAM.finditer(value):
            yield path, m.group(1), m.group(0)
