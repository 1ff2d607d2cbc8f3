"""ebmppl's imports point down the layers and never run in a circle.

Every module under ``ebmppl/`` is parsed with :mod:`ast` (imports inside
functions count: a lazy import is still a dependency) and each import becomes
an arrow between two modules. A package's ``__init__.py`` (its face) counts as
the package. The test fails on

* an arrow from a lower layer to a higher one (see ``LAYERS``, the map agreed in
  ``docs/design.md``: base → inference → diagnostics → objectives →
  workflows → cli);
* any cycle between modules, even within a layer (imports under ``if TYPE_CHECKING:``
  never run, so they count for the layers but not for cycles);
* a module that is not on the map: a new module must be placed.

Deprecation shims that must import upward for one release are listed in
``SHIMS``; nothing else is exempt.
"""

from __future__ import annotations

import ast
import pathlib
import warnings

import pytest

import ebmppl

ROOT = pathlib.Path(ebmppl.__file__).parent

BASE, INFERENCE, DIAGNOSTICS, OBJECTIVES, WORKFLOWS, TOP = range(1, 7)
LAYER_NAMES = {BASE: "base", INFERENCE: "inference", DIAGNOSTICS: "diagnostics", OBJECTIVES: "objectives",
               WORKFLOWS: "workflows", TOP: "cli"}

LAYERS = {
    # 1. base: no ebmppl imports above it
    "ebmppl._validation": BASE,
    "ebmppl._deprecation": BASE,
    "ebmppl._arviz": BASE,  # the one module that calls ArviZ
    "ebmppl._version": BASE,
    "ebmppl.data": BASE,  # the package and every module in it
    "ebmppl.energy": BASE,
    "ebmppl.support": BASE,  # the values an energy is defined on
    "ebmppl.noise": BASE,  # noise ladders and noise-conditional energies (an Energy at its smallest level)
    "ebmppl.ema": BASE,  # an Optax wrapper: the parameters' moving average
    "ebmppl.discrete": BASE,  # discrete energies and their exact log Z (enumeration, transfer matrix)
    "ebmppl.nn": BASE,
    "ebmppl.sharding": BASE,
    "ebmppl.distributed": BASE,  # which process writes; gathering arrays that span processes
    "ebmppl.checkpoint": BASE,
    "ebmppl.compose": BASE,
    "ebmppl.targets": BASE,
    "ebmppl.numpyro": BASE,
    # 2. inference: samplers, chain initialisation, log Z and what uses it, conditional sampling
    "ebmppl.samplers": INFERENCE,
    "ebmppl.buffer": INFERENCE,
    "ebmppl.normalisability": INFERENCE,
    "ebmppl.logz": INFERENCE,
    "ebmppl.evaluation": INFERENCE,  # log-likelihoods from a log Z: beside ebmppl.logz, above it
    "ebmppl.goodness": INFERENCE,  # goodness of fit from samples and scores (KSD, classifier test)
    "ebmppl.conditional": INFERENCE,
    "ebmppl.latent": INFERENCE,
    "ebmppl.structured": INFERENCE,
    # 3. diagnostics: beside inference and above it (inference never imports it)
    "ebmppl.diagnostics": DIAGNOSTICS,
    "ebmppl.plots": DIAGNOSTICS,
    "ebmppl.health": DIAGNOSTICS,
    # 4. objectives: the trainer and its loss terms
    "ebmppl.objectives": OBJECTIVES,
    "ebmppl.jem": OBJECTIVES,
    # energies learned inside NumPyro models: sites and MCEM use the trainer; the exchange kernel only samples
    "ebmppl.models": OBJECTIVES,
    "ebmppl.models.exchange": INFERENCE,
    "ebmppl.models.discrete_gibbs": INFERENCE,
    # 5. workflows
    "ebmppl.recipes": WORKFLOWS,
    "ebmppl.fit": WORKFLOWS,
    "ebmppl.io": WORKFLOWS,
    "ebmppl.compare": WORKFLOWS,
    "ebmppl.runs": WORKFLOWS,
    # 6. on top: the command line, and the package's face (it re-exports the public API)
    "ebmppl.cli": TOP,
    "ebmppl": TOP,
}
"""Module (or package: it covers every module in it) → layer."""

