"""Energies over (x, y): inference ŷ = argmin_y E(x, y) and the structured training losses.

Following LeCun et al., "A tutorial on energy-based learning" (2006): an
energy ``energy_fn(params, x, y) -> scalar`` scores how compatible an answer
``y`` is with an input ``x``; inference is minimisation over ``y`` —
by gradient descent (Optax) when ``y`` is continuous, by exhaustive search
over a small candidate set when it is discrete. Training shapes the energy
surface with one of four losses, written here for a discrete answer set
(energies ``(n, K)`` of every candidate, true indices ``(n,)``):

==================  ==============================================  =========================
loss                per example                                     pulls up
==================  ==============================================  =========================
energy              ``E(x, y*)``                                    nothing (may collapse)
perceptron          ``E(x, y*) - min_y E(x, y)``                    the current best answer
hinge               ``max(0, m + E(x, y*) - E(x, ȳ))``              the most offending wrong ȳ
log (NLL)           ``E(x, y*) + log Σ_y exp(-E(x, y))``             every answer, by p(y|x)
==================  ==============================================  =========================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import logsumexp

__all__ = ["argmin_continuous", "argmin_discrete", "candidate_energies", "energy_loss", "perceptron_loss",
           "hinge_loss", "log_loss"]

EnergyXY = Callable[[Any, jax.Array, jax.Array], jax.Array]


def argmin_continuous(
    energy_fn: EnergyXY,
    params: Any,
    x: jax.Array,
    y0: jax.Array,
    *,
    optimizer: optax.GradientTransformation | None = None,
    num_steps: int = 200,
) -> jax.Array:
    """``ŷ = argmin_y E(x, y)`` by gradient descent from ``y0``, for a batch (vmapped, one compiled scan).

    Examples
    --------
    >>> E = lambda p, x, y: jnp.sum((y - p @ x) ** 2)
    >>> A = jnp.array([[1.0, 2.0], [0.0, -1.0]])
    >>> y = argmin_continuous(E, A, jnp.ones((3, 2)), jnp.zeros((3, 2)), optimizer=optax.sgd(0.1), num_steps=100)
    >>> [round(float(v), 3) for v in y[0]]
    [3.0, -1.0]
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps!r}.")
    optimizer = optimizer or optax.adam(0.05)

    def solve(xi, yi):
        grad = jax.grad(lambda y: energy_fn(params, xi, y))

        def body(carry, _):
            y, state = carry
            updates, state = optimizer.update(grad(y), state, y)
            return (optax.apply_updates(y, updates), state), None

        (y, _), _ = jax.lax.scan(body, (yi, optimizer.init(yi)), None, length=int(num_steps))
        return y

    return jax.jit(jax.vmap(solve))(jnp.asarray(x), jnp.asarray(y0))


def candidate_energies(energy_fn: EnergyXY, params: Any, x: jax.Array, candidates: jax.Array) -> jax.Array:
    """Energies ``(n, K)`` of every candidate answer ``candidates[k]`` for every input ``x[i]``.

    Examples
    --------
    >>> energy = lambda p, x, y: jnp.sum((x - y) ** 2)
    >>> candidate_energies(energy, None, jnp.array([[0.0], [1.0]]), jnp.array([[0.0], [1.0], [2.0]])).tolist()
    [[0.0, 1.0, 4.0], [1.0, 0.0, 1.0]]
    """
    return jax.vmap(lambda xi: jax.vmap(lambda yk: energy_fn(params, xi, yk))(candidates))(x)


def argmin_discrete(energy_fn: EnergyXY, params: Any, x: jax.Array, candidates: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Exhaustive ``ŷ = argmin_k E(x, candidates[k])``: returns (indices ``(n,)``, energies ``(n, K)``).

    Examples
    --------
    >>> E = lambda p, x, y: (x - y) ** 2
    >>> idx, _ = argmin_discrete(E, None, jnp.array([0.1, 2.9]), jnp.array([0.0, 1.0, 2.0, 3.0]))
    >>> idx.tolist()
    [0, 3]
    """
    energies = candidate_energies(energy_fn, params, jnp.asarray(x), jnp.asarray(candidates))
    return jnp.argmin(energies, axis=1), energies


def _true(energies, labels):
    return jnp.take_along_axis(energies, labels[:, None], axis=1)[:, 0]


def energy_loss(energies: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean ``E(x, y*)``: pushes the correct answer down and nothing up.

    Examples
    --------
    >>> float(energy_loss(jnp.array([[1.0, 2.0], [0.5, -1.0]]), jnp.array([0, 1])))
    0.0
    """
    return jnp.mean(_true(energies, labels))


def perceptron_loss(energies: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean ``E(x, y*) - min_y E(x, y)`` (zero once the correct answer has the lowest energy; no margin).

    Examples
    --------
    >>> float(perceptron_loss(jnp.array([[1.0, 2.0], [0.5, -1.0]]), jnp.array([1, 1])))
    0.5
    """
    return jnp.mean(_true(energies, labels) - jnp.min(energies, axis=1))


def hinge_loss(energies: jax.Array, labels: jax.Array, margin: float = 1.0) -> jax.Array:
    """Mean ``max(0, m + E(x, y*) - E(x, ȳ))`` with ȳ the most offending incorrect answer.

    Examples
    --------
    >>> float(hinge_loss(jnp.array([[0.0, 3.0], [0.0, 0.5]]), jnp.array([0, 0]), margin=1.0))
    0.25
    """
    if not float(margin) >= 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}.")
    wrong = jnp.where(jax.nn.one_hot(labels, energies.shape[1], dtype=bool), jnp.inf, energies)
    return jnp.mean(jax.nn.relu(margin + _true(energies, labels) - jnp.min(wrong, axis=1)))


def log_loss(energies: jax.Array, labels: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Negative log-likelihood ``E(x, y*)/T + log Σ_y exp(-E(x, y)/T)`` (softmax over answers).

    Examples
    --------
    >>> round(float(log_loss(jnp.zeros((1, 2)), jnp.array([0]))), 4)   # log 2
    0.6931
    """
    e = energies / temperature
    return jnp.mean(_true(e, labels) + logsumexp(-e, axis=1))
