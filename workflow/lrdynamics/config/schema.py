"""The config schema (``workflow/schemas/config.schema.yaml``): loading, validation with
one message per problem naming its key path and what is allowed, and the defaults it
gives. The schema is the one place where a key's type, range and default are written."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration problem; the message names the key path and what is valid."""


def config_error(problems: list[str]) -> ConfigError:
    """One ConfigError listing every problem on its own line."""
    return ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


@cache
def load_schema() -> dict:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _key_path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _describe(error: jsonschema.ValidationError, prefix: str) -> str:
    path = _key_path([*filter(None, prefix.split(".")), *error.absolute_path])
    v = error.validator
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = path
        names = ", ".join(f"{where}.{k}" if where != "(top level)" else k for k in extra)
        hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
        return f"unknown key {names}{hint}"
    if v == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"{path}: {error.instance!r} is not allowed; allowed values: {allowed}"
    if v == "type":
        want = error.validator_value
        hint = ""
        if isinstance(error.instance, str) and "number" in str(want) and _is_float(error.instance):
            hint = " (YAML reads 1e-4 as a string: write 1.0e-4)"
        return f"{path}: {error.instance!r} is not of type {want}{hint}"
    if v == "minItems":
        return f"{path}: must not be empty (at least {error.validator_value} item)"
    if v == "minProperties":
        return f"{path}: must have at least {error.validator_value} entry"
    if v == "propertyNames":
        return f"{path}: invalid name {error.instance!r} ({error.message})"
    return f"{path}: {error.message}"


def validate(instance, schema: dict, prefix: str = "") -> None:
    """Validate ``instance``; raise ConfigError listing every problem with its path."""
    root = load_schema()
    full = {**schema, "$defs": root["$defs"]}
    validator = jsonschema.Draft202012Validator(full)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
    if errors:
        raise config_error([_describe(e, prefix) for e in errors])


def resolve_ref(schema: dict) -> dict:
    """A schema node with its ``$ref`` (into the config schema) followed, own keys kept."""
    root = load_schema()
    while "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def schema_defaults(schema: dict):
    """The default value a schema node gives, filling nested objects recursively."""
    schema = resolve_ref(schema)
    if "default" in schema:  # an explicit default wins (figures: {} means no figure)
        return copy.deepcopy(schema["default"])
    if schema.get("type") == "object" or "properties" in schema:
        out = {}
        for key, sub in schema.get("properties", {}).items():
            value = schema_defaults(sub)
            if value is not None or "default" in resolve_ref(sub):
                out[key] = value
        return out
    return None


def figure_schema(figure: str) -> dict:
    """The schema of one entry of ``figures``."""
    return load_schema()["properties"]["figures"]["properties"][figure]


def deep_merge(base: dict, override: dict) -> dict:
    """A copy of ``base`` with ``override`` merged in (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
