"""Annealed importance sampling (Neal 2001) along the geometric path ``f_β = q^{1-β} · p̃^β``.

Forward AIS runs from the base ``q`` (β: 0 → 1) and is unbiased for ``Z``;
reverse AIS (:mod:`ebmppl.logz.reverse`) runs the same path back from samples
of ``p`` and is unbiased for ``1/Z``. The transitions are an exact sampler of
:mod:`ebmppl.samplers` (MALA by default) stepping on the tempered log-density
``(1-β)·log q + β·log p̃``; its step size is tuned per temperature by a pilot
population and then held fixed, so that no chain's transitions depend on the
estimating chains.

The tempered log-density is affine in β: a sampler state that caches the
log-density and its gradient at ``β_k`` (BlackJAX's ``logdensity`` and
``logdensity_grad``) is moved to ``β_{k+1}`` exactly by scaling the part that
comes from ``p̃``, with no new evaluation of the energy; the same number is the
weight increment. Below ``β = 0.01`` the cached share of ``p̃`` is too small to
survive float32 rounding, so there the energy is evaluated afresh. A sampler
whose state caches nothing is re-initialised under the new log-density
(``init`` is the rebuild).

The pilot's initial step is the default one scaled down with a base narrower
than 1, and halves at once at a temperature where its chains (almost) never
accept; an estimate whose chains barely accept over ``β ≥ 0.5`` is unreliable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.energy import Energy
from ebmppl.logz.base import _Base
from ebmppl.logz.estimate import LogZEstimate, _summarise
from ebmppl.samplers import Sampler

__all__ = ["ais_schedule"]


def ais_schedule(num_temperatures: int, power: float = 4.0) -> jax.Array:
    """Inverse temperatures ``β_k = (k/K)^power``, k = 0..K: dense near the base, where the path changes fastest.

    Examples
    --------
    >>> ais_schedule(4, power=1.0).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if num_temperatures < 1:
        raise ValueError(f"num_temperatures must be >= 1, got {num_temperatures}.")
    return (jnp.arange(num_temperatures + 1) / num_temperatures) ** power


_TARGET_ACCEPTANCE = {"hmc": 0.65}
"""Acceptance the pilot tunes to where it differs from the sampler's own warm-up target: for HMC the
asymptotically optimal 0.651 (Beskos et al. 2013), not the more cautious 0.8 of warm-up."""


_STUCK_ACCEPTANCE = 0.05
"""Mean acceptance below which chains are taken as stuck: the pilot halves its step, and an estimate whose chains
accept less than this over the second half of the path (β ≥ 0.5) is unreliable."""

_CACHE_FROM = 0.01
"""Inverse temperature from which :func:`_retemper` moves a chain's cached log-density along the path instead of
evaluating the energy again (below it, the cached ``β·(log p̃ - log q)`` is lost to the rounding of ``log q``)."""


def _tempered(base: _Base, logdensity_fn, beta):
    """``x ↦ (1-β)·log q(x) + β·log p̃(x)``."""
    def logdensity(x):
        return (1 - beta) * base.log_prob(x) + beta * logdensity_fn(x)

    return logdensity


def _begin(sampler: Sampler, key, x, base: _Base, logdensity_fn, b0, b1):
    """A chain at ``x`` under ``β_0``: its sampler state under ``β_1``, and the weight increment
    ``log f_{β_1}/f_{β_0}``."""
    increment = (b1 - b0) * (logdensity_fn(x) - base.log_prob(x))
    return sampler.init(key, x, _tempered(base, logdensity_fn, b1)), increment


