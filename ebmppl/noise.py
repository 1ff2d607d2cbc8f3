"""Noise ladders and noise-conditional energies ``E(x, σ)``: one energy per noise level.

A *noise ladder* is a short, strictly descending list of noise scales
``σ_1 > σ_2 > … > σ_L ≥ 0`` (:class:`NoiseLadder`). A *noise-conditional
energy* ``E(x, σ)`` models, at each level, the data smoothed by Gaussian noise
of scale ``σ``, ``p_σ = p_data * N(0, σ²I)`` (:class:`NoiseConditionalEnergy`).
Multi-σ denoising score matching (:func:`ebmppl.objectives.multiscale.multiscale_dsm`)
and Diffusion Recovery Likelihood train one; annealed Langevin and
predictor–corrector (:mod:`ebmppl.samplers.annealed`) sample it level by level,
from the broad ``σ_max`` down to the data level ``σ_min``.

A :class:`NoiseConditionalEnergy` IS an :class:`ebmppl.Energy`: its
``energy_fn(params, x)`` is ``E(x, σ_min)``, so :func:`ebmppl.sample`,
:func:`ebmppl.log_partition`, :func:`ebmppl.save` / :func:`ebmppl.load` and the
evaluation tools all act on the data-level density unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._deprecation import UNSET, renamed
from ebmppl.energy import Energy, SamplerSettings, _as_event_shape
from ebmppl.support import REAL, Support

__all__ = ["NoiseLadder", "NoiseConditionalEnergy", "NoiseConditionalMLP", "noise_conditional",
           "noise_conditional_mlp", "NoiseLadderWarning", "LadderScaleCheck", "ladder_scale_problems"]

NoiseEnergyFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


class NoiseLadder(eqx.Module):
    """A strictly descending sequence of noise scales ``σ_1 > … > σ_L ≥ 0`` (the order samplers visit them).

    Hashable (static fields only), so it can sit in a static field of an
    energy or an objective.

    Parameters
    ----------
    sigmas
        The noise scales, largest first. Finite, ``>= 0``, strictly descending;
        only the last may be ``0`` (a clean-data level, as Diffusion Recovery
        Likelihood uses).

    Raises
    ------
    ValueError
        ``sigmas`` is empty, not finite, negative or not strictly descending.

    Examples
    --------
    >>> from ebmppl.noise import NoiseLadder
    >>> ladder = NoiseLadder.geometric(1.0, 0.01, 3)
    >>> ladder.sigmas, ladder.sigma_max, ladder.sigma_min, ladder.num_levels
    ((1.0, 0.1, 0.01), 1.0, 0.01, 3)
    >>> NoiseLadder((0.5, 0.1, 0.0)).array().tolist()
    [0.5, 0.10000000149011612, 0.0]
    >>> NoiseLadder((0.1, 0.5))
    Traceback (most recent call last):
    ...
    ValueError: sigmas must be strictly descending (largest first, the order samplers visit them), got (0.1, 0.5); ...
    """

    sigmas: tuple[float, ...] = eqx.field(static=True)

    def __init__(self, sigmas: Sequence[float]):
        try:
            values = tuple(float(s) for s in np.asarray(sigmas, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError):
            raise TypeError(f"sigmas must be a sequence of numbers, got {sigmas!r}.") from None
        if not values:
            raise ValueError("sigmas must hold at least one noise scale, e.g. NoiseLadder.geometric(1.0, 0.01, 10).")
        if not all(math.isfinite(s) and s >= 0 for s in values):
            raise ValueError(f"sigmas must be finite and >= 0, got {values}.")
        if any(a <= b for a, b in zip(values[:-1], values[1:], strict=True)):
            raise ValueError(f"sigmas must be strictly descending (largest first, the order samplers visit them), got "
                             f"{values}; pass sorted(sigmas, reverse=True) without repeats.")
        self.sigmas = values

    @classmethod
    def geometric(cls, sigma_max: float, sigma_min: float, num_levels: int, *,
                  smallest_positive: float | None = None) -> NoiseLadder:
        """``num_levels`` scales in geometric progression from ``sigma_max`` down to ``sigma_min``.

        With ``sigma_min = 0`` the ladder is ``num_levels - 1`` geometric levels
        from ``sigma_max`` down to ``smallest_positive`` (default
        ``sigma_max / 100``), then the clean level ``0``.

        Examples
        --------
        >>> NoiseLadder.geometric(1.0, 0.0, 4, smallest_positive=0.01).sigmas
        (1.0, 0.1, 0.01, 0.0)
        >>> NoiseLadder.geometric(2.0, 2.0, 1).sigmas
        (2.0,)
        """
        if isinstance(num_levels, bool) or not isinstance(num_levels, (int, np.integer)) or num_levels < 1:
            raise ValueError(f"num_levels must be an int >= 1, got {num_levels!r}.")
        hi, lo = float(sigma_max), float(sigma_min)
        if not (math.isfinite(hi) and hi > 0):
            raise ValueError(f"sigma_max must be a finite number > 0, got {sigma_max!r}.")
        if not (math.isfinite(lo) and 0 <= lo <= hi):
            raise ValueError(f"sigma_min must satisfy 0 <= sigma_min <= sigma_max={hi}, got {sigma_min!r}.")
        if num_levels == 1:
            if lo != hi:
                raise ValueError(f"one level needs sigma_min == sigma_max, got {lo} and {hi}; pass num_levels >= 2.")
            return cls((hi,))
        if lo == hi:
            raise ValueError(f"sigma_min == sigma_max = {hi} with num_levels={num_levels}; the levels must differ.")
        if lo == 0:
            small = hi / 100 if smallest_positive is None else float(smallest_positive)
            if not 0 < small <= hi:
                raise ValueError(f"smallest_positive must be in (0, sigma_max={hi}], got {smallest_positive!r}.")
            if num_levels == 2:
                return cls((hi, 0.0))
            if small == hi:
                raise ValueError("smallest_positive == sigma_max leaves no room for num_levels - 1 distinct levels.")
            positive = np.geomspace(hi, small, num_levels - 1)
            return cls((*_rounded(positive, hi, small), 0.0))
        return cls(_rounded(np.geomspace(hi, lo, num_levels), hi, lo))

    @property
    def sigma_max(self) -> float:
        """The largest scale, ``sigmas[0]``."""
        return self.sigmas[0]

    @property
    def sigma_min(self) -> float:
        """The smallest scale, ``sigmas[-1]`` (may be 0)."""
        return self.sigmas[-1]

    @property
    def num_levels(self) -> int:
        """The number of levels ``L``."""
        return len(self.sigmas)

    def array(self) -> jax.Array:
        """The scales as an array ``(L,)`` of the default float dtype.

        Examples
        --------
        >>> NoiseLadder((1.0, 0.5)).array().shape
        (2,)
        """
        return jnp.asarray(self.sigmas, jnp.result_type(float))

    def __repr__(self) -> str:
        return f"NoiseLadder({self.sigmas!r})"


def _rounded(values: np.ndarray, hi: float, lo: float) -> tuple[float, ...]:
    """Geometric levels as floats, the ends exact and the interior rounded to 12 significant digits (clean repr)."""
    out = [float(f"{v:.12g}") for v in values]
    out[0], out[-1] = hi, lo
    return tuple(out)


def _check_ladder(ladder: Any) -> NoiseLadder:
    if isinstance(ladder, NoiseLadder):
        return ladder
    if isinstance(ladder, (list, tuple, np.ndarray, jax.Array)):
        return NoiseLadder(ladder)
    raise TypeError(f"ladder must be an ebmppl.noise.NoiseLadder (e.g. NoiseLadder.geometric(1.0, 0.01, 10)) or a "
                    f"descending sequence of scales, got {type(ladder).__name__}.")


class _AtSigma(eqx.Module):
    """``(params, x) -> noise_energy_fn(params, x, sigma)`` at a fixed level; hashable, an ``energy_fn``."""

    noise_energy_fn: Any = eqx.field(static=True)
    sigma: float = eqx.field(static=True)

    def __call__(self, params: Any, x: jax.Array) -> jax.Array:
        return self.noise_energy_fn(params, x, jnp.asarray(self.sigma, x.dtype))

    def typical_region(self) -> tuple[Any, Any]:
        """The declared ``(center, scale)`` of ``noise_energy_fn`` (see ``Energy.typical_region``), else (0, 1).

        The built-in network's (:class:`_NoiseEquinoxApply`) is its confinement smoothed to this level.
        """
        if isinstance(self.noise_energy_fn, _NoiseEquinoxApply):
            return self.noise_energy_fn.typical_region(self.sigma)
        declared = getattr(self.noise_energy_fn, "typical_region", None)
        return declared() if callable(declared) else (np.zeros(1), np.ones(1))


def _check_noise_signature(fn: Callable) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(None, None, None)
    except TypeError:
        raise TypeError(f"noise_energy_fn must take (params, x, sigma) and return a scalar; its signature is {sig}. "
                        "Write it as noise_energy_fn(params, x, sigma) for ONE example x and a scalar sigma.") from None


class NoiseConditionalEnergy(Energy):
    """An energy ``E(x, σ)`` over a :class:`NoiseLadder`; as an :class:`~ebmppl.Energy`, the level ``σ_min``.

    ``p_σ(x) ∝ exp(-E(x, σ) / T)`` is the model of the data smoothed by
    ``N(0, σ²I)``. The inherited ``energy_fn(params, x)`` is
    ``noise_energy_fn(params, x, σ_min)``, so every tool that takes an
    :class:`~ebmppl.Energy` (sampling, log Z, saving, evaluation) works on the
    data-level density; :meth:`noise_energy`, :meth:`noise_score` and
    :meth:`at_noise` reach the other levels. :meth:`with_params`,
    :meth:`with_temperature` and :meth:`with_sampler_settings` keep the type,
    the ladder and ``noise_energy_fn``; :meth:`with_ladder` changes the ladder.

    Build one with :func:`noise_conditional` (your own function) or
    :func:`noise_conditional_mlp` (a built-in network).

    Parameters
    ----------
    noise_energy_fn
        ``noise_energy_fn(params, x, sigma) -> scalar`` for ONE example ``x``
        and a scalar ``sigma`` (possibly traced); must be finite at every level
        of the ladder, ``σ = 0`` included when the ladder has it.
    params
        Any pytree of parameters.
    event_shape, temperature, probe, validate, sampler_settings, support
        As for :class:`~ebmppl.Energy`.
    ladder
        The :class:`NoiseLadder` (or a descending sequence of scales).

    Examples
    --------
    The Gaussian ``N(0, 1)`` smoothed by ``σ``: ``E(x, σ) = ‖x‖² / (2 (1 + σ²))``.

    >>> import jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> fn = lambda p, x, s: 0.5 * jnp.sum(x**2) / (p + s**2)
    >>> e = noise_conditional(fn, jnp.float32(1.0), (2,), NoiseLadder((3.0, 1.0)))
    >>> x = jnp.ones((4, 2))
    >>> float(e.energy(x)[0]), float(e.noise_energy(x, 3.0)[0])      # σ_min = 1, then σ = 3
    (0.5, 0.10000000149011612)
    >>> e.noise_energy(x, jnp.array([3.0, 1.0, 1.0, 3.0])).tolist()    # one σ per example
    [0.10000000149011612, 0.5, 0.5, 0.10000000149011612]
    >>> e.noise_score(x[:1], 1.0).tolist()                              # -∇ₓE / T
    [[-0.5, -0.5]]
    >>> type(e.with_params(jnp.float32(2.0))).__name__, e.with_temperature(2.0).ladder == e.ladder
    ('NoiseConditionalEnergy', True)
    """

    noise_energy_fn: NoiseEnergyFn = eqx.field(static=True)
    ladder: NoiseLadder = eqx.field(static=True)

    def __init__(
        self,
        noise_energy_fn: NoiseEnergyFn,
        params: Any = None,
        *,
        event_shape: int | Sequence[int],
        ladder: NoiseLadder | Sequence[float],
        temperature: float = 1.0,
        probe: jax.Array | None = None,
        validate: bool = True,
        sampler_settings: SamplerSettings | None = None,
        support: Support = REAL,
    ):
        if not callable(noise_energy_fn):
            raise TypeError(f"noise_energy_fn must be callable as noise_energy_fn(params, x, sigma) -> scalar, got "
                            f"{type(noise_energy_fn).__name__}.")
        if validate:
            _check_noise_signature(noise_energy_fn)
        ladder = _check_ladder(ladder)
        if validate:  # Energy's checks at σ_max and σ_min, each level's function compiled whole (not op by op)
            for sigma in sorted({ladder.sigma_max, ladder.sigma_min}, reverse=True):
                Energy(jax.jit(_AtSigma(noise_energy_fn, sigma)), params, event_shape=event_shape, probe=probe,
                       support=support)
        self.noise_energy_fn = noise_energy_fn
        self.ladder = ladder
        super().__init__(_AtSigma(noise_energy_fn, ladder.sigma_min), params, event_shape=event_shape,
                         temperature=temperature, probe=probe, validate=False, sampler_settings=sampler_settings,
                         support=support)

    # ------------------------------------------------------------ levels
    def _sigma_batch(self, sigma: Any, batch: tuple[int, ...], dtype: Any) -> jax.Array:
        sigma = jnp.asarray(sigma, dtype)
        if sigma.ndim == 0:
            return jnp.broadcast_to(sigma, batch)
        if sigma.shape != batch:
            raise ValueError(f"sigma has shape {sigma.shape}; pass a scalar or one sigma per example, of shape "
                             f"{batch} (the leading axes of x).")
        return sigma

    def _per_level(self, fn: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, sigma: Any) -> jax.Array:
        x = self._check_input(x)
        batch = x.shape[: x.ndim - len(self.event_shape)]
        sig = self._sigma_batch(sigma, batch, x.dtype).reshape(-1)
        out = jax.vmap(fn)(x.reshape((-1, *self.event_shape)), sig)
        return out.reshape(batch + out.shape[1:])

    def noise_logdensity_fn(self, x: jax.Array, sigma: jax.Array) -> jax.Array:
        """``-E(x, σ) / T`` for ONE example and a scalar ``σ``, unchecked (what samplers differentiate).

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> e = noise_conditional(lambda p, x, s: jnp.sum(x**2) / (1 + s**2), None, (1,), (1.0, 0.0))
        >>> float(e.noise_logdensity_fn(jnp.ones(1), 1.0))
        -0.5
        """
        return -self.noise_energy_fn(self.params, x, sigma) / self.temperature

    def noise_energy(self, x: jax.Array, sigma: Any) -> jax.Array:
        """``E(x, σ)`` batched over the leading axes of ``x``; ``σ`` a scalar or one per example.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> e = noise_conditional(lambda p, x, s: jnp.sum(x**2) / (1 + s**2), None, (1,), (1.0, 0.0))
        >>> e.noise_energy(jnp.ones((2, 3, 1)), 1.0).shape
        (2, 3)
        """
        return self._per_level(lambda xi, si: self.noise_energy_fn(self.params, xi, si), x, sigma)

    def noise_score(self, x: jax.Array, sigma: Any) -> jax.Array:
        """``∇ₓ log p_σ(x) = -∇ₓE(x, σ) / T``, the shape of ``x``; ``σ`` a scalar or one per example.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (1,), (1.0, 0.0))
        >>> e.noise_score(jnp.ones((2, 1)), jnp.array([1.0, 0.0])).tolist()
        [[-0.5], [-1.0]]
        """
        return self._per_level(jax.grad(self.noise_logdensity_fn), x, sigma)

    def with_ladder(self, ladder: NoiseLadder | Sequence[float]) -> NoiseConditionalEnergy:
        """The same ``E(x, σ)`` over another ladder, e.g. a finer one for predictor–corrector sampling.

        The function and parameters are unchanged (a network keeps the σ
        normalisation it was built with); the data level becomes the new
        ``σ_min``. Levels between the trained ones are only as good as the
        training made them: draw σ continuously (``multiscale_dsm(...,
        continuous=True)``) to train the whole range.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (1,), (1.0, 0.1))
        >>> fine = e.with_ladder(NoiseLadder.geometric(1.0, 0.1, 50))
        >>> type(fine).__name__, fine.ladder.num_levels, float(fine.energy(jnp.ones(1))) == float(e.energy(jnp.ones(1)))
        ('NoiseConditionalEnergy', 50, True)
        """
        ladder = _check_ladder(ladder)
        out = object.__new__(type(self))  # static fields: copy, no re-validation (jit-safe)
        for field in dataclasses.fields(self):
            object.__setattr__(out, field.name, getattr(self, field.name))
        object.__setattr__(out, "ladder", ladder)
        object.__setattr__(out, "energy_fn", _AtSigma(self.noise_energy_fn, ladder.sigma_min))
        return out

    def at_noise(self, sigma: float) -> Energy:
        """The plain :class:`~ebmppl.Energy` of the level ``σ`` (a Python number): ``E(·, σ)``.

        Examples
        --------
        >>> import jax.numpy as jnp
        >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (1,), (1.0, 0.0))
        >>> level = e.at_noise(1.0)
        >>> type(level).__name__, float(level.energy(jnp.ones(1)))
        ('Energy', 0.25)
        """
        if isinstance(sigma, jax.core.Tracer):
            raise TypeError("at_noise needs a concrete sigma (a Python float); inside jit use noise_energy / "
                            "noise_score, which take a traced sigma.")
        s = float(sigma)
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}.")
        return Energy(_AtSigma(self.noise_energy_fn, s), self.params, event_shape=self.event_shape,
                      temperature=self.temperature, validate=False, sampler_settings=self.sampler_settings,
                      support=self.support)


def noise_conditional(noise_energy_fn: NoiseEnergyFn, params: Any, event_shape: int | Sequence[int],
                      ladder: NoiseLadder | Sequence[float], *, temperature: float = 1.0,
                      probe: jax.Array | None = None, validate: bool = True) -> NoiseConditionalEnergy:
    """A :class:`NoiseConditionalEnergy` from your own ``noise_energy_fn(params, x, sigma) -> scalar``.

    Parameters
    ----------
    noise_energy_fn
        The energy of ONE example ``x`` (shape ``event_shape``) at the scalar
        noise scale ``sigma``.
    params
        Its parameters (any pytree; ``None`` for a fixed function).
    event_shape
        The shape of one example.
    ladder
        A :class:`NoiseLadder`, or a descending sequence of scales.
    temperature, probe, validate
        As for :class:`~ebmppl.Energy` (the energy is checked at ``probe`` at
        ``σ_min`` and ``σ_max``).

    Examples
    --------
    A 1-D mixture whose σ-smoothed density is closed form:
    ``E(x, σ) = -log Σ_k w_k N(x; μ_k, s² + σ²)``.

    >>> import jax, jax.numpy as jnp
    >>> from jax.scipy.stats import norm
    >>> def mix(p, x, s):
    ...     sd = jnp.sqrt(0.1**2 + s**2)
    ...     return -jax.nn.logsumexp(jnp.log(0.5) + norm.logpdf(x[0], jnp.array([-2.0, 2.0]), sd))
    >>> e = noise_conditional(mix, None, (1,), NoiseLadder.geometric(5.0, 0.01, 8))
    >>> e.ladder.num_levels, e.energy(jnp.zeros((3, 1))).shape
    (8, (3,))
    >>> noise_conditional(lambda p, x: jnp.sum(x**2), None, (1,), (1.0, 0.1))
    Traceback (most recent call last):
    ...
    TypeError: noise_energy_fn must take (params, x, sigma) and return a scalar; its signature is (p, x). ...
    """
    return NoiseConditionalEnergy(noise_energy_fn, params, event_shape=event_shape, ladder=ladder,
                                  temperature=temperature, probe=probe, validate=validate)


# --------------------------------------------------------------------------- the built-in network
class NoiseConditionalMLP(eqx.Module):
    """An MLP ``(x, σ) -> E(x, σ)`` with SiLU activations and a σ embedding added to every hidden layer.

    The noise scale enters through ``u = log(σ + σ₀)`` mapped to ``t ∈ [-1, 1]``
    over the ladder (``σ₀ = 0`` unless the ladder holds ``σ = 0``, then half its
    smallest positive level, so ``σ = 0`` is a finite point) and its Fourier
    features ``(t, sin(kπt/2), cos(kπt/2))``, ``k = 1..num_frequencies``; each
    hidden layer is modulated by them, FiLM-style (Perez et al. 2018; NCSN's
    conditional normalisation plays this part): ``h ← act((1 + γ(e)) ⊙ W h + β(e))``
    with ``γ, β`` learned linear maps of the features. (On two moons, 8
    levels, 1500 steps of multi-σ DSM, hidden ``(64, 64)``: an additive shift
    alone left the data level 0.59 nats of held-out log-likelihood short of
    the exact smoothed density, FiLM 0.21; hidden ``(64, 64, 64)`` with FiLM 0.05.)

    ``E(x, σ) = f_θ(x, σ) / σ`` when ``scale_by_sigma`` (NCSN's ``1/σ``: the
    score at level ``σ`` is O(1/σ), as the target ``-ε/σ`` is), else
    ``f_θ(x, σ)`` (finite at ``σ = 0``). With ``confinement_scale`` ``s`` it
    adds ``‖x - c‖² / (2 (s² + σ²))``: the Gaussian base ``N(c, s²)`` smoothed
    to the level, so every level is normalisable whatever the network does.

    Use :func:`noise_conditional_mlp` to wrap it as an energy.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> net = NoiseConditionalMLP(2, (1.0, 0.1), (16, 16), key=jax.random.key(0))
    >>> net(jnp.zeros(2), jnp.float32(0.1)).shape
    ()
    """

    layers: tuple[eqx.nn.Linear, ...]
    conditioning: tuple[eqx.nn.Linear, ...]
    sigmas: tuple[float, ...] = eqx.field(static=True)
    activation: Callable[[jax.Array], jax.Array] = eqx.field(static=True)
    scale_by_sigma: bool = eqx.field(static=True)
    confinement_scale: float | None = eqx.field(static=True)
    confinement_center: tuple[float, ...] | None = eqx.field(static=True)
    num_frequencies: int = eqx.field(static=True)

    def __init__(self, in_size: int, sigmas: Sequence[float], widths: Sequence[int] = (128, 128, 128), *,
                 scale_by_sigma: bool = True, confinement_scale: float | None = None,
                 confinement_center: Sequence[float] | None = None,
                 activation: Callable[[jax.Array], jax.Array] = jax.nn.silu, num_frequencies: int = 4,
                 key: jax.Array):
        if isinstance(in_size, bool) or int(in_size) <= 0:
            raise ValueError(f"in_size must be a positive int, got {in_size!r}.")
        widths = tuple(int(w) for w in widths)
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {widths!r}.")
        ladder = NoiseLadder(sigmas)
        if scale_by_sigma and ladder.sigma_min == 0:
            raise ValueError("scale_by_sigma=True divides by σ, but the ladder has a σ = 0 level; pass "
                             "scale_by_sigma=False (as Diffusion Recovery Likelihood needs) or a ladder with "
                             "sigma_min > 0.")
        if confinement_scale is not None and not float(confinement_scale) > 0:
            raise ValueError(f"confinement_scale must be > 0 (or None), got {confinement_scale!r}.")
        if confinement_center is not None and len(confinement_center) != int(in_size):
            raise ValueError(f"confinement_center must have {in_size} entries (one example's size), got "
                             f"{len(confinement_center)}.")
        if int(num_frequencies) < 0:
            raise ValueError(f"num_frequencies must be >= 0, got {num_frequencies!r}.")
        self.sigmas = ladder.sigmas
        self.activation = activation
        self.scale_by_sigma = bool(scale_by_sigma)
        self.confinement_scale = None if confinement_scale is None else float(confinement_scale)
        self.confinement_center = None if confinement_center is None else tuple(float(c) for c in confinement_center)
        self.num_frequencies = int(num_frequencies)
        sizes = (int(in_size), *widths, 1)
        keys = jax.random.split(key, 2 * len(widths) + 1)
        self.layers = tuple(eqx.nn.Linear(a, b, key=k)
                            for a, b, k in zip(sizes[:-1], sizes[1:], keys[: len(sizes) - 1], strict=True))
        emb = 1 + 2 * self.num_frequencies
        self.conditioning = tuple(eqx.nn.Linear(emb, 2 * w, key=k)
                                  for w, k in zip(widths, keys[len(sizes) - 1:], strict=True))

    def _offset(self) -> float:
        positive = [s for s in self.sigmas if s > 0]
        if self.sigmas[-1] > 0:
            return 0.0
        return 0.5 * min(positive) if positive else 1.0

    def embed(self, sigma: jax.Array) -> jax.Array:
        """The σ features ``(t, sin(kπt/2), cos(kπt/2))`` with ``t ∈ [-1, 1]`` over the ladder.

        Examples
        --------
        >>> import jax
        >>> net = NoiseConditionalMLP(2, (1.0, 0.01), (8,), key=jax.random.key(0))
        >>> [round(float(net.embed(s)[0]), 3) for s in (1.0, 0.1, 0.01)]
        [1.0, 0.0, -1.0]
        """
        off = self._offset()
        lo, hi = math.log(self.sigmas[-1] + off), math.log(self.sigmas[0] + off)
        u = jnp.log(jnp.asarray(sigma) + off)
        t = 2.0 * (u - lo) / (hi - lo) - 1.0 if hi > lo else u - lo
        k = jnp.arange(1, self.num_frequencies + 1, dtype=t.dtype) * (jnp.pi / 2)
        return jnp.concatenate([t[None], jnp.sin(k * t), jnp.cos(k * t)])

    def __call__(self, x: jax.Array, sigma: jax.Array) -> jax.Array:
        x = x.reshape(-1)
        sigma = jnp.asarray(sigma, x.dtype)
        emb = self.embed(sigma)
        h = x
        for layer, cond in zip(self.layers[:-1], self.conditioning, strict=True):
            scale, shift = jnp.split(cond(emb), 2)
            h = self.activation(layer(h) * (1.0 + scale) + shift)
        energy = self.layers[-1](h)[0]
        if self.scale_by_sigma:
            energy = energy / sigma
        if self.confinement_scale is not None:
            centred = x if self.confinement_center is None else x - jnp.asarray(self.confinement_center, x.dtype)
            energy = energy + 0.5 * jnp.sum(centred**2) / (self.confinement_scale**2 + sigma**2)
        return energy


class _NoiseEquinoxApply(eqx.Module):
    """``(params, x, sigma) -> (static ⊕ params)(x, sigma)``; hashable, so it can be a static field."""

    static: Any = eqx.field(static=True)

    def __call__(self, params: Any, x: jax.Array, sigma: jax.Array) -> jax.Array:
        return eqx.combine(params, self.static)(x, sigma)

    def typical_region(self, sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``(c, √(s² + σ²))``: the network's confinement ``N(c, s²)`` smoothed to ``σ``; ``(0, 1)`` without one.

        :meth:`ebmppl.Energy.typical_region` reads it: AIS's pilot base and the samplers' starts then lie where
        the confinement keeps the mass, not at the unit box around the origin.

        Examples
        --------
        >>> import jax
        >>> e = noise_conditional_mlp(jax.random.key(0), (2,), (3.0, 0.1), hidden=(8,), confinement_scale=4.0,
        ...                           confinement_center=(10.0, 0.0))
        >>> [v.tolist() for v in e.at_noise(3.0).typical_region()]     # N(c, s²) smoothed by σ = 3: scale 5
        [[10.0, 0.0], [5.0, 5.0]]
        """
        confinement = _confinement(self)
        if confinement is None:
            return np.zeros(1), np.ones(1)
        center, scale = confinement
        return (np.zeros(1) if center is None else np.asarray(center, np.float64),
                np.full(1, math.sqrt(scale**2 + float(sigma) ** 2)))


