"""Diffusion Recovery Likelihood: contrastive divergence between adjacent noise levels, and its progressive sampler.

Gao et al. (ICLR 2021) train an energy per noise level so that each level
*recovers* the one below it. For a :class:`~ebmppl.noise.NoiseConditionalEnergy`
over a ladder read from the data upwards, ``s_0 = σ_min < s_1 < … < s_{L-1} = σ_max``
(``s_0 = 0`` is the clean data), ebmppl uses the variance-exploding form:

* ``x_t = x + s_t ε`` and ``x_{t+1} = x_t + δ_t ε'`` with ``δ_t² = s_{t+1}² - s_t²``
  (so ``x_{t+1}`` carries noise ``s_{t+1}``);
* the *recovery conditional* of level ``t`` is
  ``p(x_t | x_{t+1}) ∝ exp(-E(x_t, s_t)/T - ‖x_{t+1} - x_t‖² / (2 δ_t²))``.
  Given the noisy ``x_{t+1}`` it is sharply peaked (its width is at most
  ``δ_t``), so a short Langevin run started at ``x_{t+1}`` samples it well,
  where a chain on the marginal ``exp(-E(x, s_t))`` would have to travel
  between modes;
* maximising the recovery log-likelihood ``log p(x_t | x_{t+1})`` by
  gradient is contrastive divergence at level ``t`` between the noisy data
  ``x_t`` and samples ``x̃_t`` of the conditional:
  ``E(x_t, s_t) - E(x̃_t, s_t)`` (``x̃_t`` held constant), averaged over a
  level drawn per example.

Gao et al. write the same recovery likelihood in the variance-preserving
scaling (``x_{t+1} = √(1 - σ²_{t+1}) x_t + σ_{t+1} ε``); the variance-exploding
form here is the same model with the data left unscaled, which lets the
data level ``s_0`` be the :class:`~ebmppl.Energy` the rest of ebmppl (samplers,
log Z, evaluation) acts on. The energy at ``σ_max`` is never trained: that
level only conditions the one below it.

Sampling (:func:`recovery_sample`) runs the chain of conditionals from
``σ_max`` down: start at ``N(center, σ_max² I)`` (``center``: :meth:`~ebmppl.Energy.typical_region`), then
sample each level's recovery conditional from the previous level's sample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ebmppl._validation import check_int, check_key
from ebmppl.noise import LadderScaleCheck, NoiseConditionalEnergy
from ebmppl.objectives.trainer import LossTerm, Objective
from ebmppl.samplers.annealed import AnnealedSamples
from ebmppl.sharding import concat_leading, split_leading

__all__ = ["diffusion_recovery_likelihood", "recovery_sample", "recovery_conditional_sample", "RecoveryLikelihood",
           "recovery_step_sizes", "recovery_level_weights", "DEFAULT_STEP_SCALE"]

DEFAULT_STEP_SCALE = 0.1
"""Default Langevin step of a level, as a fraction ``b`` of its per-step noise variance: ``h_t = b · δ_t²``."""


# ---------------------------------------------------------------- checks and per-level numbers
def _check_noise_energy(energy: Any, name: str = "energy") -> Any:
    if not isinstance(energy, NoiseConditionalEnergy):
        raise TypeError(f"{name} must be a noise-conditional energy E(x, σ) (ebmppl.noise.NoiseConditionalEnergy), "
                        f"got {type(energy).__name__}; build one with ebmppl.noise.noise_conditional_mlp(key, "
                        "event_shape, ladder, scale_by_sigma=False) or ebmppl.noise.noise_conditional(fn, params, "
                        "event_shape, ladder).")
    if energy.ladder.num_levels < 2:
        raise ValueError(f"{name}.ladder has {energy.ladder.num_levels} level; recovery likelihood needs at least 2 "
                         "(e.g. NoiseLadder.geometric(sigma_max, 0.0, 6)).")
    return energy


def _deltas(sigmas: Sequence[float]) -> np.ndarray:
    """``δ`` of each recovered level ``i = 1..L-1`` (ladder order): ``√(σ_{i-1}² - σ_i²)``."""
    s = np.asarray(sigmas, np.float64)
    return np.sqrt(s[:-1] ** 2 - s[1:] ** 2)


def recovery_step_sizes(ladder: Any, step_size: float | Sequence[float] | None = None,
                        step_scale: float = DEFAULT_STEP_SCALE) -> tuple[float, ...]:
    """The Langevin step of each recovered level ``i = 1..L-1`` (ladder order, noisiest first).

    ``step_size=None`` gives ``h_i = step_scale · δ_i²`` with
    ``δ_i² = σ_{i-1}² - σ_i²``, the variance of the noise that separates the
    level from the one above it: the recovery conditional is at most ``δ_i``
    wide, so the step follows the width level by level (Gao et al.'s
    per-level step ``b σ²``, with their per-step noise ``σ`` being our ``δ``).
    A number is one step for every level; a sequence gives one per level.

    Examples
    --------
    >>> from ebmppl.noise import NoiseLadder
    >>> [round(h, 4) for h in recovery_step_sizes(NoiseLadder((1.0, 0.5, 0.0)))]
    [0.075, 0.025]
    >>> recovery_step_sizes(NoiseLadder((1.0, 0.5, 0.0)), 0.01)
    (0.01, 0.01)
    """
    sigmas = tuple(ladder.sigmas)
    n = len(sigmas) - 1
    if step_size is None:
        if not (math.isfinite(float(step_scale)) and float(step_scale) > 0):
            raise ValueError(f"step_scale must be a finite number > 0 (default {DEFAULT_STEP_SCALE}), "
                             f"got {step_scale!r}.")
        return tuple(float(step_scale) * float(d) ** 2 for d in _deltas(sigmas))
    values = np.asarray(step_size, np.float64).reshape(-1)
    if values.size == 1:
        values = np.full(n, values[0])
    if values.size != n:
        raise ValueError(f"step_size has {values.size} entries; pass one number, or one per recovered level "
                         f"({n} = num_levels - 1, noisiest first), or None for step_scale · δ².")
    if not np.all(np.isfinite(values) & (values > 0)):
        raise ValueError(f"step_size must be > 0 (or None: step_scale · δ² per level), got {step_size!r}.")
    return tuple(float(v) for v in values)


WEIGHTINGS = ("inverse_variance", "inverse_std", "uniform")


def recovery_level_weights(ladder: Any, weighting: str = "inverse_std") -> tuple[float, ...]:
    """The weight of each recovered level's CD term (ladder order, noisiest first), averaging 1.

    ``"uniform"`` is the plain sum of the levels' recovery log-likelihoods
    (Gao et al.). For a small gap ``δ_t`` the recovery log-likelihood is
    ``δ_t²`` times a score-matching functional of ``E(·, s_t)``, so
    unweighted, the fine levels (the data level among them) get a vanishing
    share of the gradient and learn far slower than the coarse ones.
    ``"inverse_variance"`` weighs level ``t`` by ``1/δ_t²``, which puts every
    level on one scale (as the ``σ²`` weight does for multi-σ DSM) but, over a
    ladder spanning a large range, starves the coarse levels; ``"inverse_std"``
    (default), ``1/δ_t``, sits between. Every level keeps its own optimum:
    only the balance between levels changes.

    Measured (2-D, MALA, 30 steps; held-out log-likelihood of ``E(·, 0)`` in nats / MMD of the progressive
    sampler's samples): two moons, 8 levels 2 → 0.05 → 0, 1500 steps: uniform -1.72 / 0.034, inverse_std
    -1.39 / 0.013, inverse_variance -1.31 / 0.025; eight Gaussians, 6 levels 4 → 0.2 → 0, 1000 steps:
    uniform -2.37 / 0.033, inverse_std -2.06 / 0.009, inverse_variance -1.94 / 0.008.

    Examples
    --------
    >>> from ebmppl.noise import NoiseLadder
    >>> [round(w, 3) for w in recovery_level_weights(NoiseLadder((1.0, 0.6, 0.0)), "inverse_variance")]
    [0.72, 1.28]
    >>> [round(w, 3) for w in recovery_level_weights(NoiseLadder((1.0, 0.6, 0.0)))]   # δ = 0.8, 0.6
    [0.857, 1.143]
    >>> recovery_level_weights(NoiseLadder((1.0, 0.6, 0.0)), "uniform")
    (1.0, 1.0)
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(map(repr, WEIGHTINGS))}, got {weighting!r}.")
    d2 = _deltas(ladder.sigmas) ** 2
    w = {"uniform": np.ones_like(d2), "inverse_std": 1.0 / np.sqrt(d2), "inverse_variance": 1.0 / d2}[weighting]
    return tuple(float(v) for v in w / w.mean())


