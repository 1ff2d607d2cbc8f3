"""Supports: the set of values ``x`` an :class:`~ebmppl.Energy` is defined on.

Every energy declares its support (``Energy(..., support=...)``, default
:data:`REAL`). Discrete supports hold float arrays, so the same energy
function, its gradients and ebmppl's vectorisation work unchanged:

=========================  ==============================  ==========================================
support                    values per coordinate           states of ``event_shape``
=========================  ==============================  ==========================================
:data:`REAL`               any real number                 (uncountable)
:data:`BINARY`             ``0.`` or ``1.``                ``2 ** prod(event_shape)``
:data:`SPINS`              ``-1.`` or ``+1.``              ``2 ** prod(event_shape)``
``Binary(low, high)``      ``low`` or ``high``             ``2 ** prod(event_shape)``
``Categorical(K)``         one-hot on the LAST event axis  ``K ** prod(event_shape[:-1])``
=========================  ==============================  ==========================================

States are numbered: state ``i`` of a binary support has coordinate ``j``
(in C order over the flattened event) equal to ``high`` where bit ``j`` of
``i`` is set (the first coordinate is the least significant bit); a
categorical state's variable ``j`` takes digit ``j`` of ``i`` in base ``K``.
State 0 is all-``low`` (all category 0). :meth:`Support.enumerate` lists them in
that order; :meth:`Support.from_index` / :meth:`Support.to_index` convert.

Supports are Equinox modules whose fields are all static: hashable, equal when
their fields are, and free to travel as static data through ``jax.jit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Support", "Real", "Binary", "Categorical", "REAL", "BINARY", "SPINS", "MAX_ENUMERATE"]

MAX_ENUMERATE = 2**22
"""The largest number of states :meth:`Support.enumerate` lists (4 194 304)."""


def _shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(event_shape, (int, np.integer)) and not isinstance(event_shape, bool):
        return (int(event_shape),)
    try:
        shape = tuple(int(s) for s in event_shape)
    except TypeError:
        raise TypeError(f"event_shape must be an int or a tuple of ints, got {event_shape!r}.") from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(f"event_shape must be a non-empty tuple of positive ints, got {event_shape!r}.")
    return shape


def _ftype() -> jnp.dtype:
    return jnp.result_type(float)


def _event_axes(x: jax.Array, event_shape: tuple[int, ...]) -> tuple[int, ...]:
    k = len(event_shape)
    if x.ndim < k or tuple(x.shape[x.ndim - k:]) != event_shape:
        raise ValueError(f"x has shape {x.shape}, whose trailing axes must equal event_shape {event_shape}.")
    return tuple(range(x.ndim - k, x.ndim))


class Support(eqx.Module):
    """The set of values of one example ``x`` (abstract; see :class:`Real`, :class:`Binary`, :class:`Categorical`).

    Examples
    --------
    >>> from ebmppl.support import SPINS, REAL
    >>> SPINS.is_discrete, REAL.is_discrete, SPINS.num_states((3, 3))
    (True, False, 512)
    """

    is_discrete: ClassVar[bool] = False

    # ----------------------------------------------------------------- all
    def contains(self, x: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        """Whether each example of ``x`` (shape ``(*batch, *event_shape)``) lies in the support; shape ``batch``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from ebmppl.support import BINARY
        >>> BINARY.contains(jnp.array([[0.0, 1.0], [0.5, 1.0]]), (2,)).tolist()
        [True, False]
        """
        raise NotImplementedError

    def uniform(self, key: jax.Array, batch_shape: Sequence[int], event_shape: int | Sequence[int]) -> jax.Array:
        """Uniform draws over the states, a float array ``(*batch_shape, *event_shape)``.

        Examples
        --------
        >>> import jax
        >>> from ebmppl.support import SPINS
        >>> x = SPINS.uniform(jax.random.key(0), (5,), (3,))
        >>> x.shape, bool(SPINS.contains(x, (3,)).all())
        ((5, 3), True)
        """
        raise NotImplementedError

    def check(self, x: jax.Array, event_shape: int | Sequence[int], name: str = "x") -> None:
        """A ``ValueError`` naming ``name`` when a concrete ``x`` has an example outside the support.

        Inside ``jit`` (a traced ``x``) it checks nothing.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from ebmppl.support import SPINS
        >>> SPINS.check(jnp.array([[1.0, -1.0], [0.0, 1.0]]), (2,), name="data")
        Traceback (most recent call last):
        ...
        ValueError: data has 1 of 2 examples outside the support Binary(low=-1.0, high=1.0) ...
        """
        if isinstance(x, jax.core.Tracer):
            return
        shape = _shape(event_shape)
        arr = np.asarray(x)
        k = len(shape)
        if arr.ndim < k or tuple(arr.shape[arr.ndim - k:]) != shape:
            hint = ""
            if isinstance(self, Categorical) and tuple(arr.shape[arr.ndim - k + 1:]) == shape[:-1]:
                hint = (f" These look like integer labels: one-hot encode them, "
                        f"jax.nn.one_hot({name}, {self.num_categories}).")
            raise ValueError(f"{name} has shape {arr.shape}, whose trailing axes must equal the event shape "
                             f"{shape}.{hint}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            rows = np.flatnonzero(~np.isfinite(arr.reshape(-1, int(np.prod(shape)))).all(axis=1))
            raise ValueError(f"{name} contains NaN or inf (examples {rows[:10].tolist()}); remove or impute them.")
        with jax.ensure_compile_time_eval():  # a concrete x closed over inside jit is still checked, eagerly
            inside = np.asarray(self.contains(jnp.asarray(x), shape)).reshape(-1)
        bad = int(np.sum(~inside))
        if bad:
            first = np.asarray(x).reshape(-1, *shape)[int(np.argmin(inside))]
            raise ValueError(
                f"{name} has {bad} of {inside.size} examples outside the support {self!r} (the first: "
                f"{first.reshape(-1)[:16].tolist()}{' ...' if first.size > 16 else ''}). {self._encoding_hint()}"
            )

    def _encoding_hint(self) -> str:
        return "Encode the values as the support expects."

    # ----------------------------------------------------------- discrete
    def num_states(self, event_shape: int | Sequence[int]) -> int:
        """Number of states of an example of shape ``event_shape`` (discrete supports only).

        Examples
        --------
        >>> from ebmppl.support import BINARY, Categorical
        >>> BINARY.num_states((4, 4)), Categorical(3).num_states((5, 3))
        (65536, 243)
        """
        raise TypeError(f"{self!r} is not discrete: it has no finite number of states.")

    def from_index(self, index: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        """The states numbered ``index`` (int array, any shape): float array ``(*index.shape, *event_shape)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from ebmppl.support import SPINS
        >>> SPINS.from_index(jnp.array([0, 6]), (3,)).tolist()   # 6 = 0b110: coordinates 1 and 2 up
        [[-1.0, -1.0, -1.0], [-1.0, 1.0, 1.0]]
        """
        raise TypeError(f"{self!r} is not discrete: its states cannot be numbered.")

    def to_index(self, x: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        """The numbers of the states ``x`` (shape ``(*batch, *event_shape)``): int array ``batch``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from ebmppl.support import SPINS
        >>> SPINS.to_index(jnp.array([[-1.0, 1.0, 1.0], [1.0, -1.0, -1.0]]), (3,)).tolist()
        [6, 1]
        """
        raise TypeError(f"{self!r} is not discrete: its states cannot be numbered.")

    def enumerate(self, event_shape: int | Sequence[int]) -> jax.Array:
        """Every state, in index order: float array ``(num_states, *event_shape)``.

        Refuses more than ``MAX_ENUMERATE = 2**22`` states with a ``ValueError``
        naming the tools that scale (samplers, AIS, the transfer matrix).

        Examples
        --------
        >>> from ebmppl.support import BINARY
        >>> BINARY.enumerate((2,)).tolist()
        [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
        """
        shape = _shape(event_shape)
        n = self.num_states(shape)
        if n > MAX_ENUMERATE:
            raise ValueError(
                f"{self!r} over event_shape {shape} has {n:.3g} states, more than the {MAX_ENUMERATE} "
                "(2**22) that can be enumerated. Estimate log Z with AIS (ebmppl.log_partition / the discrete "
                "AIS), use the transfer matrix for an Ising lattice (ebmppl.discrete.ising_log_partition) or "
                "sum out a layer of an RBM (ebmppl.discrete.rbm_log_partition), and draw with ebmppl's discrete "
                "samplers (ebmppl.samplers.discrete: gibbs, gibbs_with_gradients, dmala)."
            )
        return self.from_index(jnp.arange(n, dtype=jnp.int32), shape)

    def first_state(self, event_shape: int | Sequence[int]) -> jax.Array:
        """A state of the support, of shape ``event_shape``: state 0 of a discrete support, zeros for the real line.

        Examples
        --------
        >>> from ebmppl.support import SPINS, Categorical
        >>> SPINS.first_state(3).tolist(), Categorical(2).first_state((1, 2)).tolist()
        ([-1.0, -1.0, -1.0], [[1.0, 0.0]])
        """
        return jnp.zeros(_shape(event_shape), _ftype())


class Real(Support):
    """Real-valued examples (the default support of every :class:`~ebmppl.Energy`).

    ``contains`` checks finiteness. ``uniform`` has no meaning on the real line
    and raises a ``ValueError`` (use ``energy.typical_region()`` for a box).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl.support import REAL
    >>> REAL.contains(jnp.array([[0.0, 1.0], [jnp.inf, 0.0]]), (2,)).tolist()
    [True, False]
    """

    is_discrete: ClassVar[bool] = False

    def contains(self, x: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all(jnp.isfinite(x), axis=_event_axes(x, _shape(event_shape)))

    def uniform(self, key: jax.Array, batch_shape: Sequence[int], event_shape: int | Sequence[int]) -> jax.Array:
        raise ValueError("the real support has no uniform distribution; draw from a box around "
                         "energy.typical_region() instead (as ebmppl.sample does).")

    def _encoding_hint(self) -> str:
        return "Remove or impute non-finite values."


class Binary(Support):
    """Each coordinate is ``low`` or ``high`` (default ``{0, 1}``; :data:`SPINS` is ``{-1, +1}``).

    Parameters
    ----------
    low, high
        The two values, finite and different.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.support import Binary, SPINS
    >>> SPINS == Binary(-1.0, 1.0), hash(SPINS) == hash(Binary(-1, 1))
    (True, True)
    >>> SPINS.enumerate(2).tolist()
    [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]
    >>> SPINS.to_index(jnp.array([1.0, 1.0]), 2).tolist(), SPINS.flip(jnp.array([1.0, -1.0])).tolist()
    (3, [-1.0, 1.0])
    >>> SPINS.uniform(jax.random.key(0), (4,), (3,)).shape
    (4, 3)
    """

    is_discrete: ClassVar[bool] = True
    low: float = eqx.field(static=True)
    high: float = eqx.field(static=True)

    def __init__(self, low: float = 0.0, high: float = 1.0):
        try:
            low, high = float(low), float(high)
        except (TypeError, ValueError):
            raise TypeError(f"Binary(low, high) takes two numbers, got low={low!r}, high={high!r}.") from None
        if not (math.isfinite(low) and math.isfinite(high)) or low == high:
            raise ValueError(f"Binary(low, high) needs two different finite values, got low={low}, high={high}; "
                             "e.g. Binary(0, 1) or Binary(-1, 1).")
        self.low, self.high = low, high

    def first_state(self, event_shape: int | Sequence[int]) -> jax.Array:
        return jnp.full(_shape(event_shape), self.low, _ftype())

    def flip(self, x: jax.Array) -> jax.Array:
        """Every coordinate switched to the other value: ``low + high - x``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from ebmppl.support import BINARY
        >>> BINARY.flip(jnp.array([0.0, 1.0])).tolist()
        [1.0, 0.0]
        """
        return (self.low + self.high) - x

    def contains(self, x: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all((x == self.low) | (x == self.high), axis=_event_axes(x, _shape(event_shape)))

    def uniform(self, key: jax.Array, batch_shape: Sequence[int], event_shape: int | Sequence[int]) -> jax.Array:
        bits = jax.random.bernoulli(key, 0.5, (*tuple(batch_shape), *_shape(event_shape)))
        return jnp.where(bits, self.high, self.low).astype(_ftype())

    def num_states(self, event_shape: int | Sequence[int]) -> int:
        return 2 ** math.prod(_shape(event_shape))

    def from_index(self, index: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        shape = _shape(event_shape)
        n = math.prod(shape)
        if n > 31:
            raise ValueError(f"states of {n} binary coordinates cannot be numbered by int32 indices (at most 31).")
        index = jnp.asarray(index, jnp.int32)
        bits = (index[..., None] >> jnp.arange(n, dtype=jnp.int32)) & 1
        x = jnp.where(bits == 1, self.high, self.low).astype(_ftype())
        return x.reshape(*index.shape, *shape)

    def to_index(self, x: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        shape = _shape(event_shape)
        x = jnp.asarray(x)
        _event_axes(x, shape)
        n = math.prod(shape)
        if n > 31:
            raise ValueError(f"states of {n} binary coordinates cannot be numbered by int32 indices (at most 31).")
        bits = (x.reshape(*x.shape[: x.ndim - len(shape)], n) == self.high).astype(jnp.int32)
        return jnp.sum(bits << jnp.arange(n, dtype=jnp.int32), axis=-1)

    def _encoding_hint(self) -> str:
        return (f"Every coordinate must be {self.low} or {self.high}; re-encode the data (e.g. 0/1 -> ±1 with "
                "2 * x - 1) or declare the support it uses.")


class Categorical(Support):
    """``K``-state variables, one-hot along the LAST event axis: ``event_shape == (..., K)``.

    An example of shape ``(n, K)`` holds ``n`` variables; a state has exactly
    one ``1.`` per row (float ``0.``/``1.`` entries).

    Parameters
    ----------
    num_categories
        ``K ≥ 2``.

    Examples
    --------
    >>> import jax
    >>> from ebmppl.support import Categorical
    >>> three = Categorical(3)
    >>> three.num_states((2, 3)), three.enumerate((2, 3))[5].tolist()   # state 5 = digits (2, 1)
    (9, [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    >>> three.uniform(jax.random.key(0), (4,), (2, 3)).sum(-1).tolist()
    [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """

    is_discrete: ClassVar[bool] = True
    num_categories: int = eqx.field(static=True)

    def __init__(self, num_categories: int):
        if isinstance(num_categories, bool) or not isinstance(num_categories, (int, np.integer)):
            raise TypeError(f"num_categories must be an int ≥ 2, got {num_categories!r}.")
        if num_categories < 2:
            raise ValueError(f"num_categories must be ≥ 2, got {num_categories}.")
        self.num_categories = int(num_categories)

    def _variables(self, event_shape: int | Sequence[int]) -> tuple[int, ...]:
        shape = _shape(event_shape)
        if shape[-1] != self.num_categories:
            raise ValueError(
                f"Categorical({self.num_categories}) is one-hot along the last event axis, so event_shape must end "
                f"in {self.num_categories}; got {shape}. Use event_shape=(*variables, {self.num_categories})."
            )
        return shape[:-1]

    def first_state(self, event_shape: int | Sequence[int]) -> jax.Array:
        variables = self._variables(event_shape)
        return jax.nn.one_hot(jnp.zeros(variables, jnp.int32), self.num_categories, dtype=_ftype())

    def contains(self, x: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        shape = _shape(event_shape)
        self._variables(shape)
        x = jnp.asarray(x)
        axes = _event_axes(x, shape)
        binary = jnp.all((x == 0) | (x == 1), axis=axes)
        one_hot = jnp.all(jnp.sum(x, axis=-1) == 1, axis=axes[:-1]) if len(axes) > 1 else jnp.sum(x, axis=-1) == 1
        return binary & one_hot

    def uniform(self, key: jax.Array, batch_shape: Sequence[int], event_shape: int | Sequence[int]) -> jax.Array:
        variables = self._variables(event_shape)
        labels = jax.random.randint(key, (*tuple(batch_shape), *variables), 0, self.num_categories)
        return jax.nn.one_hot(labels, self.num_categories, dtype=_ftype())

    def num_states(self, event_shape: int | Sequence[int]) -> int:
        return self.num_categories ** math.prod(self._variables(event_shape))

    def from_index(self, index: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        shape = _shape(event_shape)
        variables = self._variables(shape)
        n, k = math.prod(variables), self.num_categories
        if k**n > 2**31 - 1:
            raise ValueError(f"{k}**{n} states cannot be numbered by int32 indices.")
        index = jnp.asarray(index, jnp.int32)
        powers = jnp.asarray([k**j for j in range(n)], jnp.int32)
        digits = (index[..., None] // powers) % k
        return jax.nn.one_hot(digits, k, dtype=_ftype()).reshape(*index.shape, *shape)

    def to_index(self, x: jax.Array, event_shape: int | Sequence[int]) -> jax.Array:
        shape = _shape(event_shape)
        variables = self._variables(shape)
        x = jnp.asarray(x)
        _event_axes(x, shape)
        n, k = math.prod(variables), self.num_categories
        digits = jnp.argmax(x, axis=-1).reshape(*x.shape[: x.ndim - len(shape)], n).astype(jnp.int32)
        return jnp.sum(digits * jnp.asarray([k**j for j in range(n)], jnp.int32), axis=-1)

    def _encoding_hint(self) -> str:
        return (f"Each row along the last axis must be one-hot over {self.num_categories} categories; encode "
                f"labels with jax.nn.one_hot(labels, {self.num_categories}).")


REAL = Real()
"""Real-valued examples: the default support."""
BINARY = Binary(0.0, 1.0)
"""Binary coordinates in ``{0, 1}``."""
SPINS = Binary(-1.0, 1.0)
"""Ising spins in ``{-1, +1}``."""
