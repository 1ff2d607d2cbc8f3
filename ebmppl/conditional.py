"""Conditional sampling and inpainting: sample the missing entries of x given the observed ones.

:func:`inpaint` has two recipes:

* ``"exact"`` (the default for real-valued vectors, event rank 1): a
  Metropolis-adjusted sampler (HMC with a dense mass matrix by default) runs
  four chains per example on the standardised scale ``z = (x - center) /
  scale`` (see :func:`inpaint`'s ``init_strategy``), with a warm-up that adapts *each
  example's own* step size and mass matrix (pooled over its chains), then a
  sampling phase. Its draws come from ``p(x_missing | x_observed)`` itself, and
  the bulk effective sample size of every missing coordinate over each
  example's chains is checked (a warning names the examples that did not mix).
* ``"images"`` (the default for image-like data, event rank >= 2, or on
  request): the EBM practice of Du & Mordatch (2019), practical Langevin with
  gradient step 10 and noise 0.005, clamped to the range of the observed
  values. It finds plausible, sharp completions fast; it does *not* sample the
  conditional (its noise is far colder than the density's).
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._deprecation import UNSET, renamed
from ebmppl._validation import check_energy, check_int, check_key, check_sampler_params
from ebmppl.energy import Energy
from ebmppl.samplers import ChainHealthWarning, Sampler, as_sampler, hmc, langevin, run_chains
from ebmppl.samplers.adaptation import warmup_with_health
from blackjax.diagnostics import ess_bulk

__all__ = ["inpaint", "RECIPES"]

#: Names accepted by :func:`inpaint`'s ``recipe``.
RECIPES = ("auto", "exact", "images")

#: An example whose mean acceptance over the sampling phase is below this fraction of the
#: sampler's target acceptance is reported by a :class:`~ebmppl.samplers.ChainHealthWarning`.
LOW_ACCEPTANCE_FRACTION = 0.25

#: A missing coordinate whose bulk ESS over an example's chains is below ``min(MIN_ESS, MIN_RELATIVE_ESS · draws)``
#: makes :func:`inpaint` warn (:class:`~ebmppl.samplers.ChainHealthWarning`) that the example's draws did not mix.
#: Measured (``benchmarks/bench_inpaint_defaults.py``): with the default sampler the worst example's worst
#: coordinate had ESS ≥ 0.14 × draws (wine, breast cancer; 100 and 400 draws); MALA on breast cancer ~0.01.
MIN_ESS = 100.0
MIN_RELATIVE_ESS = 0.05

_DEFAULT_STEPS = 200
_DEFAULT_WARMUP = 300
_DEFAULT_CHAINS = 4
_TRACE_BUDGET = 25_000_000  # one completion per example: traces (floats) kept for the mixing check up to this
_DENSE_DIM = 256  # the default sampler's mass matrix is dense up to this event size, diagonal above
_MIN_CHECKED_DRAWS = 8  # per chain: fewer draws, no ESS
_SHOWN = 10  # examples named in a message


def _complete(energy, sampler, params, num_warmup, num_draws, thinning, adapts, key, observed, mask, z0, center, scale):
    """``C`` chains per example on ``x = center + scale·z`` (``z0``: ``(n, C, *event)``): a warm-up adapting that
    example's own kernel parameters (step size, and the mass matrix of samplers that have one) pooled over its
    ``C`` chains, then ``num_draws × thinning`` steps. Returns draws ``(n, C, num_draws, *event)``, the
    acceptance ``(n, C, num_draws)``, each example's adapted step size and the bulk ESS ``(n, *event)`` of
    every coordinate over its ``C`` chains (NaN where fewer than 8 draws per chain)."""

    def one(key, obs, m, z_init):
        def ld(z):
            value = energy.logdensity_fn(jnp.where(m, obs, center + scale * z))
            if adapts:  # observed coordinates do not enter the energy: a N(0, 1) keeps them from drifting,
                # so the adapted mass matrix sees no random walk (their draws are replaced by `obs`)
                value = value - 0.5 * jnp.sum(jnp.where(m, z, 0.0) ** 2)
            return value

        k_init, k_warm, k_draw = jax.random.split(key, 3)
        states = jax.vmap(lambda z: sampler.init(k_init, z, ld))(z_init)
        # several chains per example: a stalled chain restarts from a healthy sibling
        states, tuned, _ = warmup_with_health(sampler, ld, k_warm, states, params, num_warmup, True,
                                              z_init.shape[0] > 1)
        _, zs, stats = run_chains(sampler, ld, k_draw, states, tuned, num_draws, thinning)
        xs = jnp.where(m, obs, center + scale * zs)
        if num_draws >= 8:
            flat = xs.reshape(xs.shape[0], num_draws, -1)
            ess = jax.vmap(lambda a: ess_bulk(a, chain_axis=0, sample_axis=1), in_axes=2)(flat).reshape(obs.shape)
        else:
            ess = jnp.full(obs.shape, jnp.nan)
        return xs, stats.acceptance_rate, tuned["step_size"], ess

    keys = jax.random.split(key, observed.shape[0])
    return jax.vmap(one)(keys, observed, mask, z0)


_complete_jit = jax.jit(_complete, static_argnums=(1, 3, 4, 5, 6))


def _default_exact_sampler(dim: int) -> Sampler:
    """The exact recipe's default: HMC (8 leapfrog steps) with a dense mass matrix that warm-up adapts per
    example, pooled over its chains. Conditionals of correlated data are correlated and badly scaled; MALA
    with one step size did not mix on a 30-D one (bulk ESS ~4 of 400 draws), HMC with 16 leapfrog steps
    cost twice as much for no gain, Barker with a dense metric did not adapt
    (``benchmarks/bench_inpaint_defaults.py``). Above ``_DENSE_DIM`` coordinates the mass matrix is diagonal
    (a dense one per example costs ``dim²`` memory and a Cholesky per step)."""
    return hmc(num_integration_steps=8, dense_mass=dim <= _DENSE_DIM)


def _check_mixing(sampler: Sampler, ess: jax.Array, mask: np.ndarray, num_samples: int | None, chains: int,
                  num_draws: int, thinning: int) -> None:
    ess = np.where(mask, np.inf, np.asarray(ess, np.float64)).reshape(mask.shape[0], -1)
    if num_draws < _MIN_CHECKED_DRAWS:  # too few draws per chain for an ESS: nothing to check
        return
    total = chains * num_draws
    floor = min(MIN_ESS, MIN_RELATIVE_ESS * total)
    worst = np.nanmin(np.where(np.isnan(ess), np.inf, ess), axis=1)
    bad = np.flatnonzero(worst < floor)
    if not bad.size:
        return
    coords = np.nanargmin(np.where(np.isnan(ess), np.inf, ess), axis=1)
    shown = ", ".join(f"{int(i)} (coordinate {int(coords[i])}: ESS {worst[i]:.0f})" for i in bad[:_SHOWN])
    what = (f"the {num_samples} draws" if num_samples is not None
            else f"the {num_draws} sampling steps of the chains behind each completion")
    warnings.warn(
        f"inpaint ({sampler.name}, {chains} chain{'s' if chains > 1 else ''} per example): {len(bad)} of "
        f"{len(worst)} examples did not mix: for {what}, some missing coordinate's bulk effective sample size is "
        f"below {floor:.0f}: {shown}{' ...' if bad.size > _SHOWN else ''}. Their draws are strongly correlated or "
        "the chains disagree, so their mean and spread cannot be trusted. Use the default sampler (HMC with a "
        "dense mass matrix adapted per example), more warm-up (num_warmup), more draws or thinning "
        "(num_samples, thinning), or more chains (num_chains).",
        ChainHealthWarning, stacklevel=3)


def _start_ok(energy, observed, mask, x0):
    def ok(obs, m, x):
        value, grad = jax.value_and_grad(lambda x: energy.logdensity_fn(jnp.where(m, obs, x)))(x)
        return jnp.isfinite(value) & jnp.all(jnp.isfinite(jnp.where(m, 0.0, grad)))

    return jax.vmap(ok)(observed, mask, x0)


_start_ok_jit = jax.jit(_start_ok)


def _examples(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:_SHOWN])
    more = f" and {len(indices) - _SHOWN} more" if len(indices) > _SHOWN else ""
    return f"example{'s' if len(indices) > 1 else ''} {shown}{more}"


def _check_mask(mask: Any, images: jax.Array, event_shape: tuple[int, ...]) -> jax.Array:
    m = np.asarray(mask)
    expected = (f"expected the shape of images {tuple(images.shape)} = (n, *event_shape), or one that broadcasts "
                f"to it, such as event_shape {tuple(event_shape)} for one mask shared by every example")
    if m.dtype != np.bool_:
        if not (np.issubdtype(m.dtype, np.number) and np.isin(m, (0, 1)).all()):
            values = np.unique(m)[:5]
            raise TypeError(f"mask must be boolean or 0/1 (True or 1 where an entry is observed), got dtype {m.dtype} "
                            f"with values such as {values.tolist()}: threshold it yourself, e.g. mask > 0.5.")
        m = m.astype(bool)
    try:
        broadcast = np.broadcast_shapes(m.shape, images.shape)
    except ValueError:
        broadcast = None
    if broadcast != tuple(images.shape):
        raise ValueError(f"mask has shape {tuple(m.shape)}; {expected}. True marks an observed entry.")
    return jnp.broadcast_to(jnp.asarray(m), images.shape)


def _observed_region(energy: Energy, images: np.ndarray, mask: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """``(center, scale)`` the exact recipe standardises with: the energy's declared typical region, else each
    coordinate's mean and standard deviation over the examples where it is observed (0 and 1 where it is
    observed fewer than twice or does not vary)."""
    if callable(getattr(energy.energy_fn, "typical_region", None)):
        center, scale = energy.typical_region()
        usable = jnp.isfinite(scale) & (scale > 0) & jnp.isfinite(center)  # e.g. a constant pixel has scale 0
        return jnp.where(usable, center, 0.0), jnp.where(usable, scale, 1.0)
    observed = mask & np.isfinite(images)
    count = observed.sum(0)
    values = np.where(observed, images, 0.0).astype(np.float64)
    mean = values.sum(0) / np.maximum(count, 1)
    var = (np.where(observed, (images - mean) ** 2, 0.0)).sum(0) / np.maximum(count - 1, 1)
    usable = (count >= 2) & (var > 0)
    ftype = jnp.result_type(float)
    return (jnp.asarray(np.where(usable, mean, 0.0), ftype),
            jnp.asarray(np.where(usable, np.sqrt(np.where(usable, var, 1.0)), 1.0), ftype))


#: Observed values farther than this many ``scale`` from the ``center`` of the energy's declared
#: typical region make :func:`inpaint` warn (data on another scale than the energy was fitted on).
FAR_OUT = 20.0


def _check_observed_in_region(energy: Energy, images: np.ndarray, mask: np.ndarray) -> None:
    if not callable(getattr(energy.energy_fn, "typical_region", None)):
        return  # nothing declared: nothing to compare with
    center, scale = (np.asarray(v, np.float64) for v in energy.typical_region())
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = np.where(mask & np.isfinite(images) & (scale > 0), np.abs(images - center) / scale, 0.0)
    far = dist > FAR_OUT
    if not far.any():
        return
    rows = np.flatnonzero(far.reshape(far.shape[0], -1).any(1))
    flat = dist.reshape(dist.shape[0], -1)
    shown = ", ".join(f"{int(i)} (coordinate {int(flat[i].argmax())}: {flat[i].max():.3g} scales out)"
                      for i in rows[:_SHOWN])
    warnings.warn(
        f"inpaint: observed values of {len(rows)} of {images.shape[0]} examples lie more than {FAR_OUT:g} scales "
        f"from the centre of the energy's typical_region() (largest {dist.max():.3g}): {shown}"
        f"{' ...' if rows.size > _SHOWN else ''}. The energy has seen nothing like them, so their completions "
        "mean little. Most likely the data are on another scale than the energy was fitted on (raw values with an "
        "energy fitted on standardised data, or the reverse): transform images as the training data were.",
        UserWarning, stacklevel=3)


def _data_range(images: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    seen = images[mask & np.isfinite(images)]
    if seen.size == 0 or not seen.min() < seen.max():
        return -1.0, 1.0
    return float(seen.min()), float(seen.max())


def inpaint(
    energy: Energy,
    key: jax.Array,
    images: jax.Array,
    mask: jax.Array,
    *,
    recipe: str = "auto",
    sampler: str | Sampler | None = None,
    sampler_params: dict[str, Any] | None = None,
    num_warmup: int | None = None,
    num_mcmc_steps: int | None = None,
    num_samples: int | None = None,
    thinning: int = 1,
    init: jax.Array | None = None,
    init_strategy: str | None = None,
    num_chains: int | None = None,
    num_steps: int | None = UNSET,
) -> jax.Array:
    """Fill in the unobserved entries of a batch of examples by sampling ``p(x_missing | x_observed)``.

    Each example runs its own chain (vmapped, one compiled program) on the
    full ``x`` with the observed entries held fixed: the energy is evaluated at
    ``where(mask, images, x)``, so only the missing entries feel its gradient.

    With the default ``recipe="auto"``, real-valued vectors (event rank 1) get
    the **exact** recipe: HMC with 8 leapfrog steps and a dense mass matrix
    (diagonal above 256 coordinates; or the ``sampler`` you pass), ``num_chains`` (4) chains per example on the
    standardised scale ``z = (x - center) / scale``, with ``num_warmup`` steps in
    which each example adapts its own step size (dual averaging towards the
    kernel's optimal acceptance) and mass matrix (Stan's windows, pooled over
    that example's chains), then the sampling steps. Conditionals of correlated
    data are correlated and badly scaled; the adapted dense mass matrix undoes
    that, where one step size for all coordinates (MALA) does not mix. Its draws
    follow ``p(x_missing | x_observed)``: pass ``num_samples`` to get several per
    example and average them for the conditional mean (the completion with the
    least expected squared error).

    **Mixing is checked.** With ``num_samples`` (at least 8 draws per chain),
    the bulk effective sample size (rank-normalised split-chain ESS, between-chain
    disagreement included) of every missing coordinate of every example is
    computed over that example's chains; an example whose worst coordinate is
    below ``min(MIN_ESS, MIN_RELATIVE_ESS · num_samples)`` (100 and 0.05: 20 for
    400 draws; healthy default chains stay above 0.14 · num_samples) is named in a
    :class:`~ebmppl.samplers.ChainHealthWarning`. With one completion per
    example (no ``num_samples``), the completion is the last state of chain 0,
    and the check runs on the ``num_mcmc_steps`` sampling steps of the example's
    chains (when those traces fit in 25 million numbers, e.g. 1000 examples ×
    30 coordinates × 4 chains × 200 steps; beyond, no check): it says whether the chains mixed, so
    that a state after ``num_mcmc_steps`` steps is a draw from the conditional; it
    cannot check that one draw on its own (a single value has no spread to
    compare), so ask for ``num_samples`` to check the draws you use. Samplers
    run with ``num_chains=1`` are checked on their one chain's autocorrelation
    only: chains stuck in different modes cannot be seen then. Image-like data (event rank >= 2) get the
    **images** recipe of EBM practice (Du & Mordatch 2019): practical Langevin
    (gradient step 10, noise 0.005) clamped to the range of the observed
    values, from uniform noise on that range. It gives sharp completions fast
    but samples a much colder density than the conditional; ask for
    ``recipe="exact"`` to sample the conditional of an image model.

    Parameters
    ----------
    energy
        A trained :class:`~ebmppl.Energy`.
    key
        A ``jax.random`` key; the same key gives the same completions.
    images
        Examples ``(n, *event_shape)``; values at unobserved entries are
        ignored (they may be NaN). Observed entries must be finite.
    mask
        Boolean or 0/1 (True or 1 where observed): the shape of ``images``, or a
        shape that broadcasts to it (e.g. ``event_shape``: one mask for all).
    recipe
        ``"auto"`` (``"exact"`` for event rank 1, ``"images"`` otherwise),
        ``"exact"`` or ``"images"``; see above. It sets the defaults of
        ``sampler``, ``init_strategy`` and ``num_warmup``; what you pass explicitly wins.
    sampler
        Any sampler (a name or a :class:`~ebmppl.samplers.Sampler`). Default:
        ``samplers.hmc(num_integration_steps=8, dense_mass=True)`` (exact
        recipe; ``dense_mass=False`` above 256 coordinates) or ``samplers.langevin(step_size=10,
        noise_scale=0.005, clamp=data range)`` (images recipe). Samplers that
        adapt (MALA, HMC, NUTS, Barker, GHMC, MCLMC) are tuned per example
        during warm-up and run on the standardised scale; samplers without
        adaptation (ULA, practical Langevin, SGHMC) run on ``x`` itself with the
        step size you give them.
    sampler_params
        Kernel parameters (e.g. ``{"step_size": 0.05}``): the starting values of
        warm-up for samplers that adapt (``num_warmup=0`` keeps them), the values
        used throughout for the others.
    num_warmup
        Warm-up steps per example, not returned. Default 300 for samplers that
        adapt, 0 for the others.
    num_mcmc_steps
        Sampling steps per example when one completion per example is returned
        (default 200); the completion is the chain's last state.
    num_samples
        If given, return ``num_samples`` draws per example, one every
        ``thinning`` steps (``num_samples × thinning`` sampling steps); give
        ``num_mcmc_steps`` or ``num_samples``, not both.
    thinning
        Steps per kept draw when ``num_samples`` is given.
    init
        Starting values of the missing entries, an array like ``images`` (e.g.
        the per-pixel training mean); default: drawn by ``init_strategy``.
    init_strategy
        How to draw the starting values when no ``init`` is given:
        ``"typical"`` (the exact recipe's default: uniform on ``center ±
        2·scale``, where ``(center, scale)`` is the energy's
        :meth:`~ebmppl.Energy.typical_region` if it declares one, else each
        coordinate's mean and standard deviation over the examples in which it
        is observed, else 0 and 1) or ``"noise"`` (the images recipe's
        default: uniform on the range of the observed values).
    num_chains
        Chains per example (default 4 for the exact recipe with a sampler that
        adapts, 1 otherwise: the images recipe, or e.g. ``samplers.ula``, whose
        chains are checked on their own autocorrelation only). They share warm-up's adapted kernel (a stalled chain restarts
        from a healthy sibling) and the mixing check compares them. With
        ``num_samples`` the draws are shared out over them, interleaved: draw
        ``j`` comes from chain ``j % num_chains`` (``draws.reshape(n, -1,
        num_chains, *event_shape)`` separates them), so the sampling cost stays
        that of ``num_samples`` draws; warm-up costs ``num_chains`` times more.
    num_steps
        Deprecated name of ``num_mcmc_steps``; so is a strategy name passed as
        ``init`` (use ``init_strategy``). Both work for one more release, with a warning.

    Returns
    -------
    jax.Array
        The completed examples ``(n, *event_shape)``, or ``(n, num_samples,
        *event_shape)`` with ``num_samples``: observed entries unchanged,
        missing ones sampled.

    Raises
    ------
    ValueError
        Shapes that do not match (``images``, ``mask``, ``init``), an unknown
        ``recipe`` or ``init_strategy``, both ``init`` and ``init_strategy``,
        non-finite observed entries, or an energy (or gradient) that is not
        finite where some examples start (named).
    TypeError
        ``energy`` is not an :class:`~ebmppl.Energy`, ``key`` is not a
        ``jax.random`` key, ``mask`` is neither boolean nor 0/1, ``sampler``
        is neither a name nor a :class:`~ebmppl.samplers.Sampler`.
    FloatingPointError
        Some completions are not finite (the chains diverged); the message
        names the examples and what to change.

    Warns
    -----
    ChainHealthWarning
        Examples whose chains accepted less than a quarter of the sampler's
        target acceptance over the sampling phase (stalled or badly tuned):
        their completions may still sit near their starting values. Examples
        whose chains did not mix (see "Mixing is checked"): their draws'
        mean and spread cannot be trusted.
    UserWarning
        Observed values more than ``FAR_OUT`` (20) scales from the centre of
        the energy's declared :meth:`~ebmppl.Energy.typical_region` (named):
        usually data on another scale than the energy was fitted on.

    Examples
    --------
    Draws of ``x2 | x1 = 2`` for a correlated Gaussian (conditional mean 1.8,
    standard deviation 0.44), averaged into the conditional mean:

    >>> import jax.numpy as jnp
    >>> from ebmppl.targets import gaussian
    >>> e = gaussian([0.0, 0.0], [[1.0, 0.9], [0.9, 1.0]]).energy
    >>> x = jnp.array([[2.0, jnp.nan]]); m = jnp.array([[True, False]])
    >>> out = inpaint(e, jax.random.key(0), x, m, num_samples=500)
    >>> out.shape, float(out[0, 0, 0])
    ((1, 500, 2), 2.0)
    >>> bool(abs(out[0, :, 1].mean() - 1.8) < 0.1), bool(abs(out[0, :, 1].std() - 0.44) < 0.05)
    (True, True)

    One completion per example (the shape of ``images``):

    >>> inpaint(e, jax.random.key(1), x, m).shape
    (1, 2)
    """
    steps_name = "num_mcmc_steps" if num_steps is UNSET else "num_steps"  # errors name what the caller passed
    num_mcmc_steps = renamed("inpaint", "num_steps", num_steps, "num_mcmc_steps",
                             UNSET if num_mcmc_steps is None else num_mcmc_steps)
    if isinstance(init, str):  # a strategy name passed as init: the old spelling
        init_strategy = renamed("inpaint (a strategy name as init)", "init", init, "init_strategy",
                                UNSET if init_strategy is None else init_strategy)
        init = None
    check_energy(energy)
    check_key(key)
    images = jnp.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        images = images.astype(jnp.result_type(float))
    event_shape = tuple(energy.event_shape)
    if images.ndim != 1 + len(event_shape) or images.shape[1:] != event_shape:
        raise ValueError(f"images must be (n, *event_shape) = (n, *{event_shape}), got {images.shape}.")
    mask = _check_mask(mask, images, event_shape)
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}, got {recipe!r}.")
    if recipe == "auto":
        recipe = "exact" if len(event_shape) <= 1 else "images"
    if num_mcmc_steps is not None and num_samples is not None:
        raise ValueError(f"give {steps_name} (one completion per example) or num_samples (several draws per example, "
                         f"num_samples × thinning steps), not both; got {steps_name}={num_mcmc_steps!r}, "
                         f"num_samples={num_samples!r}.")
    thinning = check_int("thinning", thinning, 1)
    if num_samples is not None:
        check_int("num_samples", num_samples, 1)
    steps = check_int(steps_name, _DEFAULT_STEPS if num_mcmc_steps is None else num_mcmc_steps, 1)

    images_np, mask_np = np.asarray(images), np.asarray(mask)
    bad = ~np.all(np.isfinite(images_np) | ~mask_np, axis=tuple(range(1, images_np.ndim)))
    if bad.any():
        raise ValueError(f"images has NaN or inf at observed entries of {_examples(np.flatnonzero(bad))}: "
                         "observed values must be finite (mark the entry unobserved in mask to have it filled in).")
    _check_observed_in_region(energy, images_np, mask_np)
    low, high = _data_range(images_np, mask_np)
    if sampler is None:
        sampler = (_default_exact_sampler(energy.dim) if recipe == "exact"
                   else langevin(step_size=10.0, noise_scale=0.005, clamp=(low, high)))
    else:
        sampler = as_sampler(sampler)
    adapts = sampler.warmup.adapts
    # several chains per example for tuned samplers of the exact recipe: pooled adaptation and the mixing check
    chains = check_int("num_chains", (_DEFAULT_CHAINS if recipe == "exact" and adapts else 1)
                       if num_chains is None else num_chains, 1)
    if num_samples is not None:  # the draws are shared out over the chains, interleaved
        num_draws, thin = -(-num_samples // chains), thinning
    else:  # one completion: the last state of chain 0; the chains' traces are kept only for the mixing check
        traced = recipe == "exact" and images.shape[0] * chains * steps * energy.dim <= _TRACE_BUDGET
        num_draws, thin = (steps, 1) if traced else (1, steps)
    num_warmup = check_int("num_warmup", (_DEFAULT_WARMUP if adapts else 0) if num_warmup is None else num_warmup, 0)
    defaults = sampler.default_params(energy.dim)
    params = {**defaults, **check_sampler_params(sampler_params, defaults, sampler=sampler)}
    params = {k: jnp.asarray(v, jnp.result_type(float)) for k, v in params.items()}

    ftype = jnp.result_type(float)
    if adapts:  # tuned samplers run on the standardised scale: one step size suits every coordinate
        center, scale = _observed_region(energy, images_np, mask_np)
    else:  # the user's step size means what it says: x itself
        center, scale = jnp.zeros(event_shape, ftype), jnp.ones(event_shape, ftype)
    k_init, k_run = jax.random.split(key)
    if init is not None and init_strategy is not None:
        raise ValueError(f"pass init (starting values, an array like images) or init_strategy (how to draw them), "
                         f"not both; got init_strategy={init_strategy!r}.")
    if init is None:
        init_strategy = ("typical" if recipe == "exact" else "noise") if init_strategy is None else init_strategy
        if init_strategy == "typical":
            c, s = (center, scale) if adapts else _observed_region(energy, images_np, mask_np)
            x0 = c + s * jax.random.uniform(k_init, (chains, *images.shape), ftype, minval=-2.0, maxval=2.0)
        elif init_strategy == "noise":
            x0 = jax.random.uniform(k_init, (chains, *images.shape), ftype, minval=low, maxval=high)
        else:
            raise ValueError(f"init_strategy must be 'typical' or 'noise' (or pass init, an array like images), "
                             f"got {init_strategy!r}.")
    else:
        init = jnp.asarray(init, ftype)
        try:
            x0 = jnp.broadcast_to(init, (chains, *images.shape))
        except ValueError:
            raise ValueError(f"init has shape {init.shape}; expected the shape of images {images.shape} "
                             "(or one that broadcasts to it).") from None
        if not bool(jnp.all(jnp.isfinite(jnp.where(mask, 0.0, x0)))):
            raise ValueError("init has NaN or inf at unobserved entries: pass finite starting values.")
    x0 = jnp.swapaxes(jnp.where(mask, images, x0), 0, 1)  # (n, C, *event)
    ok = np.asarray(jax.vmap(_start_ok_jit, in_axes=(None, None, None, 1))(energy, images, mask, x0).all(0))
    if not ok.all():
        raise ValueError(f"the energy or its gradient is not finite where {_examples(np.flatnonzero(~ok))} start "
                         f"({'your init' if init is not None else f'init_strategy={init_strategy!r}'}): pass an init "
                         "inside the energy's domain, or check the energy at the observed values.")
    # observed coordinates start dispersed like the rest (their z never enters the energy)
    k_obs = jax.random.fold_in(k_init, 1)
    z0 = jnp.where(mask[:, None], jax.random.uniform(k_obs, x0.shape, ftype, minval=-2.0, maxval=2.0),
                   (x0 - center) / scale)
    traces, acceptance, _, ess = _complete_jit(energy, sampler, params, num_warmup, num_draws, thin, adapts, k_run,
                                               images, mask, z0, center, scale)
    if num_samples is None:
        draws = traces[:, 0, -1]
    else:  # interleaved: draw j comes from chain j % C, so any prefix of the draws uses every chain
        draws = jnp.swapaxes(traces, 1, 2).reshape(traces.shape[0], -1, *event_shape)[:, :num_samples]
    finite = np.asarray(jnp.all(jnp.isfinite(traces.reshape(traces.shape[0], -1)), axis=1))
    if not finite.all():
        raise FloatingPointError(
            f"inpaint ({sampler.name}) produced non-finite completions for {_examples(np.flatnonzero(~finite))} "
            f"of {len(finite)}: the chains diverged. "
            + ("Lower the step size (sampler_params={'step_size': ...}) or use a sampler that adapts its step "
               "(the default sampler for vectors adapts it)." if not adapts else
               "Use more warm-up (num_warmup) or check the energy for overflow near the observed values."))
    if not np.isnan(sampler.target_acceptance):
        mean_acc = np.asarray(jnp.nan_to_num(acceptance, nan=0.0).mean(axis=(1, 2)))  # a NaN proposal: rejected
        floor = LOW_ACCEPTANCE_FRACTION * sampler.target_acceptance
        low_acc = np.flatnonzero(mean_acc < floor)
        if low_acc.size:
            shown = ", ".join(f"{int(i)} ({mean_acc[i]:.2f})" for i in low_acc[:_SHOWN])
            warnings.warn(
                f"inpaint ({sampler.name}): the chains of {len(low_acc)} of {len(mean_acc)} examples accepted less "
                f"than {floor:.2f} of their proposals (target {sampler.target_acceptance}): {shown}"
                f"{' ...' if low_acc.size > _SHOWN else ''}. Their completions may not have moved from where they "
                "started. Use more warm-up (num_warmup), a sampler with a mass matrix (sampler=samplers.hmc()), "
                "or check the energy near these examples' observed values.",
                ChainHealthWarning, stacklevel=2)
    _check_mixing(sampler, ess, mask_np, num_samples, chains, num_draws, thin)
    return draws
