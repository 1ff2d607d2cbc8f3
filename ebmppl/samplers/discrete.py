"""Samplers for discrete energies: binary vectors and one-hot categorical variables.

Every sampler here follows the :class:`~ebmppl.samplers.Sampler` contract
(one chain, the log-density given at call time, vmapped over chains by
:func:`ebmppl.sample`) and moves states that stay on a discrete support
(:mod:`ebmppl.support`): positions are float arrays of the support's values
(``0./1.`` for :data:`~ebmppl.support.BINARY`, ``-1./+1.`` for
:data:`~ebmppl.support.SPINS`, one-hot rows along the last event axis for
:class:`~ebmppl.support.Categorical`). Each sampler has a static ``support``
option; left ``None`` (the default), :func:`ebmppl.sample` binds the energy's
own support (:func:`bind_support`), so ``sample(ising_energy, key,
sampler="gibbs_with_gradients")`` just works.

A *coordinate* is one entry of a binary state, or one categorical variable
(one row of ``K`` one-hot entries) of a categorical state. ``f`` below is the
log-density ``-E(x)/T``.

===========================  ======  ===========================================================
sampler (registry name)      exact   one step
===========================  ======  ===========================================================
``gibbs``                    yes     one coordinate (uniformly chosen) redrawn from its exact
                                     conditional; ``sweep=True``: every coordinate in turn
``discrete_metropolis``      yes     one coordinate proposed to another value (uniformly),
                                     Metropolis test
``gibbs_with_gradients``     yes     one coordinate (and, categorical, its new value) proposed
                                     from the gradient's estimate of every change of ``f``
                                     (Grathwohl et al. 2021), Metropolis–Hastings test
``dmala``                    yes     every coordinate proposed independently from the discrete
                                     Langevin proposal (Zhang et al. 2022), MH test
``dula``                     no      the same proposal, always accepted (biased; bias shrinks
                                     with the step size)
``block_gibbs``              yes     every block of mutually non-interacting coordinates redrawn
                                     at once from its exact conditional (e.g. an RBM's visible,
                                     then hidden layer)
===========================  ======  ===========================================================

Per-step statistics are :class:`DiscreteStats`: the four every sampler
reports plus ``num_energy_evals``, the forward evaluations of the energy the
step spent (an evaluation of the gradient counts once in both
``num_grad_evals`` and ``num_energy_evals``: it yields the value too). Gibbs
samplers have no accept/reject step: their ``acceptance_rate`` is ``nan``.

References
----------
Grathwohl, Swersky, Hashemi, Duvenaud & Maddison, "Oops I took a gradient:
scalable sampling for discrete distributions", ICML 2021.
Zhang, Liu & Liu, "A Langevin-like sampler for discrete distributions", ICML 2022.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ebmppl.samplers.adaptation import NoAdaptation, StepSizeAdaptation
from ebmppl.samplers.base import LogDensityFn, Sampler
from ebmppl.samplers.kernels import _check_positive, _f, _option
from ebmppl.support import Binary, Categorical, Support

__all__ = [
    "DiscreteSampler", "DiscreteState", "GradientState", "DiscreteStats",
    "Gibbs", "DiscreteMetropolis", "GibbsWithGradients", "DMALA", "DULA", "BlockGibbs",
    "gibbs", "discrete_metropolis", "gibbs_with_gradients", "dmala", "dula", "block_gibbs",
    "bind_support", "is_discrete", "DISCRETE_SAMPLERS", "check_blocks", "BlocksInteractError",
]


# ------------------------------------------------------------------ states and statistics
class DiscreteState(NamedTuple):
    """State of the gradient-free discrete samplers: the position and its cached log-density.

    ``init`` at a position under a new log-density (a new θ) recomputes the cache.

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> gibbs(support=SPINS).init(None, jnp.ones(3), lambda x: jnp.sum(x))
    DiscreteState(position=Array([1., 1., 1.], dtype=float32), logdensity=Array(3., dtype=float32))
    """

    position: jax.Array
    logdensity: jax.Array


class GradientState(NamedTuple):
    """State of the gradient-informed samplers (GwG, DMALA, DULA): position, log-density and its gradient.

    The gradient is taken with respect to the float encoding of the state (the
    support's values, or the one-hot rows) and has the position's shape.

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> s = gibbs_with_gradients(support=BINARY).init(None, jnp.array([0.0, 1.0]), lambda x: 2.0 * x[0] - x[1])
    >>> s.logdensity.tolist(), s.logdensity_grad.tolist()
    (-1.0, [2.0, -1.0])
    """

    position: jax.Array
    logdensity: jax.Array
    logdensity_grad: jax.Array


class DiscreteStats(NamedTuple):
    """Per-step statistics of the discrete samplers: :class:`~ebmppl.samplers.StepStats`'s four and one more.

    Attributes
    ----------
    acceptance_rate
        Metropolis–Hastings acceptance probability (``nan`` for Gibbs and DULA: no accept/reject step).
    is_divergent
        Always ``False`` (no integrator).
    num_grad_evals
        Gradient evaluations of the energy spent on the step.
    logdensity
        ``-E(x)/T`` at the new state.
    num_energy_evals
        Evaluations of the energy spent on the step, those that came with a
        gradient included. With thinning, :func:`ebmppl.samplers.run_chains`
        sums them over the thinned steps (as it sums ``num_grad_evals``).

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> s, ld = gibbs(support=SPINS, sweep=True), lambda x: 0.3 * jnp.sum(x[:-1] * x[1:])
    >>> _, stats = s.step(jax.random.key(0), s.init(None, jnp.ones(5), ld), ld, {})
    >>> int(stats.num_energy_evals), int(stats.num_grad_evals), bool(jnp.isnan(stats.acceptance_rate))
    (5, 0, True)
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    logdensity: jax.Array
    num_energy_evals: jax.Array


def _stats(acceptance: Any, logdensity: Any, grad_evals: int, energy_evals: int) -> DiscreteStats:
    return DiscreteStats(_f(acceptance), jnp.zeros((), bool), jnp.asarray(grad_evals, jnp.int32), _f(logdensity),
                         jnp.asarray(energy_evals, jnp.int32))


def _cumsum(weights: jax.Array) -> jax.Array:
    """Cumulative sums along the last axis: a matmul with a triangular matrix up to 256 entries, a parallel
    prefix sum beyond (XLA:CPU's ``cumsum`` is a quadratic reduce-window: 4× slower than either at 64)."""
    n = weights.shape[-1]
    if n <= 256:
        return weights @ jnp.triu(jnp.ones((n, n), weights.dtype))
    return jax.lax.associative_scan(jnp.add, weights, axis=-1)


def _categorical_with_log_prob(key: jax.Array, logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """An index drawn with probabilities ``softmax(logits)`` along the last axis, and its log-probability.

    ONE uniform per draw, by inverting the cumulative distribution, instead of
    ``jax.random.categorical``'s Gumbel trick with one random number per category: on CPU the random bits
    are the cost of a step (Gibbs-with-Gradients over 64 coordinates ran ~8× slower with Gumbels). Entries
    of probability zero (``-inf`` logits) are never drawn.
    """
    top = jnp.max(logits, axis=-1, keepdims=True)
    weights = jnp.exp(logits - top)
    cumulative = _cumsum(weights)
    total = cumulative[..., -1:]
    u = (1.0 - jax.random.uniform(key, total.shape)) * total  # in (0, total]
    index = jnp.minimum(jnp.sum(cumulative < u, axis=-1), logits.shape[-1] - 1)
    chosen = jnp.take_along_axis(logits - top, index[..., None], axis=-1)
    return index, (chosen - jnp.log(total))[..., 0]


def _categorical(key: jax.Array, logits: jax.Array) -> jax.Array:
    """An index drawn with probabilities ``softmax(logits)`` along the last axis (see above)."""
    return _categorical_with_log_prob(key, logits)[0]


def _accept_probability(log_ratio: jax.Array) -> jax.Array:
    """``min(1, exp(log_ratio))``; a NaN ratio (a proposal at a NaN log-density) is a rejection."""
    return jnp.where(jnp.isnan(log_ratio), 0.0, jnp.exp(jnp.minimum(log_ratio, 0.0)))


# ------------------------------------------------------------------ supports
def is_discrete(support: Any) -> bool:
    """Whether ``support`` is a discrete :class:`~ebmppl.support.Support` (binary or categorical).

    Examples
    --------
    >>> from ebmppl.support import BINARY, REAL
    >>> is_discrete(BINARY), is_discrete(REAL), is_discrete(None)
    (True, False, False)
    """
    return isinstance(support, Support) and bool(support.is_discrete)


def _is_categorical(support: Any) -> bool:
    return isinstance(support, Categorical)


def _same(value: Any) -> Any:
    """The ``support`` option's converter: kept as given (a Support is hashable), checked by ``__check_init__``."""
    return value


def _check_support(support: Any, cls: str) -> None:
    if support is not None and not isinstance(support, (Binary, Categorical)):
        raise TypeError(f"{cls}(support=...) must be a discrete support: ebmppl.support.BINARY, SPINS, "
                        f"Binary(low, high) or Categorical(num_categories); got {support!r}. Leave it None to let "
                        "ebmppl.sample bind the energy's support.")


class _Coordinates(NamedTuple):
    """How a state is seen by the kernels: flat coordinates (binary ``(D,)``, categorical ``(D, K)``)."""

    shape: tuple[int, ...]
    categorical: bool
    low: float
    high: float
    num_categories: int

    def flat(self, x: jax.Array) -> jax.Array:
        return x.reshape(-1, self.num_categories) if self.categorical else x.reshape(-1)

    def function(self, logdensity_fn: LogDensityFn) -> Callable[[jax.Array], jax.Array]:
        return lambda flat: logdensity_fn(flat.reshape(self.shape))

    def flip(self, values: jax.Array) -> jax.Array:
        """The other value of a binary coordinate."""
        return self.low + self.high - values


# ------------------------------------------------------------------ the base class
class DiscreteSampler(Sampler):
    """What the discrete samplers share: a static ``support`` (bound by :func:`ebmppl.sample` when ``None``).

    A new discrete sampler subclasses this class (so that :func:`bind_support`
    treats it as one) and declares a ``support`` field. Its states hold the
    support's values as floats.

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> isinstance(gibbs(), DiscreteSampler), gibbs().support is None, gibbs(support=SPINS).support == SPINS
    (True, True, True)
    """

    exact: ClassVar[bool] = True
    warmup = NoAdaptation()

    def __check_init__(self) -> None:
        _check_support(getattr(self, "support", None), type(self).__name__)

    def _coordinates(self, position: jax.Array) -> _Coordinates:
        support = getattr(self, "support", None)
        if support is None:
            raise TypeError(f"{type(self).__name__} has no support to move on: build it with "
                            f"support=ebmppl.support.BINARY (or SPINS, Categorical(K)), or sample through "
                            "ebmppl.sample, which binds the energy's support.")
        shape = tuple(position.shape)
        if _is_categorical(support):
            k = int(support.num_categories)
            if not shape or shape[-1] != k:
                raise ValueError(f"{type(self).__name__}: a state of {support!r} is one-hot along its last axis of "
                                 f"length {k}, but the position has shape {shape}; declare the energy's "
                                 f"event_shape as (..., {k}).")
            return _Coordinates(shape, True, 0.0, 1.0, k)
        return _Coordinates(shape, False, float(support.low), float(support.high), 2)

    def default_params(self, dim):
        return {}


class _Cached(DiscreteSampler):
    def init(self, key, position, logdensity_fn):
        return DiscreteState(position, _f(logdensity_fn(position)))


class _WithGradient(DiscreteSampler):
    def init(self, key, position, logdensity_fn):
        value, grad = jax.value_and_grad(logdensity_fn)(position)
        return GradientState(position, _f(value), grad)


# ------------------------------------------------------------------ Gibbs
def _gibbs_site(key, x, ld, f, i, c: _Coordinates):
    """Coordinate ``i`` redrawn from its conditional: ``(x, log-density, energy evaluations)``."""
    if c.categorical:
        candidates = jnp.broadcast_to(x, (c.num_categories, *x.shape)).at[:, i, :].set(
            jnp.eye(c.num_categories, dtype=x.dtype))
        lds = jax.vmap(f)(candidates)
        k = _categorical(key, lds)
        return candidates[k], lds[k]
    flipped = x.at[i].set(c.flip(x[i]))
    ld_flipped = f(flipped)
    flip = jax.random.uniform(key) < jax.nn.sigmoid(ld_flipped - ld)  # P(other value | rest)
    return jnp.where(flip, flipped, x), jnp.where(flip, ld_flipped, ld)


class Gibbs(_Cached):
    """Single-site Gibbs sampling: a coordinate redrawn from its exact conditional, from the log-density alone.

    The conditional of coordinate ``i`` is computed from the log-density at each
    of its values, the others held fixed: binary, ``P(flip) = σ(f(x with x_i
    flipped) - f(x))`` (one energy evaluation, the current value's is cached);
    categorical, a softmax over the ``K`` log-densities (``K`` evaluations).
    Exact for any energy; no warm-up, no kernel parameters.

    Parameters
    ----------
    sweep
        ``False`` (default): random scan, one uniformly chosen coordinate per
        step. ``True``: systematic scan, every coordinate in order per step
        (a ``lax.scan``), so one step costs ``D`` (or ``D·K``) evaluations.
    support
        The discrete support (default ``None``: :func:`ebmppl.sample` binds the energy's).

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> s, ld = gibbs(support=SPINS), lambda x: 0.5 * jnp.sum(x[:-1] * x[1:])
    >>> state = s.init(None, -jnp.ones(4), ld)
    >>> for k in jax.random.split(jax.random.key(0), 50):
    ...     state, stats = s.step(k, state, ld, {})
    >>> set(state.position.tolist()) <= {-1.0, 1.0}, int(stats.num_energy_evals), s.exact
    (True, 1, True)
    """

    sweep: bool = _option(False, bool)
    support: Support | None = _option(None, _same)
    name = "gibbs"

    def step(self, key, state, logdensity_fn, params):
        c = self._coordinates(state.position)
        f, x = c.function(logdensity_fn), c.flat(state.position)
        per_site = c.num_categories if c.categorical else 1
        if self.sweep:
            def site(carry, inputs):
                i, k = inputs
                return _gibbs_site(k, *carry, f, i, c), None

            sites = jnp.arange(x.shape[0])
            (x, ld), _ = jax.lax.scan(site, (x, state.logdensity), (sites, jax.random.split(key, x.shape[0])))
            evals = per_site * x.shape[0]
        else:
            k_site, k_draw = jax.random.split(key)
            i = jax.random.randint(k_site, (), 0, x.shape[0])
            x, ld = _gibbs_site(k_draw, x, state.logdensity, f, i, c)
            evals = per_site
        return DiscreteState(x.reshape(c.shape), ld), _stats(jnp.nan, ld, 0, evals)


# ------------------------------------------------------------------ random-scan Metropolis
class DiscreteMetropolis(_Cached):
    """Random-scan single-site Metropolis: change one uniformly chosen coordinate, accept by the Metropolis test.

    Binary: the proposal flips the coordinate. Categorical: it moves the
    variable to one of its other ``K - 1`` categories, uniformly. The
    proposal is symmetric, so the acceptance probability is
    ``min(1, exp(f(x') - f(x)))``. One energy evaluation per step; exact.

    Parameters
    ----------
    support
        The discrete support (default ``None``: :func:`ebmppl.sample` binds the energy's).

    Examples
    --------
    >>> from ebmppl.support import Categorical
    >>> s, ld = discrete_metropolis(support=Categorical(3)), lambda x: jnp.sum(x[:, 0])
    >>> state = s.init(None, jax.nn.one_hot(jnp.array([1, 2]), 3), ld)
    >>> state, stats = s.step(jax.random.key(0), state, ld, {})
    >>> state.position.sum(-1).tolist(), 0.0 <= float(stats.acceptance_rate) <= 1.0
    ([1.0, 1.0], True)
    """

    support: Support | None = _option(None, _same)
    name = "discrete_metropolis"

    def step(self, key, state, logdensity_fn, params):
        c = self._coordinates(state.position)
        f, x = c.function(logdensity_fn), c.flat(state.position)
        k_site, k_value, k_accept = jax.random.split(key, 3)
        i = jax.random.randint(k_site, (), 0, x.shape[0])
        if c.categorical:
            current = jnp.argmax(x[i])
            new = (current + jax.random.randint(k_value, (), 1, c.num_categories)) % c.num_categories
            proposal = x.at[i].set(jax.nn.one_hot(new, c.num_categories, dtype=x.dtype))
        else:
            proposal = x.at[i].set(c.flip(x[i]))
        ld_new = f(proposal)
        log_ratio = ld_new - state.logdensity
        accept = jnp.log(jax.random.uniform(k_accept)) < log_ratio
        x, ld = jnp.where(accept, proposal, x), jnp.where(accept, ld_new, state.logdensity)
        return DiscreteState(x.reshape(c.shape), ld), _stats(_accept_probability(log_ratio), ld, 0, 1)


# ------------------------------------------------------------------ Gibbs with gradients
def _gwg_logits(x, grad, c: _Coordinates):
    """``d̃/2`` over the proposals: binary ``(D,)`` (flip i), categorical ``(D·K,)`` (move i to k, k ≠ current)."""
    if c.categorical:
        # first-order change of f when variable i moves from its category to k: g_ik − g_i,current
        d = grad - jnp.sum(grad * x, axis=1, keepdims=True)
        return jnp.where(x > 0.5, -jnp.inf, d / 2.0).reshape(-1)
    return (c.flip(x) - x) * grad / 2.0  # d̃_i = ∇_i f · (flipped − current): −(2x_i − 1)∇_i f on {0, 1}


class GibbsWithGradients(_WithGradient):
    """Gibbs with Gradients (Grathwohl, Swersky, Hashemi, Duvenaud & Maddison, ICML 2021): exact, gradient-informed.

    The gradient of the log-density estimates, to first order, how ``f``
    changes under every single-coordinate move at once: ``d̃_i = ∇_i f(x)·(x̄_i −
    x_i)`` for flipping a binary coordinate to its other value ``x̄_i`` (on
    ``{0, 1}`` that is ``−(2x_i − 1)∇_i f(x)``; on ``±1``, ``−2x_i∇_i f(x)``),
    and ``d̃_ik = ∇_ik f(x) − ∇_ic f(x)`` for moving categorical variable ``i``
    from its category ``c`` to ``k`` (one-hot encoding). One move is proposed
    from ``q(move | x) ∝ exp(d̃/2)`` and accepted with probability
    ``min(1, exp(f(x') − f(x)) q(reverse move | x') / q(move | x))``, the
    reverse proposal computed from the gradient at ``x'``. So a step costs one
    energy-and-gradient evaluation (at the proposal; the current state's is
    cached) and leaves the target exactly invariant. No kernel parameters.

    Parameters
    ----------
    support
        The discrete support (default ``None``: :func:`ebmppl.sample` binds the energy's).

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> s, ld = gibbs_with_gradients(support=SPINS), lambda x: 0.4 * jnp.sum(x[:-1] * x[1:]) + 0.2 * jnp.sum(x)
    >>> state = s.init(None, -jnp.ones(6), ld)
    >>> for k in jax.random.split(jax.random.key(0), 30):
    ...     state, stats = s.step(k, state, ld, {})
    >>> set(state.position.tolist()) <= {-1.0, 1.0}, int(stats.num_grad_evals), s.exact
    (True, 1, True)
    """

    support: Support | None = _option(None, _same)
    name = "gibbs_with_gradients"

    def step(self, key, state, logdensity_fn, params):
        c = self._coordinates(state.position)
        f, x, grad = c.function(logdensity_fn), c.flat(state.position), c.flat(state.logdensity_grad)
        k_move, k_accept = jax.random.split(key)
        logits = _gwg_logits(x, grad, c)
        move, log_forward = _categorical_with_log_prob(k_move, logits)
        if c.categorical:
            i, k = move // c.num_categories, move % c.num_categories
            back = i * c.num_categories + jnp.argmax(x[i])  # the reverse move: i back to its category
            proposal = x.at[i].set(jax.nn.one_hot(k, c.num_categories, dtype=x.dtype))
        else:
            back = move
            proposal = x.at[move].set(c.flip(x[move]))
        ld_new, grad_new = jax.value_and_grad(f)(proposal)
        logits_new = _gwg_logits(proposal, grad_new, c)
        log_reverse = logits_new[back] - jax.nn.logsumexp(logits_new)
        log_ratio = ld_new - state.logdensity + log_reverse - log_forward
        accept = jnp.log(jax.random.uniform(k_accept)) < log_ratio
        pick = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
        new_state = GradientState(pick(proposal, x).reshape(c.shape), pick(ld_new, state.logdensity),
                                  pick(grad_new, grad).reshape(c.shape))
        return new_state, _stats(_accept_probability(log_ratio), new_state.logdensity, 1, 1)


# ------------------------------------------------------------------ discrete Langevin (DMALA / DULA)
def _langevin_logits(x, grad, step_size, c: _Coordinates):
    """Per-coordinate log-weights of the discrete Langevin proposal,
    ``½∇f(x)_i(x'_i − x_i) − (x'_i − x_i)²/(2α)``: binary ``(D,)`` logits of flipping (staying is 0), the
    distance measured in units of ``high − low`` (so ``α`` means the same on ``{0, 1}`` and ``±1``);
    categorical ``(D, K)`` (``‖e_k − e_c‖² = 2`` for ``k ≠ c``)."""
    if c.categorical:
        d = grad - jnp.sum(grad * x, axis=1, keepdims=True)
        return 0.5 * d - (1.0 - x) / step_size
    delta = c.flip(x) - x
    return 0.5 * grad * delta - (delta / (c.high - c.low)) ** 2 / (2.0 * step_size)


def _langevin_propose(key, x, grad, step_size, c: _Coordinates):
    """A proposal drawn coordinate-wise and ``log q(x' | x)``."""
    logits = _langevin_logits(x, grad, step_size, c)
    if c.categorical:
        k, log_q = _categorical_with_log_prob(key, logits)
        return jax.nn.one_hot(k, c.num_categories, dtype=x.dtype), jnp.sum(log_q)
    flip = jax.random.uniform(key, x.shape) < jax.nn.sigmoid(logits)
    log_q = jnp.sum(jnp.where(flip, jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)))
    return jnp.where(flip, c.flip(x), x), log_q


def _langevin_log_q(x_to, x_from, grad_from, step_size, c: _Coordinates):
    """``log q(x_to | x_from)`` of the discrete Langevin proposal."""
    logits = _langevin_logits(x_from, grad_from, step_size, c)
    if c.categorical:
        return jnp.sum(jax.nn.log_softmax(logits, axis=-1) * x_to)
    flipped = x_to != x_from
    return jnp.sum(jnp.where(flipped, jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)))


