"""An exponential moving average (EMA) of the parameters, kept in the optimizer state (an Optax wrapper).

Averaging the iterates of a noisy optimisation (Polyak averaging; its
exponential form is what image EBMs, diffusion and score models sample from)
smooths out the last steps' minibatch and negative-sample noise. Here the
average is an Optax transformation: :func:`with_ema` wraps any optimizer, its
state holds the inner state plus the average of the parameters *after* each
update, so every driver that checkpoints ``opt_state`` checkpoints the average
too, and :func:`ema_params` reads it.

The stored average is already debiased: with ``debias=True`` it is
``m_t / (1 - decay**t)`` with ``m_t = decay·m_{t-1} + (1 - decay)·θ_t`` from
``m_0 = 0``, kept in the equivalent running form
``ē_t = ē_{t-1} + (1 - decay) / (1 - decay**t) · (θ_t - ē_{t-1})`` (so ``ē_1 = θ_1``
and the iterates of the run carry all the weight); with ``debias=False`` it is
the classic ``ē_t = decay·ē_{t-1} + (1 - decay)·θ_t`` from ``ē_0 = θ_0``, where
the starting parameters keep weight ``decay**t``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = ["with_ema", "ema_params", "has_ema", "EmaState"]


class EmaState(NamedTuple):
    """State of :func:`with_ema`.

    Attributes
    ----------
    inner
        The wrapped optimizer's state.
    ema
        The (debiased) moving average of the parameters after each update, a
        pytree like the parameters; before the first update, the starting parameters.
    count
        Updates averaged so far (int32).

    Examples
    --------
    >>> state = with_ema(optax.sgd(0.1), 0.9).init(jnp.ones(2))
    >>> state.ema.tolist(), int(state.count)
    ([1.0, 1.0], 0)
    """

    inner: Any
    ema: Any
    count: jax.Array


def _check_decay(decay: Any, name: str = "decay") -> float:
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) and not (
            hasattr(decay, "ndim") and getattr(decay, "ndim", 1) == 0):
        raise TypeError(f"{name} must be a number in [0, 1) (e.g. {name}=0.999), got {type(decay).__name__}.")
    value = float(decay)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1) (the weight the average keeps per step, e.g. {name}=0.999: "
                         f"an average over about 1 / (1 - {name}) = 1000 steps), got {decay!r}.")
    return value


def _copy(tree: Any) -> Any:
    return jax.tree.map(lambda p: jnp.array(p, copy=True), tree)


def with_ema(optimizer: optax.GradientTransformation, decay: float = 0.999, *,
             debias: bool = True) -> optax.GradientTransformationExtraArgs:
    """Wrap ``optimizer`` so that its state also keeps an exponential moving average of the parameters.

    The updates are the inner optimizer's, unchanged: training follows
    exactly the path it follows without the wrapper. After each update the
    average moves towards the new parameters ``params + updates``; read it
    with :func:`ema_params`. Because the average lives in the optimizer state,
    anything that saves ``opt_state`` (:func:`ebmppl.fit`'s checkpoints) saves it.

    Parameters
    ----------
    optimizer
        Any Optax transformation (a chain, a ``multi_transform``, ...). Wrap
        the *whole* optimizer: the average is of ``params + updates`` with the
        updates this transformation returns, so it must be the outermost one
        (inside ``optax.chain(with_ema(a), b)`` it would average parameters
        that ``b``'s changes never reach).
    decay
        Weight the average keeps per step, in ``[0, 1)``; it averages over
        about ``1 / (1 - decay)`` steps (``0.999``: the last ~1000). ``0``
        tracks the parameters exactly.
    debias
        ``True`` (default): the average of the iterates of the run alone
        (Adam-style bias correction of an average started at zero), so it is
        meaningful from the first step. ``False``: the classic average started
        at the initial parameters, which keep weight ``decay**t``.

    Returns
    -------
    optax.GradientTransformationExtraArgs
        ``init(params) -> EmaState``; ``update(updates, state, params, **extra_args)``
        (``params`` required: the average is of parameters).

    Raises
    ------
    ValueError
        ``decay`` outside ``[0, 1)``; ``update`` called without ``params``.

    Examples
    --------
    >>> opt = with_ema(optax.sgd(1.0), decay=0.5)
    >>> params = jnp.zeros(1)
    >>> state = opt.init(params)
    >>> for g in (-2.0, -2.0):  # the parameters go 0 -> 2 -> 4
    ...     updates, state = opt.update(jnp.full(1, g), state, params)
    ...     params = optax.apply_updates(params, updates)
    >>> float(params[0]), float(ema_params(state)[0])  # (0.5·2·0.5 + 0.5·4) / (1 - 0.25) = 10/3
    (4.0, 3.333333...)

    With an Optax chain, a ``multi_transform`` or a schedule inside, the same:

    >>> opt = with_ema(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), 0.99)
    >>> state = opt.init({"w": jnp.ones(3)})
    >>> updates, state = opt.update({"w": jnp.ones(3)}, state, {"w": jnp.ones(3)})
    >>> int(state.count), ema_params(state)["w"].shape
    (1, (3,))
    """
    decay = _check_decay(decay)
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(f"optimizer must be an Optax GradientTransformation, got {type(optimizer).__name__}.")
    inner = optax.with_extra_args_support(optimizer)
    log_decay = math.log(decay) if decay > 0 else -math.inf

    def init_fn(params: Any) -> EmaState:
        return EmaState(inner.init(params), _copy(params), jnp.zeros((), jnp.int32))

    def update_fn(updates: Any, state: EmaState, params: Any = None, **extra_args: Any):
        if params is None:
            raise ValueError("with_ema's update needs the parameters: call update(updates, state, params) (the "
                             "moving average is of params + updates).")
        new_updates, inner_state = inner.update(updates, state.inner, params, **extra_args)
        new_params = optax.apply_updates(params, new_updates)
        count = optax.safe_increment(state.count)
        if debias:  # (1 - decay) / (1 - decay**t), from log(decay) for accuracy in float32: 1 at t = 1
            weight = jnp.where(count == 1, 1.0, (1.0 - decay) / -jnp.expm1(count.astype(jnp.float32) * log_decay))
        else:
            weight = jnp.asarray(1.0 - decay, jnp.float32)

        def average(e, p):
            if not jnp.issubdtype(jnp.result_type(p), jnp.inexact):
                return p  # integer / boolean leaves are not averaged: they follow the parameters
            w = weight.astype(jnp.result_type(e))
            return ((1 - w) * e + w * p).astype(jnp.result_type(e))  # w = 1: exactly p

        ema = jax.tree.map(average, state.ema, new_params)
        return new_updates, EmaState(inner_state, ema, count)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _ema_states(opt_state: Any) -> list[EmaState]:
    """Every EmaState inside ``opt_state``, outermost first (nested ones included)."""
    found = jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, EmaState))
    out = []
    for s in found:
        if isinstance(s, EmaState):
            out += [s, *_ema_states(s.inner)]
    return out


def has_ema(opt_state: Any) -> bool:
    """True when ``opt_state`` (anywhere inside it) holds the state of a :func:`with_ema` optimizer.

    Examples
    --------
    >>> has_ema(with_ema(optax.adam(1e-3)).init(jnp.zeros(2))), has_ema(optax.adam(1e-3).init(jnp.zeros(2)))
    (True, False)
    """
    return bool(_ema_states(opt_state))


def ema_params(opt_state: Any, params: Any = None) -> Any:
    """The moving average of the parameters kept in ``opt_state`` by :func:`with_ema` (debiased).

    Parameters
    ----------
    opt_state
        An optimizer state (e.g. ``fit(...).state.opt_state``), or the
        :class:`EmaState` itself; the EMA's state may sit anywhere inside it
        (in an ``optax.chain``, a ``multi_transform``, ...).
    params
        The current parameters, optional: returned as they are when
        ``opt_state`` holds no EMA, and they fill the parameters an EMA
        does not cover (``with_ema`` on one group of a ``multi_transform``).

    Returns
    -------
    A pytree like the parameters.

    Raises
    ------
    ValueError
        No EMA in ``opt_state`` and no ``params``; several EMAs, or one that
        covers only some parameters, and no ``params`` to decide.

    Examples
    --------
    >>> opt = with_ema(optax.sgd(0.5), 0.9)
    >>> params, state = jnp.ones(2), opt.init(jnp.ones(2))
    >>> updates, state = opt.update(jnp.ones(2), state, params)
    >>> ema_params(state).tolist()  # the first average is the first iterate
    [0.5, 0.5]
    >>> ema_params(optax.sgd(0.5).init(params), params).tolist()  # no EMA: the parameters
    [1.0, 1.0]
    """
    states = _ema_states(opt_state)
    if not states:
        if params is None:
            raise ValueError("opt_state holds no moving average of the parameters: build the optimizer with "
                             "ebmppl.ema.with_ema(optimizer, decay), or pass params= to fall back on them.")
        return params
    masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
    full = [s for s in states if not any(masked(x) for x in jax.tree.leaves(s.ema, is_leaf=masked))]
    if len(full) > 1:
        raise ValueError(f"opt_state holds {len(full)} moving averages of all the parameters (with_ema wrapped "
                         "twice): wrap the optimizer once, or read one yourself (opt_state.ema is the outermost).")
    if full:
        return full[0].ema
    if params is None:
        raise ValueError("the moving average in opt_state covers only some parameters (with_ema inside a "
                         "multi_transform or masked): pass params= to fill the rest.")
    leaves, treedef = jax.tree.flatten(params, is_leaf=masked)
    merged: list[Any] = list(leaves)
    covered = [False] * len(leaves)
    for state in states:
        ema_leaves = jax.tree.leaves(state.ema, is_leaf=masked)
        if len(ema_leaves) != len(leaves):
            raise ValueError(f"params has {len(leaves)} leaves but a moving average in opt_state has "
                             f"{len(ema_leaves)}: pass the parameters the optimizer was initialised with.")
        for i, e in enumerate(ema_leaves):
            if not masked(e):
                if covered[i]:
                    raise ValueError("two moving averages in opt_state cover the same parameter: wrap each "
                                     "parameter group once.")
                merged[i], covered[i] = e, True
    return jax.tree.unflatten(treedef, merged)
