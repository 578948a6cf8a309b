"""The layout's rules, checked: imports run one way, the config stays torch-free, and the
study catalog is whole (every figure has its schema entry, caption, plot function and
analyses; every analysis its code)."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from lrdynamics.config import load_schema
from lrdynamics.studies import ANALYSES, CATEGORY, FIGURES, STUDIES, load

PACKAGE = REPO / "workflow" / "lrdynamics"
# The parts of the package each part may import (besides itself). The config reads the
# engine's torch-free facts and the studies' catalog declarations (checked below).
ALLOWED = {
    "engine": set(),
    "studies": {"engine"},
    "config": {"engine", "studies"},
    "figures": {"engine", "studies"},
    "train": {"engine", "config"},
}
# What the config may import from the engine and the studies: nothing that imports torch,
# numpy-heavy analysis or xarray.
LIGHT = {
    "lrdynamics.engine.adaptive",
    "lrdynamics.engine.contract",
    "lrdynamics.engine.facts",
    "lrdynamics.engine.schedules",
    "lrdynamics.studies",
    "lrdynamics.studies.catalog",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(path: Path) -> set[str]:
    """The lrdynamics modules a file imports (at any level of the file; ``from a import b``
    counts ``a.b`` too when b is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lrdynamics"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("lrdynamics"))
    return out


def light(module: str) -> bool:
    """A module the config may import: a torch-free one, or a study's catalog entry."""
    study_entry = module.startswith("lrdynamics.studies.") and module.count(".") == 2 and "catalog" not in module
    return module in LIGHT or (study_entry and (PACKAGE / "studies" / module.split(".")[2]).is_dir())


def part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "package"


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: module_name(p))
def test_imports_run_one_way(path):
    here = part(module_name(path))
    bad = []
    for module in imported(path):
        there = part(module)
        if there in (here, "package"):
            continue
        if there not in ALLOWED.get(here, set()):
            bad.append(module)
        elif here == "config" and not light(module):
            bad.append(f"{module} (the config reads only plain-Python modules)")
    assert not bad, f"{module_name(path)} imports {bad}"


def test_study_declarations_are_plain_python():
    """A study package's __init__ (its catalog entry) imports only the catalog and the
    engine's plain-Python modules, so that the config can read it before any job."""
    for study in STUDIES:
        init = PACKAGE / "studies" / study.name / "__init__.py"
        assert all(light(m) for m in imported(init)), init


def test_the_config_imports_no_torch_nor_xarray():
    code = (
        "import time, sys; t = time.perf_counter(); import lrdynamics.config; print(time.perf_counter() - t); "
        "print(sorted(m for m in ('torch', 'xarray', 'matplotlib') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, heavy = proc.stdout.splitlines()
    print(f"import lrdynamics.config: {float(seconds):.2f} s")  # a measurement, not a test
    assert heavy == "[]"


def test_every_figure_of_the_schema_is_in_the_catalog_and_back():
    assert set(load_schema()["properties"]["figures"]["properties"]) == set(FIGURES)
    assert set(CATEGORY) == set(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_a_figure_has_its_caption_plot_and_analyses(name):
    figure = FIGURES[name]
    assert (REPO / "workflow" / "report" / f"{name}.rst").is_file()
    plot = load(figure.plot)
    assert list(inspect.signature(plot).parameters)[:3] == ["inputs", "png", "pdf"]
    for analysis in (*figure.analyses, *figure.experiment_analyses):
        assert analysis in ANALYSES, f"{name} reads {analysis}, which no study declares"
    assert figure.section in ("experiments", "gd_experiments")


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_an_analysis_has_its_code_inputs_and_a_reader(name):
    analysis = ANALYSES[name]
    compute = load(analysis.compute)
    parameters = inspect.signature(compute).parameters
    assert set(analysis.inputs) <= set(parameters), "every input group is an argument"
    for figures in (*analysis.inputs.values(), analysis.settings):
        assert set(figures) <= set(FIGURES)
    if analysis.summary:
        assert callable(load(analysis.summary))
    assert any(name in (*f.analyses, *f.experiment_analyses) for f in FIGURES.values()), "no figure reads it"
