"""Samplers over BlackJAX kernels.

Each sampler is a :class:`~ebmppl.samplers.Sampler` value whose ``step`` takes
the log-density at call time (BlackJAX's low-level ``build_kernel`` form), so
the same compiled step serves a target whose parameters θ change every step.
The lower-case builders (``mala``, ``hmc``, ...) are the classes themselves:
``mala(step_size=0.1)`` is a :class:`MALA`, equal to any other built with the
same options.

Exact (Metropolis-adjusted) samplers: :func:`mala`, :func:`hmc`, :func:`nuts`,
:func:`barker`, :func:`ghmc`. Discretised dynamics without correction (biased,
bias shrinking with the step size): :func:`ula`, :func:`langevin` (practical
EBM Langevin), :func:`sghmc`, :func:`mclmc`.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import blackjax
import equinox as eqx
import jax
import jax.numpy as jnp

from ebmppl.samplers.adaptation import MCLMCTuning, NoAdaptation, StepSizeAdaptation, WindowAdaptation
from ebmppl.samplers.base import Sampler, StepStats

__all__ = [
    "MALA", "HMC", "NUTS", "Barker", "GHMC", "MCLMC", "ULA", "Langevin", "SGHMC",
    "mala", "hmc", "nuts", "barker", "ghmc", "mclmc", "ula", "langevin", "sghmc", "PositionState",
]


def _f(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _float_or_none(x: Any) -> float | None:
    return None if x is None else float(x)


def _pair_or_none(x: Any) -> tuple[float, float] | None:
    """A (low, high) option as a tuple of floats (a list would not hash)."""
    if x is None:
        return None
    try:
        low, high = (float(c) for c in x)
    except (TypeError, ValueError):
        raise ValueError(f"clamp must be (low, high) with low < high, got {x!r}.") from None
    return low, high


def _option(default: Any, converter: Any = float) -> Any:
    """A static, converted option field: samplers with equal options are equal."""
    return eqx.field(static=True, default=default, converter=converter)


def _check_positive(name: str, value: Any) -> None:
    if value is not None and not 0 < float(value) < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")


def _check_at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}.")


def _metric_params(step_size: float, dim: int, dense: bool) -> dict[str, jax.Array]:
    return {"step_size": _f(step_size), "inverse_mass_matrix": jnp.eye(dim) if dense else jnp.ones(dim)}


def _guarded_metric(inverse_mass_matrix: jax.Array) -> Any:
    """BlackJAX's Euclidean metric for ``inverse_mass_matrix`` with a kinetic energy that is ``+inf`` where
    float overflow made ``½ pᵀ M⁻¹ p`` negative or NaN.

    A diverging trajectory (a first step size 10× the last, as dual averaging tries after each metric update)
    reaches momenta whose quadratic form overflows; its terms of both signs can sum to ``-inf``, so the
    Hamiltonian of a state 10¹⁹ out in the tails read ``-inf`` and the move was *accepted* with probability
    1 (an inpainting chain then sat at ``x ≈ 1e18`` with every later proposal rejected). With ``+inf``
    such a proposal is rejected, like any other divergence. Where the energy is finite and ``>= 0`` (every
    healthy step) it is BlackJAX's value and gradient unchanged.
    """
    metric = blackjax.mcmc.metrics.default_metric(inverse_mass_matrix)
    kinetic_energy = metric.kinetic_energy

    def guarded(momentum, *args, **kwargs):
        value = kinetic_energy(momentum, *args, **kwargs)
        return jnp.where(value >= 0, value, jnp.inf)  # NaN >= 0 is False: NaN is +inf too

    return metric._replace(kinetic_energy=guarded)


def _stats(acceptance, divergent, grad_evals, logdensity) -> StepStats:
    return StepStats(
        acceptance_rate=_f(acceptance),
        is_divergent=jnp.asarray(divergent, dtype=bool),
        num_grad_evals=jnp.asarray(grad_evals, dtype=jnp.int32),
        logdensity=_f(logdensity),
    )


class _Kernel(Sampler):
    """What the built-in samplers share: a ``step_size`` option (> 0), and an ``init`` from the BlackJAX
    ``algorithm`` (whose ``init`` takes the key where it draws a momentum)."""

    algorithm: ClassVar[Any]
    init_takes_key: ClassVar[bool] = False

    def __check_init__(self):
        _check_positive("step_size", self.step_size)

    def init(self, key, position, logdensity_fn):
        return self.algorithm.init(position, logdensity_fn, *((key,) if self.init_takes_key else ()))


# --------------------------------------------------------------------- MALA
class MALA(_Kernel):
    """Metropolis-adjusted Langevin (BlackJAX ``mala``): exact; warm-up adapts the step size.

    BlackJAX's MALA has no mass matrix, so warm-up tunes the step size only
    (target acceptance 0.574, Roberts & Rosenthal 1998).

    Parameters
    ----------
    step_size
        Step size before warm-up (kernel parameter ``step_size``).

    Examples
    --------
    >>> from ebmppl import sample, samplers
    >>> from ebmppl.targets import banana
    >>> out = sample(banana().energy, jax.random.key(0), sampler=samplers.mala(), num_chains=2,
    ...              num_warmup=100, num_samples=100, progress_bar=False)
    >>> out.positions.shape
    (2, 100, 2)
    """

    step_size: float = _option(0.1)
    name, exact, warmup, target_acceptance, algorithm = "mala", True, StepSizeAdaptation(), 0.574, blackjax.mala

    def step(self, key, state, logdensity_fn, params):
        state, info = blackjax.mala.build_kernel()(key, state, logdensity_fn, params["step_size"])
        return state, _stats(info.acceptance_rate, False, 1, state.logdensity)

    def default_params(self, dim):
        return {"step_size": _f(self.step_size)}


# ---------------------------------------------------------------- HMC family
class HMC(_Kernel):
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps (BlackJAX ``hmc``).

    Each transition draws its step size uniformly in ``ε·[1 - jitter, 1 + jitter]``
    (Neal 2011) so that a fixed trajectory cannot resonate with the target.

    Warm-up adapts the step size (dual averaging, target acceptance 0.8) and a
    diagonal (or, with ``dense_mass=True``, dense) inverse mass matrix
    estimated from all chains pooled.

    Parameters
    ----------
    num_integration_steps
        Leapfrog steps per transition.
    step_size
        Step size before warm-up.
    dense_mass
        Adapt a dense inverse mass matrix instead of a diagonal one.
    jitter
        Relative jitter of the step size, in ``[0, 1)``.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.hmc(num_integration_steps=8)
    HMC(num_integration_steps=8)
    """

    num_integration_steps: int = _option(16, int)
    step_size: float = _option(0.1)
    dense_mass: bool = _option(False, bool)
    jitter: float = _option(0.5)
    name, exact, warmup, target_acceptance, algorithm = "hmc", True, WindowAdaptation(), 0.8, blackjax.hmc

    def __check_init__(self):
        _check_at_least_one("num_integration_steps", self.num_integration_steps)
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}.")

    def step(self, key, state, logdensity_fn, params):
        # Jitter the step size: a fixed trajectory length can resonate with the
        # target's period (e.g. a Gaussian) and stop the chain from mixing.
        eps = params["step_size"]
        if self.jitter:  # (no draw at all without jitter: on cheap targets each threefry pass shows)
            key_jitter, key = jax.random.split(key)
            eps = eps * jax.random.uniform(key_jitter, minval=1.0 - self.jitter, maxval=1.0 + self.jitter)
        n = self.num_integration_steps
        state, info = blackjax.hmc.build_kernel()(key, state, logdensity_fn, eps,
                                                  _guarded_metric(params["inverse_mass_matrix"]), n)
        return state, _stats(info.acceptance_rate, info.is_divergent, n, state.logdensity)

    def default_params(self, dim):
        return _metric_params(self.step_size, dim, self.dense_mass)