SHIMS = {
    # remove next release: the old address ebmppl.diagnostics.compare (a lazy __getattr__) of ebmppl.compare
    ("ebmppl.diagnostics", "ebmppl.compare"),
}
"""Upward arrows allowed for one release (deprecated old addresses)."""


def _modules() -> dict[str, pathlib.Path]:
    """Dotted name → file, for every module under ``ebmppl/`` (a package's ``__init__.py`` is the package)."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """``id`` of every import node inside an ``if TYPE_CHECKING:`` block (it never runs)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skipped


def _arrows(name: str, path: pathlib.Path, runtime_only: bool = False) -> set[str]:
    """The ebmppl modules that ``name`` imports, anywhere in its body (functions included); ``runtime_only``
    leaves out the imports under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..pkg import y
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:  # from pkg import submodule → the submodule; else the module itself
                sub = f"{source}.{alias.name}"
                targets.add(sub if sub in MODULES else source)
    arrows = set()
    for target in targets:
        if not (target == "ebmppl" or target.startswith("ebmppl.")):
            continue
        while target not in MODULES and "." in target:  # import a.b.c where c is a name: a.b
            target = target.rpartition(".")[0]
        if target != name:
            arrows.add(target)
    return arrows


GRAPH = {name: _arrows(name, path) for name, path in MODULES.items()}
RUNTIME_GRAPH = {name: _arrows(name, path, runtime_only=True) for name, path in MODULES.items()}


def layer_of(name: str) -> int | None:
    """The layer of a module: its own entry, else that of the nearest package above it on the map."""
    probe = name
    while "." in probe:  # the root "ebmppl" is the face only, not a package covering unknown modules
        if probe in LAYERS:
            return LAYERS[probe]
        probe = probe.rpartition(".")[0]
    return LAYERS["ebmppl"] if name == "ebmppl" else None


def test_every_module_is_on_the_map():
    unknown = sorted(name for name in MODULES if layer_of(name) is None)
    assert not unknown, (f"modules not on the layer map: {unknown}; add each to LAYERS in tests/test_layers.py "
                         "(and to the layers of docs/design.md)")


def test_imports_point_down():
    upward = []
    for source, targets in GRAPH.items():
        for target in targets:
            ls, lt = layer_of(source), layer_of(target)
            if ls is not None and lt is not None and lt > ls and (source, target) not in SHIMS:
                upward.append(f"{source} ({LAYER_NAMES[ls]}) -> {target} ({LAYER_NAMES[lt]})")
    assert not upward, "imports that point up the layers:\n" + "\n".join(sorted(upward))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    cycles = _cycles({s: {t for t in ts if (s, t) not in SHIMS} for s, ts in RUNTIME_GRAPH.items()})
    shown = []
    for component in cycles:
        ties = [f"  {s} -> {t}" for s in component for t in sorted(RUNTIME_GRAPH[s]) if t in component]
        shown.append(" <-> ".join(component) + "\n" + "\n".join(ties))
    assert not cycles, "import cycles:\n" + "\n".join(shown)


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    """The parser finds imports inside functions and resolves ``from pkg import submodule`` (a check of the check)."""
    assert "ebmppl.samplers.kernels" in GRAPH["ebmppl.samplers.registry"]  # from ebmppl.samplers import kernels
    assert "ebmppl._arviz" in GRAPH["ebmppl.samplers.sample"]  # inside Samples.to_arviz
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("ebmppl.samplers.kernels") == INFERENCE and layer_of("ebmppl.nowhere") is None
    module = tmp_path / "probe.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ebmppl.fit import fit\n"
                      "def f():\n    from ebmppl import energy\n")
    assert _arrows("ebmppl.probe", module) == {"ebmppl.fit", "ebmppl.energy"}
    assert _arrows("ebmppl.probe", module, runtime_only=True) == {"ebmppl.energy"}


def test_compare_moved_to_the_workflow_layer():
    """``ebmppl.compare`` is the function; the old address works for one release, with a deprecation warning."""
    from ebmppl import compare, diagnostics
    from ebmppl._deprecation import EbmpplDeprecationWarning
    from ebmppl.compare import COLUMNS, Comparison, moment_threshold

    for name, new in (("compare", compare), ("Comparison", Comparison), ("COLUMNS", COLUMNS),
                      ("moment_threshold", moment_threshold)):
        with pytest.warns(EbmpplDeprecationWarning, match=f"ebmppl.diagnostics.{name} is deprecated"):
            assert getattr(diagnostics, name) is new
    with pytest.raises(AttributeError):
        diagnostics.no_such_name  # noqa: B018
    with warnings.catch_warnings():
        warnings.simplefilter("error", EbmpplDeprecationWarning)
        from ebmppl.diagnostics import plot_comparison, rhat  # noqa: F401  (no warning for what stays)


def test_compare_takes_the_key_second_and_the_old_order_warns():
    import jax

    from ebmppl import compare
    from ebmppl._deprecation import EbmpplDeprecationWarning
    from ebmppl.targets import gaussian

    target = gaussian([0.0], [[1.0]])
    budget = dict(num_chains=2, num_warmup=20, num_samples=20, progress_bar=False)
    new = compare(target, jax.random.key(0), ["mala"], **budget)
    with pytest.warns(EbmpplDeprecationWarning, match=r"compare\(target, key, samplers\)"):
        old = compare(target, ["mala"], key=jax.random.key(0), **budget)
    assert float(new.table.loc[0, "rhat_max"]) == float(old.table.loc[0, "rhat_max"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", EbmpplDeprecationWarning)  # keywords are fine
        compare(target, key=jax.random.key(0), samplers=["mala"], **budget)
    with pytest.raises(TypeError, match="missing the key"):
        compare(target, samplers=["mala"])


def test_log_partition_takes_sampler_and_sampler_params_and_old_names_warn():
    import jax

    from ebmppl import log_partition, samplers
    from ebmppl._deprecation import EbmpplDeprecationWarning
    from ebmppl.targets import gaussian

    energy = gaussian([0.0], [[1.0]]).energy
    run = dict(num_chains=64, num_temperatures=20, pilot_chains=8, check_normalisable=False)
    new = log_partition(energy, jax.random.key(0), sampler=samplers.hmc(num_integration_steps=3, jitter=0.0),
                        sampler_params={"step_size": 0.2}, **run)
    with pytest.warns(EbmpplDeprecationWarning) as caught:
        old = log_partition(energy, jax.random.key(0), transition="hmc", num_leapfrog=3, step_size=0.2, **run)
    assert {str(w.message).split(":")[1].split("=")[0].strip() for w in caught} == \
        {"transition", "num_leapfrog", "step_size"}
    assert old.log_z == new.log_z  # the old names mean exactly the new ones
    with pytest.raises(ValueError, match="not exact"):
        log_partition(energy, jax.random.key(0), sampler="ula", **run)
    with pytest.raises(ValueError, match="transition='gibs'"):
        log_partition(energy, jax.random.key(0), transition="gibs", **run)
    with pytest.raises(ValueError, match="unknown key 'stepsize'"):
        log_partition(energy, jax.random.key(0), sampler_params={"stepsize": 0.1}, **run)
    with pytest.raises(TypeError, match="not both"):
        log_partition(energy, jax.random.key(0), sampler="mala", transition="mala", **run)