# ---------------------------------------------------------------- the recovery conditional
def _recover(energy: Any, key: jax.Array, x_next: jax.Array, sigma: jax.Array, delta: jax.Array,
             step: jax.Array, num_steps: int, adjusted: bool = False) -> tuple[jax.Array, jax.Array]:
    """``num_steps`` Langevin steps on ``p(x | x_next)`` at per-example ``sigma``, ``delta``, ``step``, from ``x_next``.

    ``x ← x + h ∇ₓ log p(x | x_next) + √(2h) ξ`` (ebmppl's ULA form), vmapped over examples; with
    ``adjusted`` each move is a Metropolis-adjusted (MALA) proposal. Returns the samples and the mean
    acceptance (nan when unadjusted).
    """
    def logp(x, xn, s, d):
        return energy.noise_logdensity_fn(x, s) - 0.5 * jnp.sum((xn - x) ** 2) / d**2

    value_and_grad = jax.vmap(jax.value_and_grad(logp))
    shape = (-1,) + (1,) * (x_next.ndim - 1)
    h = step.reshape(shape)
    axes = tuple(range(1, x_next.ndim))

    def body(carry, k):
        x, lp, g, accepted = carry
        k_noise, k_accept = jax.random.split(k)
        prop = x + h * g + jnp.sqrt(2.0 * h) * jax.random.normal(k_noise, x.shape, x.dtype)
        if not adjusted:
            lp_new, g_new = value_and_grad(prop, x_next, sigma, delta)
            return (prop, lp_new, g_new, accepted), None
        lp_new, g_new = value_and_grad(prop, x_next, sigma, delta)
        fwd = -jnp.sum((prop - x - h * g) ** 2, axis=axes) / (4 * step)
        bwd = -jnp.sum((x - prop - h * g_new) ** 2, axis=axes) / (4 * step)
        log_ratio = jnp.nan_to_num(lp_new - lp + bwd - fwd, nan=-jnp.inf)
        ok = jnp.log(jax.random.uniform(k_accept, lp.shape, lp.dtype)) < log_ratio
        keep = ok.reshape(shape)
        return (jnp.where(keep, prop, x), jnp.where(ok, lp_new, lp), jnp.where(keep, g_new, g),
                accepted + ok.astype(lp.dtype)), None

    lp0, g0 = value_and_grad(x_next, x_next, sigma, delta)
    init = (x_next, lp0, g0, jnp.zeros(x_next.shape[:1], x_next.dtype))
    (x, _, _, accepted), _ = jax.lax.scan(body, init, jax.random.split(key, num_steps))
    rate = jnp.mean(accepted) / num_steps if adjusted else jnp.asarray(jnp.nan, x.dtype)
    return x, rate