class NUTS(_Kernel):
    """The No-U-Turn Sampler (BlackJAX ``nuts``), with window adaptation like :class:`HMC`.

    Parameters
    ----------
    max_num_doublings
        Maximum depth of the trajectory tree (at most ``2**max_num_doublings`` leapfrog steps).
    step_size, dense_mass
        As for :class:`HMC`.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> s = samplers.nuts(max_num_doublings=6)
    >>> s == samplers.nuts(6), s.warmup
    (True, WindowAdaptation())
    """

    max_num_doublings: int = _option(10, int)
    step_size: float = _option(0.1)
    dense_mass: bool = _option(False, bool)
    name, exact, warmup, target_acceptance, algorithm = "nuts", True, WindowAdaptation(), 0.8, blackjax.nuts

    def __check_init__(self):
        _check_at_least_one("max_num_doublings", self.max_num_doublings)

    def step(self, key, state, logdensity_fn, params):
        state, info = blackjax.nuts.build_kernel()(
            key, state, logdensity_fn, params["step_size"], _guarded_metric(params["inverse_mass_matrix"]),
            self.max_num_doublings
        )
        return state, _stats(info.acceptance_rate, info.is_divergent, info.num_integration_steps, state.logdensity)

    def default_params(self, dim):
        return _metric_params(self.step_size, dim, self.dense_mass)