class _DiscreteLangevin(_WithGradient):
    def __check_init__(self):
        _check_positive("step_size", self.step_size)

    def default_params(self, dim):
        return {"step_size": _f(self.step_size)}

    def _propose(self, key, state, logdensity_fn, params):
        c = self._coordinates(state.position)
        f, x, grad = c.function(logdensity_fn), c.flat(state.position), c.flat(state.logdensity_grad)
        proposal, log_forward = _langevin_propose(key, x, grad, params["step_size"], c)
        ld_new, grad_new = jax.value_and_grad(f)(proposal)
        return c, f, x, grad, proposal, log_forward, ld_new, grad_new


class DMALA(_DiscreteLangevin):
    """Discrete Metropolis-adjusted Langevin (Zhang, Liu & Liu, ICML 2022): every coordinate at once; exact.

    Each coordinate is proposed independently,
    ``q(x'_i | x) ∝ exp(½∇f(x)_i(x'_i − x_i) − (x'_i − x_i)²/(2α))`` over its
    values (categorical variables: their one-hot rows, so a move to another
    category costs ``‖e_k − e_c‖²/(2α) = 1/α``), and the whole proposal is
    accepted by a Metropolis–Hastings test with the reverse proposal's
    probability from the gradient at ``x'``. One energy-and-gradient
    evaluation per step. The step size ``α`` (kernel parameter ``step_size``)
    sets how many coordinates move: warm-up adapts it by dual averaging towards
    acceptance 0.574 (MALA's optimum, carried over by analogy; Zhang et al.
    tune ``α`` by hand), as it does MALA's.

    Parameters
    ----------
    step_size
        ``α`` before warm-up.
    support
        The discrete support (default ``None``: :func:`ebmppl.sample` binds the energy's).

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> s, ld = dmala(step_size=0.5, support=BINARY), lambda x: jnp.sum(x[:-1] * x[1:]) - 0.5 * jnp.sum(x)
    >>> state, stats = s.step(jax.random.key(0), s.init(None, jnp.zeros(8), ld), ld, s.default_params(8))
    >>> set(state.position.tolist()) <= {0.0, 1.0}, s.warmup, s.target_acceptance
    (True, StepSizeAdaptation(), 0.574)
    """

    step_size: float = _option(0.2)
    support: Support | None = _option(None, _same)
    name, warmup, target_acceptance = "dmala", StepSizeAdaptation(), 0.574

    def step(self, key, state, logdensity_fn, params):
        k_propose, k_accept = jax.random.split(key)
        c, f, x, grad, proposal, log_forward, ld_new, grad_new = self._propose(k_propose, state, logdensity_fn,
                                                                                params)
        log_reverse = _langevin_log_q(x, proposal, grad_new, params["step_size"], c)
        log_ratio = ld_new - state.logdensity + log_reverse - log_forward
        accept = jnp.log(jax.random.uniform(k_accept)) < log_ratio
        pick = lambda new, old: jnp.where(accept, new, old)  # noqa: E731
        new_state = GradientState(pick(proposal, x).reshape(c.shape), pick(ld_new, state.logdensity),
                                  pick(grad_new, grad).reshape(c.shape))
        return new_state, _stats(_accept_probability(log_ratio), new_state.logdensity, 1, 1)


