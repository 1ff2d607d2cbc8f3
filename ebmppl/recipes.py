"""``fit``'s default recipes: what :func:`ebmppl.fit` does when you pass only an energy and data.

A training recipe is the part of contrastive divergence that depends on the
scale of the data: the sampler's step and noise, where negative chains start,
and whether ``exp(-E)`` is normalisable at all. ``fit(recipe=...)`` chooses:

``"density"`` (the default for real-valued array data of event rank 1 when
    you pass no ``sampler``, ``sampler_params`` or ``chain_init``; to tune its
    MALA, in standardised units, pass ``recipe="density"`` with e.g.
    ``sampler_params={"step_size": 0.05}``)
    The data are standardised per coordinate, ``z = (x - mean) / std``; the
    energy is trained on ``z`` plus a weak Gaussian confinement
    ``‖z‖² / (2 · 3²)`` that keeps ``exp(-E)`` normalisable whatever the network
    does far from the data; negatives come from MALA (step
    :data:`DENSITY_STEP` in standardised units: exact, no step-size bias;
    shrunk during training whenever acceptance falls below
    :data:`DENSITY_TARGET_ACCEPTANCE`, so the sampler follows the energy as it
    sharpens) over
    a replay buffer re-initialised uniformly on ``[-3, 3]`` standard deviations;
    no energy penalty (:data:`DENSITY_ALPHA` = 0: the fit is maximum
    likelihood, unbiased, because the confinement already keeps ``Z`` finite).
    The energy returned is a correct density on the ORIGINAL scale,
    ``E_x(x) = E(z) + T (‖z‖²/18 + Σ log std)`` (the ``Σ log std`` is the
    log-Jacobian of the standardisation), so log-likelihoods stay right.
``"images"`` (the default for data of event rank ≥ 2, e.g. ``(1, 8, 8)``)
    The practical Langevin recipe for images (Du & Mordatch 2019): gradient
    step 10, noise 0.005, positions clamped to the data's range, replay buffer
    re-initialised uniformly on that range. The energy is trained as given,
    with CD's energy penalty ``α = 0.1`` (nothing else keeps ``Z`` finite; the
    penalty biases the density towards flatter, see
    :func:`~ebmppl.objectives.contrastive_divergence`).
``"none"`` (the default when you pass any of ``sampler``, ``sampler_params``, ``chain_init``)
    The energy is trained as given on the data's own scale; what you did not
    pass is filled in data-aware: MALA with step :data:`NONE_STEP` times the
    smallest coordinate variance, and a replay buffer re-initialised uniformly
    on the box ``mean ± 3 std``; CD's penalty ``α = 0.1`` unless you pass
    ``alpha`` (biased, as under ``"images"``).

With :func:`~ebmppl.samplers.parallel_tempering` as the sampler, the
``"none"`` and ``"density"`` recipes also set its Gaussian reference from the
data, ``N(mean, (REFERENCE_WIDTH · std)²)`` per coordinate (in standardised
units under ``"density"``: ``N(0, 2²)``), unless ``sampler_params`` gives
``reference_mean`` or ``reference_scale``.

Every recipe records the settings of its negative-phase sampler on the
energy :func:`ebmppl.fit` returns (:class:`ebmppl.energy.SamplerSettings`,
``result.energy.sampler_settings``), so samplers used on the trained model
later (:func:`ebmppl.latent.short_run_generator`) start from them.

Iterators of batches and objectives other than ``"cd"`` get ``"none"``
without data-aware filling (no statistics are taken from an iterator).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl import buffer as buffers
from ebmppl.energy import Energy, SamplerSettings
from ebmppl.samplers import as_sampler, langevin, mala
from ebmppl.samplers.negatives import kernel_parameters

__all__ = ["RECIPES", "DENSITY_STEP", "DENSITY_TARGET_ACCEPTANCE", "DENSITY_ALPHA", "NONE_STEP", "CONFINE_SCALE", "Standardized", "Recipe", "resolve_recipe",
           "confined", "standard_coordinates", "data_statistics", "training_sampler_settings"]

RECIPES = ("auto", "density", "images", "none")
DENSITY_STEP = 0.03
"""MALA step size of the ``"density"`` recipe, in standardised units.

