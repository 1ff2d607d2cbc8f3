"""Composition of energies: products, weighted sums, mixtures, negation, conditioning.

A composed energy is an :class:`~ebmppl.Energy` like any other — it samples,
fits (gradients reach every part's parameters, held as a tuple) and has a
log Z. Densities compose as:

=====================  =====================================  ==========================
composition            energy                                 density
=====================  =====================================  ==========================
:func:`product`        ``Σ_i E_i/T_i``                        ``Π p_i`` (AND)
:func:`weighted_sum`   ``Σ_i w_i E_i/T_i``                     ``Π p_i^{w_i}``
:func:`mixture`        ``-log Σ_i w_i exp(-E_i/T_i)``          ``Σ w_i p̃_i`` (OR)
:func:`negation`       ``E_1/T_1 - w E_2/T_2``                 ``p_1 / p_2^w`` (AND NOT)
:func:`condition`      ``E(x_obs ⊕ x_free)``                   ``p(x_free | x_obs)``
=====================  =====================================  ==========================

Temperature is :meth:`Energy.with_temperature`. Mixture weights act on the
*unnormalised* parts: with ``p̃_i = Z_i p_i`` the mixture's component weights
are ``w_i Z_i / Σ w_j Z_j``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ebmppl.energy import Energy
from ebmppl.support import Binary

__all__ = ["product", "weighted_sum", "mixture", "negation", "condition"]


def _check_parts(energies: Sequence[Energy]) -> tuple[int, ...]:
    if len(energies) < 1 or not all(isinstance(e, Energy) for e in energies):
        raise TypeError("pass one or more ebmppl.Energy objects to compose.")
    shapes = {e.event_shape for e in energies}
    if len(shapes) != 1:
        raise ValueError(f"energies to compose must share one event_shape, got {sorted(shapes)}.")
    return energies[0].event_shape


class _Weighted:
    """``(params, x) -> Σ w_i E_i(params_i, x) / T_i``; hashable, a static field of the Energy."""

    def __init__(self, fns, temps, weights, combine):
        self.fns, self.temps, self.weights, self.combine = tuple(fns), tuple(temps), tuple(weights), combine

    def __call__(self, params, x):
        parts = jnp.stack([f(p, x) / t for f, p, t in zip(self.fns, params, self.temps, strict=True)])
        w = jnp.asarray(self.weights, parts.dtype)
        if self.combine == "sum":
            return jnp.sum(w * parts)
        return -logsumexp(jnp.log(w) - parts)

    def __eq__(self, other):
        return isinstance(other, _Weighted) and (self.fns, self.temps, self.weights, self.combine) == (
            other.fns, other.temps, other.weights, other.combine)

    def __hash__(self):
        return hash((self.fns, self.temps, self.weights, self.combine))


def _compose(energies, weights, combine):
    shape = _check_parts(energies)
    temps = []
    for e in energies:
        if isinstance(e.temperature, jax.core.Tracer):
            raise TypeError("compose energies outside jit: part temperatures must be concrete numbers.")
        temps.append(float(e.temperature))
    supports = {e.support for e in energies}
    if len(supports) > 1:
        raise ValueError(f"energies live on different supports ({', '.join(sorted(map(repr, supports)))}); compose "
                         "energies over the same values, e.g. all on SPINS (map 0/1 states to ±1 inside the energy).")
    fn = _Weighted([e.energy_fn for e in energies], temps, [float(w) for w in weights], combine)
    return Energy(fn, tuple(e.params for e in energies), event_shape=shape, support=energies[0].support)


def product(*energies: Energy) -> Energy:
    """Product of experts: ``E = Σ_i E_i/T_i`` (a conjunction: likely under every part).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl.targets import gaussian
    >>> a = gaussian([1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    >>> b = gaussian([-1.0, 0.0], [[1.0, 0.0], [0.0, 1.0]]).energy
    >>> ab = product(a, b)
    >>> float(ab.energy(jnp.zeros(2)))   # 0.5 + 0.5
    1.0
    """
    return _compose(energies, [1.0] * len(energies), "sum")


def weighted_sum(energies: Sequence[Energy], weights: Sequence[float]) -> Energy:
    """``E = Σ_i w_i E_i/T_i``: a product of tempered experts ``Π p_i^{w_i}``.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> a = gaussian([0.0], [[1.0]]).energy
    >>> float(weighted_sum([a, a], [0.5, 1.5]).energy(jnp.ones(1)))
    1.0
    """
    if len(weights) != len(energies):
        raise ValueError(f"weights must have one entry per energy ({len(energies)}), got {len(weights)}.")
    return _compose(list(energies), weights, "sum")


def mixture(energies: Sequence[Energy], weights: Sequence[float] | None = None) -> Energy:
    """Mixture (disjunction): ``E = -log Σ_i w_i exp(-E_i/T_i)``; weights must be positive.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> a = gaussian([-3.0], [[1.0]]).energy
    >>> b = gaussian([3.0], [[1.0]]).energy
    >>> m = mixture([a, b])
    >>> bool(m.energy(jnp.array([3.0])) < m.energy(jnp.array([0.0])))
    True
    """
    weights = [1.0] * len(energies) if weights is None else list(weights)
    if len(weights) != len(energies) or any(float(w) <= 0 for w in weights):
        raise ValueError(f"weights must be {len(energies)} positive numbers, got {weights!r}.")
    return _compose(list(energies), weights, "logsumexp")


def negation(energy: Energy, negated: Energy, weight: float = 1.0) -> Energy:
    """``E = E_1/T_1 - w E_2/T_2``: likely under the first and *unlikely* under the second.

    The result may not be normalisable (``w`` large, or ``E_2`` growing faster
    than ``E_1``); keep ``w`` below the ratio of their growth rates.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> wide = gaussian([0.0], [[4.0]]).energy
    >>> centre = gaussian([0.0], [[1.0]]).energy
    >>> hole = negation(wide, centre, 0.5)
    >>> bool(hole.energy(jnp.zeros(1)) == 0.0)
    True
    """
    if not float(weight) >= 0:
        raise ValueError(f"weight must be >= 0, got {weight!r}.")
    return _compose([energy, negated], [1.0, -float(weight)], "sum")


class _Conditioned:
    def __init__(self, fn, free_index, event_shape):
        self.fn, self.free_index, self.event_shape = fn, free_index, event_shape

    def __call__(self, params, x_free):
        inner, observed = params
        x = observed.reshape(-1).at[self.free_index].set(x_free).reshape(self.event_shape)
        return self.fn(inner, x)

    def __eq__(self, other):
        return isinstance(other, _Conditioned) and (self.fn, self.free_index.tobytes(), self.event_shape) == (
            other.fn, other.free_index.tobytes(), other.event_shape)

    def __hash__(self):
        return hash((self.fn, self.free_index.tobytes(), self.event_shape))


def condition(energy: Energy, observed: jax.Array, mask: jax.Array) -> Energy:
    """The conditional energy of the free entries given the observed ones.

    ``mask`` is True where ``x`` is observed; the result is an energy over the
    ``(num_free,)`` free entries (in row-major order), equal to ``E`` at the
    completed ``x``. Its parameters are ``(energy.params, observed)``.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> e = gaussian([0.0, 0.0], [[1.0, 0.8], [0.8, 1.0]]).energy
    >>> c = condition(e, jnp.array([1.0, 0.0]), jnp.array([True, False]))
    >>> c.event_shape
    (1,)
    """
    import numpy as np

    observed = jnp.asarray(observed)
    mask = np.asarray(mask, dtype=bool)
    if observed.shape != energy.event_shape or mask.shape != energy.event_shape:
        raise ValueError(f"observed and mask must have the event shape {energy.event_shape}; "
                         f"got {observed.shape} and {mask.shape}.")
    free = np.flatnonzero(~mask.reshape(-1))
    if free.size == 0:
        raise ValueError("mask observes every entry: nothing is left to condition on.")
    support = energy.support
    if support.is_discrete:
        if not isinstance(support, Binary):
            raise ValueError(f"condition: a {support!r} energy's free entries would not be one-hot rows; condition "
                             "binary energies (BINARY, SPINS), or a categorical one through its own conditionals.")
        support.check(observed[None], energy.event_shape, "observed")
    fn = _Conditioned(energy.energy_fn, free, energy.event_shape)
    probe = (support.first_state((free.size,)) if support.is_discrete else observed.reshape(-1)[free])
    return Energy(fn, (energy.params, observed), event_shape=(free.size,), temperature=energy.temperature,
                  probe=probe, support=support)