class Barker(_Kernel):
    """Barker's proposal (BlackJAX ``barker``; Livingstone & Zanella 2022): a gradient-based,
    Metropolis-adjusted sampler more robust to its step size than MALA.

    Warm-up adapts step size (target acceptance 0.4, the Barker optimum) and mass matrix.

    Parameters
    ----------
    step_size, dense_mass
        As for :class:`HMC` (a larger default step size: Barker tolerates it).

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.barker().target_acceptance
    0.4
    """

    step_size: float = _option(0.5)
    dense_mass: bool = _option(False, bool)
    name, exact, warmup, target_acceptance, algorithm = "barker", True, WindowAdaptation(), 0.4, blackjax.barker

    def step(self, key, state, logdensity_fn, params):
        kernel = blackjax.barker.build_kernel()
        state, info = kernel(key, state, logdensity_fn, params["step_size"], params["inverse_mass_matrix"])
        return state, _stats(info.acceptance_rate, False, 1, state.logdensity)

    def default_params(self, dim):
        return _metric_params(self.step_size, dim, self.dense_mass)


class GHMC(_Kernel):
    """Generalised HMC with persistent momentum and non-reversible slice acceptance (BlackJAX ``ghmc``).

    One leapfrog step per transition. The momentum refresh ``alpha = 1 -
    exp(-2 γ ε)`` and slice drift ``delta = alpha / 2`` follow the step size
    ``ε`` with damping ``γ`` (as in MEADS, Hoffman & Sountsov 2022). Warm-up
    adapts step size and mass matrix like :class:`HMC`. ``init`` draws the
    momentum from its key.

    Parameters
    ----------
    step_size
        Step size before warm-up.
    damping
        Damping ``γ`` (kernel parameter ``damping``).
    dense_mass
        Adapt a dense inverse mass matrix instead of a diagonal one.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.ghmc(damping=0.5).exact
    True
    """

    step_size: float = _option(0.1)
    damping: float = _option(1.0)
    dense_mass: bool = _option(False, bool)
    name, exact, warmup, target_acceptance, algorithm = "ghmc", True, WindowAdaptation(), 0.8, blackjax.ghmc
    init_takes_key = True

    def __check_init__(self):
        _check_positive("damping", self.damping)

    def step(self, key, state, logdensity_fn, params):
        eps, imm = params["step_size"], params["inverse_mass_matrix"]
        alpha = 1.0 - jnp.exp(-2.0 * params["damping"] * eps)
        # a 1-D ``momentum_inverse_scale`` is squared by BlackJAX; a 2-D one is the inverse mass matrix
        scale = imm if imm.ndim == 2 else jnp.sqrt(imm)
        state, info = blackjax.ghmc.build_kernel()(key, state, logdensity_fn, eps, scale, alpha, alpha / 2)
        return state, _stats(info.acceptance_rate, info.is_divergent, 1, state.logdensity)

    def default_params(self, dim):
        return {**_metric_params(self.step_size, dim, self.dense_mass), "damping": _f(self.damping)}