0.03 (was 0.01): chains re-initialised from the noise box relax three times
faster, so the few that have not yet reached the model when they are used
as negatives bias the fit less (a Gaussian's fitted variance: -17 % at 0.01,
about -4 % at 0.03 after 1000 steps, 5 seeds; the same step the command line's 2-D
datasets were measured with, :data:`ebmppl.runs.TOY_STEP`)."""
NONE_STEP = 0.01
"""MALA step of the ``"none"`` recipe when you pass no sampler, times the data's smallest coordinate variance."""
CONFINE_SCALE = 3.0
"""Width, in standard deviations, of the Gaussian confinement term of the ``"density"`` recipe."""
NOISE_BOX = 3.0
"""Replay-buffer noise: uniform on ``mean ± NOISE_BOX · std``."""
BUFFER_CAPACITY = 1000
"""Replay-buffer slots of the ``"density"`` recipe: few enough that every slot is revisited often (mixing)."""
DENSITY_TARGET_ACCEPTANCE = 0.6
"""Mean MALA acceptance the ``"density"`` recipe's step is adapted towards (it only shrinks from
:data:`DENSITY_STEP`): as the energy sharpens during training a fixed step is soon too large for it,
acceptance falls to 0, the chains freeze and the data's energy runs away (30-D breast-cancer data: |E| ~1e7
by step 1000 with the fixed step)."""

DENSITY_ALPHA = 0.0
"""Energy penalty ``α`` of the ``"density"`` recipe: none, so the fit is maximum likelihood, unbiased.

The penalty ``α (E(x⁺)² + E(x⁻)²)`` is a regulariser, not part of the
likelihood: it pulls energies towards 0, which flattens the density (a
Gaussian fitted with ``α = 0.1`` came out with 1.7-2 times the data's
variance). The recipe's confinement term already keeps ``exp(-E)``
normalisable, so it needs no penalty. What ``α`` also did: hold the relative
depth of well-separated modes, whose weights persistent chains cannot learn
when they do not cross between them; pass ``alpha=0.1`` for such data,
knowing that it biases the fit (see :func:`ebmppl.objectives.contrastive_divergence`)."""
REFERENCE_WIDTH = 2.0
"""Parallel tempering's reference in training: ``N(data mean, (REFERENCE_WIDTH · data std)²)`` per coordinate
(in standardised units under ``"density"``), as :func:`ebmppl.sample` takes ``center, 2·scale`` of
:meth:`~ebmppl.Energy.typical_region`: wide enough to cover every mode of the data."""
REINIT_PROB = 0.05
"""Re-initialisation probability of the ``"density"`` buffer: as in Du & Mordatch."""


