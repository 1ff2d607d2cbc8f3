"""The API conventions (``docs/guide/conventions.md``) checked mechanically through the public API.

* every public random entry point takes the ``key`` as its 2nd parameter;
* no public function, class or method has a parameter with an old name of the
  table (``transition``, ``num_leapfrog``, ``kernel_params``, ``mcmc_steps``,
  ``recovery_steps``) except as a deprecated keyword-only alias that defaults
  to ``UNSET`` and goes through ``ebmppl._deprecation.renamed``; calling the
  old names warns :class:`~ebmppl._deprecation.EbmpplDeprecationWarning`;
* where ``num_steps`` meant MCMC steps it is now ``num_mcmc_steps``;
* every entry point that takes a ``sampler`` option also takes ``sampler_params``;
* one meaning per name: ``init`` is never a strategy string, ``samples`` never a count;
* every old name that ``renamed`` keeps alive is listed on the conventions page.

The public API is what ``__all__`` of each ``ebmppl`` module exports.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import pkgutil
import re
import warnings

import jax
import jax.numpy as jnp
import optax
import pytest

import ebmppl
from ebmppl._deprecation import UNSET, EbmpplDeprecationWarning

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONVENTIONS_PAGE = ROOT / "docs" / "guide" / "conventions.md"

#: Old names of the table: a parameter may carry one only as a deprecated alias.
OLD_NAMES = ("transition", "num_leapfrog", "kernel_params", "mcmc_steps", "recovery_steps")

#: The random entry points ``f(energy_or_target, key, ...)``, by the address a user calls.
ENTRY_POINTS = (
    "ebmppl.sample",
    "ebmppl.fit",
    "ebmppl.log_partition",
    "ebmppl.ais_bracket",
    "ebmppl.assert_normalisable",
    "ebmppl.compare",
    "ebmppl.conditional.inpaint",
    "ebmppl.jem.sample_conditional",
    "ebmppl.numpyro.model_energy",
)

#: Pure building blocks called inside a jitted step, not entry points: their positional order follows the
#: computation, as BlackJAX's ``step(key, state, ...)`` and loss terms ``(energy, params, x, key)`` do.
BUILDING_BLOCKS = {
    "ebmppl.samplers.negatives.sample_negatives",
    "ebmppl.samplers.negatives.sample_masked",
    "ebmppl.objectives.mcmc_free.dsm_loss",
    "ebmppl.objectives.mcmc_free.ssm_loss",
    "ebmppl.objectives.mcmc_free.ed_loss",
    "ebmppl.objectives.multiscale.multiscale_dsm_loss",
}

#: Subjects of an entry point: a function whose first parameter has one of these names and takes a key is one.
SUBJECTS = ("energy", "target", "joint", "model")

#: Entry points whose ``num_steps`` meant MCMC steps: now ``num_mcmc_steps``, the old name deprecated.
MCMC_STEP_ENTRY_POINTS = ("ebmppl.conditional.inpaint", "ebmppl.latent.short_run_generator",
                          "ebmppl.jem.sample_conditional")


def _resolve(address: str):
    module, _, name = address.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _public_modules():
    yield ebmppl
    for info in pkgutil.walk_packages(ebmppl.__path__, "ebmppl."):
        if not info.name.rpartition(".")[2].startswith("_"):
            yield importlib.import_module(info.name)


def _public_callables():
    """``(address, function, owner)`` for every function, class ``__init__`` and public method in some module's
    ``__all__`` (``owner``: the class of a method, else ``None``)."""
    seen, out = set(), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EbmpplDeprecationWarning)  # deprecated module attributes
        for module in _public_modules():
            for name in getattr(module, "__all__", ()):
                obj = getattr(module, name, None)
                if inspect.isfunction(obj):
                    found = [(f"{obj.__module__}.{obj.__qualname__}", obj, None)]
                elif inspect.isclass(obj) and obj.__module__.startswith("ebmppl"):
                    found = [(f"{obj.__module__}.{obj.__qualname__}.{attr}", f, obj) for attr, f in vars(obj).items()
                             if inspect.isfunction(f) and (attr == "__init__" or not attr.startswith("_"))]
                else:
                    continue
                for address, f, owner in found:
                    if id(f) not in seen:
                        seen.add(id(f))
                        out.append((address, f, owner))
    return out


def _renames_in_module(f, owner) -> set[str]:
    """The old names that ``renamed(where, old, ...)`` calls keep alive in the module defining ``f``."""
    module = inspect.getmodule(owner if owner is not None else f)
    return set(RENAMED.findall(inspect.getsource(module)))


#: ``renamed(where, "old", old_value, "new", ...)``: group 1 is the old name, group 2 the new.
RENAMED = re.compile(r"renamed\(\s*[^,\n]+,\s*\"(\w+)\",[^,]+,\s*['\"]([^'\"]+)['\"]")


def _parameters(f) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(f).parameters)
    except (TypeError, ValueError):  # builtins without a signature
        return {}


def _positional(f) -> list[str]:
    return [n for n, p in _parameters(f).items()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"]


PUBLIC = _public_callables()


# ---------------------------------------------------------------------------------------- the key, 2nd positional
@pytest.mark.parametrize("address", ENTRY_POINTS)
def test_entry_point_takes_the_key_second(address):
    f = _resolve(address)
    positional = _positional(f)
    assert positional[1:2] == ["key"], f"{address}{inspect.signature(f)}: the key must be the 2nd positional parameter"


def test_every_function_of_an_energy_that_takes_a_key_takes_it_second():
    wrong = [f"{address}{inspect.signature(f)}" for address, f, _ in PUBLIC
             if address not in BUILDING_BLOCKS and "." not in f.__qualname__
             and (positional := _positional(f))[:1] and positional[0] in SUBJECTS
             and "key" in _parameters(f) and positional[1:2] != ["key"]]
    assert not wrong, "the key must be the 2nd positional parameter of:\n" + "\n".join(wrong)


# ---------------------------------------------------------------------------------------- old names only as aliases
def test_old_names_are_only_deprecated_keyword_aliases():
    wrong = []
    for address, f, owner in PUBLIC:
        for name, p in _parameters(f).items():
            if name not in OLD_NAMES:
                continue
            renames = {old for old, _ in _renames_in_module(f, owner)}
            alias = p.kind == p.KEYWORD_ONLY and p.default is UNSET and name in renames
            if not alias:
                wrong.append(f"{address}: {name}")
    assert not wrong, ("these parameters carry an old name of the conventions table and are not a keyword-only alias "
                       "defaulting to UNSET that goes through renamed():\n" + "\n".join(wrong))


@pytest.mark.parametrize("address", MCMC_STEP_ENTRY_POINTS)
def test_mcmc_steps_are_num_mcmc_steps(address):
    params = _parameters(_resolve(address))
    assert "num_mcmc_steps" in params, f"{address} has no num_mcmc_steps"
    old = params.get("num_steps")
    assert old is None or (old.kind == old.KEYWORD_ONLY and old.default is UNSET), (
        f"{address}: num_steps may stay only as a deprecated keyword-only alias of num_mcmc_steps")


def _warns(call, match):
    with pytest.warns(EbmpplDeprecationWarning, match=match):
        return call()


def test_old_names_warn_and_still_work():
    from ebmppl.conditional import inpaint
    from ebmppl.energy import SamplerSettings
    from ebmppl.latent import short_run_generator
    from ebmppl.nn import MLPEnergy
    from ebmppl.targets import gaussian

    energy = gaussian([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]]).energy
    settings = _warns(lambda: SamplerSettings("mala", kernel_params={"step_size": 0.1}, num_steps=3),
                      "kernel_params= is deprecated; use sampler_params=")
    assert (settings.sampler_params, settings.num_mcmc_steps) == ({"step_size": 0.1}, 3)
    assert _warns(lambda: settings.num_steps, "num_steps= is deprecated; use num_mcmc_steps=") == 3
    assert _warns(lambda: settings.params, "use sampler_params=") == {"step_size": 0.1}
    net = _warns(lambda: MLPEnergy(2, (4,), base_scale=2.0, key=jax.random.key(0)), "use confinement_scale=")
    assert net.confinement_scale == 2.0
    generator = _warns(lambda: short_run_generator(energy, num_steps=7), "use num_mcmc_steps=")
    assert generator.num_mcmc_steps == 7
    x, mask = jnp.array([[1.0, jnp.nan]]), jnp.array([[True, False]])
    new = inpaint(energy, jax.random.key(0), x, mask, sampler="ula", num_mcmc_steps=5, init_strategy="noise")
    with pytest.warns(EbmpplDeprecationWarning) as caught:
        old = inpaint(energy, jax.random.key(0), x, mask, sampler="ula", num_steps=5, init="noise")
    assert {str(w.message).split(":")[0] for w in caught} == {"inpaint", "inpaint (a strategy name as init)"}
    assert bool(jnp.all(old == new))


def test_old_names_of_other_entry_points_warn():
    """The deprecated aliases of entry points owned elsewhere: calling them warns."""
    from ebmppl.objectives import recovery_contrastive_divergence
    from ebmppl.targets import gaussian

    energy = gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    _warns(lambda: recovery_contrastive_divergence(energy, optax.sgd(0.1), recovery_steps=3), "use num_mcmc_steps=")
    with warnings.catch_warnings(), pytest.warns(EbmpplDeprecationWarning) as caught:
        warnings.simplefilter("ignore", UserWarning)  # a quick estimate may be flagged as unreliable
        ebmppl.log_partition(energy, jax.random.key(0), method="ais", num_chains=8, num_temperatures=4,
                             transition="hmc", num_leapfrog=4)
    assert {"transition", "num_leapfrog"} <= {str(w.message).split(": ")[1].split("=")[0] for w in caught}


# ---------------------------------------------------------------------------------------- sampler + sampler_params
def test_every_sampler_option_comes_with_sampler_params():
    """A ``sampler`` option (not the subject: ``run_chains(sampler, ...)`` is the sampler's own building block)."""
    wrong = [f"{address}{inspect.signature(f)}" for address, f, _ in PUBLIC
             if "sampler" in (params := _parameters(f)) and _positional(f)[:1] != ["sampler"]
             and "sampler_params" not in params]
    assert not wrong, "these take sampler= but no sampler_params=:\n" + "\n".join(wrong)


# ---------------------------------------------------------------------------------------- one meaning per name
def test_one_meaning_per_name():
    wrong = []
    for address, f, _ in PUBLIC:
        for name, p in _parameters(f).items():
            if name == "init" and isinstance(p.default, str):
                wrong.append(f"{address}: init={p.default!r} is a strategy name (call it init_strategy)")
            if name == "samples" and isinstance(p.default, int) and not isinstance(p.default, bool):
                wrong.append(f"{address}: samples={p.default!r} is a count (call it num_samples)")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------------------------- the table is the code's
def test_every_deprecated_name_is_on_the_conventions_page():
    page = CONVENTIONS_PAGE.read_text()
    pairs = {m.groups() for path in (ROOT / "ebmppl").rglob("*.py") if path.name != "_deprecation.py"
             for m in RENAMED.finditer(path.read_text())}
    assert pairs, "no renamed() call found: the pattern no longer matches the code"
    word = re.compile(r"\w+")  # of a new name such as 'sampler_params["step_size"]', its leading name
    missing = sorted(f"{old} -> {new}" for old, new in pairs
                     if "`" + old not in page or "`" + word.match(new).group() not in page)
    assert not missing, f"{CONVENTIONS_PAGE.name} does not list these renames:\n" + "\n".join(missing)


# ---------------------------------------------------------------------------------------- strategies are values
def test_chain_initialisation_strategies_are_values():
    """Built alike, equal and hash-equal (so trainers holding them are too); different options, different values."""
    from ebmppl import buffer

    for make in (lambda: buffer.replay_buffer(100, 0.1, buffer.uniform_noise(-2.0, 2.0)),
                 lambda: buffer.short_run(buffer.gaussian_noise(0.5)), buffer.cd_k):
        assert make() is not make() and make() == make() and hash(make()) == hash(make())
    assert buffer.replay_buffer(100, 0.1) != buffer.replay_buffer(100, 0.2)
    assert buffer.short_run(buffer.uniform_noise(-1, 1)) != buffer.short_run(buffer.uniform_noise(-2, 2))
    energy, optimizer = ebmppl.targets.gaussian([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy, optax.sgd(0.1)
    objective = lambda: ebmppl.objectives.contrastive_divergence(  # noqa: E731
        energy, optimizer, chain_init=buffer.replay_buffer(64, noise=buffer.uniform_noise(-3, 3)))
    assert objective() == objective() and hash(objective()) == hash(objective())


# ---------------------------------------------------------------------------------------- the Design page's code
def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _classes(code: str) -> list[list[str]]:
    """Each class definition of ``code`` as its stripped, non-blank lines."""
    out, current = [], None
    for line in code.splitlines():
        if line.startswith("class "):
            current = [line.strip()]
            out.append(current)
        elif current is not None and (line.startswith(" ") or not line.strip()):
            if line.strip():
                current.append(line.strip())
        else:
            current = None
    return out


@pytest.mark.parametrize("section, test_file, whole", [("How to add a sampler", "test_kernels_as_values.py", False),
                                                       ("How to add an objective", "test_one_trainer.py", True)])
def test_design_page_examples_are_the_tested_ones(section, test_file, whole):
    """The classes of the Design page's worked examples stand, line for line, in the test that runs them (and,
    for the objective, every other statement too; the sampler's test calls ``sample`` on a fixture)."""
    page = (ROOT / "docs" / "design.md").read_text()
    text = page.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    (code,) = _code_blocks(text)
    tested = [line.strip() for line in (ROOT / "tests" / test_file).read_text().splitlines() if line.strip()]
    joined = "\n".join(tested)
    classes = _classes(code)
    assert classes, f"no class in the Design page's '{section}' example"
    for lines in classes:
        assert "\n".join(lines) in joined, f"{lines[0]} of the Design page is not the one {test_file} runs"
    if whole:
        statements = [line.strip() for line in code.splitlines()
                      if line.strip() and not line.startswith(("import ", "from "))]
        missing = [line for line in statements if line not in tested]
        assert not missing, f"these lines of the Design page are not in {test_file}: {missing}"
