"""The JSON Schema of the timeloom spec language (Draft 2020-12)."""
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("timeloom.schema.json")

__all__ = ["SCHEMA_PATH"]