class Standardized(eqx.Module):
    """An energy function read in standardised coordinates, with a Gaussian confinement term.

    ``fn(params, x) = inner(params, z) + weight · ‖z‖² + offset`` with
    ``z = (x - shift) / scale``. :func:`ebmppl.fit`'s ``"density"`` recipe
    returns its trained energy in this form, with ``offset = T Σ log scale``
    (the log-Jacobian), so the density is normalised on the original scale
    exactly when ``inner`` plus the confinement is normalised on ``z``.
    Hashable (static fields only), so it serves as an ``energy_fn``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> f = Standardized(lambda p, z: 0.0 * jnp.sum(z), shift=(1.0, 1.0), scale=(2.0, 2.0), weight=0.5,
    ...                  offset=2 * float(np.log(2.0)))
    >>> e = Energy(f, None, event_shape=(2,))       # N((1, 1), 4 I): log-density at the mean
    >>> round(float(e.logdensity(jnp.ones(2))), 4), round(-float(np.log(2 * np.pi * 4)), 4)
    (-1.3863, -3.2242)
    """

    inner: Any = eqx.field(static=True)
    shift: tuple[float, ...] | None = eqx.field(static=True, default=None)
    scale: tuple[float, ...] | None = eqx.field(static=True, default=None)
    weight: float = eqx.field(static=True, default=0.0)
    offset: float = eqx.field(static=True, default=0.0)

    def typical_region(self) -> tuple[np.ndarray, np.ndarray]:
        """``(shift, scale)``: where the mass lies on the original scale (see :meth:`Energy.typical_region`).

        Examples
        --------
        >>> f = Standardized(lambda p, z: 0.5 * jnp.sum(z**2), shift=(5000.0,), scale=(100.0,))
        >>> [v.tolist() for v in f.typical_region()]
        [[5000.0], [100.0]]
        """
        if self.shift is None:
            return np.zeros(1), np.ones(1)
        return np.asarray(self.shift), np.asarray(self.scale)

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        z = x
        if self.shift is not None:
            z = (x - jnp.asarray(self.shift, x.dtype).reshape(x.shape)) / jnp.asarray(self.scale, x.dtype).reshape(x.shape)
        energy = self.inner(params, z)
        if self.weight:
            energy = energy + self.weight * jnp.sum(z**2)
        return energy + self.offset


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A resolved recipe: what the trainer sees, and how to map the result back.

    Attributes
    ----------
    name
        ``"density"``, ``"images"`` or ``"none"``.
    train_energy
        The energy the objective trains (standardised and confined under ``"density"``).
    data
        The data in the coordinates of ``train_energy`` (``None`` for an iterator).
    options
        The objective options with the recipe's defaults filled in.
    shift, scale
        The standardisation (``None`` unless ``"density"``).
    settings
        The :class:`~ebmppl.energy.SamplerSettings` of the negative-phase
        sampler (``None`` for objectives without one); :meth:`output` records
        them on the trained energy.

    Examples
    --------
    >>> import jax
    >>> e = Energy(lambda p, x: jnp.sum(x**2) * p, 1.0, event_shape=(2,))
    >>> plan = resolve_recipe("auto", e, 100.0 + 10.0 * jax.random.normal(jax.random.key(0), (500, 2)), "cd", {})
    >>> plan.name, sorted(plan.options), bool(abs(plan.data.std() - 1.0) < 1e-3)
    ('density', ['alpha', 'chain_init', 'sampler', 'target_acceptance'], True)
    """

    name: str
    train_energy: Energy
    data: Any
    options: dict[str, Any]
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    settings: SamplerSettings | None = None

    def output(self, params: Any) -> Energy:
        """The trained energy on the data's original scale, with ``params`` from the trainer.

        Examples
        --------
        >>> import jax
        >>> e = Energy(lambda p, x: p * jnp.sum(x**2), 0.0, event_shape=(2,))
        >>> plan = resolve_recipe("auto", e, 100.0 + 10.0 * jax.random.normal(jax.random.key(0), (500, 2)), "cd", {})
        >>> trained = plan.output(0.0)           # with θ = 0 only the confinement and the log-Jacobian remain
        >>> [round(float(v), 1) for v in trained.typical_region()[0]]   # the data's mean, on the original scale
        [100.4, 99.6]
        """
        if self.name != "density":
            return self.train_energy.with_params(params).with_sampler_settings(self.settings)
        inner = self.train_energy.energy_fn.inner
        t = float(self.train_energy.temperature)
        fn = Standardized(inner, tuple(float(v) for v in self.shift.ravel()), tuple(float(v) for v in self.scale.ravel()),
                          self.train_energy.energy_fn.weight, t * float(np.log(self.scale).sum()))
        return Energy(fn, params, event_shape=self.train_energy.event_shape, temperature=self.train_energy.temperature,
                      probe=jnp.asarray(self.shift, jnp.result_type(float)), validate=False,
                      sampler_settings=self.settings)


def _stats(x: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    mean, std = x.mean(0), x.std(0)
    positive = std[std > 0]
    # only a (numerically) constant coordinate is floored: real data can span many orders of magnitude
    floor = 1e-6 * positive.max() if positive.size else 1.0
    return mean, np.maximum(std, floor)


def resolve_recipe(recipe: str, energy: Energy, data: Any, objective: Any, options: dict[str, Any]) -> Recipe:
    """Choose and apply a recipe (see the module docs); ``data`` is the validated array, a tuple, or ``None``.

    Examples
    --------
    >>> import jax
    >>> e = Energy(lambda p, x: jnp.sum(x**2) * p, 1.0, event_shape=(2,))
    >>> resolve_recipe("auto", e, jnp.ones((10, 2)), "cd", {"sampler": "mala"}).name
    'none'
    >>> resolve_recipe("fast", e, jnp.ones((10, 2)), "cd", {})
    Traceback (most recent call last):
    ...
    ValueError: recipe must be one of 'auto', 'density', 'images', 'none'; got 'fast'.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}; got {recipe!r}.")
    options = dict(options)
    is_array = data is not None and not isinstance(data, tuple)
    named_cd = isinstance(objective, str) and objective == "cd"
    if recipe == "auto":
        if not (named_cd and is_array):
            recipe = "none"
        elif len(energy.event_shape) >= 2:
            recipe = "images"
        elif any(k in options for k in ("sampler", "sampler_params", "chain_init")):
            recipe = "none"
        else:
            recipe = "density"
    if recipe != "none" and not is_array:
        raise ValueError(f"recipe={recipe!r} needs the data as one array (n, *event_shape), not an iterator or tuple.")
    if recipe != "none" and not (isinstance(objective, str) and objective in ("cd", "recovery_cd")):
        raise ValueError(f"recipe={recipe!r} sets the sampler and the chains of a CD objective; "
                         f"objective {objective!r} has none: pass recipe='none'.")
    if recipe == "images":
        lo, hi = float(jnp.min(data)), float(jnp.max(data))
        if not lo < hi:
            raise ValueError("recipe='images' needs data with more than one value (min < max).")
        given = set(options)
        options.setdefault("sampler", langevin(step_size=10.0, noise_scale=0.005, clamp=(lo, hi)))
        options.setdefault("chain_init", buffers.replay_buffer(noise=buffers.uniform_noise(lo, hi)))
        settings = training_sampler_settings("images", objective, options, energy.dim,
                                             clamp=None if "sampler" in given else (lo, hi),
                                             noise_box=None if "chain_init" in given else (lo, hi))
        return Recipe("images", energy, data, options, settings=settings)
    if recipe == "none":
        x = data[0] if isinstance(data, tuple) else data
        box = None
        if x is not None and isinstance(objective, str) and objective in ("cd", "recovery_cd"):
            mean, std = _stats(x)
            if "sampler" not in options and "sampler_params" not in options:  # params tune the builder's default
                options["sampler"] = mala(step_size=NONE_STEP * float(std.min()) ** 2)
            if "chain_init" not in options:
                low, high = float((mean - NOISE_BOX * std).min()), float((mean + NOISE_BOX * std).max())
                options["chain_init"] = buffers.replay_buffer(noise=buffers.uniform_noise(low, high))
                box = (low, high)
            _tempering_reference(options, energy.dim, mean, std)
        return Recipe("none", energy, data, options,
                      settings=training_sampler_settings("none", objective, options, energy.dim, noise_box=box))
    # density
    mean, std = _stats(data)
    train = confined(energy)
    z = (jnp.asarray(data) - jnp.asarray(mean, data.dtype)) / jnp.asarray(std, data.dtype)
    given = set(options)
    options.setdefault("sampler", mala(step_size=DENSITY_STEP))
    options.setdefault("chain_init", buffers.replay_buffer(BUFFER_CAPACITY, REINIT_PROB, noise=buffers.uniform_noise(-NOISE_BOX, NOISE_BOX)))
    options.setdefault("alpha", DENSITY_ALPHA)
    if "sampler" not in given and objective == "cd":  # the step follows the energy as it sharpens
        options.setdefault("target_acceptance", DENSITY_TARGET_ACCEPTANCE)
    _tempering_reference(options, energy.dim, np.zeros_like(mean), np.ones_like(std))  # standardised units
    settings = training_sampler_settings("density", objective, options, energy.dim, standardized=True,
                                         noise_box=None if "chain_init" in given else (-NOISE_BOX, NOISE_BOX))
    return Recipe("density", train, z, options, mean, std, settings)


