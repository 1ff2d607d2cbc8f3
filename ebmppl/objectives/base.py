"""What every training objective returns: a pure ``init``/``step`` trainer over a ``TrainState``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ebmppl.buffer import BufferState

__all__ = ["TrainState", "Trainer", "guard_non_finite", "all_finite", "initial_state", "apply_gradients",
           "buffer_spread", "training_metrics", "METRICS"]

METRICS = ("loss", "cd_gap", "energy_pos", "energy_neg", "energy_noise", "grad_norm", "acceptance_rate",
           "reinit_fraction", "buffer_std", "finite")
"""The metrics every built-in objective reports per step (:func:`training_metrics`); nan where one does not apply."""


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
    positive
        The positive phase's own state (``None`` for a stateless phase, e.g. the data batch; persistent
        posterior chains of :func:`ebmppl.models.mcem`). Last, with a default: states built with five
        fields, and checkpoints written before it existed, still fit.

    Examples
    --------
    >>> state = initial_state(jax.random.key(0), jnp.zeros(2), optax.sgd(0.1), None, (2,))
    >>> int(state.step), state.buffer.samples.shape
    (0, (0, 2))
    """

    params: Any
    opt_state: Any
    buffer: BufferState
    key: jax.Array
    step: jax.Array
    positive: Any = None


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
    check_data
        ``check_data(data)`` or ``None``: validates the training data (an array
        or a tuple such as ``(examples, labels)``) in Python before the first
        step, raising a ``ValueError`` that names what is wrong (e.g. the JEM
        trainer checks that labels lie in ``[0, num_classes)``); :func:`ebmppl.fit`
        calls it on the data and on every batch of an iterator.

    Examples
    --------
    The driver's view of any objective: ``init`` once, then ``step`` per batch.

    >>> from ebmppl import Energy
    >>> from ebmppl.objectives import denoising_score_matching
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> trainer = denoising_score_matching(e, optax.adam(0.1), sigma=0.1)
    >>> state = trainer.init(jax.random.key(0), e.params)
    >>> state, metrics = jax.jit(trainer.step)(state, jnp.ones((32, 2)))
    >>> trainer.name, int(state.step), bool(metrics["finite"])
    ('dsm', 1, True)
    """

    name: str
    init: Callable[[jax.Array, Any], TrainState]
    step: Callable[[TrainState, jax.Array], tuple[TrainState, dict[str, jax.Array]]]
    energy_params: Callable[[Any], Any] = lambda params: params
    check_data: Callable[[Any], None] | None = None


def all_finite(tree: Any) -> jax.Array:
    """True when every floating leaf of ``tree`` is finite.

    Examples
    --------
    >>> bool(all_finite({"w": jnp.ones(2), "n": jnp.arange(3)})), bool(all_finite([jnp.array([1.0, jnp.nan])]))
    (True, False)
    """
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def guard_non_finite(old: TrainState, new: TrainState, ok: jax.Array) -> TrainState:
    """Keep ``old`` (but advance nothing) where ``ok`` is False: nothing continues on NaN.

    Examples
    --------
    >>> old = initial_state(jax.random.key(0), jnp.zeros(2), optax.sgd(0.1), None, (2,))
    >>> new = old._replace(params=jnp.full(2, jnp.nan))
    >>> guard_non_finite(old, new, jnp.asarray(False)).params.tolist()
    [0.0, 0.0]
    """
    return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def initial_state(key: jax.Array, params: Any, optimizer: optax.GradientTransformation,
                  chain_init: Any | None, event_shape: tuple[int, ...]) -> TrainState:
    """A fresh :class:`TrainState`; ``chain_init`` (a ChainInit, or None for no buffer) fills the buffer.

    Examples
    --------
    >>> from ebmppl.buffer import replay_buffer
    >>> state = initial_state(jax.random.key(0), {"w": jnp.zeros(3)}, optax.adam(1e-3), replay_buffer(50), (3,))
    >>> state.buffer.samples.shape, int(state.step)
    ((50, 3), 0)
    """
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

    Examples
    --------
    >>> opt = optax.sgd(0.5)
    >>> state = initial_state(jax.random.key(0), jnp.ones(2), opt, None, (2,))
    >>> state, ok = apply_gradients(state, jnp.ones(2), jnp.asarray(1.0), opt, state.buffer, state.key)
    >>> state.params.tolist(), bool(ok)
    ([0.5, 0.5], True)
    >>> state, ok = apply_gradients(state, jnp.ones(2), jnp.asarray(jnp.nan), opt, state.buffer, state.key)
    >>> state.params.tolist(), bool(ok), int(state.step)
    ([0.5, 0.5], False, 2)
    """
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = state._replace(params=params, opt_state=opt_state, buffer=buffer, key=key, step=state.step + 1)
    ok = jnp.isfinite(loss) & all_finite(params) & finite
    return guard_non_finite(state, new, ok)._replace(key=key, step=state.step + 1), ok


