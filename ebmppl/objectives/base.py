"""What every training objective returns: a pure ``init``/``step`` trainer over a ``TrainState``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ebmppl.buffer import BufferState

__all__ = ["TrainState", "Trainer", "guard_non_finite", "all_finite", "initial_state", "apply_gradients",
           "buffer_spread"]


class TrainState(NamedTuple):
    """Everything a training run needs to continue exactly where it stopped.

    Attributes
    ----------
    params
        Energy parameters θ.
    opt_state
        Optax state.
    buffer
        Persistent negatives (:class:`~ebmppl.buffer.BufferState`; empty when not persistent).
    key
        PRNG key; every step splits it, so a resumed run draws the same noise.
    step
        Number of completed steps.
    """

    params: Any
    opt_state: Any
    buffer: BufferState
    key: jax.Array
    step: jax.Array


class Trainer(NamedTuple):
    """A training objective as pure functions (BlackJAX/Optax style).

    Attributes
    ----------
    name
        Objective name, e.g. ``"cd"``.
    init
        ``init(key, params) -> TrainState``.
    step
        ``step(state, batch) -> (state, metrics)``: one jit-able update from a
        data batch ``(batch, *event_shape)``. A non-finite loss, gradient or
        parameter leaves the state unchanged and sets ``metrics["finite"]`` to False.
    energy_params
        ``energy_params(state.params)``: the energy's parameters within the
        trained ones (identity, except NCE, which also learns ``log_c``).
    """

    name: str
    init: Callable[[jax.Array, Any], TrainState]
    step: Callable[[TrainState, jax.Array], tuple[TrainState, dict[str, jax.Array]]]
    energy_params: Callable[[Any], Any] = lambda params: params


def all_finite(tree: Any) -> jax.Array:
    """True when every floating leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def guard_non_finite(old: TrainState, new: TrainState, ok: jax.Array) -> TrainState:
    """Keep ``old`` (but advance nothing) where ``ok`` is False: nothing continues on NaN."""
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def initial_state(key: jax.Array, params: Any, optimizer: optax.GradientTransformation,
                  chain_init: Any | None, event_shape: tuple[int, ...]) -> TrainState:
    """A fresh :class:`TrainState`; ``chain_init`` (a ChainInit, or None for no buffer) fills the buffer."""
    if chain_init is None:
        buffer = BufferState(jnp.zeros((0, *event_shape)))
    else:
        k_buffer, key = jax.random.split(key)
        buffer = chain_init.init(k_buffer, event_shape)
    return TrainState(params, optimizer.init(params), buffer, key, jnp.zeros((), jnp.int32))


def apply_gradients(state: TrainState, grads: Any, loss: jax.Array, optimizer: optax.GradientTransformation,
                    buffer: BufferState, key: jax.Array, finite: jax.Array = True) -> tuple[TrainState, jax.Array]:
    """One Optax update with the divergence guard: returns ``(state, ok)``.

    When the loss, the new parameters (or ``finite``, e.g. the negatives) are
    not finite, the previous state is kept, but key and step move on so the
    driver sees where it failed.
    """
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = TrainState(params, opt_state, buffer, key, state.step + 1)
    ok = jnp.isfinite(loss) & all_finite(params) & finite
    return guard_non_finite(state, new, ok)._replace(key=key, step=state.step + 1), ok


def buffer_spread(buffer: BufferState) -> jax.Array:
    """Mean per-coordinate standard deviation of the persistent negatives (nan without a buffer)."""
    return jnp.std(buffer.samples, axis=0).mean() if buffer.samples.shape[0] else jnp.asarray(jnp.nan)
