"""Where negative chains start: replay buffer, short-run from noise, or CD-k from data.

Contrastive divergence needs samples of the current model. Three standard
ways to start the K sampler steps that produce them, each a
:class:`ChainInit` with pure ``init``/``start``/``finish`` functions:

* :func:`replay_buffer` — persistent chains (Tieleman 2008; Du & Mordatch
  2019): starts are drawn from a buffer of past negatives, a fraction
  (default 5 %) re-initialised from noise, and the finished chains written
  back. The buffer lives in the training state and is checkpointed with it.
* :func:`short_run` — non-persistent chains from noise every step
  (Nijkamp et al. 2019).
* :func:`cd_k` — chains started at the data batch (Hinton 2002).

Only positions persist: a sampler's cached log-density and gradient are
recomputed under the current θ at every training step, so they never go stale.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["ChainInit", "BufferState", "uniform_noise", "gaussian_noise", "replay_buffer", "short_run", "cd_k"]

NoiseFn = Callable[[jax.Array, tuple[int, ...]], jax.Array]


def uniform_noise(low: float = -1.0, high: float = 1.0) -> NoiseFn:
    """Noise uniform on the box ``[low, high]`` in every coordinate.

    Examples
    --------
    >>> x = uniform_noise(-2.0, 2.0)(jax.random.key(0), (3, 2))
    >>> x.shape, bool((x >= -2).all() and (x <= 2).all())
    ((3, 2), True)
    """
    if not float(low) < float(high):
        raise ValueError(f"uniform_noise needs low < high, got low={low!r}, high={high!r}.")
    return lambda key, shape: jax.random.uniform(key, shape, minval=low, maxval=high)


def gaussian_noise(scale: float = 1.0, mean: float = 0.0) -> NoiseFn:
    """Gaussian noise ``N(mean, scale²)`` in every coordinate.

    Examples
    --------
    >>> gaussian_noise(0.5)(jax.random.key(0), (4, 2)).shape
    (4, 2)
    """
    if not float(scale) > 0:
        raise ValueError(f"gaussian_noise needs scale > 0, got {scale!r}.")
    return lambda key, shape: mean + scale * jax.random.normal(key, shape)


class BufferState(NamedTuple):
    """Persistent negatives: ``samples`` ``(capacity, *event_shape)``; empty for non-persistent strategies.

    ``log_step_scale`` is ``None`` (no pytree leaf) unless the trainer adapts
    its sampler's step during training
    (:func:`~ebmppl.objectives.contrastive_divergence` with
    ``target_acceptance``): then it holds the log of the factor applied to the
    sampler's step, so a checkpointed run resumes with the step it had.

    Examples
    --------
    >>> state = replay_buffer(100).init(jax.random.key(0), (2,))
    >>> state.samples.shape
    (100, 2)
    >>> cd_k().init(jax.random.key(0), (2,)).samples.shape
    (0, 2)
    """

    samples: jax.Array
    log_step_scale: jax.Array | None = None


class ChainInit(NamedTuple):
    """A chain-initialisation strategy.

    Attributes
    ----------
    name
        ``"replay_buffer"``, ``"short_run"`` or ``"cd_k"``.
    init
        ``init(key, event_shape) -> BufferState``.
    start
        ``start(key, buffer, data_batch) -> (x0, aux)``: chain starts for one
        training step, shaped like ``data_batch``.
    finish
        ``finish(buffer, aux, x_final) -> BufferState``: store finished chains.
    reinit_prob
        Fraction of starts drawn fresh from noise (replay buffer; 1 for short-run, 0 for CD-k).
    noise
        The noise distribution (``None`` for CD-k); training reports the energy
        of fresh noise as a health signal.

    Examples
    --------
    One training step's use of a strategy: start chains, run them, store them.

    >>> strategy = replay_buffer(capacity=8, reinit_prob=0.5)
    >>> buf = strategy.init(jax.random.key(0), (2,))
    >>> x0, aux = strategy.start(jax.random.key(1), buf, jnp.zeros((4, 2)))
    >>> buf = strategy.finish(buf, aux, x0 + 1.0)   # pretend the chains moved by one
    >>> strategy.name, x0.shape, buf.samples.shape
    ('replay_buffer', (4, 2), (8, 2))
    """

    name: str
    init: Callable[[jax.Array, Sequence[int]], BufferState]
    start: Callable[[jax.Array, BufferState, jax.Array], tuple[jax.Array, Any]]
    finish: Callable[[BufferState, Any, jax.Array], BufferState]
    reinit_prob: float
    noise: NoiseFn | None = None


def replay_buffer(capacity: int = 10_000, reinit_prob: float = 0.05, noise: NoiseFn | None = None) -> ChainInit:
    """Persistent chains with a replay buffer (Du & Mordatch 2019).

    Parameters
    ----------
    capacity
        Number of stored negatives.
    reinit_prob
        Probability that a start is drawn from ``noise`` instead of the buffer.
    noise
        Noise distribution for the initial buffer and the re-initialisations
        (default :func:`uniform_noise` on ``[-1, 1]``).

    Examples
    --------
    >>> strategy = replay_buffer(capacity=100, reinit_prob=0.05)
    >>> buf = strategy.init(jax.random.key(0), (2,))
    >>> x0, aux = strategy.start(jax.random.key(1), buf, jnp.zeros((8, 2)))
    >>> buf = strategy.finish(buf, aux, x0 + 1.0)
    >>> buf.samples.shape
    (100, 2)
    """
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ValueError(f"capacity must be an int >= 1, got {capacity!r}.")
    capacity = int(capacity)
    if not 0.0 <= float(reinit_prob) <= 1.0:
        raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob!r}.")
    noise = noise or uniform_noise()

    def init(key, event_shape):
        return BufferState(noise(key, (capacity, *event_shape)))

    def start(key, buffer, batch):
        k_idx, k_mask, k_noise = jax.random.split(key, 3)
        n = batch.shape[0]
        idx = jax.random.randint(k_idx, (n,), 0, capacity)
        fresh = jax.random.bernoulli(k_mask, reinit_prob, (n,))
        fresh = fresh.reshape((n,) + (1,) * (batch.ndim - 1))
        x0 = jnp.where(fresh, noise(k_noise, batch.shape), buffer.samples[idx])
        return x0, idx

    def finish(buffer, idx, x_final):
        return buffer._replace(samples=buffer.samples.at[idx].set(x_final))

    return ChainInit("replay_buffer", init, start, finish, float(reinit_prob), noise)


def short_run(noise: NoiseFn | None = None) -> ChainInit:
    """Non-persistent short-run chains, started from ``noise`` at every step (Nijkamp et al. 2019).

    Examples
    --------
    >>> s = short_run(gaussian_noise(1.0))
    >>> x0, _ = s.start(jax.random.key(0), s.init(jax.random.key(1), (2,)), jnp.zeros((5, 2)))
    >>> x0.shape
    (5, 2)
    """
    noise = noise or uniform_noise()

    def start(key, buffer, batch):
        return noise(key, batch.shape), None

    return ChainInit("short_run", lambda key, shape: BufferState(jnp.zeros((0, *shape))), start,
                     lambda buffer, aux, x: buffer, 1.0, noise)


def cd_k() -> ChainInit:
    """Contrastive divergence CD-k: chains start at the data batch (Hinton 2002).

    Examples
    --------
    >>> s = cd_k()
    >>> x0, _ = s.start(jax.random.key(0), s.init(jax.random.key(1), (2,)), jnp.ones((3, 2)))
    >>> x0.tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    return ChainInit("cd_k", lambda key, shape: BufferState(jnp.zeros((0, *shape))),
                     lambda key, buffer, batch: (batch, None), lambda buffer, aux, x: buffer, 0.0)


STRATEGIES: dict[str, Callable[..., ChainInit]] = {"replay_buffer": replay_buffer, "short_run": short_run, "cd_k": cd_k}