def _tempering_reference(options: dict[str, Any], dim: int, mean: np.ndarray, std: np.ndarray) -> None:
    """Set a tempering sampler's reference from the data: ``N(mean, (REFERENCE_WIDTH · std)²)`` per coordinate.

    Only for a sampler with a reference (``reference_mean`` among its kernel
    parameters: :func:`~ebmppl.samplers.parallel_tempering`) and only the parts
    not given in ``sampler_params``.
    """
    try:
        sampler = as_sampler(options.get("sampler", "langevin"))
        has_reference = "reference_mean" in sampler.default_params(dim)
    except (TypeError, ValueError, AttributeError):  # the objective's builder raises the error that names the fix
        return
    if not has_reference:
        return
    given = dict(options.get("sampler_params") or {})
    given.setdefault("reference_mean", np.asarray(mean, np.float64).reshape(-1))
    given.setdefault("reference_scale", REFERENCE_WIDTH * np.asarray(std, np.float64).reshape(-1))
    options["sampler_params"] = given


def training_sampler_settings(recipe: str, objective: Any, options: dict[str, Any], dim: int, *,
                              clamp: tuple[float, float] | None = None, noise_box: tuple[float, float] | None = None,
                              standardized: bool = False) -> SamplerSettings | None:
    """The :class:`~ebmppl.energy.SamplerSettings` a CD run with these objective ``options`` trains with.

    ``None`` for objectives without a negative-phase sampler (``"dsm"``,
    ``"ssm"``, ``"nce"``, a :class:`~ebmppl.objectives.Trainer`) or options the
    builder will reject. ``clamp`` and ``noise_box`` are what the caller knows
    (a sampler or chain initialisation you built yourself does not reveal its
    clamp or noise: then ``None``).

    Examples
    --------
    >>> s = training_sampler_settings("none", "cd", {"sampler": "mala", "num_mcmc_steps": 5}, 2)
    >>> s.sampler, s.num_mcmc_steps, s.sampler_params["step_size"] > 0
    ('mala', 5, True)
    >>> training_sampler_settings("none", "dsm", {}, 2) is None
    True
    """
    if not (isinstance(objective, str) and objective in ("cd", "recovery_cd")):
        return None
    try:
        sampler = options.get("sampler", "langevin")
        sampler = as_sampler(sampler)
        params = kernel_parameters(sampler, dim, options.get("sampler_params"))
        num_mcmc_steps = int(options.get("num_mcmc_steps", 20))
    except (TypeError, ValueError, AttributeError):  # the objective's builder raises the error that names the fix
        return None
    # float32 parameters written back at their shortest decimal (0.01, not 0.009999999776)
    if clamp is None and not isinstance(options.get("sampler", "langevin"), str):
        clamp = _probe_clamp(sampler, dim, params)
    scalars = tuple(sorted((str(k), float(str(np.asarray(v).item()) if np.asarray(v).dtype == np.float64
                                            else str(np.float32(v)))) for k, v in params.items() if np.ndim(v) == 0))
    pair = lambda v: None if v is None else (float(v[0]), float(v[1]))  # noqa: E731
    return SamplerSettings(str(sampler.name), scalars, num_mcmc_steps, pair(clamp), pair(noise_box), bool(standardized),
                           recipe)