class MCLMC(_Kernel):
    """Microcanonical Langevin Monte Carlo (BlackJAX ``mclmc``; Robnik et al. 2023), unadjusted.

    Warm-up runs BlackJAX's ``mclmc_find_L_and_step_size`` on every chain and
    keeps the median ``L``, step size and diagonal preconditioner. Needs
    dimension >= 2. Biased at finite step size (no Metropolis correction); the
    tuner keeps the energy-error variance small so the bias stays below MC
    error on smooth targets. ``init`` draws the momentum from its key.

    Parameters
    ----------
    step_size, L
        Step size and momentum decoherence length before warm-up.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.mclmc().exact
    False
    """

    step_size: float = _option(0.5)
    L: float = _option(1.0)
    name, exact, warmup, algorithm, init_takes_key = "mclmc", False, MCLMCTuning(), blackjax.mclmc, True

    def __check_init__(self):
        _check_positive("L", self.L)

    def step(self, key, state, logdensity_fn, params):
        kernel = blackjax.mclmc.build_kernel()
        state, _ = kernel(key, state, logdensity_fn, params["inverse_mass_matrix"], params["L"], params["step_size"])
        return state, _stats(jnp.nan, False, 2, state.logdensity)

    def default_params(self, dim):
        return {"step_size": _f(self.step_size), "L": _f(self.L), "inverse_mass_matrix": jnp.ones(dim)}


# ------------------------------------------------------------ Langevin family
class PositionState(NamedTuple):
    """State of the unadjusted samplers: the position only. Nothing is cached,
    so nothing can go stale when θ changes.

    Examples
    --------
    >>> ula(step_size=0.1).init(jax.random.key(0), jnp.ones(2), lambda x: -jnp.sum(x**2))
    PositionState(position=Array([1., 1.], dtype=float32))
    """

    position: Any


def _overdamped_step(key, position, logdensity_fn, step_size, temperature, grad_fn=None):
    # BlackJAX's SGLD integrator with the full gradient: x + h ∇log p + sqrt(2 T h) ξ.
    # The gradient is taken at the current position: K steps cost K gradients.
    grad = jax.grad(logdensity_fn)(position)
    grad = grad if grad_fn is None else grad_fn(grad)
    return blackjax.sgld.build_kernel()(key, position, lambda _x, _batch: grad, None, step_size, temperature)


def _position_stats(position, logdensity_fn, grad_evals):
    # log-density of the new position for the per-draw statistics; when a caller
    # ignores it (as the CD trainer does) XLA removes this evaluation
    return _stats(jnp.nan, False, grad_evals, logdensity_fn(position))


class _Unadjusted(_Kernel):
    """Position-only state, no Metropolis step, no warm-up: the unadjusted samplers' common part."""

    exact, warmup = False, NoAdaptation()

    def init(self, key, position, logdensity_fn):
        return PositionState(position)


class ULA(_Unadjusted):
    """Exact-form unadjusted Langevin (ULA), i.e. BlackJAX ``sgld`` with the full gradient.

    ``x ← x + h ∇log p(x) + sqrt(2 T h) ξ``. With ``temperature=1`` it is the
    Euler discretisation of the Langevin diffusion targeting ``p``; it is
    biased at finite ``h`` (for a Gaussian the stationary covariance is
    ``Σ (I - h Σ⁻¹/2)⁻¹``) and has no warm-up adaptation: choose ``h``.

    Parameters
    ----------
    step_size
        Step size ``h``.
    temperature
        ``T``: the noise is ``sqrt(2 T h)``.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.ula(step_size=0.05).warmup
    NoAdaptation()
    """

    step_size: float = _option(0.01)
    temperature: float = _option(1.0)
    name = "ula"

    def __check_init__(self):
        _check_positive("temperature", self.temperature)

    def step(self, key, state, logdensity_fn, params):
        position = _overdamped_step(key, state.position, logdensity_fn, params["step_size"], params["temperature"])
        return PositionState(position), _position_stats(position, logdensity_fn, 1)

    def default_params(self, dim):
        return {"step_size": _f(self.step_size), "temperature": _f(self.temperature)}