def recovery_conditional_sample(energy: Any, key: jax.Array, x_noisy: jax.Array, level: int, *,
                                num_steps: int = 30, step_size: float | None = None,
                                step_scale: float = DEFAULT_STEP_SCALE, adjusted: bool = True) -> jax.Array:
    """Samples of the recovery conditional ``p(x_level | x_noisy)`` by Langevin from ``x_noisy``.

    ``x_noisy`` carries the noise of the level above, ``σ = ladder.sigmas[level - 1]``;
    the samples are at ``ladder.sigmas[level]``, drawn from
    ``exp(-E(x, σ_level)/T - ‖x_noisy - x‖² / (2δ²))``,
    ``δ² = σ_{level-1}² - σ_level²``, with ``num_steps`` Langevin steps
    ``x ← x + h ∇ log p + √(2h) ξ`` started at ``x_noisy``, each a
    Metropolis-adjusted proposal (MALA) by default; unadjusted (``adjusted=False``)
    they are biased at finite ``h`` (exact as ``h → 0`` with ``h · num_steps`` fixed).

    Parameters
    ----------
    energy
        A :class:`~ebmppl.noise.NoiseConditionalEnergy`.
    key
        PRNG key.
    x_noisy
        ``(n, *event_shape)`` points at level ``level - 1``.
    level
        The level recovered, ``1 ≤ level ≤ L - 1`` (an index into ``energy.ladder.sigmas``).
    num_steps, step_size, step_scale
        Langevin steps and their size (:func:`recovery_step_sizes`).
    adjusted
        Metropolis-adjust each step (MALA, default: exact as ``num_steps`` grows) or not (ULA, Gao et al.'s).

    Examples
    --------
    A Gaussian level ``E = ‖x‖²/2`` recovered from ``x_noisy = 2`` with ``δ = 1``:
    the conditional is ``N(1, ½)``.

    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import noise_conditional
    >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2), None, (1,), (1.0, 0.0))
    >>> x = recovery_conditional_sample(e, jax.random.key(0), jnp.full((4000, 1), 2.0), 1, num_steps=200,
    ...                                 step_size=0.02)
    >>> round(float(x.mean()), 1), round(float(x.var()), 1)
    (1.0, 0.5)
    """
    energy = _check_noise_energy(energy)
    check_key(key)
    num_steps = check_int("num_steps", num_steps, 1)
    level = check_int("level", level, 1)
    sigmas = energy.ladder.sigmas
    if level > len(sigmas) - 1:
        raise ValueError(f"level must be in 1..{len(sigmas) - 1} (an index into energy.ladder.sigmas, the level "
                         f"recovered), got {level}.")
    x_noisy = jnp.asarray(x_noisy)
    if x_noisy.ndim != 1 + len(energy.event_shape) or x_noisy.shape[1:] != energy.event_shape:
        raise ValueError(f"x_noisy has shape {x_noisy.shape}; expected (n, *{energy.event_shape}).")
    h = recovery_step_sizes(energy.ladder, step_size, step_scale)[level - 1]
    delta = float(_deltas(sigmas)[level - 1])
    return _recover_level(energy, key, x_noisy, np.float32(sigmas[level]), np.float32(delta), np.float32(h),
                          num_steps, bool(adjusted))[0]