def _confinement(noise_energy_fn: Any) -> tuple[tuple[float, ...] | None, float] | None:
    """``(center or None, scale)`` of a built-in network's confinement term, else ``None``."""
    static = getattr(noise_energy_fn, "static", None)
    scale = getattr(static, "confinement_scale", None)
    return None if scale is None else (getattr(static, "confinement_center", None), float(scale))


def from_noise_module(module: eqx.Module, event_shape: int | Sequence[int], ladder: NoiseLadder | Sequence[float],
                      *, temperature: float = 1.0, validate: bool = True) -> NoiseConditionalEnergy:
    """A :class:`NoiseConditionalEnergy` from an Equinox module ``module(x, sigma) -> scalar`` (its arrays: params).

    Examples
    --------
    >>> import jax
    >>> net = NoiseConditionalMLP(2, (1.0, 0.1), (8,), key=jax.random.key(0))
    >>> from_noise_module(net, (2,), (1.0, 0.1)).noise_energy(jax.numpy.zeros((3, 2)), 1.0).shape
    (3,)
    """
    params, static = eqx.partition(module, eqx.is_inexact_array)
    return NoiseConditionalEnergy(_NoiseEquinoxApply(static), params, event_shape=event_shape, ladder=ladder,
                                  temperature=temperature, validate=validate)