class DULA(_DiscreteLangevin):
    """Discrete unadjusted Langevin (Zhang, Liu & Liu, ICML 2022): DMALA's proposal, always accepted. Biased.

    Its stationary law is not the target (exact only for log-quadratic ``f``
    in the limit, Zhang et al. Thm 5.1); the bias shrinks with the step size
    ``α``, and so does the number of coordinates that move. No warm-up: choose
    ``α``. Use :class:`DMALA` for exact draws.

    Parameters
    ----------
    step_size
        ``α`` (kernel parameter ``step_size``).
    support
        The discrete support (default ``None``: :func:`ebmppl.sample` binds the energy's).

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> s = dula(step_size=0.1, support=SPINS)
    >>> s.exact, s.warmup, round(float(s.default_params(4)["step_size"]), 3)
    (False, NoAdaptation(), 0.1)
    """

    step_size: float = _option(0.1)
    support: Support | None = _option(None, _same)
    name, exact = "dula", False

    def step(self, key, state, logdensity_fn, params):
        c, _, _, _, proposal, _, ld_new, grad_new = self._propose(key, state, logdensity_fn, params)
        return GradientState(proposal.reshape(c.shape), _f(ld_new), grad_new.reshape(c.shape)), \
            _stats(jnp.nan, ld_new, 1, 1)


