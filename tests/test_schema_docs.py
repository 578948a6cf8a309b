"""The config schema documents every key: a description, and a default where one exists
(as the Snakemake workflow catalog expects). Reads the schema only; no Snakemake run."""

from __future__ import annotations

from fnmatch import fnmatchcase

import jsonschema
import pytest

from lrdynamics.config import load_schema, resolve_ref

SCHEMA = load_schema()

# Keys without a default by design (a `*` stands for any one key). Each is absent unless
# the user sets it, and no value of its type means "absent".
NO_DEFAULT = {
    # An entry of figures is a figure to draw (figures defaults to {}: none); most need
    # `experiment(s)`, so no entry has a default value that would mean "not drawn".
    "figures.*": "absent: the figure is not drawn",
    # "experiment" in the spec switches on the real-net panels (workflow/rules/common.smk).
    "figures.balancing.experiment": "absent: the toy only",
    # Exactly one of the two (minProperties/maxProperties 1): one experiment, or a list.
    "figures.adaptive_*.experiment": "exactly one of experiment and experiments",
    "figures.adaptive_*.experiments": "exactly one of experiment and experiments",
    # Required in every resolved run (checked by config._check_run), but they may come from
    # run_defaults, the experiment or its grid, so no schema level can require them, and
    # there is no sensible default dataset name or architecture.
    "$defs.run.dataset": "required in every resolved run",
    "$defs.run.model.name": "required in every resolved run",
    "$defs.experiment.dataset": "as $defs.run.dataset",
    # Required in $defs/gd_run, but an experiment may take it from its grid.
    "$defs.gd_experiment.dataset": "required in every resolved GD run",
}
ASSEMBLED = "defaults: see its keys"  # what the description of an object of rule (b)/(c) says


def _properties(node: dict, path: tuple = ()):
    """(path, key, spec, parent) of every property under ``node``."""
    if not isinstance(node, dict):
        return
    for key, spec in node.get("properties", {}).items():
        yield path + (key,), key, spec, node
        yield from _properties(spec, path + (key,))
    if isinstance(node.get("additionalProperties"), dict):
        yield from _properties(node["additionalProperties"], path + ("<name>",))
    if isinstance(node.get("items"), dict):
        yield from _properties(node["items"], path + ("[]",))
    for word in ("oneOf", "anyOf", "allOf"):
        for i, branch in enumerate(node.get(word, [])):
            yield from _properties(branch, path + (f"{word}[{i}]",))
    for name, sub in node.get("$defs", {}).items():
        yield from _properties(sub, path + ("$defs", name))


ALL = list(_properties(SCHEMA))


def _dotted(path: tuple) -> str:
    return ".".join(path)


def _allowlisted(path: tuple) -> str | None:
    for pattern in NO_DEFAULT:
        parts = pattern.split(".")
        if len(parts) == len(path) and all(fnmatchcase(p, q) for p, q in zip(path, parts)):
            return pattern
    return None


def _ref_path(ref: str) -> tuple:
    """The key path of a $ref target, as _properties names it ("#/$defs/run/properties/model"
    -> $defs.run.model), so that the allowlist applies through a $ref too."""
    parts, out = iter(ref.lstrip("#/").split("/")), []
    for part in parts:
        if part == "properties":
            out.append(next(parts))
        elif part == "$defs":
            out += [part, next(parts)]
        else:
            out.append({"additionalProperties": "<name>", "items": "[]"}.get(part, part))
    return tuple(out)


def _assembled(spec: dict, path: tuple) -> bool:
    """Rule (b), (c) through $ref: an object whose own properties all have defaults (or are
    allowlisted), so that config.schema_defaults assembles its default from them."""
    if "$ref" in spec:
        path = _ref_path(spec["$ref"])
    spec = resolve_ref(spec)
    props = spec.get("properties")
    if not props:
        return False
    required = spec.get("required", [])
    return all(key not in required and _has_default(key, sub, spec, path + (key,)) for key, sub in props.items())


def _free_form(spec: dict) -> bool:
    """Rule (d): a mapping of user-named entries for which {} is valid (its default)."""
    spec = resolve_ref(spec)
    return (
        spec.get("type") == "object"
        and not spec.get("properties")
        and isinstance(spec.get("additionalProperties"), dict)
        and spec.get("minProperties", 0) == 0
    )


def _has_default(key: str, spec: dict, parent: dict, path: tuple) -> bool:
    return (
        "default" in spec
        or key in parent.get("required", [])
        or _assembled(spec, path)
        or _free_form(spec)
        or _allowlisted(path) is not None
    )


def test_walk_reaches_every_part_of_the_schema():
    paths = {_dotted(p) for p, *_ in ALL}
    for expected in ("device", "checkpoint.every_seconds", "figures.balancing.losses", "$defs.dataset.source"):
        assert expected in paths
    assert "$defs.run.schedule.milestones" in paths and "$defs.gd_run.model.layer_norms" in paths


def test_every_key_has_a_description():
    bad = [
        _dotted(path)
        for path, _, spec, _ in ALL
        if not (isinstance(spec.get("description"), str) and spec["description"].strip())
    ]
    assert not bad, "keys without a description (next to a $ref too):\n  " + "\n  ".join(bad)


def test_every_optional_key_has_a_default():
    bad = [_dotted(path) for path, key, spec, parent in ALL if not _has_default(key, spec, parent, path)]
    assert not bad, "optional keys without a default:\n  " + "\n  ".join(bad)


def test_assembled_defaults_say_so():
    """An object whose default is assembled from its keys (rules b, c) says so."""
    bad = [
        _dotted(path)
        for path, key, spec, parent in ALL
        if "default" not in spec
        and key not in parent.get("required", [])
        and _assembled(spec, path)
        and ASSEMBLED not in spec.get("description", "").lower()
    ]
    assert not bad, f"descriptions without {ASSEMBLED!r}:\n  " + "\n  ".join(bad)


def test_allowlist_is_minimal():
    """Every allowlist entry names keys that no other rule covers."""
    used = {
        _allowlisted(path)
        for path, key, spec, parent in ALL
        if "default" not in spec
        and key not in parent.get("required", [])
        and not _assembled(spec, path)
        and not _free_form(spec)
    }
    assert set(NO_DEFAULT) <= used, f"allowlist entries not needed: {sorted(set(NO_DEFAULT) - used)}"


def test_a_default_next_to_a_ref_is_the_targets():
    bad = []
    for path, _, spec, _ in ALL:
        if "$ref" in spec and "default" in spec:
            target = resolve_ref({"$ref": spec["$ref"]})
            if "default" in target and target["default"] != spec["default"]:
                bad.append(f"{_dotted(path)}: {spec['default']!r} vs {target['default']!r}")
    assert not bad, "defaults that differ from their $ref target's:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("path, spec", [(_dotted(p), s) for p, _, s, _ in ALL if "default" in s])
def test_every_default_is_valid(path, spec):
    # evolve keeps the whole schema as the root that $refs resolve against
    validator = jsonschema.Draft202012Validator(SCHEMA).evolve(schema=spec)
    errors = [e.message for e in validator.iter_errors(spec["default"])]
    assert not errors, f"{path}: default {spec['default']!r} is invalid: {errors}"


def test_the_key_reference_of_config_readme_is_generated_from_the_schema():
    """config/README.md's tables are the schema's (python -m lrdynamics.config.reference)."""
    from lrdynamics.config.reference import MARKER, README, render

    text = README.read_text()
    assert len(MARKER.findall(text)) >= 10  # every part of the config has its table
    assert render(text) == text, "stale key reference: run python -m lrdynamics.config.reference"