def noise_conditional_mlp(key: jax.Array, event_shape: int | Sequence[int], ladder: NoiseLadder | Sequence[float], *,
                          hidden: Sequence[int] = (128, 128, 128), scale_by_sigma: bool = True,
                          confinement_scale: float | None = None, confinement_center: Sequence[float] | None = None,
                          activation: Callable[[jax.Array], jax.Array] = jax.nn.silu, num_frequencies: int = 4,
                          temperature: float = 1.0, base_scale: float | None = UNSET) -> NoiseConditionalEnergy:
    """A noise-conditional MLP energy (:class:`NoiseConditionalMLP`) over ``ladder``; saved and loaded whole.

    Parameters
    ----------
    key
        PRNG key for the initialisation.
    event_shape
        The shape of one example (flattened into the network's input).
    ladder
        A :class:`NoiseLadder` (or descending scales); the embedding of σ is
        normalised over its range.
    hidden
        Hidden widths.
    scale_by_sigma
        ``E = f_θ(x, σ) / σ`` (NCSN; needs ``σ_min > 0``), or ``E = f_θ(x, σ)``
        (finite at ``σ = 0``, for Diffusion Recovery Likelihood).
    confinement_scale, confinement_center
        The optional Gaussian base term ``‖x - c‖² / (2 (s² + σ²))``, as for
        :class:`ebmppl.nn.MLPEnergy` but smoothed to each level. Use a scale a
        few times the data's spread.
    activation, num_frequencies
        Hidden activation; Fourier features of the σ embedding.
    temperature
        As for :class:`~ebmppl.Energy`.
    base_scale
        Old name of ``confinement_scale`` (as in :class:`ebmppl.nn.MLPEnergy`);
        works, with a deprecation warning.

    Raises
    ------
    ValueError
        ``scale_by_sigma=True`` with a ``σ = 0`` level; bad widths or scales.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional_mlp
    >>> ladder = NoiseLadder.geometric(1.0, 0.05, 6)
    >>> e = noise_conditional_mlp(jax.random.key(0), (2,), ladder, hidden=(32, 32), confinement_scale=3.0)
    >>> e.noise_score(jnp.zeros((5, 2)), 0.3).shape, e.energy(jnp.zeros((5, 2))).shape
    ((5, 2), (5,))
    >>> drl = noise_conditional_mlp(jax.random.key(0), (2,), NoiseLadder((1.0, 0.3, 0.0)), hidden=(32, 32),
    ...                             scale_by_sigma=False)
    >>> bool(jnp.isfinite(drl.energy(jnp.ones(2))))                    # σ_min = 0: finite
    True
    """
    confinement_scale = renamed("noise_conditional_mlp", "base_scale", base_scale, "confinement_scale",
                                UNSET if confinement_scale is None else confinement_scale, stacklevel=3)
    shape = _as_event_shape(event_shape)
    ladder = _check_ladder(ladder)
    net = NoiseConditionalMLP(math.prod(shape), ladder.sigmas, tuple(hidden), scale_by_sigma=scale_by_sigma,
                              confinement_scale=confinement_scale, confinement_center=confinement_center,
                              activation=activation, num_frequencies=num_frequencies, key=key)
    return from_noise_module(net, shape, ladder, temperature=temperature)