# ------------------------------------------------------------------ block Gibbs
def _blocks(value: Any) -> tuple[tuple[int, ...], ...] | None:
    """Blocks as a tuple of tuples of flat coordinate indices (hashable), validated: disjoint, non-negative."""
    if value is None:
        return None
    try:
        blocks = tuple(tuple(int(i) for i in (b.tolist() if hasattr(b, "tolist") else b)) for b in value)
    except (TypeError, ValueError):
        raise TypeError(f"blocks must be a sequence of sequences of coordinate indices, e.g. (range(64), "
                        f"range(64, 76)), got {value!r}.") from None
    seen: set[int] = set()
    for b, block in enumerate(blocks):
        if not block:
            raise ValueError(f"blocks[{b}] is empty; every block needs at least one coordinate.")
        if min(block) < 0:
            raise ValueError(f"blocks[{b}] holds a negative index {min(block)}; use flat coordinate indices >= 0.")
        if seen & set(block) or len(set(block)) != len(block):
            repeated = sorted((seen & set(block)) or {i for i in block if block.count(i) > 1})
            raise ValueError(f"blocks must not overlap: coordinate {repeated[0]} appears twice; give each "
                             "coordinate one block.")
        seen |= set(block)
    return blocks


class BlockGibbs(_Cached):
    """Block Gibbs: every block of coordinates redrawn at once from its exact conditional, block after block.

    **Assumption: no interactions inside a block.** The coordinates of a
    block must be conditionally independent given the others (the energy has
    no term coupling two of them), as an RBM's visible units are given its
    hidden units and vice versa. Then the conditional of each coordinate of the
    block is computed from log-density differences with the rest of the state
    held at its current value (vmapped over the block: binary ``P(x_j = other
    value) = σ(f(x with x_j flipped) − f(x))``, categorical a softmax over
    its ``K`` values), and all are drawn at once. If the assumption fails the
    chain targets the wrong law; :func:`check_blocks` tests it on random states.

    One step is one sweep over the blocks in order; it costs, per block,
    one evaluation per coordinate (``K`` per categorical variable) and one
    more for the log-density after the update.

    An RBM's joint energy over ``(v, h)``: :func:`ebmppl.discrete.rbm_joint`
    turns an RBM (or the energy :func:`ebmppl.discrete.rbm` returns) into an
    :class:`~ebmppl.Energy` over the concatenated state ``(v, h)`` (its
    :meth:`~ebmppl.discrete.RBM.joint_energy`); sample it with
    ``block_gibbs.rbm(n_v, n_h)``, whose blocks are the visible indices and the
    hidden indices. (The visible draws alone are then draws of the RBM's
    free-energy model, :func:`ebmppl.discrete.rbm`.)

    Parameters
    ----------
    blocks
        A partition of the flat coordinate indices (categorical: variable
        indices) into blocks, e.g. ``(range(64), range(64, 76))``. Required
        (``None`` only so that the registry can build a default value).
    support
        The discrete support (default ``None``: :func:`ebmppl.sample` binds the energy's).

    Raises
    ------
    ValueError
        Blocks that overlap, are empty, or (at the first step) do not cover every coordinate.

    Examples
    --------
    A chain of 6 spins with nearest-neighbour couplings: the even sites do not
    interact with each other, nor the odd ones:

    >>> from ebmppl.support import SPINS
    >>> ld = lambda x: 0.5 * jnp.sum(x[:-1] * x[1:])
    >>> s = block_gibbs(blocks=((0, 2, 4), (1, 3, 5)), support=SPINS)
    >>> state, stats = s.step(jax.random.key(0), s.init(None, jnp.ones(6), ld), ld, {})
    >>> int(stats.num_energy_evals)   # 3 + 1 per block
    8
    """

    blocks: tuple[tuple[int, ...], ...] | None = _option(None, _blocks)
    support: Support | None = _option(None, _same)
    name = "block_gibbs"

    @classmethod
    def rbm(cls, num_visible: int, num_hidden: int, support: Support | None = None) -> BlockGibbs:
        """Block Gibbs for an RBM's joint state ``(v, h)`` concatenated: the visible block, then the hidden one.

        Examples
        --------
        >>> block_gibbs.rbm(3, 2).blocks
        ((0, 1, 2), (3, 4))
        """
        return cls(blocks=(range(num_visible), range(num_visible, num_visible + num_hidden)), support=support)

    def step(self, key, state, logdensity_fn, params):
        if self.blocks is None:
            raise ValueError("block_gibbs needs blocks=...: a partition of the coordinates into groups that do not "
                             "interact, e.g. block_gibbs(blocks=(range(n_v), range(n_v, n_v + n_h))) or "
                             "block_gibbs.rbm(n_v, n_h) for an RBM's joint state.")
        c = self._coordinates(state.position)
        f, x, ld = c.function(logdensity_fn), c.flat(state.position), state.logdensity
        covered = sorted(i for block in self.blocks for i in block)
        if covered != list(range(x.shape[0])):
            beyond = covered and covered[-1] >= x.shape[0]
            raise ValueError(f"blocks must cover each of the {x.shape[0]} coordinates exactly once; "
                             f"{f'coordinate {covered[-1]} is out of range' if beyond else 'some are missing'}.")
        evals = 0
        for block, k in zip(self.blocks, jax.random.split(key, len(self.blocks))):
            idx = jnp.asarray(block)
            if c.categorical:
                eye = jnp.eye(c.num_categories, dtype=x.dtype)
                candidates = jax.vmap(lambda j: jax.vmap(lambda e: x.at[j].set(e))(eye))(idx)  # (B, K, D, K)
                lds = jax.vmap(jax.vmap(f))(candidates)
                x = x.at[idx].set(jax.nn.one_hot(_categorical(k, lds), c.num_categories, dtype=x.dtype))
                evals += len(block) * c.num_categories + 1
            else:
                current = x[idx]
                flipped = c.flip(current)
                lds = jax.vmap(lambda j, v: f(x.at[j].set(v)))(idx, flipped)
                flip = jax.random.uniform(k, idx.shape) < jax.nn.sigmoid(lds - ld)
                x = x.at[idx].set(jnp.where(flip, flipped, current))
                evals += len(block) + 1
            ld = f(x)
        return DiscreteState(x.reshape(c.shape), _f(ld)), _stats(jnp.nan, ld, 0, evals)


