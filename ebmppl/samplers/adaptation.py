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

**Stalled chains are restarted.** One pooled step size cannot suit a chain
that started far out in the tails (say at ``log σ = -2`` of a scale
parameter): its proposals are all rejected, it never moves, and its zero
acceptance drags the pooled step size down for everyone. So at a few
*checkpoints* of warm-up (the end of the initial fast window and the end of
every slow window, see :func:`reinit_schedule`) each chain is checked over
the steps since the last checkpoint: a chain whose mean acceptance was below
1 % (samplers with a Metropolis step) or whose log-density is not finite is
*stalled*, and it is restarted from the full state of a healthy chain drawn
uniformly at random (the step-size search then restarts too). If no chain is
healthy nothing is copied. After warm-up the chains run from different keys,
so a copied chain decorrelates from its source within a few autocorrelation
times. The step of each chain's last restart is returned by
:func:`warmup_with_health`; :func:`ebmppl.sample` reports it in
``Samples.health`` and warns about restarts after the first checkpoint (a
chain that stalled *after* moving may have found a region the sampler cannot
handle, such as a funnel's neck). Pass ``reinit_stalled=False`` to turn this off.
MCLMC (tuned chain by chain) is not restarted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import math

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.step_size import dual_averaging_adaptation

from ebmppl.samplers.base import LogDensityFn, Sampler

__all__ = ["window_schedule", "reinit_schedule", "warmup", "warmup_with_health", "STALL_ACCEPTANCE"]

#: A chain whose mean acceptance over a warm-up window (or over the draws) is below this is stalled.
STALL_ACCEPTANCE = 0.01


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


def reinit_schedule(num_steps: int) -> np.ndarray:
    """Warm-up steps after which stalled chains are restarted from healthy ones (boolean, length ``num_steps``).

    The end of the initial fast window (15 % of warm-up) and the end of every
    slow window of :func:`window_schedule`; none for fewer than 20 steps.
    The same checkpoints serve every adapted sampler, with or without a mass matrix.

    Examples
    --------
    >>> np.flatnonzero(reinit_schedule(100)).tolist()
    [14, 24, 44, 89]
    >>> int(reinit_schedule(10).sum())
    0
    """
    _, end = window_schedule(num_steps)
    check = end.copy()
    if num_steps >= 20:
        check[int(0.15 * num_steps) - 1] = True
    return check


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
    reinit_stalled: bool = True,
) -> tuple[Any, dict[str, jax.Array]]:
    """Run ``num_steps`` warm-up steps on a batch of chains and return ``(states, params)``.

    Pure and jit-able (``num_steps``, ``adapt`` and ``reinit_stalled``
    static). ``states`` carry a leading chain axis; ``params`` are shared by
    all chains. With ``reinit_stalled`` a chain that stalls (acceptance below
    1 % over a window, or a non-finite log-density) is restarted from a
    healthy chain at the checkpoints of :func:`reinit_schedule` (see the
    module note); :func:`warmup_with_health` also says which chains were.

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
    states, params, _ = warmup_with_health(sampler, logdensity_fn, key, states, params, num_steps, adapt, reinit_stalled)
    return states, params


def warmup_with_health(
    sampler: Sampler,
    logdensity_fn: LogDensityFn,
    key: jax.Array,
    states: Any,
    params: dict[str, jax.Array],
    num_steps: int,
    adapt: bool = True,
    reinit_stalled: bool = True,
) -> tuple[Any, dict[str, jax.Array], jax.Array]:
    """:func:`warmup` that also returns, per chain, the warm-up step of its last restart (``-1``: never).

    Examples
    --------
    A chain started where MALA's pooled step size cannot move it (far out on
    a steep slope) is restarted from a healthy chain at the first checkpoint:

    >>> from ebmppl import samplers
    >>> s = samplers.mala()
    >>> ld = lambda x: -0.5 * jnp.sum(x**2) - 0.25 * jnp.sum(x**4)
    >>> x0 = jnp.array([[0.5], [-0.3], [0.1], [40.0]])
    >>> states = jax.vmap(lambda x: s.init(None, x, ld))(x0)
    >>> run = jax.jit(warmup_with_health, static_argnums=(0, 1, 5))
    >>> states, params, restarted = run(s, ld, jax.random.key(0), states, s.default_params(1), 200)
    >>> restarted.tolist()
    [-1, -1, -1, 29]
    >>> bool(jnp.abs(states.position[3, 0]) < 5.0)
    True
    """
    n_chains = jax.tree.leaves(states)[0].shape[0]
    never = jnp.full((n_chains,), -1, dtype=jnp.int32)
    if num_steps == 0:
        return states, params, never
    if sampler.adaptation == "mclmc" and adapt:
        states, params = _mclmc_warmup(sampler, logdensity_fn, key, states, params, num_steps)
        return states, params, never
    adapting = adapt and sampler.adaptation != "none"
    return _adaptive_warmup(sampler, logdensity_fn, key, states, params, num_steps, adapting, reinit_stalled)


def _vmapped_step(sampler: Sampler, logdensity_fn: LogDensityFn):
    def step(key, states, params):
        keys = jax.random.split(key, jax.tree.leaves(states)[0].shape[0])
        return jax.vmap(sampler.step, in_axes=(0, 0, None, None))(keys, states, logdensity_fn, params)

    return step


def _restart_stalled(key, states, positions, logdensity, acceptance, has_acceptance):
    """Copy a random healthy chain's state over every stalled chain; return the states and the stalled mask."""
    n = logdensity.shape[0]
    stalled = ~(jnp.isfinite(logdensity) & jnp.all(jnp.isfinite(positions), axis=1))
    if has_acceptance:
        stalled = stalled | ~(acceptance >= STALL_ACCEPTANCE)
    healthy = ~stalled
    restart = stalled & jnp.any(healthy)
    source = jax.random.choice(key, n, (n,), p=healthy / jnp.maximum(healthy.sum(), 1))
    source = jnp.where(restart, source, jnp.arange(n))
    return jax.tree.map(lambda a: a[source], states), restart