# --------------------------------------------------------------------------- does the ladder fit the data?
class NoiseLadderWarning(UserWarning):
    """A noise ladder (or a network's confinement) does not fit the data's scale, or a computation needs levels
    the family was not trained at (e.g. the probability-flow ODE of a family trained at discrete levels only).

    Silence a judged case with ``warnings.filterwarnings("ignore", category=NoiseLadderWarning)``.

    Examples
    --------
    >>> issubclass(NoiseLadderWarning, UserWarning)
    True
    """


PAIRWISE_SUBSAMPLE = 1000
"""Rows (evenly strided) over which :class:`LadderScaleCheck` takes the largest pairwise distance for σ_max."""


def _nice(value: float) -> float:
    """Two significant digits, for suggested numbers (messages stay the same from batch to batch)."""
    return float(f"{value:.2g}")


class LadderScaleCheck(eqx.Module):
    """``check(data)``: warn (:class:`NoiseLadderWarning`) when a ladder or a confinement does not cover the data.

    The ``check_data`` of :func:`~ebmppl.objectives.multiscale.multiscale_dsm` and
    :func:`~ebmppl.objectives.recovery_likelihood.diffusion_recovery_likelihood`: :func:`ebmppl.fit` calls it on
    the data before the first step. Neither objective standardises the data, and both train without error on a
    ladder of the wrong scale, learning almost nothing. With ``C`` the data's covariance, ``s_j`` the per-coordinate
    standard deviations and ``D`` the dimension, it warns when

    * ``σ_max < √(tr C)``, the RMS distance of an example from the data's mean. Song & Ermon (2020) take
      ``σ_max`` about the *largest* distance between two examples; the *typical* one is ``√(2 tr C)``
      (``E‖x - x'‖² = 2 tr C``), so a ``σ_max`` below ``√(tr C)`` falls short of even the typical spread: the
      top level does not span the data and the samplers' start ``N(center, σ_max² I)`` misses part of it;
    * the smallest positive σ exceeds ``min(√(tr C / D), 3 min_j s_j)`` (``s_j > 0`` only): above the RMS
      per-coordinate std, the added noise holds more than half of ``p_σ``'s variance; above three times the
      finest coordinate's std, nine tenths of that coordinate's. The data level is then a blob around the data;
    * a :func:`noise_conditional_mlp` confinement scale ``s`` is below ``max_j √((m_j - c_j)² + s_j²)``, the data's
      RMS distance from the confinement centre ``c`` in its widest coordinate (``m``: the data's mean): the base
      term ``‖x - c‖²/(2s²)`` puts the data more than one ``s`` out, and the network must learn to undo it.

    The message suggests ``NoiseLadder.geometric(...)`` from the data (``σ_max``: the largest pairwise distance
    over ``PAIRWISE_SUBSAMPLE`` (1000) rows; ``σ_min``: a tenth of the threshold above; levels at the ladder's
    current ratio), a confinement of three times that distance, or standardising the data.

    Parameters
    ----------
    ladder
        The energy's :class:`NoiseLadder`.
    objective
        The objective's name, shown in the message.
    confinement
        ``(center or None, scale)`` of the network's confinement, or ``None``.
    clean_level
        Suggest a ladder ending in a clean ``σ = 0`` level (Diffusion Recovery Likelihood).

    Examples
    --------
    >>> import warnings, numpy as np
    >>> check = LadderScaleCheck(NoiseLadder.geometric(3.0, 0.1, 8), "multiscale_dsm")
    >>> x = np.random.default_rng(0).normal(size=(500, 2))
    >>> check(x)                                                 # unit-scale data: silent
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     check(30.0 * x)
    >>> "NoiseLadder.geometric(" in str(caught[0].message), caught[0].category.__name__
    (True, 'NoiseLadderWarning')
    """

    ladder: NoiseLadder = eqx.field(static=True)
    objective: str = eqx.field(static=True)
    confinement: tuple[tuple[float, ...] | None, float] | None = eqx.field(static=True, default=None)
    clean_level: bool = eqx.field(static=True, default=False)

    @classmethod
    def for_energy(cls, energy: NoiseConditionalEnergy, objective: str) -> LadderScaleCheck:
        """The check of ``energy``'s ladder and (built-in network) confinement."""
        return cls(energy.ladder, str(objective), _confinement(energy.noise_energy_fn),
                   energy.ladder.sigma_min == 0)

    def __call__(self, data: Any) -> None:
        x = data[0] if isinstance(data, tuple) else data
        if not isinstance(x, (np.ndarray, jax.Array)) or np.ndim(x) < 2 or np.shape(x)[0] < 2:
            return
        flat = np.asarray(x, np.float64).reshape(np.shape(x)[0], -1)
        if not np.isfinite(flat).all():
            return  # the shape and finiteness checks elsewhere name that problem
        message = ladder_scale_problems(self.ladder, flat, self.objective, self.confinement, self.clean_level)
        if message:
            import warnings

            warnings.warn(message, NoiseLadderWarning, stacklevel=4)


