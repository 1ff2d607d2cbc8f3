"""Warm-up: step-size and mass-matrix adaptation pooled over all chains.

ebmppl runs many chains at once, so it adapts ONE set of kernel parameters
for all of them (every chain then samples with the same kernel, which is what
R-hat assumes):

* **step size** by Nesterov dual averaging (BlackJAX's
  ``dual_averaging_adaptation``) on the acceptance rate averaged over chains;
* **mass matrix** (``adaptation="window"``) by Stan's schedule: a fast window
  (15 %), slow windows doubling in length (75 %) at whose ends the inverse
  mass matrix becomes the Welford variance of *all chains' positions pooled*,
  shrunk towards ``1e-3·I`` as Stan does, and a final fast window (10 %);
* **MCLMC** (``adaptation="mclmc"``): BlackJAX's ``mclmc_find_L_and_step_size``
  on each chain, then the median of ``L``, step size and preconditioner;
* ``adaptation="none"`` (ULA, practical Langevin, SGHMC): the chains simply
  run ``num_warmup`` steps with the user's step size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.step_size import dual_averaging_adaptation

from ebmppl.samplers.base import LogDensityFn, Sampler

__all__ = ["window_schedule", "warmup"]


def window_schedule(num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Stan-style windows: ``(collect, window_end)`` boolean arrays of length ``num_steps``.

    ``collect[t]``: step ``t`` lies in a slow window (its positions feed the
    mass-matrix estimate). ``window_end[t]``: a slow window closes after step ``t``.

    Examples
    --------
    >>> collect, end = window_schedule(100)
    >>> int(collect.sum()), np.flatnonzero(end).tolist()
    (75, [24, 44, 89])
    """
    collect = np.zeros(num_steps, dtype=bool)
    end = np.zeros(num_steps, dtype=bool)
    if num_steps < 20:  # too short for windows: step size only
        return collect, end
    first = int(0.15 * num_steps)
    last = int(0.1 * num_steps)
    slow = num_steps - first - last
    start, size = first, max(slow // 7, 1)  # windows of size w, 2w, 4w: 7w in all
    while start < first + slow:
        stop = min(start + size, first + slow)
        if first + slow - stop < 2 * size:  # the next window would be too short: merge it
            stop = first + slow
        collect[start:stop] = True
        end[stop - 1] = True
        start, size = stop, 2 * size
    return collect, end


class _Welford(NamedTuple):
    count: jax.Array
    mean: jax.Array
    m2: jax.Array


def _welford_init(dim: int, dense: bool) -> _Welford:
    return _Welford(jnp.zeros(()), jnp.zeros(dim), jnp.zeros((dim, dim) if dense else dim))


def _welford_update(w: _Welford, batch: jax.Array, dense: bool) -> _Welford:
    """Merge a batch (n, dim) into running moments (Chan et al.'s parallel update)."""
    n_b = batch.shape[0]
    mean_b = batch.mean(0)
    centred = batch - mean_b
    m2_b = centred.T @ centred if dense else jnp.sum(centred**2, 0)
    n = w.count + n_b
    delta = mean_b - w.mean
    mean = w.mean + delta * n_b / n
    corr = jnp.outer(delta, delta) if dense else delta**2
    m2 = w.m2 + m2_b + corr * w.count * n_b / n
    return _Welford(n, mean, m2)


def _welford_metric(w: _Welford, dense: bool) -> jax.Array:
    n = w.count
    cov = w.m2 / jnp.maximum(n - 1, 1)
    reg = 1e-3 * (jnp.eye(cov.shape[0]) if dense else jnp.ones_like(cov))
    return (n / (n + 5.0)) * cov + (5.0 / (n + 5.0)) * reg  # Stan's shrinkage


def _flat_positions(sampler: Sampler, states: Any) -> jax.Array:
    positions = sampler.position(states)
    leaves = jax.tree.leaves(positions)
    return jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in leaves], axis=1)


