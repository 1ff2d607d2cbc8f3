"""Sampler builders over BlackJAX kernels.

Each builder returns a :class:`~ebmppl.samplers.Sampler` whose ``step`` takes
the log-density at call time (BlackJAX's low-level ``build_kernel`` form), so
the same compiled step serves a target whose parameters θ change every step.

Exact (Metropolis-adjusted) samplers: :func:`mala`, :func:`hmc`, :func:`nuts`,
:func:`barker`, :func:`ghmc`. Discretised dynamics without correction (biased,
bias shrinking with the step size): :func:`ula`, :func:`langevin` (practical
EBM Langevin), :func:`sghmc`, :func:`mclmc`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp

from ebmppl.samplers.base import LogDensityFn, Sampler, StepStats

__all__ = ["mala", "hmc", "nuts", "barker", "ghmc", "mclmc", "ula", "langevin", "sghmc", "GradientState", "PositionState"]


def _cached(builder: Callable[..., Sampler]) -> Callable[..., Sampler]:
    """Same options, same Sampler object: compiled programs keyed on it are reused."""
    cached = functools.lru_cache(maxsize=None)(builder)

    @functools.wraps(builder)
    def build(*args, **kwargs):
        try:
            return cached(*args, **kwargs)
        except TypeError as err:  # unhashable option (e.g. a list): build afresh
            if "unhashable" not in str(err):
                raise
            return builder(*args, **kwargs)

    return build


def _f(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _check_positive(name: str, value: Any) -> None:
    if value is not None and not 0 < float(value) < float("inf"):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")


def _identity_metric(dim: int, dense: bool) -> jax.Array:
    return jnp.eye(dim) if dense else jnp.ones(dim)


class GradientState(NamedTuple):
    """Position with its cached log-density and gradient (same layout as BlackJAX's ``HMCState``).

    Examples
    --------
    >>> state = mala().init(jax.random.key(0), jnp.ones(2), lambda x: -0.5 * jnp.sum(x**2))
    >>> float(state.logdensity), state.logdensity_grad.tolist()
    (-1.0, [-1.0, -1.0])
    """

    position: Any
    logdensity: jax.Array
    logdensity_grad: Any


def _gradient_state(position: Any, logdensity_fn: LogDensityFn) -> GradientState:
    value, grad = jax.value_and_grad(logdensity_fn)(position)
    return GradientState(position, value, grad)


def _stats(acceptance, divergent, grad_evals, logdensity) -> StepStats:
    return StepStats(
        acceptance_rate=_f(acceptance),
        is_divergent=jnp.asarray(divergent, dtype=bool),
        num_grad_evals=jnp.asarray(grad_evals, dtype=jnp.int32),
        logdensity=_f(logdensity),
    )


# --------------------------------------------------------------------- MALA
@_cached
def mala(step_size: float = 0.1) -> Sampler:
    """Metropolis-adjusted Langevin (BlackJAX ``mala``): exact; warm-up adapts the step size.

    BlackJAX's MALA has no mass matrix, so warm-up tunes the step size only
    (target acceptance 0.574, Roberts & Rosenthal 1998).

    Examples
    --------
    >>> from ebmppl import sample, samplers
    >>> from ebmppl.targets import banana
    >>> out = sample(banana().energy, jax.random.key(0), sampler=samplers.mala(), num_chains=2,
    ...              num_warmup=100, num_samples=100, progress_bar=False)
    >>> out.positions.shape
    (2, 100, 2)
    """
    _check_positive("step_size", step_size)
    kernel = blackjax.mala.build_kernel()

    def step(key, state, logdensity_fn, params):
        state, info = kernel(key, state, logdensity_fn, params["step_size"])
        return state, _stats(info.acceptance_rate, False, 1, state.logdensity)

    return Sampler(
        name="mala",
        exact=True,
        init=lambda key, x, ld: blackjax.mala.init(x, ld),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: blackjax.mala.init(s.position, ld),
        default_params=lambda dim: {"step_size": _f(step_size)},
        adaptation="step_size",
        target_acceptance=0.574,
    )


# ---------------------------------------------------------------- HMC family
@_cached
def hmc(
    num_integration_steps: int = 16, step_size: float = 0.1, dense_mass: bool = False, jitter: float = 0.5
) -> Sampler:
    """Hamiltonian Monte Carlo with a fixed number of leapfrog steps (BlackJAX ``hmc``).

    Each transition draws its step size uniformly in ``ε·[1 - jitter, 1 + jitter]``
    (Neal 2011) so that a fixed trajectory cannot resonate with the target.

    Warm-up adapts the step size (dual averaging, target acceptance 0.8) and a
    diagonal (or, with ``dense_mass=True``, dense) inverse mass matrix
    estimated from all chains pooled.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.hmc(num_integration_steps=8).name
    'hmc'
    """
    _check_positive("step_size", step_size)
    if int(num_integration_steps) < 1:
        raise ValueError(f"num_integration_steps must be >= 1, got {num_integration_steps!r}.")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter!r}.")
    n_leapfrog = int(num_integration_steps)
    kernel = blackjax.hmc.build_kernel()

    def step(key, state, logdensity_fn, params):
        # Jitter the step size: a fixed trajectory length can resonate with the
        # target's period (e.g. a Gaussian) and stop the chain from mixing.
        eps = params["step_size"]
        if jitter:  # (no draw at all without jitter: on cheap targets each threefry pass shows)
            key_jitter, key = jax.random.split(key)
            eps = eps * jax.random.uniform(key_jitter, minval=1.0 - jitter, maxval=1.0 + jitter)
        state, info = kernel(key, state, logdensity_fn, eps, params["inverse_mass_matrix"], n_leapfrog)
        return state, _stats(info.acceptance_rate, info.is_divergent, n_leapfrog, state.logdensity)

    return Sampler(
        name="hmc",
        exact=True,
        init=lambda key, x, ld: blackjax.hmc.init(x, ld),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: blackjax.hmc.init(s.position, ld),
        default_params=lambda dim: {"step_size": _f(step_size), "inverse_mass_matrix": _identity_metric(dim, dense_mass)},
        adaptation="window",
        target_acceptance=0.8,
    )


@_cached
def nuts(max_num_doublings: int = 10, step_size: float = 0.1, dense_mass: bool = False) -> Sampler:
    """The No-U-Turn Sampler (BlackJAX ``nuts``), with window adaptation like :func:`hmc`.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.nuts().adaptation
    'window'
    """
    _check_positive("step_size", step_size)
    if int(max_num_doublings) < 1:
        raise ValueError(f"max_num_doublings must be >= 1, got {max_num_doublings!r}.")
    kernel = blackjax.nuts.build_kernel()

    def step(key, state, logdensity_fn, params):
        state, info = kernel(
            key, state, logdensity_fn, params["step_size"], params["inverse_mass_matrix"], int(max_num_doublings)
        )
        return state, _stats(info.acceptance_rate, info.is_divergent, info.num_integration_steps, state.logdensity)

    return Sampler(
        name="nuts",
        exact=True,
        init=lambda key, x, ld: blackjax.nuts.init(x, ld),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: blackjax.nuts.init(s.position, ld),
        default_params=lambda dim: {"step_size": _f(step_size), "inverse_mass_matrix": _identity_metric(dim, dense_mass)},
        adaptation="window",
        target_acceptance=0.8,
    )


@_cached
def barker(step_size: float = 0.5, dense_mass: bool = False) -> Sampler:
    """Barker's proposal (BlackJAX ``barker``; Livingstone & Zanella 2022): a gradient-based,
    Metropolis-adjusted sampler more robust to its step size than MALA.

    Warm-up adapts step size (target acceptance 0.4, the Barker optimum) and mass matrix.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.barker().target_acceptance
    0.4
    """
    _check_positive("step_size", step_size)
    kernel = blackjax.barker.build_kernel()

    def step(key, state, logdensity_fn, params):
        state, info = kernel(key, state, logdensity_fn, params["step_size"], params["inverse_mass_matrix"])
        return state, _stats(info.acceptance_rate, False, 1, state.logdensity)

    return Sampler(
        name="barker",
        exact=True,
        init=lambda key, x, ld: blackjax.barker.init(x, ld),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: blackjax.barker.init(s.position, ld),
        default_params=lambda dim: {"step_size": _f(step_size), "inverse_mass_matrix": _identity_metric(dim, dense_mass)},
        adaptation="window",
        target_acceptance=0.4,
    )


@_cached
def ghmc(step_size: float = 0.1, damping: float = 1.0, dense_mass: bool = False) -> Sampler:
    """Generalised HMC with persistent momentum and non-reversible slice acceptance (BlackJAX ``ghmc``).

    One leapfrog step per transition. The momentum refresh ``alpha = 1 -
    exp(-2 γ ε)`` and slice drift ``delta = alpha / 2`` follow the step size
    ``ε`` with damping ``γ`` (as in MEADS, Hoffman & Sountsov 2022). Warm-up
    adapts step size and mass matrix like :func:`hmc`.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.ghmc(damping=0.5).exact
    True
    """
    _check_positive("step_size", step_size)
    _check_positive("damping", damping)
    kernel = blackjax.ghmc.build_kernel()

    def step(key, state, logdensity_fn, params):
        eps, imm = params["step_size"], params["inverse_mass_matrix"]
        alpha = 1.0 - jnp.exp(-2.0 * params["damping"] * eps)
        # a 1-D ``momentum_inverse_scale`` is squared by BlackJAX; a 2-D one is the inverse mass matrix
        scale = imm if imm.ndim == 2 else jnp.sqrt(imm)
        state, info = kernel(key, state, logdensity_fn, eps, scale, alpha, alpha / 2)
        return state, _stats(info.acceptance_rate, info.is_divergent, 1, state.logdensity)

    return Sampler(
        name="ghmc",
        exact=True,
        init=lambda key, x, ld: blackjax.ghmc.init(x, ld, key),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: s._replace(**_gradient_state(s.position, ld)._asdict()),
        default_params=lambda dim: {
            "step_size": _f(step_size),
            "inverse_mass_matrix": _identity_metric(dim, dense_mass),
            "damping": _f(damping),
        },
        adaptation="window",
        target_acceptance=0.8,
    )


@_cached
def mclmc(step_size: float = 0.5, L: float = 1.0) -> Sampler:
    """Microcanonical Langevin Monte Carlo (BlackJAX ``mclmc``; Robnik et al. 2023), unadjusted.

    Warm-up runs BlackJAX's ``mclmc_find_L_and_step_size`` on every chain and
    keeps the median ``L``, step size and diagonal preconditioner. Needs
    dimension >= 2. Biased at finite step size (no Metropolis correction); the
    tuner keeps the energy-error variance small so the bias stays below MC
    error on smooth targets.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.mclmc().exact
    False
    """
    _check_positive("step_size", step_size)
    _check_positive("L", L)
    kernel = blackjax.mclmc.build_kernel()

    def step(key, state, logdensity_fn, params):
        state, _ = kernel(key, state, logdensity_fn, params["inverse_mass_matrix"], params["L"], params["step_size"])
        return state, _stats(jnp.nan, False, 2, state.logdensity)

    return Sampler(
        name="mclmc",
        exact=False,
        init=lambda key, x, ld: blackjax.mclmc.init(x, ld, key),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: s._replace(**_gradient_state(s.position, ld)._asdict()),
        default_params=lambda dim: {"step_size": _f(step_size), "L": _f(L), "inverse_mass_matrix": jnp.ones(dim)},
        adaptation="mclmc",
        target_acceptance=float("nan"),
    )


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


def _overdamped_step(kernel, key, position, logdensity_fn, step_size, temperature, grad_fn=None):
    # BlackJAX's SGLD integrator with the full gradient: x + h ∇log p + sqrt(2 T h) ξ.
    # The gradient is taken at the current position: K steps cost K gradients.
    grad = jax.grad(logdensity_fn)(position)
    grad = grad if grad_fn is None else grad_fn(grad)
    return kernel(key, position, lambda _x, _batch: grad, None, step_size, temperature)


def _position_stats(position, logdensity_fn, grad_evals):
    # log-density of the new position for the per-draw statistics; when a caller
    # ignores it (as the CD trainer does) XLA removes this evaluation
    return _stats(jnp.nan, False, grad_evals, logdensity_fn(position))


@_cached
def ula(step_size: float = 0.01, temperature: float = 1.0) -> Sampler:
    """Exact-form unadjusted Langevin (ULA), i.e. BlackJAX ``sgld`` with the full gradient.

    ``x ← x + h ∇log p(x) + sqrt(2 T h) ξ``. With ``temperature=1`` it is the
    Euler discretisation of the Langevin diffusion targeting ``p``; it is
    biased at finite ``h`` (for a Gaussian the stationary covariance is
    ``Σ (I - h Σ⁻¹/2)⁻¹``) and has no warm-up adaptation: choose ``h``.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.ula(step_size=0.05).adaptation
    'none'
    """
    _check_positive("step_size", step_size)
    _check_positive("temperature", temperature)
    kernel = blackjax.sgld.build_kernel()

    def step(key, state, logdensity_fn, params):
        position = _overdamped_step(kernel, key, state.position, logdensity_fn, params["step_size"], params["temperature"])
        return PositionState(position), _position_stats(position, logdensity_fn, 1)

    return Sampler(
        name="ula",
        exact=False,
        init=lambda key, x, ld: PositionState(x),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: s,
        default_params=lambda dim: {"step_size": _f(step_size), "temperature": _f(temperature)},
        adaptation="none",
        target_acceptance=float("nan"),
    )


@_cached
def langevin(
    step_size: float = 10.0,
    noise_scale: float = 0.005,
    grad_clip: float | None = None,
    clamp: tuple[float, float] | None = None,
) -> Sampler:
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
    >>> s = samplers.langevin(step_size=1.0, noise_scale=0.01, clamp=(-1.0, 1.0))
    >>> s.exact
    False
    """
    _check_positive("step_size", step_size)
    _check_positive("noise_scale", noise_scale)
    _check_positive("grad_clip", grad_clip)
    if clamp is not None:
        lo, hi = (float(c) for c in clamp)
        if not lo < hi:
            raise ValueError(f"clamp must be (low, high) with low < high, got {clamp!r}.")
    kernel = blackjax.sgld.build_kernel()

    def clip(grad):
        return grad if grad_clip is None else jax.tree.map(lambda g: jnp.clip(g, -grad_clip, grad_clip), grad)

    def step(key, state, logdensity_fn, params):
        s, sigma = params["step_size"], params["noise_scale"]
        position = _overdamped_step(kernel, key, state.position, logdensity_fn, s, sigma**2 / (2.0 * s), grad_fn=clip)
        if clamp is not None:
            position = jax.tree.map(lambda p: jnp.clip(p, clamp[0], clamp[1]), position)
        return PositionState(position), _position_stats(position, logdensity_fn, 1)

    return Sampler(
        name="langevin",
        exact=False,
        init=lambda key, x, ld: PositionState(x),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: s,
        default_params=lambda dim: {"step_size": _f(step_size), "noise_scale": _f(noise_scale)},
        adaptation="none",
        target_acceptance=float("nan"),
    )


@_cached
def sghmc(step_size: float = 0.01, num_integration_steps: int = 10, friction: float = 0.01) -> Sampler:
    """Stochastic-gradient HMC (BlackJAX ``sghmc``) with the full gradient: underdamped
    Langevin dynamics, Euler-discretised, momentum refreshed every transition; no
    Metropolis correction, no adaptation (choose the step size).

    Examples
    --------
    >>> from ebmppl import samplers
    >>> samplers.sghmc(step_size=0.05).name
    'sghmc'
    """
    _check_positive("step_size", step_size)
    _check_positive("friction", friction)
    if int(num_integration_steps) < 1:
        raise ValueError(f"num_integration_steps must be >= 1, got {num_integration_steps!r}.")
    n_steps = int(num_integration_steps)
    kernel = blackjax.sghmc.build_kernel(alpha=float(friction))

    def step(key, state, logdensity_fn, params):
        grad_fn = jax.grad(logdensity_fn)
        position = kernel(key, state.position, lambda x, _batch: grad_fn(x), None, params["step_size"], n_steps)
        return PositionState(position), _position_stats(position, logdensity_fn, n_steps)

    return Sampler(
        name="sghmc",
        exact=False,
        init=lambda key, x, ld: PositionState(x),
        step=step,
        position=lambda s: s.position,
        rebuild=lambda s, ld: s,
        default_params=lambda dim: {"step_size": _f(step_size)},
        adaptation="none",
        target_acceptance=float("nan"),
    )