def ladder_scale_problems(ladder: NoiseLadder, flat: np.ndarray, objective: str,
                          confinement: tuple[tuple[float, ...] | None, float] | None = None,
                          clean_level: bool = False) -> str | None:
    """The message of :class:`LadderScaleCheck` for examples ``flat`` ``(n, D)``, or ``None`` when all is well.

    Examples
    --------
    >>> import numpy as np
    >>> x = 0.01 * np.random.default_rng(0).normal(size=(500, 2))
    >>> print(ladder_scale_problems(NoiseLadder.geometric(3.0, 0.1, 8), x, "multiscale_dsm"))  # doctest: +ELLIPSIS
    multiscale_dsm: the noise ladder ... does not fit the data's scale ... the smallest positive σ = 0.1 ...
    """
    n, dim = flat.shape
    mean = flat.mean(0)
    std = flat.std(0)
    spread = float(math.sqrt(np.sum(std**2)))             # √(tr C): RMS distance from the mean
    rms_std = spread / math.sqrt(dim)
    varying = std[std > 0]
    finest = float(varying.min()) if varying.size else 0.0
    positive = [s for s in ladder.sigmas if s > 0]
    top, low = ladder.sigma_max, (min(positive) if positive else 0.0)
    problems: list[str] = []
    hi, lo = top, low
    sub = flat[:: max(1, n // PAIRWISE_SUBSAMPLE)][:PAIRWISE_SUBSAMPLE]
    sq = np.sum(sub**2, 1)
    widest = float(math.sqrt(max(float(np.max(sq[:, None] + sq[None, :] - 2.0 * sub @ sub.T)), 0.0)))
    if widest > 0 and top > 10.0 * widest:  # not wrong, but wasteful: suggest Song & Ermon's σ_max
        hi = _nice(widest)
    if spread > 0 and top < spread:
        hi = _nice(max(widest, spread))
        problems.append(f"σ_max = {top:g} is below the data's RMS distance from their mean, √(tr Cov) ≈ "
                        f"{_nice(spread):g} (Song & Ermon take σ_max about the LARGEST distance between two examples, "
                        f"here ≈ {_nice(widest):g}): the top level does not span the data, and the samplers' start "
                        "N(center, σ_max² I) misses part of it")
    threshold = min(rms_std, 3.0 * finest) if finest > 0 else rms_std
    if positive and threshold > 0 and low > threshold:
        lo = _nice(0.1 * threshold)
        problems.append(f"the smallest positive σ = {low:g} is above the data's own scale (min(RMS per-coordinate "
                        f"std {_nice(rms_std):g}, 3 × the finest coordinate's std {_nice(finest):g})): at that level "
                        "the added noise dominates the data, and the model is a blob around them")
    conf_fix = ""
    if confinement is not None:
        center, scale = confinement
        c = np.zeros(dim) if center is None else np.asarray(center, np.float64).reshape(-1)
        if c.size == dim:
            reach = np.sqrt((mean - c) ** 2 + std**2)
            j = int(np.argmax(reach))
            if scale < float(reach[j]):
                conf_fix = (f"; noise_conditional_mlp(..., confinement_scale={_nice(3.0 * float(reach[j])):g}, "
                            "confinement_center=x.mean(0))")
                problems.append(f"confinement_scale = {scale:g} is below the data's RMS distance from the "
                                f"confinement centre in coordinate {j} (≈ {_nice(float(reach[j])):g}): the base term "
                                "‖x - c‖²/(2 s²) puts the data more than one s out, and the network must undo it")
    if not problems:
        return None
    count = len(positive)
    ratio = (top / low) ** (1.0 / (count - 1)) if count > 1 and low > 0 else 0.0
    if not lo < hi:
        lo = _nice(0.01 * hi)
    levels = count if ratio <= 1.0 else int(math.ceil(math.log(hi / lo) / math.log(ratio))) + 1
    levels = min(max(levels, count, 2), 200)
    if clean_level:
        suggestion = f"NoiseLadder.geometric({hi:g}, 0.0, {levels + 1}, smallest_positive={lo:g})"
    else:
        suggestion = f"NoiseLadder.geometric({hi:g}, {lo:g}, {levels})"
    unit = ("NoiseLadder.geometric(3.0, 0.0, 7, smallest_positive=0.1)" if clean_level
            else "NoiseLadder.geometric(3.0, 0.05, 10)")
    shown = (ladder.sigmas if ladder.num_levels <= 4
             else f"({top:g} … {ladder.sigma_min:g}, {ladder.num_levels} levels)")
    return (f"{objective}: the noise ladder {shown} does not fit the data's scale (fit does not standardise the "
            "data for this objective), and training runs without error but learns little: "
            + "; ".join(problems) + f". Fix: a ladder from the data, e.g. {suggestion}{conf_fix}; or standardise "
            f"the data first, (x - x.mean(0)) / x.std(0), and use a unit-scale ladder such as {unit}.")
