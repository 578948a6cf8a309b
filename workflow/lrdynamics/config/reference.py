"""The key reference of ``config/README.md``, generated from the config schema.

The README holds hand-written explanations and, between marker comments, one table per
part of the config::

    <!-- keys: $defs/dataset -->
    ... (generated: do not edit) ...
    <!-- /keys -->

The pointer names a node of the schema (``#`` the top level); its table has a row per key
(nested mappings as dotted keys): the type and allowed values, the default, and the
description, all read from the schema. ``python -m lrdynamics.config.reference`` rewrites
the tables; ``--check`` fails when one is stale (``tests/test_schema_docs.py`` runs it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from lrdynamics.config.schema import load_schema, resolve_ref

README = Path(__file__).resolve().parents[3] / "config" / "README.md"
MARKER = re.compile(r"(<!-- keys: (?P<pointer>\S+) -->\n)(?P<body>.*?)(<!-- /keys -->)", re.S)
HEADER = "| key | type / allowed | default | meaning |\n| --- | --- | --- | --- |\n"
# Keys without a default, and what their absence means (tests/test_schema_docs.py checks
# that every other optional key has one).
ABSENT = {
    "figure": "(absent: not drawn)",
    "required": "— (required)",
    "run": "— (required in every resolved run)",
    "optional": "— (optional)",
}


def node(pointer: str) -> dict:
    """The schema node of a pointer such as ``$defs/run/properties/model`` (``#``: the root)."""
    out = load_schema()
    for part in [p for p in pointer.lstrip("#").split("/") if p]:
        out = out[part]
    return resolve_ref(out)


def _yaml(v) -> str:
    """A value as YAML writes it (floats in full, exponents as 1.0e-30)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and "e" in repr(v):
        mantissa, exponent = repr(v).split("e")
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent):+d}"
    if isinstance(v, str):
        return json.dumps(v) if v == "" else v
    if isinstance(v, list):
        return "[" + ", ".join(_yaml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml(x)}" for k, x in v.items()) + "}"
    return str(v)


def _range(spec: dict, kind: str) -> str:
    low, high = spec.get("minimum"), spec.get("maximum")
    xlow, xhigh = spec.get("exclusiveMinimum"), spec.get("exclusiveMaximum")
    if low is not None and high is not None:
        return f"{kind} {_yaml(low)}–{_yaml(high)}"
    if xlow is not None and high is not None:
        return f"{kind} in ({_yaml(xlow)}, {_yaml(high)}]"
    if low is not None and xhigh is not None:
        return f"{kind} in [{_yaml(low)}, {_yaml(xhigh)})"
    if low is not None:
        return f"{kind} ≥ {_yaml(low)}"
    if xlow is not None:
        return f"{kind} > {_yaml(xlow)}"
    return kind


PLURAL = {"integer": "integers", "number": "numbers", "string": "strings", "boolean": "booleans"}


def type_text(spec: dict, plural: bool = False, expanded: bool = True) -> str:
    """The "type / allowed" cell of a key (``plural``: said of the items of a list;
    ``expanded``: a mapping whose keys follow as rows)."""
    spec = resolve_ref(spec)
    if "enum" in spec:
        return ("each one of " if plural else "") + ", ".join(f"`{_yaml(v)}`" for v in spec["enum"])
    types = spec.get("type", "object" if "properties" in spec else "any")
    types = types if isinstance(types, list) else [types]
    words = []
    for kind in [t for t in types if t != "null"]:
        word = PLURAL.get(kind, kind) if plural else kind
        if kind in ("integer", "number"):
            words.append(_range(spec, word))
        elif kind == "array":
            items = resolve_ref(spec.get("items", {}))
            size = spec.get("minItems")
            exactly = size and size == spec.get("maxItems")
            head = f"list of {size}" if exactly else ("non-empty list of" if size else "list of")
            words.append(f"{head} {type_text(items, plural=True) if items else 'values'}")
        elif kind == "string" and "pattern" in spec:
            words.append(f"{word} matching `{spec['pattern']}`")
        elif kind == "object":
            if spec.get("properties"):
                words.append("mapping (its keys below)" if expanded else "mapping (its keys: see their table)")
            elif isinstance(spec.get("additionalProperties"), dict):
                words.append("mapping of names to entries")
            else:
                words.append("mapping")
        else:
            words.append(word)
    return " or ".join(words) + (" or `null`" if "null" in types else "")


def default_text(key: str, spec: dict, parent: dict, absent: str) -> str:
    """The "default" cell: the schema default, the defaults of its keys, or why there is none."""
    resolved = resolve_ref(spec)
    if "default" in spec or "default" in resolved:
        return f"`{_yaml(spec.get('default', resolved.get('default')))}`"
    if key in parent.get("required", []):
        return ABSENT["required"]
    if absent == ABSENT["figure"]:
        return absent
    if resolved.get("properties"):
        return "its keys' defaults"
    return absent


def _describe(spec: dict) -> str:
    text = spec.get("description") or resolve_ref(spec).get("description", "")
    return " ".join(text.split()).replace("|", "\\|")


def _expanded(sub: dict) -> bool:
    """A key whose own keys get rows under it: an inline mapping of plain keys (not a $ref to
    a part with a table of its own, not a mapping of mappings such as ``figures``)."""
    props = sub.get("properties", {}) if "$ref" not in sub else {}
    return bool(props) and not any(resolve_ref(p).get("properties") for p in props.values())


def _row(name: str, key: str, sub: dict, parent: dict, absent: str, expanded: bool = True) -> str:
    kind = type_text(sub, expanded=expanded).replace("|", "\\|")
    return f"| `{name}` | {kind} | {default_text(key, sub, parent, absent)} | {_describe(sub)} |"


def table(pointer: str) -> str:
    """The generated table of a schema node: a row per key, then rows ``key.nested`` for
    the keys of an inline mapping (``checkpoint``, a ``figures`` entry). An entry of
    ``figures`` has no default: absent, the figure is not drawn."""
    spec, lines = node(pointer), []
    figures = pointer.endswith("properties/figures")
    for key, sub in spec.get("properties", {}).items():
        expand = figures or _expanded(sub) or (pointer.endswith("gd_experiment") and key == "model")
        lines.append(_row(key, key, sub, spec, ABSENT["figure"] if figures else ABSENT["run"], expand))
        if expand:
            resolved = resolve_ref(sub)
            nested = ABSENT["optional"] if figures else ABSENT["run"]
            lines += [_row(f"{key}.{k}", k, s, resolved, nested) for k, s in resolved.get("properties", {}).items()]
    return HEADER + "\n".join(lines) + "\n"


def render(text: str) -> str:
    """The README text with every marked table regenerated."""
    return MARKER.sub(lambda m: m.group(1) + table(m.group("pointer")) + m.group(4), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrdynamics.config.reference", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "readme", nargs="?", default=str(README), help="the README to update (default: config/README.md)"
    )
    parser.add_argument("--check", action="store_true", help="only check: exit 1 if a table is stale")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    text = path.read_text()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{path}: the key reference is stale; run python -m lrdynamics.config.reference", file=sys.stderr)
            return 1
        return 0
    path.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