class BlocksInteractError(ValueError):
    """Two coordinates of a :class:`BlockGibbs` block interact: the blocks would sample the wrong law.

    Examples
    --------
    >>> issubclass(BlocksInteractError, ValueError)
    True
    """


def check_blocks(logdensity_fn: LogDensityFn, blocks: Sequence[Sequence[int]], positions: jax.Array,
                 support: Any, atol: float = 1e-4) -> None:
    """Check :class:`BlockGibbs`'s assumption: no two coordinates of a block interact, at the given states.

    For every pair ``(j, l)`` of a binary block the change of ``f`` on flipping
    both must be the sum of the changes on flipping each (the mixed difference
    ``f(x^{jl}) − f(x^j) − f(x^l) + f(x)`` is zero exactly when the energy has
    no term coupling ``x_j`` and ``x_l``). Binary supports only.

    Parameters
    ----------
    logdensity_fn
        ``-E(x)/T`` of one state (e.g. ``energy.logdensity_fn``).
    blocks
        The blocks, as for :class:`BlockGibbs`.
    positions
        ``(n, *event_shape)`` states to test at (e.g. a few uniform draws of the support).
    support
        The binary support of the states.
    atol
        Largest mixed difference taken as zero.

    Raises
    ------
    ValueError
        Two coordinates of a block interact (the message names them and the block).

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> ld = lambda x: 0.5 * jnp.sum(x[:-1] * x[1:])
    >>> x = SPINS.uniform(jax.random.key(0), (4,), (6,))
    >>> check_blocks(ld, ((0, 2, 4), (1, 3, 5)), x, SPINS)
    >>> check_blocks(ld, ((0, 1, 2), (3, 4, 5)), x, SPINS)
    Traceback (most recent call last):
    ...
    ebmppl.samplers.discrete.BlocksInteractError: blocks[0]: coordinates 0 and 1 interact (mixed difference 2 of the log-density at a test state); block Gibbs needs blocks of non-interacting coordinates.
    """
    if _is_categorical(support) or not is_discrete(support):
        raise TypeError(f"check_blocks tests binary supports only, got {support!r}.")
    blocks = _blocks(blocks)
    positions = jnp.asarray(positions)
    n = positions.shape[0]
    flat = positions.reshape(n, -1)
    shape = positions.shape[1:]
    low, high = float(support.low), float(support.high)
    f = jax.vmap(lambda z: logdensity_fn(z.reshape(shape)))

    def flip(z, idx):
        return z.at[:, idx].set(low + high - z[:, idx])

    for b, block in enumerate(blocks):
        pairs = [(j, l) for a, j in enumerate(block) for l in block[a + 1:]]
        if not pairs:
            continue
        js, ls = jnp.asarray([p[0] for p in pairs]), jnp.asarray([p[1] for p in pairs])
        base = f(flat)

        def mixed(j, l):
            return f(flip(flip(flat, j), l)) - f(flip(flat, j)) - f(flip(flat, l)) + base

        worst = jnp.max(jnp.abs(jax.lax.map(lambda jl: mixed(*jl), (js, ls))), axis=1)
        bad = int(jnp.argmax(worst))
        if float(worst[bad]) > atol:
            raise BlocksInteractError(f"blocks[{b}]: coordinates {pairs[bad][0]} and {pairs[bad][1]} interact (mixed "
                             f"difference {float(worst[bad]):.3g} of the log-density at a test state); block Gibbs "
                             "needs blocks of non-interacting coordinates.")


