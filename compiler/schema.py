"""Validate a loaded spec against schemas/timeloom.schema.json, errors mapped to file:line:col."""
from __future__ import annotations

import difflib
import json
import math
import re
from functools import cache, lru_cache

import jsonschema
from jsonschema.exceptions import best_match

from schemas import SCHEMA_PATH

from .errors import SpecIssue
from .loader import Positions


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The schema file, its enums of activations, optimizers, blocks and tasks filled from the registries."""
    from .registries import fill_schema
    return fill_schema(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


@cache
def _validator(definition: str | None = None):
    """The validator of the whole spec, or of one `$defs` entry (e.g. "template")."""
    schema = load_schema()
    if definition is None:
        jsonschema.Draft202012Validator.check_schema(schema)
        return jsonschema.Draft202012Validator(schema)
    return jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"})


def did_you_mean(word: str, choices) -> str:
    """" (did you mean 'lstm'?)" for the choice nearest to `word`, ignoring case, or ""."""
    choices = [str(c) for c in choices]
    word = str(word)
    same = [c for c in choices if c.casefold() == word.casefold()]
    if same:
        return f" (did you mean '{same[0]}'?)"
    folded = {c.casefold(): c for c in reversed(choices)}
    close = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean '{folded[close[0]]}'?)" if close else ""


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


_NAME_HELP = "use letters, digits, '_' and '.', starting with a letter or '_' (e.g. 'h2', 'enc.h')"
_IDENT_HELP = "use letters, digits and '_' (no dots), starting with a letter or '_'"
_REF_HELP = "write $name or ${name}, where name is a template parameter (letters, digits and '_')"
_TYPES = {"integer": "an integer (a whole number such as 3)", "number": "a number", "string": "a string",
          "boolean": "true or false", "object": "a mapping (key: value entries)", "array": "a list",
          "null": "empty"}


def _describe(value) -> str:
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "nothing (null)"
    return "a mapping" if isinstance(value, dict) else "a list" if isinstance(value, list) else repr(value)


def _is_key_error(error, data) -> bool:
    """propertyNames errors are about a key of the object at error.path, not a value."""
    if "propertyNames" not in error.absolute_schema_path:
        return False
    node = _lookup(data, error.absolute_path)
    return isinstance(node, dict) and error.instance in node


def _lookup(data, path):
    for p in path:
        try:
            data = data[p]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _pattern_message(error, where) -> str:
    pattern, value = error.validator_value, error.instance
    if pattern == load_schema()["$defs"]["plain_name"]["pattern"]:
        return f"{where}: {value!r} is not a plain name; {PLAIN_NAME_HELP}"
    if pattern.startswith("^\\$"):
        return f"{where}: {value!r} is not a valid parameter reference; {_REF_HELP}"
    if pattern == "^[A-Za-z_][A-Za-z0-9_]*$":
        return f"{where}: {value!r} is not a valid template or parameter name; {_IDENT_HELP}"
    if "A-Za-z0-9_." in pattern:
        return f"{where}: {value!r} is not a valid name; {_NAME_HELP}"
    return f"{where}: {value!r} does not match the pattern {pattern}"


def _message(error, data, base=()) -> tuple[str, tuple, bool]:
    """(message, path, point at the key?) for one jsonschema error; `base`: where `data` sits in the spec."""
    path = base + tuple(error.absolute_path)
    v = error.validator
    where = _where(path)
    if _is_key_error(error, data):
        key = error.instance
        if v == "not" and path == ("templates",):
            return (f"template '{key}' shadows the built-in block {key}; rename it (e.g. 'my_{key}')",
                    path + (key,), True)
        if v == "pattern":
            return _pattern_message(error, where), path + (key,), True
        return f"{where}: the key {key!r} is not allowed: {error.message}", path + (key,), True
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        fix = "add `timeloom: 1` at the top" if missing == "timeloom" else f"add `{missing}: ...`"
        return f"missing required key '{missing}' in {where}; {fix}", path, False
    if v == "enum":
        hint = did_you_mean(error.instance, error.validator_value)
        choices = ", ".join(str(c) for c in error.validator_value)
        return f"{error.instance!r} is not allowed for {where}{hint}; use one of: {choices}", path, False
    if v == "type":
        want = error.validator_value
        want = " or ".join(_TYPES.get(w, w) for w in want) if isinstance(want, list) else _TYPES.get(want, want)
        return f"{where} must be {want}, not {_describe(error.instance)}", path, False
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return f"{where} must be {op} {error.validator_value}, got {error.instance!r}", path, False
    if v == "pattern":
        return _pattern_message(error, where), path, False
    if v == "const":
        extra = " (this version of timeloom reads spec format 1)" if path == ("timeloom",) else ""
        return f"{where} must be {error.validator_value!r}, not {error.instance!r}{extra}", path, False
    if v in ("minItems", "maxItems") and isinstance(error.instance, list):
        return f"{where}: {error.message}", path, False
    return f"{where}: {error.message}", path, False


_REF = re.compile(r"\$\{?[A-Za-z_]")
_NETWORK_KEYS = ("inputs", "units", "blocks", "connections", "outputs")


def _refs_outside_templates(data, path=()):
    """(path, text, is_key) of every "$name"/"${name}" in the network outside `templates:`: they are
    never replaced there (free text such as `description:` or a `data: {path: $HOME/x}` is not checked)."""
    if isinstance(data, dict):
        for k, v in data.items():
            if not path and k not in _NETWORK_KEYS:  # templates: are substituted; name, data: free text
                continue
            if isinstance(k, str) and _REF.search(k):
                yield path + (k,), k, True
            yield from _refs_outside_templates(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _refs_outside_templates(v, path + (i,))
    elif isinstance(data, str) and _REF.search(data):
        yield path, data, False


def _unknown_key_messages(error, path) -> list[tuple]:
    """(message, path, at_key) for each key an additionalProperties error found (one error lists
    every unknown key of its mapping; each is its own mistake)."""
    allowed = list(error.schema.get("properties", {}))
    extra = [k for k in error.instance if k not in allowed] or ["?"]
    out = []
    for key in extra:
        hint = did_you_mean(key, allowed) or (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
        out.append((f"unknown key '{key}' in {_where(path)}{hint}", path + (key,), True))
    return out


def _schema_errors(validator, data, base=()) -> list[tuple]:
    """(message, path, at_key, error) for every violation, one per mistake."""
    found = []
    seen = set()
    for error in validator.iter_errors(data):
        error = _deepest(error)
        entries = _unknown_key_messages(error, base + tuple(error.absolute_path)) \
            if error.validator == "additionalProperties" and not _is_key_error(error, data) else \
            [_message(error, data, base)]
        for message, path, at_key in entries:
            if (message, path) in seen:
                continue
            seen.add((message, path))
            found.append((message, path, at_key, error))
    # "missing 'size'" next to "unknown key 'sise' (did you mean 'size'?)" is one mistake, not two
    typos = {(p[:-1], m.split("did you mean '")[1].split("'")[0]) for m, p, _, e in found
             if e.validator == "additionalProperties" and "did you mean '" in m}
    return [f for f in found if not (f[3].validator == "required" and (f[1], f[0].split("'")[1]) in typos)]


def validate_template_body(body: dict, positions: Positions, base: tuple, context: str) -> list[SpecIssue]:
    """Check a template body after its parameters were substituted (a parameter's value can be
    anything until then); `base` is the template's path, `context` names the instance."""
    found = _schema_errors(_validator("template"), body, base)
    issues = [positions.issue(path, message + context, at_key=at_key) for message, path, at_key, _ in found]
    return sorted(issues, key=lambda i: (i.line, i.column))


