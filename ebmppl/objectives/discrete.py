"""Training discrete energies: support checks, discrete negatives, pseudo-likelihood and ratio matching.

Energies over binary vectors and one-hot categorical variables (``energy.support``, see
:mod:`ebmppl.support`) train through the same :class:`~ebmppl.objectives.Objective` as continuous ones:

* **contrastive divergence** (``objective="cd"``): negatives from a discrete sampler
  (:mod:`ebmppl.samplers.discrete`: ``"gibbs_with_gradients"`` by default, ``"gibbs"``,
  ``"block_gibbs"`` for RBMs, ...) whose chains start uniformly on the support
  (:func:`ebmppl.buffer.support_noise`): persistent (PCD, the default replay buffer), short-run, or CD-k;
* **pseudo-likelihood** (Besag 1975; ``objective="pseudo_likelihood"``): maximise
  ``Σ_i log p(x_i | x_{-i})``. Each conditional is exact: it needs only the energies of the states that
  differ from ``x`` in coordinate ``i`` (one flip for a binary coordinate, ``K`` values for a categorical
  one), all evaluated in one ``vmap``; no sampling, no ``Z``. Consistent for any energy.
* **ratio matching** (Hyvärinen 2007; ``objective="ratio_matching"``, binary supports): minimise
  ``Σ_i g(p(x)/p(x̄ⁱ))²`` with ``g(u) = 1/(1+u)`` and ``x̄ⁱ`` the state with bit ``i`` flipped, i.e.
  ``Σ_i σ(E(x) − E(x̄ⁱ))²``: the discrete counterpart of score matching, consistent too.

The data are checked against the support before training: 0/1 data for a ±1 energy, say, is a
``ValueError`` that names the map to apply.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl.energy import Energy
from ebmppl.objectives.trainer import LossTerm, Objective

__all__ = ["energy_support", "is_discrete", "check_on_support", "SupportCheck", "discrete_negative_sampler",
           "pseudo_log_likelihood", "pseudo_likelihood_loss", "ratio_matching_loss", "PseudoLikelihood",
           "RatioMatching", "pseudo_likelihood", "ratio_matching", "DEFAULT_DISCRETE_SAMPLER"]

DEFAULT_DISCRETE_SAMPLER = "gibbs_with_gradients"
"""The negative-phase sampler of CD on a discrete energy when none is given (Grathwohl et al. 2021)."""


# ---------------------------------------------------------------- supports
def energy_support(energy: Any) -> Any:
    """The energy's :class:`~ebmppl.support.Support` (``None`` for an object without one).

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> e = Energy(lambda p, x: -jnp.sum(x[:-1] * x[1:]), None, event_shape=(4,), support=SPINS)
    >>> energy_support(e) == SPINS
    True
    """
    return getattr(energy, "support", None)


def is_discrete(energy: Any) -> bool:
    """Whether the energy's support is discrete (binary or categorical).

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> is_discrete(Energy(lambda p, x: jnp.sum(x), None, event_shape=(3,), support=BINARY))
    True
    >>> is_discrete(Energy(lambda p, x: jnp.sum(x**2), None, event_shape=(3,)))
    False
    """
    return bool(getattr(energy_support(energy), "is_discrete", False))


def _support_fix(x: np.ndarray, support: Any, event_shape: tuple[int, ...]) -> str:
    """What to do with data that are not on ``support``: the map that puts them there, when it is recognisable."""
    values = np.unique(x) if x.size <= 10_000_000 else np.unique(x.ravel()[:1_000_000])
    low, high = getattr(support, "low", None), getattr(support, "high", None)
    if low is not None and high is not None and values.size <= 2:
        vals = set(float(v) for v in values)
        if vals <= {0.0, 1.0} and (low, high) == (-1.0, 1.0):
            return ("the data are 0/1 but the energy's spins are ±1: pass 2 * x - 1 (or build the energy with "
                    "support=BINARY)")
        if vals <= {-1.0, 1.0} and (low, high) == (0.0, 1.0):
            return ("the data are ±1 but the energy's units are 0/1: pass (x + 1) / 2 (or build the energy with "
                    "support=SPINS)")
        if len(vals) == 2:
            a, b = sorted(vals)
            return (f"the data take the values {a:g}/{b:g} but the energy's are {low:g}/{high:g}: pass "
                    f"{low:g} + (x - {a:g}) * {high - low:g} / {b - a:g}")
    if low is not None:
        return (f"binarise them first, e.g. jnp.where(x > threshold, {high:g}, {low:g}) (ebmppl.data.binarize)")
    k = getattr(support, "num_categories", None)
    if k is not None:
        return (f"categorical states are one-hot along the last axis (event_shape {event_shape}): for integer "
                f"labels pass jax.nn.one_hot(labels, {k})")
    return "map the data onto the energy's support"


def check_on_support(x: Any, support: Any, event_shape: tuple[int, ...], name: str = "data") -> None:
    """Raise a ``ValueError`` naming the fix unless every row of ``x`` ``(n, *event_shape)`` lies on ``support``.

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> check_on_support(jnp.array([[1.0, -1.0]]), SPINS, (2,))           # fine
    >>> check_on_support(jnp.array([[1.0, 0.0]]), SPINS, (2,))
    Traceback (most recent call last):
    ...
    ValueError: data: 1 of 1 examples are not on the energy's support Binary(low=-1.0, high=1.0); the data are 0/1 but the energy's spins are ±1: pass 2 * x - 1 (or build the energy with support=BINARY).
    """
    x = np.asarray(x)
    if x.ndim != len(event_shape) + 1 or tuple(x.shape[1:]) != tuple(event_shape):
        return  # the shape check elsewhere names that problem
    inside = np.asarray(support.contains(jnp.asarray(x), tuple(event_shape)))
    if not inside.all():
        bad = int((~inside).sum())
        raise ValueError(f"{name}: {bad} of {x.shape[0]} examples are not on the energy's support {support!r}; "
                         f"{_support_fix(x, support, tuple(event_shape))}.")


class SupportCheck(eqx.Module):
    """``check(data)``: the data of a discrete fit lie on the energy's support (a hashable ``check_data``).

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> SupportCheck(BINARY, (2,))(jnp.array([[0.0, 1.0]]))
    >>> SupportCheck(BINARY, (2,))((jnp.array([[0.0, 0.5], [1.0, 1.0]]), jnp.zeros(2, int)))
    Traceback (most recent call last):
    ...
    ValueError: data: 1 of 2 examples are not on the energy's support Binary(low=0.0, high=1.0); binarise them first, e.g. jnp.where(x > threshold, 1, 0) (ebmppl.data.binarize).
    """

    support: Any = eqx.field(static=True)
    event_shape: tuple[int, ...] = eqx.field(static=True)

    def __call__(self, data: Any) -> None:
        x = data[0] if isinstance(data, tuple) else data
        check_on_support(x, self.support, self.event_shape)


# ---------------------------------------------------------------- discrete negatives
def discrete_negative_sampler(sampler: Any, energy: Energy) -> Any:
    """The sampler of a discrete energy's negative chains: resolved by name, bound to the energy's support.

    :func:`ebmppl.samplers.discrete.bind_support` does the binding and the checks: a continuous sampler
    (Langevin, MALA, HMC) on a discrete energy, or a discrete sampler on a continuous one, is a
    ``TypeError`` naming the samplers that apply.

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> e = Energy(lambda p, x: -jnp.sum(x[:-1] * x[1:]), None, event_shape=(4,), support=SPINS)
    >>> discrete_negative_sampler("gibbs_with_gradients", e).support == SPINS
    True
    >>> discrete_negative_sampler("mala", e)
    Traceback (most recent call last):
    ...
    TypeError: sampler 'mala' moves continuous positions, but this energy is discrete ...
    """
    from ebmppl.samplers.discrete import bind_support
    from ebmppl.samplers.registry import as_sampler

    return bind_support(as_sampler(sampler), energy)


def _check_chain_init(chain_init: Any, energy: Energy) -> Any:
    """A chain initialisation whose starts lie on the discrete support: the default noise (uniform on
    ``[-1, 1]``, what ``replay_buffer()`` and ``short_run()`` take when given none) is swapped for
    :func:`~ebmppl.buffer.support_noise`; any other continuous noise is an error naming the fix."""
    import dataclasses

    from ebmppl.buffer import GaussianNoise, UniformNoise, support_noise

    noise = getattr(chain_init, "noise", None)
    if noise == UniformNoise():
        return dataclasses.replace(chain_init, noise=support_noise(energy.support))
    if isinstance(noise, (UniformNoise, GaussianNoise)):
        raise ValueError(f"chain_init {chain_init.name!r} draws continuous noise ({noise!r}), but the energy's "
                         f"support is discrete: pass noise=ebmppl.buffer.support_noise(energy.support) (e.g. "
                         "replay_buffer(noise=support_noise(energy.support))), or leave chain_init unset.")
    return chain_init


# ---------------------------------------------------------------- conditionals
def _binary_neighbours(ld, x, support):
    """``(ld(x), ld(x̄ⁱ) for every coordinate i)``, the second of the shape of ``x`` (flattened order)."""
    flat = x.reshape(-1)
    d = flat.shape[0]
    flipped = support.low + support.high - flat
    states = jnp.where(jnp.eye(d, dtype=bool), flipped[None, :], flat[None, :]).reshape((d, *x.shape))
    return ld(x), jax.vmap(ld)(states)


def _categorical_values(ld, x):
    """``ld`` of every state that differs from ``x`` at most in one position: ``(positions, K)``."""
    k = x.shape[-1]
    flat = x.reshape(-1, k)
    p = flat.shape[0]
    eye = jnp.eye(k, dtype=x.dtype)

    def set_position(i, j):
        return flat.at[i].set(eye[j]).reshape(x.shape)

    ii, jj = jnp.meshgrid(jnp.arange(p), jnp.arange(k), indexing="ij")
    states = jax.vmap(jax.vmap(set_position))(ii, jj)  # (p, k, *event_shape)
    return jax.vmap(jax.vmap(ld))(states), flat


def pseudo_log_likelihood(model: Energy, x: jax.Array) -> jax.Array:
    """``Σ_i log p(x_i | x_{-i})`` of every example of ``x`` ``(n, *event_shape)``: exact conditionals, shape ``(n,)``.

    A binary coordinate's conditional is ``σ(log p̃(x) − log p̃(x̄ⁱ))``; a categorical position's is the
    softmax of ``log p̃`` over its ``K`` values with the others held. Costs ``D + 1`` (binary) or ``P·K``
    (categorical) energy evaluations per example, vmapped.

    Examples
    --------
    Independent spins with field ``h``: ``p(x_i = 1) = σ(2h)``, and the pseudo-likelihood is the likelihood.

    >>> from ebmppl.support import SPINS
    >>> e = Energy(lambda h, x: -h * jnp.sum(x), jnp.float32(0.5), event_shape=(3,), support=SPINS)
    >>> pll = pseudo_log_likelihood(e, jnp.ones((1, 3)))
    >>> round(float(pll[0]), 4), round(3 * float(jax.nn.log_sigmoid(1.0)), 4)
    (-0.9398, -0.9398)
    """
    support = energy_support(model)
    ld = model.logdensity_fn
    if getattr(support, "num_categories", None) is not None:
        def one(xi):
            values, flat = _categorical_values(ld, xi)
            return jnp.sum(jnp.sum(flat * values, -1) - jax.nn.logsumexp(values, -1))
    else:
        def one(xi):
            here, flips = _binary_neighbours(ld, xi, support)
            return jnp.sum(jax.nn.log_sigmoid(here - flips))
    return jax.vmap(one)(x)


def pseudo_likelihood_loss(model: Energy, x: jax.Array) -> jax.Array:
    """The negative mean pseudo-log-likelihood of the batch ``x`` (what :class:`PseudoLikelihood` minimises).

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> e = Energy(lambda p, x: 0.0 * jnp.sum(x), None, event_shape=(4,), support=BINARY)
    >>> round(float(pseudo_likelihood_loss(e, jnp.zeros((2, 4)))), 4)   # 4 fair coins: 4 log 2
    2.7726
    """
    return -jnp.mean(pseudo_log_likelihood(model, x))


def ratio_matching_loss(model: Energy, x: jax.Array) -> jax.Array:
    """Ratio matching (Hyvärinen 2007): ``mean_n Σ_i σ(log p̃(x̄ⁱ) − log p̃(x))²`` for binary ``x``.

    ``σ(log p̃(x̄ⁱ) − log p̃(x)) = g(p(x)/p(x̄ⁱ))`` with ``g(u) = 1/(1+u)``: the probability, under the
    model's conditional, of the flipped value of coordinate ``i``. Its minimiser is consistent for the data's
    distribution, like the pseudo-likelihood's, and needs the same ``D + 1`` energies per example.

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> e = Energy(lambda p, x: 0.0 * jnp.sum(x), None, event_shape=(4,), support=BINARY)
    >>> float(ratio_matching_loss(e, jnp.zeros((2, 4))))   # every flip as likely: 4 · (1/2)²
    1.0
    """
    support = energy_support(model)
    if getattr(support, "num_categories", None) is not None:
        raise ValueError("ratio matching is defined for binary supports; for a categorical energy use "
                         "objective='pseudo_likelihood'.")
    ld = model.logdensity_fn

    def one(xi):
        here, flips = _binary_neighbours(ld, xi, support)
        return jnp.sum(jax.nn.sigmoid(flips - here) ** 2)

    return jnp.mean(jax.vmap(one)(x))


class PseudoLikelihood(LossTerm):
    """The pseudo-likelihood term: :func:`pseudo_likelihood_loss` on ``x⁺`` (aux ``pseudo_log_likelihood``).

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> from ebmppl.support import BINARY
    >>> e = Energy(lambda p, x: 0.0 * jnp.sum(x), None, event_shape=(2,), support=BINARY)
    >>> loss, aux = PseudoLikelihood()(e, Phases(None, jnp.zeros((3, 2)), None, None), {})
    >>> round(float(loss), 4), round(float(aux["pseudo_log_likelihood"]), 4)
    (1.3863, -1.3863)
    """

    def __call__(self, model, phases, extra):
        loss = pseudo_likelihood_loss(model, phases.positive)
        return loss, {"pseudo_log_likelihood": -loss}


class RatioMatching(LossTerm):
    """The ratio-matching term (binary supports): :func:`ratio_matching_loss` on ``x⁺``.

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> from ebmppl.support import BINARY
    >>> e = Energy(lambda p, x: 0.0 * jnp.sum(x), None, event_shape=(2,), support=BINARY)
    >>> float(RatioMatching()(e, Phases(None, jnp.zeros((3, 2)), None, None), {})[0])
    0.5
    """

    def __call__(self, model, phases, extra):
        return ratio_matching_loss(model, phases.positive), {}


def _require_discrete(energy: Energy, objective: str) -> None:
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmppl.Energy, got {type(energy).__name__}.")
    if not is_discrete(energy):
        raise ValueError(f"objective {objective!r} needs a discrete energy (Energy(..., support=ebmppl.support."
                         "BINARY / SPINS / Categorical(K))); for a continuous one use 'cd', 'dsm', 'ssm' or 'nce'.")


def pseudo_likelihood(energy: Energy, optimizer: optax.GradientTransformation) -> Objective:
    """A pseudo-likelihood trainer for a binary or categorical energy (no chains, no ``Z``).

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> e = Energy(lambda J, x: -J * jnp.sum(x[:-1] * x[1:]), jnp.float32(0.0), event_shape=(6,), support=SPINS)
    >>> x = jnp.concatenate([jnp.ones((32, 6)), -jnp.ones((32, 6))])   # aligned chains: a strong coupling
    >>> trainer = pseudo_likelihood(e, optax.adam(0.1))
    >>> state = trainer.init(jax.random.key(0), e.params)
    >>> step = jax.jit(trainer.step)
    >>> for _ in range(30):
    ...     state, metrics = step(state, x)
    >>> trainer.name, float(state.params) > 1.0
    ('pseudo_likelihood', True)
    """
    _require_discrete(energy, "pseudo_likelihood")
    return Objective("pseudo_likelihood", energy, optimizer, PseudoLikelihood(),
                     check_data=SupportCheck(energy_support(energy), tuple(energy.event_shape)))


def ratio_matching(energy: Energy, optimizer: optax.GradientTransformation) -> Objective:
    """A ratio-matching trainer (Hyvärinen 2007) for a binary energy (no chains, no ``Z``).

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> e = Energy(lambda b, x: -jnp.sum(b * x), jnp.zeros(3), event_shape=(3,), support=BINARY)
    >>> ratio_matching(e, optax.adam(0.1)).name
    'ratio_matching'
    """
    _require_discrete(energy, "ratio_matching")
    if getattr(energy_support(energy), "num_categories", None) is not None:
        raise ValueError("ratio matching is defined for binary supports; for a categorical energy use "
                         "objective='pseudo_likelihood'.")
    return Objective("ratio_matching", energy, optimizer, RatioMatching(),
                     check_data=SupportCheck(energy_support(energy), tuple(energy.event_shape)))
