"""Write a spec dict as a readable YAML file: one flow-style line per unit, block and connection."""
from __future__ import annotations

from pathlib import Path

import yaml

SECTIONS = ("inputs", "units", "blocks", "connections", "outputs")


def _flow(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6, sort_keys=False)
    return text.removesuffix("\n...\n").strip()  # a plain scalar comes with a document end marker


def dump_spec(spec: dict, header: list[str] = ()) -> str:
    lines = [f"# {h}" if h else "#" for h in header]
    lines.append(f"timeloom: {spec.get('timeloom', 1)}")
    if "name" in spec:
        lines.append(f"name: {_flow(spec['name'])}")
    for key in SECTIONS:
        section = spec.get(key)
        if not section:
            continue
        lines.append(f"{key}:")
        if isinstance(section, list):
            lines.extend(f"  - {_flow(item)}" for item in section)
        else:
            lines.extend(f"  {_flow(name)}: {_flow(item)}" for name, item in section.items())
    rest = {k: v for k, v in spec.items() if k not in SECTIONS + ("timeloom", "name")}
    if rest:
        lines.append(yaml.safe_dump(rest, sort_keys=False).rstrip())
    return "\n".join(lines) + "\n"


def write_spec(spec: dict, path, header: list[str] = ()) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_spec(spec, header))
    return path