def buffer_spread(buffer: BufferState, negatives: jax.Array) -> jax.Array:
    """Spread of the persistent negatives: mean per-coordinate standard deviation (nan without a buffer).

    Estimated from this step's ``negatives`` (the rows just written back),
    not from the whole buffer: each step then costs O(batch), not O(capacity),
    and averaged over a few steps (as :class:`~ebmppl.health.TrainingHealth`
    does per chunk) it tracks the buffer's spread.

    Examples
    --------
    >>> buf = BufferState(jnp.zeros((100, 2)))
    >>> float(buffer_spread(buf, jnp.array([[0.0, 0.0], [2.0, 4.0]])))
    1.5
    >>> bool(jnp.isnan(buffer_spread(BufferState(jnp.zeros((0, 2))), jnp.ones((4, 2)))))
    True
    """
    if not buffer.samples.shape[0]:
        return jnp.asarray(jnp.nan, negatives.dtype)
    return jnp.std(negatives.reshape(negatives.shape[0], -1), axis=0).mean()


def training_metrics(loss: jax.Array, grads: Any, finite: jax.Array, **values: jax.Array) -> dict[str, jax.Array]:
    """The one metrics definition of a training step: the :data:`METRICS` keys plus any further ``values``.

    ``values`` may give ``energy_pos``, ``energy_neg`` (mean energies of ``x⁺``
    and ``x⁻``; ``cd_gap`` is their difference), ``energy_noise``,
    ``acceptance_rate``, ``reinit_fraction`` and ``buffer_std``; those not
    given are nan. Any other named value (a loss term's ``cross_entropy``, the
    negative phase's ``step_size``) is added as it is. Floating values take
    the loss's dtype.

    Examples
    --------
    >>> m = training_metrics(jnp.float32(1.0), {"w": jnp.ones(4)}, jnp.asarray(True),
    ...                      energy_pos=jnp.float32(-1.0), energy_neg=jnp.float32(0.5), accuracy=jnp.float32(0.9))
    >>> float(m["cd_gap"]), float(m["grad_norm"]), bool(jnp.isnan(m["buffer_std"])), sorted(set(m) - set(METRICS))
    (-1.5, 2.0, True, ['accuracy'])
    """
    dtype = jnp.result_type(loss)
    nan = jnp.asarray(jnp.nan, dtype)
    get = lambda name: jnp.asarray(values.pop(name, nan), dtype)  # noqa: E731
    e_pos, e_neg = get("energy_pos"), get("energy_neg")
    metrics = {
        "loss": loss,
        "cd_gap": e_pos - e_neg,
        "energy_pos": e_pos,
        "energy_neg": e_neg,
        "energy_noise": get("energy_noise"),
        "grad_norm": optax.tree.norm(grads),
        "acceptance_rate": get("acceptance_rate"),
        "reinit_fraction": get("reinit_fraction"),
        "buffer_std": get("buffer_std"),
        "finite": finite,
    }
    for name, value in values.items():
        metrics[name] = jnp.asarray(value, dtype) if jnp.issubdtype(jnp.result_type(value), jnp.floating) else value
    return metrics
