"""Negative-chain sampling: the short chains a trainer runs under the current θ at every step.

Contrastive divergence, recovery CD and JEM all need the same two things from
the inference layer: kernel parameters validated against a sampler
(:func:`kernel_parameters`), and ``K`` sampler steps run from given starts
under the current parameters (:func:`sample_negatives`), the sampler state
rebuilt from the positions so no cached log-density or gradient of an older θ
is ever used. :func:`sample_masked` runs the same chains with some coordinates
held at observed values (the recovery side of CD on incomplete data, and
inpainting).

Everything here goes through :meth:`ebmppl.Energy.logdensity_fn` (the one
place where the sign and temperature convention is written) and through the
sampler interface ``init`` / ``step`` / ``position`` / ``default_params``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._validation import check_sampler_params
from ebmppl.energy import Energy
from ebmppl.samplers.base import Sampler
from ebmppl.sharding import constrain_leading

__all__ = ["kernel_parameters", "sample_negatives", "sample_masked", "rbm_of", "rbm_block_gibbs"]


def kernel_parameters(sampler: Sampler, dim: int, overrides: dict[str, Any] | None) -> dict[str, jax.Array]:
    """The sampler's default kernel parameters with ``overrides`` (a ``sampler_params`` dict), validated.

    Parameters
    ----------
    sampler
        The sampler whose ``default_params(dim)`` are the starting point.
    dim
        Number of coordinates of one example.
    overrides
        ``sampler_params``: a dict of some of those parameters (``None``: none). An unknown
        key, or a step size or noise scale that is not positive, is a ``ValueError``.

    Returns
    -------
    dict
        Every kernel parameter as a float array of the default float dtype.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> p = kernel_parameters(samplers.mala(), 2, {"step_size": 0.2})
    >>> round(float(p["step_size"]), 3)
    0.2
    >>> kernel_parameters(samplers.mala(), 2, {"step_size": -1.0})
    Traceback (most recent call last):
    ...
    ValueError: sampler_params['step_size'] must be > 0, got -1.
    """
    defaults = sampler.default_params(dim)
    for name, value in (overrides or {}).items():
        if isinstance(value, (str, bytes)):  # numpy would parse "0.1"; a string here is a mistake upstream
            raise TypeError(f"sampler_params[{name!r}] must be a number or an array, got the string {value!r}.")
    params = {**defaults, **check_sampler_params(overrides, defaults, sampler=sampler)}
    params = {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in params.items()}
    for name, value in params.items():
        if name not in ("step_size", "noise_scale"):
            continue
        if np.shape(value) != np.shape(defaults[name]):
            per_coordinate = " (scale coordinates with inverse_mass_matrix)" if "inverse_mass_matrix" in params else ""
            raise ValueError(f"sampler_params[{name!r}] must have shape {np.shape(defaults[name])}: one value for every "
                             f"chain and coordinate{per_coordinate}; got shape {np.shape(value)}.")
        if not float(value) > 0:
            raise ValueError(f"sampler_params[{name!r}] must be > 0, got {float(value):.6g}.")
    _check_metric(params.get("inverse_mass_matrix"))
    return params


def _check_metric(metric: jax.Array | None) -> None:
    """An inverse mass matrix must be a finite positive vector (diagonal) or a symmetric positive-definite matrix."""
    if metric is None:
        return
    m = np.asarray(metric, np.float64)
    if not np.all(np.isfinite(m)):
        bad = True
    elif m.ndim == 1:
        bad = not np.all(m > 0)
    else:
        bad = not np.allclose(m, m.T, rtol=1e-5, atol=1e-8) or not np.all(np.linalg.eigvalsh(0.5 * (m + m.T)) > 0)
    if bad:
        raise ValueError("sampler_params['inverse_mass_matrix'] must be finite and positive: a vector of positive "
                         "entries (a diagonal metric) or a symmetric positive-definite matrix; pass e.g. the "
                         "variances of the target's coordinates.")


def sample_negatives(energy: Energy, sampler: Sampler, sampler_params: dict[str, Any], num_mcmc_steps: int,
                     key: jax.Array, params: Any, x0: jax.Array, *, with_stats: bool = False) -> tuple[Any, ...]:
    """Run ``num_mcmc_steps`` sampler steps from ``x0`` under ``params``; return (negatives, mean acceptance).

    Parameters
    ----------
    energy
        The energy; ``params`` replace its parameters (held constant: no
        gradient flows into the chains).
    sampler, sampler_params
        The sampler and its kernel parameters (:func:`kernel_parameters`).
    num_mcmc_steps
        Sampler steps per chain.
    key
        PRNG key of the chains.
    params
        The current parameters θ.
    x0
        Chain starts ``(num_chains, *event_shape)``; one chain per row.
    with_stats
        Also return the sampler's statistics (every field, as floats) averaged
        over chains and steps, ignoring ``nan`` (a third element): what a
        sampler that adapts during training reads (parallel tempering's swap
        and per-level acceptance).

    Returns
    -------
    tuple
        The final positions (``stop_gradient``; the shape of ``x0``) and the
        acceptance rate averaged over chains and steps (``nan`` for a sampler
        without an accept step); with ``with_stats``, the mean statistics too.

    Notes
    -----
    ``block_gibbs`` without ``blocks`` on an RBM's free energy (:func:`ebmppl.discrete.rbm`, temperature 1)
    runs the RBM's exact block Gibbs (:func:`rbm_block_gibbs`; acceptance ``nan``): the persistent
    contrastive divergence of Tieleman (2008).
    The sampler state is initialised from the positions under ``params``, so
    no cached log-density or gradient from an older θ is ever used. The keys
    of every chain and step are split once, outside the loop (a split inside
    it costs a threefry pass per step).

    Examples
    --------
    >>> from ebmppl import Energy, samplers
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> s = samplers.mala(step_size=0.5)
    >>> x, acc = sample_negatives(e, s, kernel_parameters(s, 2, None), 10, jax.random.key(0), e.params,
    ...                           jnp.full((64, 2), 3.0))
    >>> x.shape, bool(jnp.abs(x.mean()) < 1.0), 0.0 < float(acc) <= 1.0
    ((64, 2), True, True)
    """
    if _rbm_block_gibbs(sampler, energy):  # an RBM's exact block Gibbs, v -> h -> v, from its conditionals
        x = rbm_block_gibbs(jax.lax.stop_gradient(params), key, constrain_leading(x0), num_mcmc_steps)
        nan = jnp.asarray(jnp.nan, jnp.result_type(float))
        return (jax.lax.stop_gradient(x), nan) + ((None,) if with_stats else ())
    logdensity = energy.with_params(jax.lax.stop_gradient(params)).logdensity_fn
    x0 = constrain_leading(x0)  # no-op unless fit(devices=...) shards the chains
    keys = jax.random.split(key, (num_mcmc_steps + 1, x0.shape[0]))
    states = jax.vmap(sampler.init, in_axes=(0, 0, None))(keys[0], x0, logdensity)
    step_all = jax.vmap(sampler.step, in_axes=(0, 0, None, None))

    def body(states, step_keys):
        states, stats = step_all(step_keys, states, logdensity, sampler_params)
        if with_stats:
            return states, jax.tree.map(lambda v: jnp.nanmean(jnp.asarray(v, acceptance_dtype), axis=0), stats)
        # per chain, averaged after the loop: a mean over sharded chains inside it would synchronise the
        # devices at every sampler step
        return states, jnp.asarray(stats.acceptance_rate, acceptance_dtype)

    acceptance_dtype = jnp.result_type(float)
    states, trace = jax.lax.scan(body, states, keys[1:])
    x = jax.lax.stop_gradient(sampler.position(states))
    if not with_stats:
        return x, trace.mean()
    stats = jax.tree.map(lambda v: jnp.nanmean(v, axis=0), trace)
    return x, jnp.mean(trace.acceptance_rate), stats


def rbm_of(energy: Any) -> Any:
    """The :class:`ebmppl.discrete.RBM` of an energy built by :func:`ebmppl.discrete.rbm`, or ``None``.

    Examples
    --------
    >>> from ebmppl.discrete import rbm
    >>> plain = Energy(lambda p, x: jnp.sum(x), None, event_shape=(2,))
    >>> rbm_of(rbm(4, 2, key=jax.random.key(0))).W.shape, rbm_of(plain)
    ((4, 2), None)
    """
    try:
        from ebmppl.discrete.energies import RBM, _rbm_free_energy
    except ImportError:  # pragma: no cover - the discrete package is part of ebmppl
        return None
    if getattr(energy, "energy_fn", None) is _rbm_free_energy and isinstance(getattr(energy, "params", None), RBM):
        return energy.params
    return None


def _rbm_block_gibbs(sampler: Any, energy: Energy) -> bool:
    """``block_gibbs`` without blocks on an RBM's free energy (at temperature 1): the RBM's own block Gibbs."""
    if getattr(sampler, "name", None) != "block_gibbs" or getattr(sampler, "blocks", None) is not None:
        return False
    try:
        from ebmppl.discrete.energies import _rbm_free_energy
    except ImportError:  # pragma: no cover
        return False
    if getattr(energy, "energy_fn", None) is not _rbm_free_energy:  # (a trainer's template holds no params)
        return False
    t = energy.temperature
    return isinstance(t, jax.core.Tracer) or float(t) == 1.0


def rbm_block_gibbs(rbm: Any, key: jax.Array, v: jax.Array, num_steps: int, *, beta: Any = 1.0,
                    base_logits: jax.Array | None = None) -> jax.Array:
    """``num_steps`` sweeps of an RBM's block Gibbs, ``h ~ p(h | v)`` then ``v ~ p(v | h)``, of chains ``v`` ``(n, ...)``.

    With ``beta < 1`` it samples the intermediate RBM of Salakhutdinov & Murray's AIS (2008): weights
    and hidden bias times ``β``, visible bias ``(1 − β)·base_logits + β·b`` (``base_logits``: the
    visible logits of an independent base, default 0), whose marginal of ``v`` is
    ``∝ exp((1−β)·aᵀv + β·bᵀv + Σⱼ softplus(β·(cⱼ + (Wᵀv)ⱼ)))``.

    Examples
    --------
    >>> from ebmppl.discrete import RBM
    >>> r = RBM(jnp.zeros((3, 2)), jnp.array([2.0, 0.0, -2.0]))      # independent units: p(v=1) = σ(b)
    >>> v = rbm_block_gibbs(r, jax.random.key(0), jnp.zeros((4000, 3)), 2)
    >>> [round(float(m), 1) for m in v.mean(0)]
    [0.9, 0.5, 0.1]
    """
    shape = v.shape
    flat = v.reshape(shape[0], -1)
    base = jnp.zeros(flat.shape[1], flat.dtype) if base_logits is None else base_logits.reshape(-1)

    def sweep(v, k):
        k_h, k_v = jax.random.split(k)
        h = jax.random.bernoulli(k_h, jax.nn.sigmoid(beta * rbm.hidden_logits(v))).astype(v.dtype)
        logits = (1 - beta) * base + beta * rbm.visible_logits(h)
        return jax.random.bernoulli(k_v, jax.nn.sigmoid(logits)).astype(v.dtype), None

    flat, _ = jax.lax.scan(sweep, flat, jax.random.split(key, num_steps))
    return flat.reshape(shape)


def sample_masked(energy: Energy, sampler: Sampler, sampler_params: dict[str, Any], num_mcmc_steps: int,
                  key: jax.Array, observed: jax.Array, mask: jax.Array, x0: jax.Array) -> jax.Array:
    """Chains on the free coordinates only: ``p(x_free | x_observed)``, one chain per row; returns completions.

    Row ``i`` runs ``num_mcmc_steps`` sampler steps on ``x ↦ log p(where(mask_i,
    observed_i, x))`` from ``x0_i``: the energy and its gradient see the
    observed entries at their values, so only the free ones move. The result
    has the observed entries put back exactly.

    Parameters
    ----------
    energy
        The energy at the parameters to sample under (e.g. ``energy.with_params(θ)``).
    sampler, sampler_params, num_mcmc_steps
        As in :func:`sample_negatives`.
    key
        PRNG key (split per row, then into the row's initial and step keys).
    observed, mask
        ``(n, *event_shape)``: values, and ``True`` where a value is observed.
    x0
        ``(n, *event_shape)``: where the free coordinates start.

    Examples
    --------
    >>> from ebmppl import Energy, samplers
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - x[::-1]) ** 2) + 0.05 * jnp.sum(x**2), None, event_shape=(2,))
    >>> s = samplers.mala(step_size=0.3)
    >>> obs, mask = jnp.full((256, 2), 2.0), jnp.array([[True, False]] * 256)
    >>> x = sample_masked(e, s, kernel_parameters(s, 2, None), 200, jax.random.key(0), obs, mask, jnp.zeros((256, 2)))
    >>> bool(jnp.all(x[:, 0] == 2.0)), bool(jnp.abs(x[:, 1].mean() - 1.9) < 0.2)   # E[x₂ | x₁=2] = 2/1.05
    (True, True)
    """

    def one(key, obs, m, x_init):
        ld = lambda x: energy.logdensity_fn(jnp.where(m, obs, x))  # noqa: E731
        k_init, k_run = jax.random.split(key)
        state = sampler.init(k_init, x_init, ld)

        def body(state, k):
            state, _ = sampler.step(k, state, ld, sampler_params)
            return state, None

        state, _ = jax.lax.scan(body, state, jax.random.split(k_run, num_mcmc_steps))
        return jnp.where(m, obs, sampler.position(state))

    keys = jax.random.split(key, observed.shape[0])
    return jax.vmap(one)(keys, observed, mask, x0)