@eqx.filter_jit  # num_steps and adjusted are Python values: static; one compilation serves every level
def _recover_level(energy: Any, key: jax.Array, x: jax.Array, sigma: jax.Array, delta: jax.Array, step: jax.Array,
                   num_steps: int, adjusted: bool) -> tuple[jax.Array, jax.Array]:
    full = lambda v: jnp.broadcast_to(jnp.asarray(v, x.dtype), x.shape[:1])  # noqa: E731
    return _recover(energy, key, x, full(sigma), full(delta), full(step), num_steps, adjusted)


# ---------------------------------------------------------------- the training term
class RecoveryLikelihood(LossTerm):
    """The recovery-likelihood term: per example a level, noisy pair, Langevin recovery, CD at that level.

    For each example ``x`` of ``x⁺``: a level ``t`` uniform on the ``L - 1``
    recovered levels, ``x_t = x + s_t ε``, ``x_{t+1} = x_t + δ_t ε'``,
    ``x̃_t`` = ``num_steps`` Langevin steps on ``p(x_t | x_{t+1})`` from
    ``x_{t+1}`` under the current θ (held constant; Metropolis-adjusted with
    ``adjusted``); the loss is ``mean λ_t (E(x_t, s_t) - E(x̃_t, s_t))`` with
    the level weights ``λ`` (:func:`recovery_level_weights`; ``None``: all 1).

    Aux values: ``energy_pos`` and ``energy_neg`` (the two unweighted means),
    ``step_size`` (mean Langevin step over the batch), ``acceptance_rate``
    (only when ``adjusted``) and ``recovery_shift``,
    the root-mean-square distance per coordinate of ``x̃_t`` from its start
    ``x_{t+1}`` in units of ``δ_t``: the data's own ``x_t`` lie at exactly 1
    in expectation, so values far below 1 say the chains barely move (steps
    too small or too few) and values far above it say they overshoot.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import noise_conditional
    >>> from ebmppl.objectives import Phases
    >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (2,), (1.0, 0.5, 0.0))
    >>> term = RecoveryLikelihood(e.ladder.sigmas, recovery_step_sizes(e.ladder), 2)
    >>> loss, aux = jax.jit(term)(e, Phases(None, jnp.zeros((64, 2)), None, jax.random.key(0)), {})
    >>> sorted(aux)
    ['acceptance_rate', 'energy_neg', 'energy_pos', 'recovery_shift', 'step_size']
    """

    sigmas: tuple[float, ...] = eqx.field(static=True)
    step_sizes: tuple[float, ...] = eqx.field(static=True)
    num_steps: int = eqx.field(static=True, default=30)
    adjusted: bool = eqx.field(static=True, default=True)
    level_weights: tuple[float, ...] | None = eqx.field(static=True, default=None)
    needs_key = True

    def __call__(self, model, phases, extra):
        x = phases.positive
        n, dtype = x.shape[0], x.dtype
        k_level, k_eps, k_delta, k_chain = jax.random.split(phases.key, 4)
        num = len(self.sigmas) - 1
        # recovered level i = 1..L-1 in ladder order (σ_i below σ_{i-1}); the noisy side is σ_{i-1}
        i = jax.random.randint(k_level, (n,), 1, num + 1)
        sig = jnp.asarray(self.sigmas, dtype)
        sigma = sig[i]
        delta = jnp.asarray(np.concatenate([[np.nan], _deltas(self.sigmas)]), dtype)[i]
        step = jnp.asarray((np.nan, *self.step_sizes), dtype)[i]
        shape = (n,) + (1,) * (x.ndim - 1)
        x_t = x + sigma.reshape(shape) * jax.random.normal(k_eps, x.shape, dtype)
        x_next = x_t + delta.reshape(shape) * jax.random.normal(k_delta, x.shape, dtype)
        frozen = jax.lax.stop_gradient(model)
        x_rec, rate = _recover(frozen, k_chain, x_next, sigma, delta, step, self.num_steps, self.adjusted)
        x_rec = jax.lax.stop_gradient(x_rec)
        energies = model.noise_energy(concat_leading([x_t, x_rec]), concat_leading([sigma, sigma]))
        e_pos, e_neg = (e.mean() for e in split_leading(energies, (n, n)))
        shift = jnp.sqrt(jnp.mean(((x_rec - x_next).reshape(n, -1) / delta[:, None]) ** 2))
        weights = self.level_weights if self.level_weights is not None else (1.0,) * num
        weight = jnp.asarray((np.nan, *weights), dtype)[i]
        loss = jnp.mean(weight * (energies[:n] - energies[n:]))
        return loss, {"energy_pos": e_pos, "energy_neg": e_neg, "step_size": step.mean(),
                               "recovery_shift": shift, **({"acceptance_rate": rate} if self.adjusted else {})}


