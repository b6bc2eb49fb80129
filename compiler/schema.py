"""Validate a loaded spec against schemas/timeloom.schema.json, errors mapped to file:line:col."""
from __future__ import annotations

import difflib
import json
from functools import lru_cache

import jsonschema
from jsonschema.exceptions import best_match

from schemas import SCHEMA_PATH

from .errors import SpecIssue
from .loader import Positions


@lru_cache(maxsize=1)
def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "the top level"


def _deepest(error):
    """For oneOf/anyOf failures, the most relevant error inside them."""
    while error.context:
        inner = best_match(error.context)
        if inner is None or len(inner.absolute_path) < len(error.absolute_path):
            break
        error = inner
    return error


def _message(error) -> tuple[str, tuple, bool]:
    """(message, path, point at the key?) for one jsonschema error."""
    path = tuple(error.absolute_path)
    v = error.validator
    if v == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed]
        key = extra[0] if extra else "?"
        hint = did_you_mean(key, allowed) or (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        return f"unknown key '{key}' in {_where(path)}{hint}", path + (key,), True
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return f"missing required key '{missing}' in {_where(path)}", path, False
    if v == "enum":
        hint = did_you_mean(error.instance, error.validator_value)
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"{error.instance!r} is not allowed for {_where(path)}{hint}; use one of: {choices}", path, False
    if v == "type":
        want = error.validator_value
        want = " or ".join(want) if isinstance(want, list) else want
        return f"{_where(path)} must be of type {want}, not {type(error.instance).__name__} ({error.instance!r})", path, False
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return f"{_where(path)}: {error.message}", path, False
    if v == "pattern":
        return f"{_where(path)}: {error.instance!r} is not a valid name (letters, digits, '_' and '.', not starting with a digit)", path, False
    if v == "const":
        return f"{_where(path)} must be {error.validator_value!r}", path, False
    return f"{_where(path)}: {error.message}", path, False


def validate(data, positions: Positions) -> list[SpecIssue]:
    """Every schema violation in `data`, each placed at its source position."""
    issues = []
    seen = set()
    for error in sorted(_validator().iter_errors(data), key=lambda e: tuple(map(str, e.absolute_path))):
        error = _deepest(error)
        message, path, at_key = _message(error)
        if (message, path) in seen:
            continue
        seen.add((message, path))
        issues.append(positions.issue(path, message, at_key=at_key))
    return issues