class Langevin(_Unadjusted):
    """Practical Langevin as used to train EBMs (Du & Mordatch 2019; Nijkamp et al. 2019).

    ``x ← clamp(x + s · clip(∇log p(x)) + σ ξ)``: the gradient step ``s`` and
    the noise scale ``σ`` are set separately. This is BlackJAX's ``sgld``
    kernel at temperature ``σ² / (2 s)``; it samples a *colder* density than
    ``p`` unless ``σ² = 2 s``, and that is on purpose: short, nearly
    deterministic chains give sharp negatives for contrastive divergence. Use
    :func:`ula` or :func:`mala` to sample ``p`` itself.

    Parameters
    ----------
    step_size
        Gradient step ``s`` (EBM practice: 1–10 on images in [-1, 1]).
    noise_scale
        Noise standard deviation ``σ`` per step (e.g. 0.005).
    grad_clip
        If given, clip each gradient entry to ``[-grad_clip, grad_clip]``.
    clamp
        If given, ``(low, high)`` box the positions are clamped into after each step.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> s = samplers.langevin(step_size=1.0, noise_scale=0.01, clamp=[-1.0, 1.0])
    >>> s.exact, s.clamp
    (False, (-1.0, 1.0))
    """

    step_size: float = _option(10.0)
    noise_scale: float = _option(0.005)
    grad_clip: float | None = _option(None, _float_or_none)
    clamp: tuple[float, float] | None = _option(None, _pair_or_none)
    name = "langevin"

    def __check_init__(self):
        _check_positive("noise_scale", self.noise_scale)
        _check_positive("grad_clip", self.grad_clip)
        if self.clamp is not None and not self.clamp[0] < self.clamp[1]:
            raise ValueError(f"clamp must be (low, high) with low < high, got {self.clamp!r}.")

    def step(self, key, state, logdensity_fn, params):
        s, sigma = params["step_size"], params["noise_scale"]
        clip = None
        if self.grad_clip is not None:
            clip = lambda g: jax.tree.map(lambda a: jnp.clip(a, -self.grad_clip, self.grad_clip), g)  # noqa: E731
        position = _overdamped_step(key, state.position, logdensity_fn, s, sigma**2 / (2.0 * s), grad_fn=clip)
        if self.clamp is not None:
            position = jax.tree.map(lambda p: jnp.clip(p, *self.clamp), position)
        return PositionState(position), _position_stats(position, logdensity_fn, 1)

    def default_params(self, dim):
        return {"step_size": _f(self.step_size), "noise_scale": _f(self.noise_scale)}


class SGHMC(_Unadjusted):
    """Stochastic-gradient HMC (BlackJAX ``sghmc``) with the full gradient: underdamped
    Langevin dynamics, Euler-discretised, momentum refreshed every transition; no
    Metropolis correction, no adaptation (choose the step size).

    Parameters
    ----------
    step_size
        Step size.
    num_integration_steps
        Integration steps per transition.
    friction
        Friction ``α`` of BlackJAX's ``sghmc``.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.sghmc(step_size=0.05).name
    'sghmc'
    """

    step_size: float = _option(0.01)
    num_integration_steps: int = _option(10, int)
    friction: float = _option(0.01)
    name = "sghmc"

    def __check_init__(self):
        _check_positive("friction", self.friction)
        _check_at_least_one("num_integration_steps", self.num_integration_steps)

    def step(self, key, state, logdensity_fn, params):
        grad_fn = jax.grad(logdensity_fn)
        kernel = blackjax.sghmc.build_kernel(alpha=self.friction)
        n = self.num_integration_steps
        position = kernel(key, state.position, lambda x, _batch: grad_fn(x), None, params["step_size"], n)
        return PositionState(position), _position_stats(position, logdensity_fn, n)

    def default_params(self, dim):
        return {"step_size": _f(self.step_size)}


# The builders: the classes themselves, under the names the registry and the docs use.
mala, hmc, nuts, barker, ghmc, mclmc = MALA, HMC, NUTS, Barker, GHMC, MCLMC
ula, langevin, sghmc = ULA, Langevin, SGHMC