def diffusion_recovery_likelihood(energy: Any, optimizer: optax.GradientTransformation, *, num_steps: int = 30,
                                  step_size: float | Sequence[float] | None = None,
                                  step_scale: float = DEFAULT_STEP_SCALE, adjusted: bool = True,
                                  weighting: str = "inverse_std", num_mcmc_steps: int | None = None) -> Objective:
    """A Diffusion Recovery Likelihood trainer (Gao et al., ICLR 2021), variance-exploding form.

    Trains a :class:`~ebmppl.noise.NoiseConditionalEnergy` ``E(x, σ)``: every
    step, each example gets a level, is noised to it and one level further,
    and the energy at that level is fitted by contrastive divergence against
    short Langevin runs on the recovery conditional (module docs,
    :class:`RecoveryLikelihood`). No replay buffer and no chains from noise:
    the negatives start at the noisier copy of each example. Gao et al. use
    the variance-preserving scaling; this is the variance-exploding form of
    the same recovery likelihood (see :mod:`ebmppl.objectives.recovery_likelihood`).

    The ladder: include the clean level ``σ_min = 0`` (then the data-level
    energy, what ``result.energy`` is as an :class:`~ebmppl.Energy`, models the
    data itself) and let ``σ_max`` be a few times the data's spread, so that
    :func:`recovery_sample` may start from ``N(center, σ_max² I)``; put the
    smallest positive level near the data's finest scale (two moons, 5000
    steps: ``geometric(2, 0, 6, smallest_positive=0.1)``, at its noise
    scale, reached -1.16 nats held out and MMD 0.011 where 8 levels down to
    0.05 reached -1.35 and 0.027). More levels make each conditional
    narrower and closer to unimodal (easier for the short runs) but make
    sampling longer. The network must be finite at ``σ = 0``:
    ``noise_conditional_mlp(..., scale_by_sigma=False)``.

    Parameters
    ----------
    energy
        The noise-conditional energy trained.
    optimizer
        Any Optax transformation.
    num_steps
        Langevin steps per recovery (Gao et al.: 30).
    num_mcmc_steps
        The same, under CD's name: ``fit(energy, key, data, objective="drl", num_mcmc_steps=40)`` reaches it
        (there ``num_steps`` is fit's own count of training steps). Overrides ``num_steps`` when given.
    step_size, step_scale
        The Langevin step of each level (:func:`recovery_step_sizes`):
        ``None`` gives ``step_scale · δ_t²`` per level (default ``b = 0.1``:
        ``num_steps · b ≈ 3`` relaxation times of the conditional's Gaussian part).
    adjusted
        ``True`` (default): a Metropolis correction (MALA) on each Langevin
        step, at no extra gradient cost; it keeps the recovery chains bounded
        when the energy sharpens faster than the step follows, and reports
        ``acceptance_rate``. ``False``: unadjusted Langevin, as Gao et al.; it
        diverged (chains exploding at a coarse level, energies running away)
        in 3 of 14 of our 2-D runs, MALA in none of 8. Sample with the same choice.
    weighting
        How the levels' CD terms are weighted (:func:`recovery_level_weights`):
        ``"inverse_std"`` (default, ``1/δ_t``), ``"inverse_variance"`` (``1/δ_t²``)
        or ``"uniform"`` (Gao et al.'s plain sum, under which the fine levels
        barely learn: on two moons the data level's held-out log-likelihood
        was -1.72 nats against -1.39 with ``1/δ``).

    Returns
    -------
    Objective
        The one trainer (name ``"drl"``) with a :class:`RecoveryLikelihood`
        term; metrics: the shared ones (``energy_pos``, ``energy_neg``,
        ``cd_gap``, ...) plus ``step_size``, ``recovery_shift`` (about 1
        when the recovery chains move as far as the data's own noise;
        :class:`RecoveryLikelihood`) and, with ``adjusted``, ``acceptance_rate``.

    Raises
    ------
    TypeError
        ``energy`` is a plain :class:`~ebmppl.Energy`: build a noise-conditional one,
        ``ebmppl.noise.noise_conditional_mlp(key, event_shape, ladder, scale_by_sigma=False)``.

    Warns
    -----
    NoiseLadderWarning
        When :func:`ebmppl.fit` hands it the data (``check_data``): the ladder or the network's confinement does
        not cover the data's scale (:class:`~ebmppl.noise.LadderScaleCheck`). The data are not standardised for
        this objective; on 2-D data of scale 0.01 with a ladder ``5 → 0.1, 0`` DRL trained without error and
        learnt almost nothing (classifier two-sample accuracy 0.98), where the same data ×50 gave 0.51. The
        message suggests a ladder from the data.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, optax
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum((x - p) ** 2) / (1 + s**2), jnp.zeros(2), (2,),
    ...                       NoiseLadder((1.0, 0.3, 0.0)))
    >>> drl = diffusion_recovery_likelihood(e, optax.adam(1e-3), num_steps=2)
    >>> state, metrics = jax.jit(drl.step)(drl.init(jax.random.key(1), e.params), jnp.ones((8, 2)))
    >>> drl.name, bool(metrics["finite"]), 0 < float(metrics["acceptance_rate"]) <= 1
    ('drl', True, True)
    >>> from ebmppl import Energy
    >>> diffusion_recovery_likelihood(Energy(lambda p, x: jnp.sum(x**2), event_shape=(2,)), optax.adam(1e-3))
    Traceback (most recent call last):
    ...
    TypeError: energy must be a noise-conditional energy E(x, σ) (ebmppl.noise.NoiseConditionalEnergy), got Energy; ...
    """
    energy = _check_noise_energy(energy)
    num_steps = check_int("num_steps", num_steps, 1)
    if num_mcmc_steps is not None:
        num_steps = check_int("num_mcmc_steps", num_mcmc_steps, 1)
    steps = recovery_step_sizes(energy.ladder, step_size, step_scale)
    weights = recovery_level_weights(energy.ladder, weighting)
    return Objective("drl", energy, optimizer, RecoveryLikelihood(energy.ladder.sigmas, steps, num_steps,
                                                                           bool(adjusted), weights),
                     check_data=LadderScaleCheck.for_energy(energy, "drl"))