def _probe_clamp(sampler: Any, dim: int, params: dict[str, Any]) -> tuple[float, float] | None:
    """The ``(low, high)`` a practical-Langevin sampler clamps into, read by one step from ±1e30 on a flat density."""
    if getattr(sampler, "name", None) != "langevin":
        return None  # ebmppl's other samplers do not clamp
    flat = lambda x: 0.0 * jnp.sum(x)  # noqa: E731
    key = jax.random.key(0)
    ends = []
    for start in (-1e30, 1e30):
        state = sampler.init(key, jnp.full((dim,), start, jnp.float32), flat)
        ends.append(np.asarray(sampler.position(sampler.step(key, state, flat, params)[0])))
    low, high = float(ends[0].max()), float(ends[1].min())
    return (low, high) if abs(low) < 1e29 and abs(high) < 1e29 and low < high else None


def confined(energy: Energy) -> Energy:
    """The energy the ``"density"`` recipe trains: ``energy`` on standardised ``z`` plus ``T ‖z‖² / (2 · 3²)``.

    It does not depend on the data (the standardisation happens to the data,
    not to this energy), so a training-health monitor or a checkpoint
    template can be built from it before training.

    Examples
    --------
    >>> e = Energy(lambda p, x: 0.0 * jnp.sum(x), None, event_shape=(2,))
    >>> float(confined(e).energy(jnp.full(2, 3.0)))     # (9 + 9) / 18
    1.0
    """
    fn = Standardized(energy.energy_fn, weight=float(energy.temperature) / (2 * CONFINE_SCALE**2))
    return Energy(fn, energy.params, event_shape=energy.event_shape, temperature=energy.temperature, validate=False)