def _adaptive_warmup(sampler, logdensity_fn, key, states, params, num_steps, adapting, reinit_stalled):
    step = _vmapped_step(sampler, logdensity_fn)
    da_init, da_update, da_final = dual_averaging_adaptation(sampler.target_acceptance)
    with_metric = adapting and sampler.adaptation == "window"
    if with_metric:
        collect, window_end = window_schedule(num_steps)
    else:
        collect = window_end = np.zeros(num_steps, dtype=bool)
    checkpoint = reinit_schedule(num_steps) if reinit_stalled else np.zeros(num_steps, dtype=bool)
    has_acceptance = not math.isnan(sampler.target_acceptance)
    imm0 = params.get("inverse_mass_matrix")
    dense = imm0 is not None and imm0.ndim == 2
    n_chains, dim = _flat_positions(sampler, states).shape
    welford0 = _welford_init(dim, dense)

    def check(states, da, params, acc_sum, count, logdensity, restarted, t, key):
        positions = _flat_positions(sampler, states)
        states, restart = _restart_stalled(key, states, positions, logdensity, acc_sum / count, has_acceptance)
        restarted = jnp.where(restart, t, restarted)
        if adapting:  # a chain moved: restart the step-size search from the current step size
            da = jax.tree.map(lambda fresh, old: jnp.where(jnp.any(restart), fresh, old), da_init(params["step_size"]), da)
        return states, da, restarted

    def body(carry, xs):
        states, params, da, welford, acc_sum, count, restarted = carry
        key, collect_t, end_t, check_t, t = xs
        states, stats = step(key, states, params)
        # a NaN acceptance (a proposal at a NaN log-density) counts as a rejection
        accepted = jnp.nan_to_num(stats.acceptance_rate, nan=0.0)
        acc_sum, count = acc_sum + accepted, count + 1.0
        if adapting:
            da = da_update(da, jnp.mean(accepted))
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
        if reinit_stalled:
            states, da, restarted = jax.lax.cond(
                check_t,
                check,
                lambda states, da, *_: (states, da, restarted),
                states, da, params, acc_sum, count, stats.logdensity, restarted, t, jax.random.fold_in(key, 1),
            )
            acc_sum = jnp.where(check_t, 0.0, acc_sum)
            count = jnp.where(check_t, 0.0, count)
        return (states, params, da, welford, acc_sum, count, restarted), None

    restarted0 = jnp.full((n_chains,), -1, dtype=jnp.int32)
    carry0 = (states, params, da_init(params["step_size"]), welford0, jnp.zeros(n_chains), jnp.zeros(()), restarted0)
    xs = (jax.random.split(key, num_steps), jnp.asarray(collect), jnp.asarray(window_end), jnp.asarray(checkpoint),
          jnp.arange(num_steps, dtype=jnp.int32))
    (states, params, da, _, _, _, restarted), _ = jax.lax.scan(body, carry0, xs)
    if adapting:
        params = {**params, "step_size": da_final(da)}
    return states, params, restarted


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
