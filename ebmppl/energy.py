"""The energy contract: one object that BlackJAX, NumPyro and ebmppl all understand.

An energy is written for ONE example, ``energy_fn(params, x) -> scalar``, with
``params`` any pytree. :class:`Energy` bundles that function with its
parameters, the event shape of ``x`` and a temperature ``T`` and defines the
unnormalised density ``p(x) ∝ exp(-E(x) / T)``. It exposes every sign
convention a caller may need, so nobody ever flips a sign by hand:

==================  ========================  ===============================
method              value                     convention of
==================  ========================  ===============================
``energy(x)``       ``E(x)`` (batched)        energy-based modelling
``logdensity(x)``   ``-E(x) / T``             BlackJAX ``logdensity_fn``
``potential(x)``    ``E(x) / T``              NumPyro ``potential_fn``
``score(x)``        ``∇ₓ log p = -∇E / T``    Langevin dynamics
==================  ========================  ===============================
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._deprecation import UNSET, renamed
from ebmppl.support import REAL, Support

__all__ = ["Energy", "SamplerSettings"]

EnergyFn = Callable[[Any, jax.Array], jax.Array]

_GRADIENT_STEP_SAMPLERS = ("mala", "ula", "langevin")  # samplers whose step_size is a drift step s · ∇log p


class _FrozenParams(dict):
    """A read-only, hashable dict: kernel parameters kept in a static field of an Equinox module."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def __reduce__(self) -> tuple[Any, ...]:  # copy and pickle rebuild it whole (no item assignment)
        return type(self), (dict(self),)

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("SamplerSettings.sampler_params is read-only: build new settings, e.g. "
                        "dataclasses.replace(settings, sampler_params={...}).")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only


