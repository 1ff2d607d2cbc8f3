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

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.sharding import constrain_replicated

__all__ = ["ChainInit", "BufferState", "UniformNoise", "GaussianNoise", "SupportNoise", "ReplayBuffer", "ShortRun",
           "CDk", "uniform_noise", "gaussian_noise", "support_noise", "replay_buffer", "short_run", "cd_k"]

NoiseFn = Callable[[jax.Array, tuple[int, ...]], jax.Array]


class UniformNoise(eqx.Module):
    """Noise uniform on ``[low, high]`` in every coordinate: ``noise(key, shape)``. A value (see :class:`ChainInit`).

    Examples
    --------
    >>> UniformNoise(0.0, 2.0)(jax.random.key(0), (3,)).shape, UniformNoise(0.0, 2.0) == uniform_noise(0, 2)
    ((3,), True)
    """

    low: float = eqx.field(static=True, default=-1.0)
    high: float = eqx.field(static=True, default=1.0)

    def __call__(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return jax.random.uniform(key, shape, minval=self.low, maxval=self.high)


class GaussianNoise(eqx.Module):
    """Gaussian noise ``N(mean, scale²)`` in every coordinate: ``noise(key, shape)``. A value (see :class:`ChainInit`).

    Examples
    --------
    >>> float(GaussianNoise(0.1, 5.0)(jax.random.key(0), (1000,)).mean()) > 4.9
    True
    """

    scale: float = eqx.field(static=True, default=1.0)
    mean: float = eqx.field(static=True, default=0.0)

    def __call__(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        return self.mean + self.scale * jax.random.normal(key, shape)


def uniform_noise(low: float = -1.0, high: float = 1.0) -> UniformNoise:
    """Noise uniform on the box ``[low, high]`` in every coordinate.

    Examples
    --------
    >>> x = uniform_noise(-2.0, 2.0)(jax.random.key(0), (3, 2))
    >>> x.shape, bool((x >= -2).all() and (x <= 2).all())
    ((3, 2), True)
    >>> uniform_noise(-2.0, 2.0) == uniform_noise(-2, 2)     # a value: equal options, equal noise
    True
    """
    if not float(low) < float(high):
        raise ValueError(f"uniform_noise needs low < high, got low={low!r}, high={high!r}.")
    return UniformNoise(float(low), float(high))


def gaussian_noise(scale: float = 1.0, mean: float = 0.0) -> GaussianNoise:
    """Gaussian noise ``N(mean, scale²)`` in every coordinate.

    Examples
    --------
    >>> gaussian_noise(0.5)(jax.random.key(0), (4, 2)).shape
    (4, 2)
    """
    if not float(scale) > 0:
        raise ValueError(f"gaussian_noise needs scale > 0, got {scale!r}.")
    return GaussianNoise(float(scale), float(mean))


class SupportNoise(eqx.Module):
    """Uniform draws on a discrete support (:mod:`ebmppl.support`): ``noise(key, (n, *event_shape))``. A value.

    Binary supports get every coordinate uniform on its two values, categorical ones a uniform one-hot
    vector along the last axis. Built by :func:`support_noise`, which documents it.

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> x = SupportNoise(SPINS)(jax.random.key(0), (4, 3))
    >>> x.shape, sorted(set(x.ravel().tolist())) == [-1.0, 1.0]
    ((4, 3), True)
    """

    support: Any = eqx.field(static=True)

    def __call__(self, key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        shape = tuple(shape)
        return self.support.uniform(key, shape[:1], shape[1:])


def support_noise(support: Any) -> SupportNoise:
    """Noise uniform on a discrete ``support`` (an :class:`ebmppl.support.Support`, e.g. ``energy.support``).

    The chain starts of discrete negatives: :func:`~ebmppl.objectives.contrastive_divergence` and
    :func:`ebmppl.fit` take it as the noise of the replay buffer (and of short-run chains) whenever the
    energy's support is discrete, so that every start is a valid state.

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> strategy = replay_buffer(capacity=8, noise=support_noise(BINARY))
    >>> buf = strategy.init(jax.random.key(0), (5,))
    >>> bool(jnp.all((buf.samples == 0.0) | (buf.samples == 1.0)))
    True
    >>> support_noise(BINARY) == support_noise(BINARY)
    True
    >>> support_noise("binary")
    Traceback (most recent call last):
    ...
    TypeError: support_noise needs a discrete ebmppl.support.Support (e.g. energy.support), got 'binary'.
    """
    if not getattr(support, "is_discrete", False) or not callable(getattr(support, "uniform", None)):
        raise TypeError(f"support_noise needs a discrete ebmppl.support.Support (e.g. energy.support), got "
                        f"{support!r}.")
    return SupportNoise(support)


class BufferState(NamedTuple):
    """Persistent negatives: ``samples`` ``(capacity, *event_shape)``; empty for non-persistent strategies.

    ``log_step_scale`` is ``None`` (no pytree leaf) unless the trainer adapts
    its sampler's step during training
    (:func:`~ebmppl.objectives.contrastive_divergence` with
    ``target_acceptance``): then it holds the log of the factor applied to the
    sampler's step, so a checkpointed run resumes with the step it had.
    ``sampler_state`` is ``None`` (no leaf: checkpoints of other runs load as
    before) unless the sampler adapts itself during training (parallel
    tempering: its ladder, per-level steps and running swap acceptance, see
    :meth:`~ebmppl.samplers.tempering.ParallelTempering.training_adaptation_init`).

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
    sampler_state: Any = None


def _empty(key: jax.Array, event_shape: Sequence[int]) -> BufferState:
    return BufferState(jnp.zeros((0, *event_shape)))


class ChainInit(eqx.Module):
    """A chain-initialisation strategy: where the chains of a training step's negative phase start.

    A value, like a sampler: an Equinox module whose options are static
    fields, so two strategies built with the same options (and the same
    noise) are equal and hash equal, and trainers holding them compare by
    value too. Write your own by subclassing it: give it a ``name`` and a
    ``reinit_prob``, implement :meth:`init` and :meth:`start` (and
    :meth:`finish` if it keeps chains).

    Attributes
    ----------
    name
        ``"replay_buffer"``, ``"short_run"`` or ``"cd_k"``.
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
    >>> strategy == replay_buffer(capacity=8, reinit_prob=0.5), hash(short_run()) == hash(short_run())
    (True, True)
    """

    name: ClassVar[str]
    reinit_prob: ClassVar[float]
    noise: ClassVar[NoiseFn | None] = None

    @abc.abstractmethod
    def init(self, key: jax.Array, event_shape: Sequence[int]) -> BufferState:
        """The initial :class:`BufferState` for examples of ``event_shape``.

        Examples
        --------
        >>> replay_buffer(16).init(jax.random.key(0), (2,)).samples.shape, short_run().init(None, (2,)).samples.shape
        ((16, 2), (0, 2))
        """

    @abc.abstractmethod
    def start(self, key: jax.Array, buffer: BufferState, batch: jax.Array) -> tuple[jax.Array, Any]:
        """``(x0, aux)``: chain starts for one training step, shaped like ``batch``.

        ``aux`` is what :meth:`finish` needs (the replay buffer: the slots drawn).

        Examples
        --------
        >>> x0, aux = cd_k().start(jax.random.key(0), None, jnp.ones((3, 2)))
        >>> x0.shape, aux is None
        ((3, 2), True)
        """

    def finish(self, buffer: BufferState, aux: Any, x_final: jax.Array) -> BufferState:
        """The buffer after the chains that started at :meth:`start` ended at ``x_final`` (unchanged by default).

        Examples
        --------
        >>> strategy = replay_buffer(4, reinit_prob=0.0)
        >>> buf = strategy.init(jax.random.key(0), (1,))
        >>> x0, slots = strategy.start(jax.random.key(1), buf, jnp.zeros((2, 1)))
        >>> bool(jnp.all(strategy.finish(buf, slots, x0 + 10.0).samples[slots] == x0 + 10.0))
        True
        """
        return buffer


class ReplayBuffer(ChainInit):
    """Persistent chains with a replay buffer; built by :func:`replay_buffer`, which documents it.

    Examples
    --------
    >>> replay_buffer(100, 0.05)
    ReplayBuffer(reinit_prob=0.05, noise=UniformNoise(), capacity=100)
    """

    name: ClassVar[str] = "replay_buffer"
    capacity: int = eqx.field(static=True)
    reinit_prob: float = eqx.field(static=True)  # type: ignore[misc]  (an option here, a constant elsewhere)
    noise: NoiseFn = eqx.field(static=True)  # type: ignore[misc]

    def init(self, key, event_shape):
        return BufferState(self.noise(key, (self.capacity, *event_shape)))

    def start(self, key, buffer, batch):
        k_idx, k_mask, k_noise = jax.random.split(key, 3)
        n = batch.shape[0]
        # the slots on every device (a few hundred integers): writing back then needs only the chains' rows
        idx = constrain_replicated(jax.random.randint(k_idx, (n,), 0, self.capacity))
        fresh = jax.random.bernoulli(k_mask, self.reinit_prob, (n,))
        fresh = fresh.reshape((n,) + (1,) * (batch.ndim - 1))
        x0 = jnp.where(fresh, self.noise(k_noise, batch.shape), buffer.samples[idx])
        return x0, idx

    def finish(self, buffer, idx, x_final):
        # the chains' rows gathered once (sharded fit); indices and rows replicated: a local scatter everywhere
        return buffer._replace(samples=buffer.samples.at[idx].set(constrain_replicated(x_final)))


class ShortRun(ChainInit):
    """Chains from noise at every step; built by :func:`short_run`, which documents it.

    Examples
    --------
    >>> short_run(uniform_noise(-2.0, 2.0)).reinit_prob
    1.0
    """

    name: ClassVar[str] = "short_run"
    reinit_prob: ClassVar[float] = 1.0
    noise: NoiseFn = eqx.field(static=True)  # type: ignore[misc]

    def init(self, key, event_shape):
        return _empty(key, event_shape)

    def start(self, key, buffer, batch):
        return self.noise(key, batch.shape), None


class CDk(ChainInit):
    """Chains from the data batch; built by :func:`cd_k`, which documents it.

    Examples
    --------
    >>> cd_k().name, cd_k().reinit_prob, cd_k().noise is None
    ('cd_k', 0.0, True)
    """

    name: ClassVar[str] = "cd_k"
    reinit_prob: ClassVar[float] = 0.0

    def init(self, key, event_shape):
        return _empty(key, event_shape)

    def start(self, key, buffer, batch):
        return batch, None


def replay_buffer(capacity: int = 10_000, reinit_prob: float = 0.05, noise: NoiseFn | None = None) -> ReplayBuffer:
    """Persistent chains with a replay buffer (Du & Mordatch 2019).

    Parameters
    ----------
    capacity
        Number of stored negatives.
    reinit_prob
        Probability that a start is drawn from ``noise`` instead of the buffer.
    noise
        Noise distribution for the initial buffer and the re-initialisations
        (default :func:`uniform_noise` on ``[-1, 1]``): ``noise(key, shape)``.

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
    if not 0.0 <= float(reinit_prob) <= 1.0:
        raise ValueError(f"reinit_prob must be in [0, 1], got {reinit_prob!r}.")
    return ReplayBuffer(capacity=int(capacity), reinit_prob=float(reinit_prob),
                        noise=uniform_noise() if noise is None else noise)


def short_run(noise: NoiseFn | None = None) -> ShortRun:
    """Non-persistent short-run chains, started from ``noise`` at every step (Nijkamp et al. 2019).

    Examples
    --------
    >>> s = short_run(gaussian_noise(1.0))
    >>> x0, _ = s.start(jax.random.key(0), s.init(jax.random.key(1), (2,)), jnp.zeros((5, 2)))
    >>> x0.shape
    (5, 2)
    """
    return ShortRun(noise=uniform_noise() if noise is None else noise)


def cd_k() -> CDk:
    """Contrastive divergence CD-k: chains start at the data batch (Hinton 2002).

    Examples
    --------
    >>> s = cd_k()
    >>> x0, _ = s.start(jax.random.key(0), s.init(jax.random.key(1), (2,)), jnp.ones((3, 2)))
    >>> x0.tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """
    return CDk()


STRATEGIES: dict[str, Callable[..., ChainInit]] = {"replay_buffer": replay_buffer, "short_run": short_run, "cd_k": cd_k}
