"""The sampler contract every ebmppl sampler implements.

A sampler is a value: an Equinox module whose options (step size, number of
leapfrog steps, ...) are static fields, so two samplers built with the same
options compare and hash equal and a compiled program keyed on one serves the
other. Its methods are pure functions for ONE chain, in BlackJAX's style,
except that the log-density is passed at call time (BlackJAX's low-level
``build_kernel`` form). That is what lets contrastive divergence change θ
between steps without recompiling: a state made under an older θ is brought
up to date by :meth:`Sampler.init` at its position under the new
log-density. ebmppl vmaps these functions over chains.

Adding a sampler
----------------
Subclass :class:`Sampler`: give it a ``name``, say whether it is ``exact``,
pick a ``warmup`` strategy (and the ``target_acceptance`` its step-size
adaptation aims for), declare its options as static fields
(``eqx.field(static=True)``), implement ``init``, ``step`` and
``default_params``. One line, ``ebmppl.samplers.register("name", MySampler)``,
makes its name work wherever ``sampler=`` is accepted (``sample``, ``fit``,
``inpaint``, ...). The Design page of the docs walks through a random-walk
Metropolis sampler, from the class to a fit.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp  # noqa: F401  (used by the docstring examples)

from ebmppl.samplers.adaptation import NoAdaptation, Warmup, check_warmup

__all__ = ["Sampler", "StepStats", "LogDensityFn"]

LogDensityFn = Callable[[jax.Array], jax.Array]


class StepStats(NamedTuple):
    """Per-transition statistics, common to all samplers.

    Attributes
    ----------
    acceptance_rate
        Metropolis acceptance probability of the transition (``nan`` for
        samplers without an accept/reject step).
    is_divergent
        Whether the numerical integrator diverged (HMC family); ``False`` elsewhere.
    num_grad_evals
        Gradient evaluations spent on the transition.
    logdensity
        ``-E(x)/T`` at the new position.

    Examples
    --------
    >>> from ebmppl.samplers import mala
    >>> s = mala(step_size=0.5)
    >>> ld = lambda x: -0.5 * jnp.sum(x**2)
    >>> state, stats = s.step(jax.random.key(1), s.init(jax.random.key(0), jnp.zeros(2), ld), ld, s.default_params(2))
    >>> int(stats.num_grad_evals), 0.0 <= float(stats.acceptance_rate) <= 1.0
    (1, True)
    """

    acceptance_rate: jax.Array
    is_divergent: jax.Array
    num_grad_evals: jax.Array
    logdensity: jax.Array


class Sampler(eqx.Module):
    """A sampling algorithm for one chain, with the log-density supplied at call time.

    An abstract Equinox module. A concrete sampler declares its options as
    static fields (``eqx.field(static=True)``), so samplers with equal options
    are equal and hash equal: usable as ``jax.jit`` static arguments, and
    passed to ``jit`` as pytrees they have no leaves.

    Class attributes
    ----------------
    name
        Registry name, e.g. ``"mala"``.
    exact
        ``True`` if the chain's stationary law is the target exactly
        (Metropolis-adjusted); ``False`` for discretised dynamics without
        correction (ULA, practical Langevin, SGHMC, MCLMC), whose bias shrinks
        with the step size.
    warmup
        The warm-up strategy (an object, see :mod:`ebmppl.samplers.adaptation`):
        :class:`~ebmppl.samplers.WindowAdaptation` (step size and mass
        matrix), :class:`~ebmppl.samplers.StepSizeAdaptation`,
        :class:`~ebmppl.samplers.MCLMCTuning` or
        :class:`~ebmppl.samplers.NoAdaptation` (the default).
    target_acceptance
        Acceptance rate the step-size adaptation aims for (``nan`` for samplers
        without a Metropolis step).

    A sampler implements :meth:`init` (the state at a position; also how a
    state made under an older θ is brought up to date), :meth:`step` (one
    transition with the kernel parameters ``params``), :meth:`default_params`
    (those parameters before warm-up) and, where its state has no
    ``position`` field, :meth:`position`.

    Raises
    ------
    TypeError
        At construction: ``name`` is not a string, ``exact`` not a bool,
        ``warmup`` not a warm-up strategy object, or an option is not hashable
        (a list, an array: use a tuple, or a static field).

    Examples
    --------
    One chain by hand (``ebmppl.sample`` does this for many chains, compiled):

    >>> from ebmppl.samplers import hmc
    >>> s = hmc(num_integration_steps=10)
    >>> ld = lambda x: -0.5 * jnp.sum(x**2)
    >>> state = s.init(jax.random.key(0), jnp.ones(3), ld)
    >>> for k in jax.random.split(jax.random.key(1), 5):
    ...     state, stats = s.step(k, state, ld, s.default_params(3))
    >>> s.name, s.exact, s.warmup, s.position(state).shape
    ('hmc', True, WindowAdaptation(), (3,))
    >>> s == hmc(num_integration_steps=10), s == hmc(num_integration_steps=8)
    (True, False)
    """

    name: ClassVar[str]
    exact: ClassVar[bool]
    warmup: ClassVar[Warmup] = NoAdaptation()
    target_acceptance: ClassVar[float] = float("nan")

    def __check_init__(self) -> None:
        cls = type(self).__name__
        if not isinstance(getattr(self, "name", None), str):
            raise TypeError(f"{cls}.name must be a string (the registry name, e.g. name = 'rwm').")
        if not isinstance(getattr(self, "exact", None), bool):
            raise TypeError(f"{cls}.exact must be True (Metropolis-adjusted) or False (biased dynamics).")
        check_warmup(self.warmup, f"{cls}.warmup")
        try:
            hash(self)
        except TypeError as err:
            raise TypeError(f"{cls}: every option of a sampler must be hashable, so that equal samplers hash "
                            f"equal ({err}); pass tuples instead of lists, and declare array-valued settings "
                            "as kernel parameters (default_params) instead.") from None

    @abc.abstractmethod
    def init(self, key: jax.Array | None, position: Any, logdensity_fn: LogDensityFn) -> Any:
        """The state of one chain at ``position`` under ``logdensity_fn``.

        ``key`` is used by the samplers that draw a momentum (GHMC, MCLMC);
        the others accept ``None``. A state made under an older θ is brought
        up to date by ``init`` at its position under the new log-density:
        cached values (log-density, gradient) are recomputed.

        Examples
        --------
        >>> from ebmppl.samplers import hmc
        >>> s = hmc()
        >>> state = s.init(None, jnp.ones(2), lambda x: -0.5 * jnp.sum(x**2))
        >>> state.position.tolist(), float(state.logdensity)
        ([1.0, 1.0], -1.0)
        >>> float(s.init(None, state.position, lambda x: -jnp.sum(x**2)).logdensity)  # a new θ
        -2.0
        """

    @abc.abstractmethod
    def step(self, key: jax.Array, state: Any, logdensity_fn: LogDensityFn,
             params: dict[str, jax.Array]) -> tuple[Any, StepStats]:
        """One transition of one chain: ``(new state, StepStats)``.

        ``params`` are the kernel parameters, a dict of arrays such as
        :meth:`default_params` returns (or warm-up tunes). Pure and jit-able;
        vmap it over chains.

        Examples
        --------
        >>> from ebmppl.samplers import mala
        >>> s, ld = mala(step_size=0.5), lambda x: -0.5 * jnp.sum(x**2)
        >>> state = s.init(None, jnp.zeros(2), ld)
        >>> state, stats = s.step(jax.random.key(0), state, ld, s.default_params(2))
        >>> s.position(state).shape, int(stats.num_grad_evals), bool(stats.is_divergent)
        ((2,), 1, False)
        """

    def position(self, state: Any) -> Any:
        """The position of ``state``: its ``position`` field, unless a sampler says otherwise.

        Examples
        --------
        >>> from ebmppl.samplers import ula
        >>> s = ula()
        >>> s.position(s.init(None, jnp.arange(3.0), lambda x: -jnp.sum(x**2))).tolist()
        [0.0, 1.0, 2.0]
        """
        return state.position

    @abc.abstractmethod
    def default_params(self, dim: int) -> dict[str, jax.Array]:
        """The kernel parameters before warm-up, for ``dim`` coordinates: a dict of arrays.

        They come from the sampler's options (its ``step_size``, ...) and a
        unit mass matrix where the kernel has one (dense with ``dense_mass=True``).

        Examples
        --------
        >>> from ebmppl.samplers import hmc, mala
        >>> {k: v.tolist() for k, v in mala(step_size=0.25).default_params(3).items()}
        {'step_size': 0.25}
        >>> {k: v.shape for k, v in hmc(dense_mass=True).default_params(3).items()}
        {'step_size': (), 'inverse_mass_matrix': (3, 3)}
        """