def _retemper(sampler: Sampler, key, state, base: _Base, logdensity_fn, b_prev, b_next):
    """The state moved from ``β_prev`` (> 0) to ``β_next``, and the increment ``log f_{β_next}/f_{β_prev}``.

    ``f_β - log q = β·(log p̃ - log q)``: with the cached ``f_{β_prev}`` and its
    gradient, ``f_{β_next} = log q + r·(f_{β_prev} - log q)`` with ``r = β_next/β_prev``
    (the same for gradients), exact and without evaluating the energy. Only
    the base, which is cheap, is evaluated.
    """
    x = sampler.position(state)

    def evaluated(state):  # the energy evaluated afresh at x
        increment = (b_next - b_prev) * (logdensity_fn(x) - base.log_prob(x))
        return sampler.init(key, x, _tempered(base, logdensity_fn, b_next)), increment

    fields = getattr(state, "_fields", ())
    if "logdensity" not in fields or "logdensity_grad" not in fields:
        return evaluated(state)

    def cached(state):
        log_q, grad_q = jax.value_and_grad(base.log_prob)(x)
        r = b_next / b_prev
        p_part = state.logdensity - log_q  # β_prev · (log p̃ - log q)(x)
        grad = jax.tree.map(lambda g, gq: gq + r * (g - gq), state.logdensity_grad, grad_q)
        return state._replace(logdensity=log_q + r * p_part, logdensity_grad=grad), (r - 1) * p_part

    # The cached f_β holds β·(log p̃ - log q) only to the rounding error of |log q| (float32: ~1e-7·|log q|): at
    # small β that part can round away entirely, and r = β_next/β_prev then scales the error by up to 1/β_prev on
    # a chain that stays put. A chain whose cache lost the energy never accepts again (its cached f_β is off) and
    # its weight collapses to the base's, or to a rounding artefact that does not depend on the energy. Below
    # _CACHE_FROM the energy is evaluated afresh; above it the error is amplified by at most 1/_CACHE_FROM.
    # (b_prev is the same for every chain: under vmap the cond stays a branch.)
    return jax.lax.cond(b_prev >= _CACHE_FROM, cached, evaluated, state)


def _move(sampler: Sampler, key, state, base: _Base, logdensity_fn, beta, params, step, num_mcmc_steps: int,
          num_chains: int | None = None):
    """``num_mcmc_steps`` transitions under ``β`` with step size ``step`` of one chain, or of a population of
    ``num_chains`` (each step's key split over the chains); returns the state(s) and the mean acceptance."""
    logdensity = _tempered(base, logdensity_fn, beta)
    params = dict(params, step_size=step)

    def transition(k, st):
        st, stats = sampler.step(k, st, logdensity, params)
        return st, jnp.nan_to_num(stats.acceptance_rate)

    def one(st, k):
        if num_chains is None:
            return transition(k, st)
        st, acc = jax.vmap(transition)(jax.random.split(k, num_chains), st)
        return st, acc.mean()

    state, acc = jax.lax.scan(one, state, jax.random.split(key, num_mcmc_steps))
    return state, acc.mean()


@eqx.filter_jit
def _pilot(energy: Energy, key, betas, base: _Base, sampler: Sampler, params: dict[str, Any], num_chains: int,
           num_mcmc_steps: int, step_size):
    """Tune one step size per temperature on a pilot population; its weights are thrown away.

    Forward along the path from the base; at each temperature the shared step is
    nudged (Robbins-Monro on its log) towards the sampler's optimal acceptance
    (0.574 for MALA, 0.65 for HMC) from the pilot chains' mean acceptance.
    Returns ``steps`` of shape ``(K+1,)`` (``steps[j]`` is the step for moving
    under ``β_j``; ``steps[0] = steps[1]``, the base and ``β_1`` barely differ)
    and the pilot population at ``β = 1`` ``(num_chains, *event_shape)``.
    """
    ld = energy.logdensity_fn
    k0, k_run = jax.random.split(key)
    x0 = base.sample(k0, (num_chains, *energy.event_shape))
    states, _ = jax.vmap(lambda k, x: _begin(sampler, k, x, base, ld, betas[0], betas[1]))(
        jax.random.split(jax.random.fold_in(k0, 1), num_chains), x0)
    target = _TARGET_ACCEPTANCE.get(sampler.name, sampler.target_acceptance)
    keys = jax.random.split(k_run, betas.shape[0] - 1)

    def moved(states, key, beta, log_step):
        states, acc = _move(sampler, key, states, base, ld, beta, params, jnp.exp(log_step), num_mcmc_steps,
                            num_chains)
        # a population that (almost) never accepts halves its step at once: a step far above the energy's scale
        # (an energy on a scale of 1e-3 and the default 0.05) would otherwise take hundreds of temperatures to shrink
        return states, log_step + 0.05 * (acc - target) + jnp.where(acc < _STUCK_ACCEPTANCE, -math.log(2.0), 0.0)

    states, log_step = moved(states, keys[0], betas[1], jnp.log(step_size))

    def body(carry, xs):
        states, log_step = carry
        b_prev, b_next, key = xs
        states, _ = jax.vmap(lambda k, s: _retemper(sampler, k, s, base, ld, b_prev, b_next))(
            jax.random.split(jax.random.fold_in(key, 1), num_chains), states)
        states, log_step = moved(states, key, b_next, log_step)
        return (states, log_step), log_step

    (states, _), log_steps = jax.lax.scan(body, (states, log_step), (betas[1:-1], betas[2:], keys[1:]))
    log_steps = jnp.concatenate([log_step[None], log_steps])
    return jnp.exp(jnp.concatenate([log_steps[:1], log_steps])), jax.vmap(sampler.position)(states)