def warmup(
    sampler: Sampler,
    logdensity_fn: LogDensityFn,
    key: jax.Array,
    states: Any,
    params: dict[str, jax.Array],
    num_steps: int,
    adapt: bool = True,
) -> tuple[Any, dict[str, jax.Array]]:
    """Run ``num_steps`` warm-up steps on a batch of chains and return ``(states, params)``.

    Pure and jit-able (``num_steps`` and ``adapt`` static). ``states`` carry a
    leading chain axis; ``params`` are shared by all chains.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 0.0], [[4.0, 0.0], [0.0, 0.25]])
    >>> ld = lambda x: -t.energy.energy_fn(t.energy.params, x)
    >>> s = samplers.nuts()
    >>> states = jax.vmap(lambda x: s.init(None, x, ld))(jnp.zeros((8, 2)))
    >>> states, params = jax.jit(warmup, static_argnums=(0, 1, 5))(s, ld, jax.random.key(0), states, s.default_params(2), 500)
    >>> np.round(params["inverse_mass_matrix"], 1).tolist()   # close to the variances 4 and 0.25
    [3.9..., 0.2...]
    """
    if num_steps == 0:
        return states, params
    if not adapt or sampler.adaptation == "none":
        return _run_fixed(sampler, logdensity_fn, key, states, params, num_steps), params
    if sampler.adaptation == "mclmc":
        return _mclmc_warmup(sampler, logdensity_fn, key, states, params, num_steps)
    return _window_warmup(sampler, logdensity_fn, key, states, params, num_steps)


def _vmapped_step(sampler: Sampler, logdensity_fn: LogDensityFn):
    def step(key, states, params):
        keys = jax.random.split(key, jax.tree.leaves(states)[0].shape[0])
        return jax.vmap(sampler.step, in_axes=(0, 0, None, None))(keys, states, logdensity_fn, params)

    return step


def _run_fixed(sampler, logdensity_fn, key, states, params, num_steps):
    step = _vmapped_step(sampler, logdensity_fn)

    def body(states, key):
        states, _ = step(key, states, params)
        return states, None

    states, _ = jax.lax.scan(body, states, jax.random.split(key, num_steps))
    return states


def _window_warmup(sampler, logdensity_fn, key, states, params, num_steps):
    step = _vmapped_step(sampler, logdensity_fn)
    da_init, da_update, da_final = dual_averaging_adaptation(sampler.target_acceptance)
    with_metric = sampler.adaptation == "window"
    if with_metric:
        collect, window_end = window_schedule(num_steps)
    else:
        collect = window_end = np.zeros(num_steps, dtype=bool)
    imm0 = params.get("inverse_mass_matrix")
    dense = imm0 is not None and imm0.ndim == 2
    dim = _flat_positions(sampler, states).shape[1]
    welford0 = _welford_init(dim, dense)

    def body(carry, xs):
        states, params, da, welford = carry
        key, collect_t, end_t = xs
        states, stats = step(key, states, params)
        acceptance = jnp.mean(jnp.nan_to_num(stats.acceptance_rate, nan=0.0))
        da = da_update(da, acceptance)
        params = {**params, "step_size": jnp.exp(da.log_step_size)}
        if with_metric:
            positions = _flat_positions(sampler, states)
            welford = jax.tree.map(
                lambda new, old: jnp.where(collect_t, new, old), _welford_update(welford, positions, dense), welford
            )
            metric = jnp.where(end_t, _welford_metric(welford, dense), params["inverse_mass_matrix"])
            params = {**params, "inverse_mass_matrix": metric}
            # a new metric: restart the moments and the step-size search from here
            welford = jax.tree.map(lambda fresh, old: jnp.where(end_t, fresh, old), welford0, welford)
            da = jax.tree.map(lambda fresh, old: jnp.where(end_t, fresh, old), da_init(params["step_size"]), da)
        return (states, params, da, welford), None

    carry0 = (states, params, da_init(params["step_size"]), welford0)
    xs = (jax.random.split(key, num_steps), jnp.asarray(collect), jnp.asarray(window_end))
    (states, params, da, _), _ = jax.lax.scan(body, carry0, xs)
    return states, {**params, "step_size": da_final(da)}


def _mclmc_warmup(sampler, logdensity_fn, key, states, params, num_steps):
    kernel = blackjax.mclmc.build_kernel()
    fraction = 0.3  # the tuner spends frac_tune1 + frac_tune2 + frac_tune3 of its budget

    def tune(state, key):
        state, tuned, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=int(np.ceil(num_steps / fraction)),
            state=state,
            rng_key=key,
            logdensity_fn=logdensity_fn,
            diagonal_preconditioning=True,
        )
        return state, tuned

    keys = jax.random.split(key, jax.tree.leaves(states)[0].shape[0])
    states, tuned = jax.vmap(tune)(states, keys)
    params = {
        **params,
        "step_size": jnp.median(tuned.step_size),
        "L": jnp.median(tuned.L),
        "inverse_mass_matrix": jnp.median(tuned.inverse_mass_matrix, axis=0),
    }
    return states, params