class SamplerSettings(eqx.Module):
    """The settings of the sampler that trained an energy, stored with it (``Energy.sampler_settings``).

    :func:`ebmppl.fit` records them on the energy it returns (CD objectives),
    :func:`ebmppl.save` / :func:`ebmppl.load` and checkpoints keep them, and
    samplers a trained model is later used with take their defaults from them
    (e.g. :func:`ebmppl.latent.short_run_generator`). Hashable (static fields
    only), so an :class:`Energy` carrying them stays a valid static pytree.

    Parameters
    ----------
    sampler
        Registry name of the sampler, e.g. ``"mala"`` or ``"langevin"``.
    sampler_params
        Its scalar kernel parameters, a dict (``{"step_size": 0.01}``) or
        ``((name, value), ...)`` pairs; kept as a read-only dict, ready for
        ``sample(..., sampler_params=settings.sampler_params)``.
    num_mcmc_steps
        Sampler steps per training step.
    clamp
        ``(low, high)`` box the positions were clamped into, or ``None`` (none,
        or not known: a sampler you built yourself does not reveal its clamp).
    noise_box
        ``(low, high)`` of the uniform noise the chains started from, or ``None`` if not known.
    standardized
        ``True`` when the sampler ran in the standardised coordinates of
        :func:`ebmppl.fit`'s ``"density"`` recipe (``z = (x - shift) / scale``):
        ``sampler_params``, ``clamp`` and ``noise_box`` are then in units of
        ``z``, not of the data.
    recipe
        The recipe of the training run (``"density"``, ``"images"``, ``"none"``).
    kernel_params, num_steps
        Deprecated names of ``sampler_params`` and ``num_mcmc_steps`` (also as
        attributes); they work for one more release, with a warning.

    Examples
    --------
    >>> s = SamplerSettings("mala", {"step_size": 0.01}, 20, None, (-3.0, 3.0), True, "density")
    >>> s.sampler_params, s.num_mcmc_steps, s.gradient_step
    ({'step_size': 0.01}, 20, 0.01)
    >>> SamplerSettings.from_json(s.to_json()) == s
    True
    """

    sampler: str = eqx.field(static=True)
    sampler_params: dict[str, float] = eqx.field(static=True)
    num_mcmc_steps: int = eqx.field(static=True)
    clamp: tuple[float, float] | None = eqx.field(static=True)
    noise_box: tuple[float, float] | None = eqx.field(static=True)
    standardized: bool = eqx.field(static=True)
    recipe: str = eqx.field(static=True)

    def __init__(
        self,
        sampler: str,
        sampler_params: Mapping[str, float] | Sequence[tuple[str, float]] = UNSET,
        num_mcmc_steps: int = UNSET,
        clamp: tuple[float, float] | None = None,
        noise_box: tuple[float, float] | None = None,
        standardized: bool = False,
        recipe: str = "none",
        *,
        kernel_params: Any = UNSET,
        num_steps: Any = UNSET,
    ):
        # stacklevel 5: the caller of an Equinox module's constructor is 2 frames above __init__
        sampler_params = renamed("SamplerSettings", "kernel_params", kernel_params, "sampler_params", sampler_params,
                                 default=(), stacklevel=5)
        num_mcmc_steps = renamed("SamplerSettings", "num_steps", num_steps, "num_mcmc_steps", num_mcmc_steps, default=1,
                                 stacklevel=5)
        items = sampler_params.items() if isinstance(sampler_params, Mapping) else sampler_params
        self.sampler = sampler
        self.sampler_params = _FrozenParams(sorted((str(k), v) for k, v in items))
        self.num_mcmc_steps = num_mcmc_steps
        self.clamp, self.noise_box, self.standardized, self.recipe = clamp, noise_box, standardized, recipe

    def __repr__(self) -> str:
        return (f"SamplerSettings(sampler={self.sampler!r}, sampler_params={self.sampler_params!r}, "
                f"num_mcmc_steps={self.num_mcmc_steps!r}, clamp={self.clamp!r}, noise_box={self.noise_box!r}, "
                f"standardized={self.standardized!r}, recipe={self.recipe!r})")

    @property
    def kernel_params(self) -> tuple[tuple[str, float], ...]:
        """Deprecated: ``tuple(sampler_params.items())``; use :attr:`sampler_params`."""
        return renamed("SamplerSettings (attribute)", "kernel_params", tuple(self.sampler_params.items()),
                       "sampler_params", UNSET, stacklevel=4)

    @property
    def params(self) -> dict[str, float]:
        """Deprecated: use :attr:`sampler_params` (``params`` of an energy are its network's parameters)."""
        return renamed("SamplerSettings (attribute)", "params", dict(self.sampler_params), "sampler_params", UNSET,
                       stacklevel=4)

    @property
    def num_steps(self) -> int:
        """Deprecated: use :attr:`num_mcmc_steps`."""
        return renamed("SamplerSettings (attribute)", "num_steps", self.num_mcmc_steps, "num_mcmc_steps", UNSET,
                       stacklevel=4)

    @property
    def gradient_step(self) -> float | None:
        """The drift step ``s`` of ``x + s ∇log p`` for MALA, ULA and practical Langevin; ``None`` for other samplers."""
        params = self.sampler_params
        if self.sampler in _GRADIENT_STEP_SAMPLERS and "step_size" in params:
            return float(params["step_size"])
        return None

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what :func:`ebmppl.save` writes).

        The file's keys stay those of earlier releases (``"kernel_params"``,
        ``"num_steps"``), so files written by this release and the previous one
        load in both.

        Examples
        --------
        >>> SamplerSettings("mala", {"step_size": 0.01}, 20).to_json()["kernel_params"]
        {'step_size': 0.01}
        """
        return {"sampler": self.sampler, "kernel_params": dict(self.sampler_params),
                "num_steps": self.num_mcmc_steps, "clamp": None if self.clamp is None else list(self.clamp),
                "noise_box": None if self.noise_box is None else list(self.noise_box),
                "standardized": self.standardized, "recipe": self.recipe}

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> SamplerSettings:
        """The settings :meth:`to_json` wrote (a ``ValueError`` names a malformed field).

        Examples
        --------
        >>> spec = {"sampler": "mala", "kernel_params": {"step_size": 0.01}, "num_steps": 20}
        >>> SamplerSettings.from_json(spec).num_mcmc_steps
        20
        """
        try:
            pair = lambda v: None if v is None else (float(v[0]), float(v[1]))  # noqa: E731
            return cls(str(spec["sampler"]), {str(k): float(v) for k, v in spec["kernel_params"].items()},
                       int(spec["num_steps"]), pair(spec.get("clamp")), pair(spec.get("noise_box")),
                       bool(spec.get("standardized", False)), str(spec.get("recipe", "none")))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            raise ValueError(f"malformed sampler settings {spec!r} ({err}).") from None


def _as_event_shape(event_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(event_shape, (int, np.integer)) and not isinstance(event_shape, bool):
        event_shape = (int(event_shape),)
    try:
        if isinstance(event_shape, (str, bytes)) or any(isinstance(s, (bool, float, str)) for s in event_shape):
            raise TypeError  # "12" would otherwise read as (1, 2), 2.5 as 2
        shape = tuple(int(s) for s in event_shape)
    except TypeError:
        raise TypeError(
            f"event_shape must be an int or a tuple of ints, got {event_shape!r}; "
            "pass the shape of ONE example, e.g. event_shape=(2,)."
        ) from None
    if not shape:
        raise ValueError("event_shape must have at least one axis; for scalar examples use event_shape=(1,).")
    if any(s <= 0 for s in shape):
        raise ValueError(
            f"event_shape must have positive sizes, got {shape}; pass the shape of ONE example."
        )
    return shape


def _check_signature(energy_fn: Callable) -> None:
    """A TypeError when ``energy_fn`` cannot be called as ``energy_fn(params, x)`` (e.g. ``lambda x: ...``)."""
    try:
        sig = inspect.signature(energy_fn)
    except (TypeError, ValueError):  # a builtin or C function: nothing to inspect, the trial call decides
        return
    try:
        sig.bind(None, None)
    except TypeError:
        raise TypeError(
            f"energy_fn must take (params, x) and return a scalar; its signature is {sig}. Write it as "
            "energy_fn(params, x) (ignore params if it has none: lambda params, x: ..., with params=None)."
        ) from None


class Energy(eqx.Module):
    """An unnormalised density ``p(x) ∝ exp(-E(x) / T)`` defined by an energy function.

    Parameters
    ----------
    energy_fn
        ``energy_fn(params, x) -> scalar`` for ONE example ``x`` of shape
        ``event_shape``. ebmppl vmaps it over batches and chains.
    params
        Any pytree of parameters (``None`` for a fixed function).
    event_shape
        Shape of one example, e.g. ``(2,)`` for points in the plane or
        ``(1, 8, 8)`` for 8x8 grey images.
    temperature
        ``T > 0``; the density is ``exp(-E / T)``.
    probe
        Point at which the energy is checked at construction (default: zeros
        on the real line, state 0 of a discrete support, e.g. all spins
        ``-1``). Must be finite there.
    validate
        Check the energy at ``probe`` (default ``True``).
    sampler_settings
        The :class:`SamplerSettings` of the sampler that trained this energy
        (``None``: not trained by ebmppl). :func:`ebmppl.fit` sets it; samplers
        used on a trained model take their defaults from it.
    support
        The :class:`~ebmppl.support.Support` of ``x`` (default
        :data:`~ebmppl.support.REAL`): :data:`~ebmppl.support.BINARY`,
        :data:`~ebmppl.support.SPINS` or ``Categorical(K)`` (one-hot on the last
        event axis) declare a discrete energy. States are float arrays, so the
        energy function and its gradient are written as for real ``x``; integer
        or boolean states passed to :meth:`energy` and friends are cast to float.

    Raises
    ------
    ValueError
        If the energy is not a scalar, fails on an input of shape
        ``event_shape``, or is not finite at the probe point; if ``temperature``
        is not positive.
    TypeError
        If ``energy_fn`` cannot be called as ``energy_fn(params, x)`` (e.g.
        ``lambda x: ...`` without ``params``), or returns an integer or
        non-real dtype; if ``support`` is not a :class:`~ebmppl.support.Support`.

    Notes
    -----
    ``Energy`` is an Equinox module, hence a pytree: pass it through
    ``jax.jit`` and ``jax.grad`` freely. ``params`` are its leaves;
    ``energy_fn`` and ``event_shape`` are static.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> quad = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), params=jnp.ones(2), event_shape=(2,))
    >>> float(quad.energy(jnp.zeros(2)))
    1.0
    >>> quad.energy(jnp.zeros((5, 2))).shape   # batched over leading axes
    (5,)
    >>> float(quad.logdensity(jnp.zeros(2)))    # BlackJAX convention: -E/T
    -1.0
    >>> quad.score(jnp.zeros(2))                # grad_x log p
    Array([1., 1.], dtype=float32)
    >>> Energy(lambda x: jnp.sum(x**2), event_shape=(2,))   # forgot params
    Traceback (most recent call last):
    ...
    TypeError: energy_fn must take (params, x) and return a scalar; its signature is (x). ...

    A discrete energy: three ±1 spins on a chain.

    >>> from ebmppl.support import SPINS
    >>> chain = Energy(lambda p, x: -jnp.sum(x[:-1] * x[1:]), event_shape=(3,), support=SPINS)
    >>> chain.support, float(chain.energy(jnp.array([1.0, 1.0, 1.0])))
    (Binary(low=-1.0, high=1.0), -2.0)
    """

    energy_fn: EnergyFn = eqx.field(static=True)
    params: Any
    event_shape: tuple[int, ...] = eqx.field(static=True)
    temperature: float | jax.Array = 1.0
    sampler_settings: SamplerSettings | None = eqx.field(static=True, default=None)
    support: Support = eqx.field(static=True, default=REAL)

    def __init__(
        self,
        energy_fn: EnergyFn,
        params: Any = None,
        *,
        event_shape: int | Sequence[int],
        temperature: float = 1.0,
        probe: jax.Array | None = None,
        validate: bool = True,
        sampler_settings: SamplerSettings | None = None,
        support: Support = REAL,
    ):
        if not callable(energy_fn):
            raise TypeError(
                f"energy_fn must be callable as energy_fn(params, x) -> scalar, got {type(energy_fn).__name__}."
            )
        self.energy_fn = energy_fn
        self.params = params
        self.event_shape = _as_event_shape(event_shape)
        if not isinstance(temperature, jax.core.Tracer):
            t = float(temperature)
            if not (math.isfinite(t) and t > 0):
                raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.")
        self.temperature = temperature
        if sampler_settings is not None and not isinstance(sampler_settings, SamplerSettings):
            raise TypeError(f"sampler_settings must be an ebmppl.energy.SamplerSettings or None, got "
                            f"{type(sampler_settings).__name__}.")
        self.sampler_settings = sampler_settings
        if not isinstance(support, Support):
            raise TypeError(
                f"support must be an ebmppl.support.Support (REAL, BINARY, SPINS, Binary(low, high) or "
                f"Categorical(K)), got {support!r}."
            )
        if support.is_discrete:
            support.num_states(self.event_shape)  # a Categorical(K) checks that event_shape ends in K
        self.support = support
        if validate:
            self._validate(probe)

    # ------------------------------------------------------------------ checks
    def _validate(self, probe: jax.Array | None) -> None:
        if probe is None:
            probe = (self.support.first_state(self.event_shape) if self.support.is_discrete
                     else jnp.zeros(self.event_shape, dtype=jnp.result_type(float)))
        probe = jnp.asarray(probe)
        if probe.shape != self.event_shape:
            raise ValueError(
                f"probe has shape {probe.shape} but event_shape is {self.event_shape}; "
                "pass a probe point of the event shape."
            )
        _check_signature(self.energy_fn)
        try:
            out = jax.eval_shape(self.energy_fn, self.params, probe)
        except Exception as err:  # the user's function rejected the declared shape
            raise ValueError(
                f"energy_fn failed on an input of shape event_shape={self.event_shape}: {err}. "
                "Check event_shape: it is the shape of ONE example (no batch axis)."
            ) from err
        if not hasattr(out, "shape") or out.shape != ():
            shape = getattr(out, "shape", type(out).__name__)
            raise ValueError(
                f"energy_fn must return a scalar for one example of shape {self.event_shape}, "
                f"got shape {shape}. Write the energy for a single example (ebmppl vmaps over "
                "batches), or reduce its output, e.g. with jnp.sum or .squeeze()."
            )
        if not jnp.issubdtype(out.dtype, jnp.floating):
            raise TypeError(
                f"energy_fn must return a real floating-point scalar, got dtype {out.dtype}. "
                "Compute the energy in floating point (cast with .astype(jnp.float32))."
            )
        value = self.energy_fn(self.params, probe)
        if isinstance(value, jax.core.Tracer):  # built inside a traced function: shapes checked, values unknown
            return
        if not bool(jnp.isfinite(value)):
            raise ValueError(
                f"energy_fn is not finite at the probe point (value {float(value)}). Pass a probe "
                "point where the energy is defined (probe=...), or fix the energy (e.g. add an "
                "epsilon inside log/sqrt)."
            )

    def _check_input(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        k = len(self.event_shape)
        if x.ndim < k or x.shape[x.ndim - k :] != self.event_shape:
            raise ValueError(
                f"x has shape {x.shape}, whose trailing axes must equal event_shape "
                f"{self.event_shape}; reshape x to (..., *{self.event_shape})."
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            if self.support.is_discrete and (jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_):
                return x.astype(jnp.result_type(float))  # 0/1 or ±1 states given as integers
            raise TypeError(
                f"x has dtype {x.dtype}; energies are defined on real inputs. "
                "Cast x to floating point, e.g. x.astype(jnp.float32)."
            )
        return x

    def _batched(self, fn: Callable[[jax.Array], jax.Array], x: jax.Array) -> jax.Array:
        x = self._check_input(x)
        batch = x.shape[: x.ndim - len(self.event_shape)]
        flat = x.reshape((-1, *self.event_shape))
        out = jax.vmap(fn)(flat)
        return out.reshape(batch + out.shape[1:])

    # ------------------------------------------------------------ conventions
    def energy(self, x: jax.Array) -> jax.Array:
        """``E(x)``, batched over any leading axes of ``x`` (shape ``x.shape[:-len(event_shape)]``).

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> e.energy(jnp.zeros((3, 4, 2))).shape, float(e.energy(jnp.zeros(2)))
        ((3, 4), 1.0)
        """
        return self._batched(lambda xi: self.energy_fn(self.params, xi), x)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Alias of :meth:`energy`."""
        return self.energy(x)

    def logdensity_fn(self, x: jax.Array) -> jax.Array:
        """``-E(x) / T`` for ONE example, unchecked and unbatched: what a sampler's kernel takes.

        This is the one place where ebmppl writes the sign and temperature
        convention; :meth:`logdensity`, :meth:`potential`, :meth:`score`, the
        samplers, the trainers and the log Z estimators all go through it (or
        :meth:`potential_fn`). Inside jit, ``energy.logdensity_fn`` is a pytree
        (an Equinox bound method): θ travels with it as data, so a new θ does
        not recompile.

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> float(e.logdensity_fn(jnp.zeros(2))), float(jax.grad(e.logdensity_fn)(jnp.zeros(2))[0])
        (-0.5, 0.5)
        """
        return -self.energy_fn(self.params, x) / self.temperature

    def potential_fn(self, x: jax.Array) -> jax.Array:
        """``E(x) / T`` for ONE example (``= -logdensity_fn(x)``): NumPyro's ``potential_fn`` convention.

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> float(e.potential_fn(jnp.zeros(2)))
        0.5
        """
        return -self.logdensity_fn(x)

    def logdensity(self, x: jax.Array) -> jax.Array:
        """Unnormalised log-density ``-E(x) / T``: BlackJAX's ``logdensity_fn`` convention.

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> float(e.logdensity(jnp.zeros(2)))
        -0.5
        """
        return self._batched(self.logdensity_fn, x)

    def potential(self, x: jax.Array) -> jax.Array:
        """Potential ``E(x) / T`` (``= -log p + const``): NumPyro's ``potential_fn`` convention.

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> float(e.potential(jnp.zeros(2)))
        0.5
        """
        return self._batched(self.potential_fn, x)

    def score(self, x: jax.Array) -> jax.Array:
        """Score ``∇ₓ log p(x) = -∇ₓ E(x) / T``, batched like :meth:`energy`.

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> e.score(jnp.zeros((1, 2))).tolist()
        [[0.5, 0.5]]
        """
        return self._batched(jax.grad(self.logdensity_fn), x)

    def typical_region(self) -> tuple[jax.Array, jax.Array]:
        """Where the mass of this energy is expected: ``(center, scale)``, each of the event shape.

        ebmppl uses it for defaults that must land near the mass: chains of
        :func:`ebmppl.sample` and :func:`ebmppl.diagnostics.compare` start
        uniformly on ``center ± 2·scale``, and :func:`ebmppl.log_partition`'s
        base is ``N(center, (3·scale)²)``. An ``energy_fn`` declares it with a
        ``typical_region()`` method returning ``(center, scale)``; the energies
        that :func:`ebmppl.fit` returns with its ``"density"`` recipe do (the
        training data's mean and standard deviation). Otherwise it is ``(0, 1)``.

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), None, event_shape=(2,))
        >>> [v.tolist() for v in e.typical_region()]
        [[0.0, 0.0], [1.0, 1.0]]
        """
        ftype = jnp.result_type(float)
        declared = getattr(self.energy_fn, "typical_region", None)
        if callable(declared):
            center, scale = declared()
            return (jnp.broadcast_to(jnp.asarray(center, ftype).reshape(-1), (self.dim,)).reshape(self.event_shape),
                    jnp.broadcast_to(jnp.asarray(scale, ftype).reshape(-1), (self.dim,)).reshape(self.event_shape))
        return jnp.zeros(self.event_shape, ftype), jnp.ones(self.event_shape, ftype)

    # ---------------------------------------------------------------- updates
    def with_params(self, params: Any) -> Energy:
        """The same energy with other parameters (no re-validation; jit-safe).

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> float(e.with_params(jnp.zeros(2)).energy(jnp.zeros(2)))
        0.0
        """
        return eqx.tree_at(lambda e: e.params, self, params, is_leaf=lambda v: v is None)

    def with_sampler_settings(self, settings: SamplerSettings | None) -> Energy:
        """The same energy recording ``settings`` as the sampler that trained it (``None`` forgets them).

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), None, event_shape=(2,))
        >>> e.with_sampler_settings(SamplerSettings("mala", {"step_size": 0.1}, 20)).sampler_settings.sampler_params
        {'step_size': 0.1}
        """
        if settings is not None and not isinstance(settings, SamplerSettings):
            raise TypeError(f"settings must be an ebmppl.energy.SamplerSettings or None, got {type(settings).__name__}.")
        out = object.__new__(type(self))  # a static field: copy the fields, no re-validation (jit-safe)
        for field in dataclasses.fields(self):
            object.__setattr__(out, field.name, settings if field.name == "sampler_settings" else getattr(self, field.name))
        return out

    def with_temperature(self, temperature: float | jax.Array) -> Energy:
        """The same energy at another temperature ``T`` (the density becomes ``exp(-E/T)``).

        Examples
        --------
        >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,), temperature=2.0)
        >>> float(e.with_temperature(0.5).logdensity(jnp.zeros(2)))
        -2.0
        """
        if not isinstance(temperature, jax.core.Tracer) and not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        return eqx.tree_at(lambda e: e.temperature, self, temperature)

    @property
    def dim(self) -> int:
        """Number of scalar entries in one example."""
        return math.prod(self.event_shape)

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_equinox(
        cls,
        module: eqx.Module,
        *,
        event_shape: int | Sequence[int],
        temperature: float = 1.0,
        probe: jax.Array | None = None,
        support: Support = REAL,
    ) -> Energy:
        """An energy from an Equinox module ``module(x) -> scalar``.

        The module's inexact arrays become ``params``; everything else is
        static, so the module costs nothing extra inside ``jit``. ``support``
        declares a discrete energy (see :class:`Energy`); the other
        constructors take it too.

        Examples
        --------
        >>> import jax
        >>> from ebmppl import Energy
        >>> from ebmppl.nn import MLPEnergy
        >>> net = MLPEnergy(2, widths=(16, 16), key=jax.random.key(0))
        >>> energy = Energy.from_equinox(net, event_shape=(2,))
        >>> energy.energy(jax.numpy.zeros((3, 2))).shape
        (3,)
        """
        params, static = eqx.partition(module, eqx.is_inexact_array)
        fn = _EquinoxApply(static)
        return cls(fn, params, event_shape=event_shape, temperature=temperature, probe=probe, support=support)

    @classmethod
    def from_nnx(
        cls,
        module: Any,
        *,
        event_shape: int | Sequence[int],
        temperature: float = 1.0,
        probe: jax.Array | None = None,
        support: Support = REAL,
    ) -> Energy:
        """An energy from a Flax NNX module ``module(x) -> scalar``.

        The module is split once into a static graph definition and a state
        pytree (the ``params``); calls merge them inside the traced function,
        which avoids ``nnx.jit``'s per-call Python overhead.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from ebmppl import Energy
        >>> class Net(nnx.Module):
        ...     def __init__(self, rngs):
        ...         self.lin = nnx.Linear(2, 1, rngs=rngs)
        ...     def __call__(self, x):
        ...         return self.lin(x)[0]
        >>> energy = Energy.from_nnx(Net(nnx.Rngs(0)), event_shape=(2,))
        >>> energy.energy(jnp.zeros((4, 2))).shape
        (4,)
        """
        from flax import nnx

        graphdef, state = nnx.split(module)
        return cls(
            _NNXApply(graphdef), state, event_shape=event_shape, temperature=temperature, probe=probe,
            support=support,
        )

    @classmethod
    def from_linen(
        cls,
        module: Any,
        params: Any,
        *,
        event_shape: int | Sequence[int],
        temperature: float = 1.0,
        probe: jax.Array | None = None,
        support: Support = REAL,
    ) -> Energy:
        """An energy from a Flax Linen module and its variables (``module.apply(params, x) -> scalar``).

        Examples
        --------
        >>> import jax, jax.numpy as jnp
        >>> import flax.linen as nn
        >>> from ebmppl import Energy
        >>> class Net(nn.Module):
        ...     @nn.compact
        ...     def __call__(self, x):
        ...         return nn.Dense(1)(x)[0]
        >>> net = Net()
        >>> variables = net.init(jax.random.key(0), jnp.zeros(2))
        >>> energy = Energy.from_linen(net, variables, event_shape=(2,))
        >>> energy.energy(jnp.zeros((4, 2))).shape
        (4,)
        """
        return cls(module.apply, params, event_shape=event_shape, temperature=temperature, probe=probe,
                   support=support)


class _EquinoxApply(eqx.Module):
    """``(params, x) -> static ⊕ params (x)``; hashable, so it can be a static field."""

    static: Any = eqx.field(static=True)

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        return eqx.combine(params, self.static)(x)


class _NNXApply:
    def __init__(self, graphdef: Any):
        self.graphdef = graphdef

    def __call__(self, state: Any, x: jax.Array) -> jax.Array:
        from flax import nnx

        return nnx.merge(self.graphdef, state)(x)
