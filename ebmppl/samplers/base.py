"""The uniform sampler interface every ebmppl sampler implements.

A sampler is a :class:`Sampler`: pure functions for ONE chain, in BlackJAX's
style, except that the log-density is passed at step time. That is what lets
contrastive divergence change θ between steps without recompiling, and why a
state's cached log-density and gradient can be rebuilt under a new θ
(:attr:`Sampler.rebuild`). ebmppl vmaps these functions over chains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp  # noqa: F401  (used by the docstring examples)

__all__ = ["Sampler", "StepStats", "LogDensityFn"]

LogDensityFn = Callable[[jax.Array], jax.Array]


class StepStats(NamedTuple):
    """Per-transition statistics, common to all samplers.

    Attributes
    ----------
    acceptance_rate
        Metropolis acceptance probability of the transition (``nan`` for
        samplers without an accept/reject step).
    is_divergent
        Whether the numerical integrator diverged (HMC family); ``False`` elsewhere.
    num_grad_evals
        Gradient evaluations spent on the transition.
    logdensity
        ``-E(x)/T`` at the new position.

    Examples
    --------
    >>> from ebmppl.samplers import mala
    >>> s = mala(step_size=0.5)
    >>> ld = lambda x: -0.5 * jnp.sum(x**2)
    >>> state, stats = s.step(jax.random.key(1), s.init(jax.random.key(0), jnp.zeros(2), ld), ld, s.default_params(2))
    >>> int(stats.num_grad_evals), 0.0 <= float(stats.acceptance_rate) <= 1.0
    (1, True)
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    logdensity: jax.Array


class Sampler(NamedTuple):
    """A sampling algorithm for one chain, with the log-density supplied at call time.

    Attributes
    ----------
    name
        Registry name, e.g. ``"mala"``.
    exact
        ``True`` if the chain's stationary law is the target exactly
        (Metropolis-adjusted); ``False`` for discretised dynamics without
        correction (ULA, practical Langevin, SGHMC, MCLMC), whose bias shrinks
        with the step size.
    init
        ``init(key, position, logdensity_fn) -> state``.
    step
        ``step(key, state, logdensity_fn, params) -> (state, StepStats)``.
    position
        ``position(state) -> x``.
    rebuild
        ``rebuild(state, logdensity_fn) -> state`` recomputes cached
        log-density and gradient under a new ``logdensity_fn`` (new θ).
    default_params
        ``default_params(dim) -> params``: kernel parameters before warm-up.
    adaptation
        What warm-up tunes: ``"window"`` (step size by dual averaging and a
        mass matrix from pooled chains), ``"step_size"`` (step size only),
        ``"mclmc"`` (BlackJAX's MCLMC tuner) or ``"none"`` (user-set step size).
    target_acceptance
        Acceptance rate the step-size adaptation aims for.

    Examples
    --------
    One chain by hand (``ebmppl.sample`` does this for many chains, compiled):

    >>> from ebmppl.samplers import hmc
    >>> s = hmc(num_integration_steps=10)
    >>> ld = lambda x: -0.5 * jnp.sum(x**2)
    >>> state = s.init(jax.random.key(0), jnp.ones(3), ld)
    >>> for k in jax.random.split(jax.random.key(1), 5):
    ...     state, stats = s.step(k, state, ld, s.default_params(3))
    >>> s.name, s.exact, s.adaptation, s.position(state).shape
    ('hmc', True, 'window', (3,))
    """

    name: str
    exact: bool
    init: Callable[[jax.Array, Any, LogDensityFn], Any]
    step: Callable[[jax.Array, Any, LogDensityFn, Any], tuple[Any, StepStats]]
    position: Callable[[Any], Any]
    rebuild: Callable[[Any, LogDensityFn], Any]
    default_params: Callable[[int], Any]
    adaptation: str
    target_acceptance: float = 0.8