def standard_coordinates(energy: Energy) -> tuple[Energy, np.ndarray, np.ndarray]:
    """``(energy on z, shift, scale)`` of a ``"density"`` fit's result, with ``x = shift + scale · z``.

    The energy on ``z`` is the one the recipe trained (confinement included,
    log-Jacobian offset dropped): it has the same normalising constant as
    ``energy`` in the data's units, and samplers with one step size for every
    coordinate work on it whatever the data's scales. Sample it, then map the
    draws back with ``shift + scale * z``.

    Raises
    ------
    TypeError
        ``energy`` is not the result of a ``"density"`` fit (its ``energy_fn``
        is not a :class:`Standardized` with a shift and scale).

    Examples
    --------
    >>> import jax
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), None, event_shape=(1,))
    >>> plan = resolve_recipe("density", e, 10.0 + 2.0 * jax.random.normal(jax.random.key(0), (400, 1)), "cd", {})
    >>> z_energy, shift, scale = standard_coordinates(plan.output(None))
    >>> bool(abs(shift[0] - 10.0) < 0.3 and abs(scale[0] - 2.0) < 0.2), z_energy.energy_fn.shift
    (True, None)
    """
    fn = energy.energy_fn
    if not isinstance(fn, Standardized) or fn.shift is None:
        raise TypeError("energy must be the result of a fit with recipe 'density' (an ebmppl.recipes.Standardized "
                        f"energy_fn with shift and scale), got energy_fn {type(fn).__name__}.")
    inner = Energy(Standardized(fn.inner, weight=fn.weight), energy.params, event_shape=energy.event_shape,
                   temperature=energy.temperature, validate=False)
    shape = energy.event_shape
    return inner, np.asarray(fn.shift).reshape(shape), np.asarray(fn.scale).reshape(shape)


def data_statistics(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-coordinate ``(mean, std)`` the ``"density"`` recipe standardises with (std floored at 1e-6 of the largest).

    Examples
    --------
    >>> mean, std = data_statistics(np.array([[0.0, 1.0], [2.0, 1.0]]))
    >>> mean.tolist(), std.tolist()
    ([1.0, 1.0], [1.0, 1e-06])
    """
    return _stats(x)


def describe_recipe(plan: Recipe) -> str:
    """One line naming the recipe, for messages and reports.

    Examples
    --------
    >>> e = Energy(lambda p, x: jnp.sum(x**2) * p, 1.0, event_shape=(2,))
    >>> describe_recipe(resolve_recipe("none", e, None, "cd", {}))
    "recipe 'none': the energy and options as given"
    """
    if plan.name == "density":
        return (f"recipe 'density': standardised data (std {np.round(plan.scale, 4).tolist()}), "
                f"confinement {CONFINE_SCALE} std, MALA step {DENSITY_STEP}, alpha {plan.options.get('alpha')}")
    if plan.name == "images":
        return "recipe 'images': Langevin step 10, noise 0.005, clamped to the data range"
    return "recipe 'none': the energy and options as given"