# ---------------------------------------------------------------- the progressive sampler
def recovery_sample(energy: Any, key: jax.Array, num_samples: int, *, num_steps: int = 30,
                    step_size: float | Sequence[float] | None = None, step_scale: float = DEFAULT_STEP_SCALE,
                    init: jax.Array | None = None, num_snapshots: int | None = None, adjusted: bool = True,
                    progress_bar: bool = True) -> AnnealedSamples:
    """Progressive sampling of a recovery-likelihood model: ``σ_max`` down to ``σ_min``, one conditional per level.

    Starts from ``init`` (default ``N(center, σ_max² I)``) at level 0 of the
    ladder, then for each level ``i = 1..L-1`` draws from the recovery
    conditional ``p(x_i | x_{i-1})`` by ``num_steps`` Langevin steps
    (:func:`recovery_conditional_sample`). The same steps as training are
    the ones to use: the model was fitted with those chains.

    Parameters
    ----------
    energy
        A :class:`~ebmppl.noise.NoiseConditionalEnergy` (e.g. trained by :func:`diffusion_recovery_likelihood`).
    key
        PRNG key.
    num_samples
        Number of samples (chains, all vectorised).
    num_steps, step_size, step_scale, adjusted
        Langevin steps per level, their size (:func:`recovery_step_sizes`) and
        the Metropolis correction: use the training's values.
    init
        ``(num_samples, *event_shape)`` starting points at ``σ_max`` (default ``N(center, σ_max² I)``, ``center``
        from :meth:`~ebmppl.Energy.typical_region`: the network's ``confinement_center``, else 0).
    num_snapshots
        How many of the chains ``per_level`` keeps (default ``None``: all).
    progress_bar
        A tqdm bar over the levels.

    Returns
    -------
    AnnealedSamples
        ``samples`` ``(num_samples, *event_shape)`` at ``σ_min``; ``per_level``
        ``(L, num_snapshots, *event_shape)``, the first chains at the end of
        each level, ``per_level[i]`` a draw of ``p_{σ_i}`` (row 0: the start at
        ``σ_max``), as :func:`ebmppl.samplers.annealed.annealed_langevin` returns them.

    Examples
    --------
    A Gaussian model, ``E(x, σ) = ‖x‖² / (2(1 + σ²))`` (data ``N(0, 1)``): the samples are ``N(0, 1)``.

    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (2,),
    ...                       NoiseLadder((3.0, 1.5, 0.7, 0.3, 0.0)))
    >>> out = recovery_sample(e, jax.random.key(0), 1000, num_steps=50, progress_bar=False)
    >>> out.samples.shape, out.per_level.shape, round(float(out.samples.std()), 1)
    ((1000, 2), (5, 1000, 2), 1.0)
    """
    energy = _check_noise_energy(energy)
    check_key(key)
    num_samples = check_int("num_samples", num_samples, 1)
    num_steps = check_int("num_steps", num_steps, 1)
    num_snapshots = num_samples if num_snapshots is None else check_int("num_snapshots", num_snapshots, 1)
    sigmas = energy.ladder.sigmas
    steps = recovery_step_sizes(energy.ladder, step_size, step_scale)
    deltas = _deltas(sigmas)
    dtype = jnp.result_type(float)
    k_init, key = jax.random.split(key)
    if init is None:  # N(center, σ_max² I): center 0 unless the energy declares one (a network's confinement)
        center, _ = energy.typical_region()
        x = center + sigmas[0] * jax.random.normal(k_init, (num_samples, *energy.event_shape), dtype)
    else:
        x = jnp.asarray(init)
        if x.shape != (num_samples, *energy.event_shape):
            raise ValueError(f"init has shape {x.shape}; expected (num_samples, *event_shape) = "
                             f"({num_samples}, *{energy.event_shape}).")
        if not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError("init contains NaN or inf; pass finite starting points (or None for "
                             "N(center, σ_max² I)).")
    k = min(num_snapshots, num_samples)
    snapshots = [x[:k]]
    keys = jax.random.split(key, len(sigmas) - 1)
    for i in tqdm(range(1, len(sigmas)), desc="recovery levels", disable=not progress_bar, leave=False):
        x, _ = _recover_level(energy, keys[i - 1], x, np.float32(sigmas[i]), np.float32(deltas[i - 1]),
                              np.float32(steps[i - 1]), num_steps, bool(adjusted))
        snapshots.append(x[:k])
    if not bool(jnp.all(jnp.isfinite(x))):
        raise FloatingPointError("recovery_sample produced non-finite samples: the Langevin steps diverged; pass a "
                                 "smaller step_scale (or step_size).")
    return AnnealedSamples(x, jnp.stack(snapshots))