def validate(data, positions: Positions) -> list[SpecIssue]:
    """Every schema violation in `data`, each placed at its source position, in file order."""
    found = _schema_errors(_validator(), data)
    issues = [positions.issue(path, message, at_key=at_key) for message, path, at_key, _ in found]
    issues += [positions.issue(path, message) for path, message in non_finite(data)]
    flagged = {path for _, path, _, _ in found}
    if not any(p[:1] == ("training",) for p in flagged):
        from .registries import training_issues
        issues += training_issues(data, positions)
    if isinstance(data, dict):
        for path, text, is_key in _refs_outside_templates(data):
            if path in flagged:
                continue
            issues.append(positions.issue(
                path, f"'{text}' is a template parameter reference, but $-references only work inside "
                      "templates: (in a template's units, blocks and connections); write the value itself "
                      "here, or move this part into a template", at_key=is_key))
    return sorted(issues, key=lambda i: (i.line, i.column))


# -- plain names and finite numbers (rules that JSON Schema states only in part) -----------------------
PLAIN_NAME_HELP = ("a run or sweep name is a plain folder name: no '/' or '\\', not '.' or '..', no control "
                   "characters, 1 to 100 characters (e.g. 'elman_lr3')")


def plain_name_problem(name) -> str | None:
    """Why `name` is not a plain folder name (the schema's `plain_name` pattern), or None when it is.
    The one rule for the spec's `name:` (checked by the schema) and `--name` (checked by the CLI and by
    runtime.train.rundir.inside)."""
    if not isinstance(name, str) or not re.search(load_schema()["$defs"]["plain_name"]["pattern"], name):
        return f"{name!r} is not a plain name; {PLAIN_NAME_HELP}"
    return None


def non_finite(data, path=()):
    """(path, message) of every .nan/.inf number in a spec: none has a meaning anywhere in the
    language (JSON Schema's minimum/maximum let NaN through, and +-inf through one side)."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from non_finite(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from non_finite(v, path + (i,))
    elif isinstance(data, float) and not math.isfinite(data):
        text = ".nan" if data != data else (".inf" if data > 0 else "-.inf")
        yield path, (f"{_where(path)} must be a finite number, not {text} (no value in a spec may be "
                     "NaN or infinite)")