# ------------------------------------------------------------------ binding a support
def bind_support(sampler: Sampler, energy: Any) -> Sampler:
    """``sampler`` ready for ``energy``: a discrete sampler gets the energy's support; mismatches are errors.

    What :func:`ebmppl.sample` does with its ``sampler`` (and what any driver
    running a sampler on an :class:`~ebmppl.Energy` should do). A continuous
    sampler on a continuous energy comes back unchanged.

    Raises
    ------
    TypeError
        A discrete sampler on an energy with a continuous support, or a
        continuous sampler (MALA, HMC, ...) on a discrete energy: the message
        names the samplers to use instead.
    ValueError
        A discrete sampler built for another support than the energy's.

    Examples
    --------
    >>> from ebmppl import Energy
    >>> from ebmppl.support import SPINS
    >>> spins = Energy(lambda p, x: -p * jnp.sum(x[:-1] * x[1:]), 0.5, event_shape=(4,), support=SPINS)
    >>> bind_support(gibbs(), spins).support == SPINS
    True
    >>> from ebmppl.samplers import mala
    >>> bind_support(mala(), spins)
    Traceback (most recent call last):
    ...
    TypeError: sampler 'mala' moves continuous positions, but this energy is discrete (support Binary(low=-1.0, high=1.0)): its draws would leave the support. Use a discrete sampler: block_gibbs, discrete_metropolis, dmala, dula, gibbs, gibbs_with_gradients (e.g. sampler='gibbs_with_gradients').
    """
    support = getattr(energy, "support", None)
    discrete = is_discrete(support)
    if isinstance(sampler, DiscreteSampler):
        if not discrete:
            raise TypeError(f"sampler {sampler.name!r} draws discrete states, but this energy's support is "
                            f"{support if support is not None else 'continuous'!r} (continuous). If its states "
                            "are discrete, declare it: Energy(..., support=ebmppl.support.BINARY, SPINS or "
                            "Categorical(K)); otherwise use a continuous sampler such as 'nuts' or 'mala'.")
        bound = getattr(sampler, "support", None)
        if bound is None:
            return dataclasses.replace(sampler, support=support)
        if bound != support:
            raise ValueError(f"sampler {sampler.name!r} was built for support {bound!r}, but the energy's support "
                             f"is {support!r}; build it without support= (ebmppl.sample binds the energy's) or "
                             f"with support={support!r}.")
        return sampler
    if discrete:
        raise TypeError(f"sampler {sampler.name!r} moves continuous positions, but this energy is discrete (support "
                        f"{support!r}): its draws would leave the support. Use a discrete sampler: "
                        f"{', '.join(sorted(DISCRETE_SAMPLERS))} (e.g. sampler='gibbs_with_gradients').")
    return sampler


# The builders: the classes themselves, under the names the registry and the docs use.
gibbs, discrete_metropolis, gibbs_with_gradients = Gibbs, DiscreteMetropolis, GibbsWithGradients
dmala, dula, block_gibbs = DMALA, DULA, BlockGibbs

#: Registry name → class of the discrete samplers (all registered in :data:`ebmppl.samplers.SAMPLERS`).
DISCRETE_SAMPLERS: dict[str, type[DiscreteSampler]] = {
    cls.name: cls for cls in (Gibbs, DiscreteMetropolis, GibbsWithGradients, DMALA, DULA, BlockGibbs)
}