@eqx.filter_jit
def _anneal(energy: Energy, key, betas, base: _Base, sampler: Sampler, params: dict[str, Any], num_chains: int,
            num_mcmc_steps: int, steps, start, reverse: bool):
    """AIS log-weights of ``num_chains`` independent chains under the fixed step schedule ``steps`` ``(K+1,)``, and
    the chains' mean acceptance at each temperature moved under ``(K,)`` (in the order of the run).

    Chain ``i`` draws all its randomness from ``fold_in(key, i)``, and no
    quantity is shared between chains: each chain's weight is a function of its
    own key (and start) only, which is what makes ``mean(exp(log_w))`` unbiased
    for ``Z`` (forward) or ``1/Z`` (reverse: β runs from 1 down to 0, from
    ``start``).
    """
    ld = energy.logdensity_fn
    b, s = (betas[::-1], steps[::-1]) if reverse else (betas, steps)

    def chain(i, x_start):
        k_init, k_path = jax.random.split(jax.random.fold_in(key, i))
        x0 = base.sample(k_init, energy.event_shape) if x_start is None else x_start
        keys = jax.random.split(k_path, b.shape[0] - 1)  # one per temperature moved under
        state, log_w = _begin(sampler, jax.random.fold_in(k_init, 1), x0, base, ld, b[0], b[1])
        state, acc = _move(sampler, keys[0], state, base, ld, b[1], params, s[1], num_mcmc_steps)

        def body(carry, xs):
            state, log_w = carry
            b_prev, b_next, step, key = xs
            state, increment = _retemper(sampler, jax.random.fold_in(key, 1), state, base, ld, b_prev, b_next)
            state, acc = _move(sampler, key, state, base, ld, b_next, params, step, num_mcmc_steps)
            return (state, log_w + increment), acc

        (_, log_w), accs = jax.lax.scan(body, (state, log_w), (b[1:-1], b[2:], s[2:], keys[1:]))
        return log_w, jnp.concatenate([acc[None], accs])

    index = jnp.arange(num_chains)
    if start is None:
        log_w, acc = jax.vmap(lambda i: chain(i, None))(index)
    else:
        log_w, acc = jax.vmap(chain)(index, start)
    return log_w, acc.mean(0)


def _ais(energy: Energy, key: jax.Array, pilot_key: jax.Array, base: _Base, sampler: Sampler,
         params: dict[str, Any], *, num_chains: int, num_temperatures: int, num_mcmc_steps: int,
         pilot_chains: int, step_size,
         start: jax.Array | None = None, notes: Sequence[str] = (), advice: str | None = None) -> LogZEstimate:
    """The AIS estimator: a pilot run fixes the step schedule, then ``num_chains`` chains run forward from the base
    (or, from ``start``, reverse: see :mod:`ebmppl.logz.reverse`), with the estimate's key and the pilot's."""
    betas = ais_schedule(int(num_temperatures)).astype(jnp.result_type(float))
    # the schedule is fixed before the estimating run: pilot and estimating chains use disjoint keys
    steps, _ = _pilot(energy, pilot_key, betas, base, sampler, params, int(pilot_chains), int(num_mcmc_steps),
                      step_size)
    reverse = start is not None
    log_w, acc = _anneal(energy, key, betas, base, sampler, params, int(start.shape[0] if reverse else num_chains),
                         int(num_mcmc_steps), steps, start, reverse)
    moved_under = np.asarray(betas[::-1][1:] if reverse else betas[1:])
    late_acc = np.asarray(acc, np.float64)[moved_under >= 0.5]
    late = float(np.mean(late_acc)) if late_acc.size else 1.0
    if not late >= _STUCK_ACCEPTANCE:
        notes = [*notes, f"the chains barely move near the target: their mean acceptance over β ≥ 0.5 is {late:.3f} "
                         f"(< {_STUCK_ACCEPTANCE}), so the weights are those of importance sampling from the base and "
                         "the estimate cannot have seen the energy's mass; the step size does not fit the energy's "
                         "scale: give sampler_params={'step_size': ...} (about 0.1·the energy's spread) or data= "
                         "points where the mass is"]
    if reverse:
        return _summarise(log_w, "ais-reverse", sign=-1.0, notes=notes)
    return _summarise(log_w, "ais", notes=notes, advice=advice)
