"""The documentation: every public object has a runnable example, and the site builds with the gallery executed."""

import importlib
import inspect
import os
import pathlib
import pkgutil
import subprocess
import sys

import pytest

import ebmppl
from conftest import SUITE_XLA_FLAGS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def public_objects():
    """Every public function and class (and their public methods) defined in ebmppl."""
    seen = {}
    for info in pkgutil.walk_packages(ebmppl.__path__, "ebmppl."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)) or not obj.__module__.startswith("ebmppl"):
                continue
            seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and inspect.isfunction(member):
                        seen[f"{obj.__module__}.{obj.__qualname__}.{attr}"] = member
    return seen


def test_every_public_function_and_class_has_a_runnable_example():
    objects = public_objects()
    assert len(objects) > 100
    missing = sorted(name for name, obj in objects.items() if ">>>" not in (inspect.getdoc(obj) or ""))
    # the examples themselves run as doctests (pytest --doctest-modules, see pyproject.toml)
    assert not missing, f"public objects without an Examples section: {missing}"


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    """The site builds with -W (no warning) and renders every gallery page. The examples themselves run in
    tests/test_gallery.py, one test per example the workers share out: here sphinx-gallery does not run them
    again (``plot_gallery=0``), and a user's build (README) runs them all."""
    pytest.importorskip("sphinx_gallery")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    env["XLA_FLAGS"] = SUITE_XLA_FLAGS  # no forced device count; the suite's compile flags
    out = tmp_path / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         "-D", "plot_gallery=0", str(ROOT / "docs"), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert build.returncode == 0, (build.stdout + build.stderr)[-4000:]
    examples = sorted(p.stem for p in (ROOT / "examples").glob("plot_*.py"))
    for name in examples:
        assert (out / "auto_examples" / f"{name}.html").exists(), name
    assert (out / "api.html").stat().st_size > 100_000
