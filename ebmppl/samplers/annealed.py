"""Sampling a noise-conditional energy level by level: annealed Langevin and predictor–corrector.

A noise-conditional energy ``E(x, σ)`` (:mod:`ebmppl.noise`) models the data
smoothed by ``N(0, σ²I)`` at every level of a ladder ``σ_1 > … > σ_L``. At the
broad levels the density is nearly Gaussian and chains mix easily; each level's
samples start the next, narrower one, so the chains reach every mode of the
data level in the right proportions, which a single Langevin chain on
``p_{σ_L}`` does not (it stays in the mode it starts in).

* :func:`annealed_langevin` — Song & Ermon (2019), Algorithm 1: at level ``i``,
  ``steps_per_level`` unadjusted Langevin steps
  ``x ← x + (α_i/2) ∇ₓlog p_{σ_i}(x) + √α_i z`` with ``α_i = ε σ_i² / σ_L²``.
* :func:`predictor_corrector` — Song et al. (2021), Algorithm 2 for the
  variance-exploding SDE: at each level, Langevin corrector steps whose size
  follows a signal-to-noise ratio ``r``, ``ε = 2 (r ‖z‖ / ‖∇ log p‖)²``, then the
  reverse-diffusion predictor to the next level,
  ``x ← x + (σ_i² - σ_{i+1}²) ∇ₓlog p_{σ_i}(x) + √(σ_i² - σ_{i+1}²) z``.

Both end, with ``denoise=True``, with Tweedie's denoising step
``x ← x + σ_L² ∇ₓlog p_{σ_L}(x)``, the posterior mean ``E[x₀ | x]`` of the
clean data given the last level's sample (Song et al.'s final noise-free
step; it removes the visible σ_L noise, and the samples are then posterior
means, slightly less spread than draws of ``p_{σ_L}``). With ``denoise=False``
the samples are draws of ``p_{σ_L}``, the density the energy is as an
:class:`~ebmppl.Energy`.

Samples are independent (vmapped chains, one per sample); each level is one
``lax.scan`` compiled once for all levels, and the progress bar advances by level.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from ebmppl._validation import check_key
from ebmppl.noise import NoiseConditionalEnergy

__all__ = ["AnnealedSamples", "annealed_langevin", "predictor_corrector"]


class AnnealedSamples(NamedTuple):
    """Samples of a noise-conditional energy drawn level by level.

    Attributes
    ----------
    samples
        ``(num_samples, *event_shape)``: the final samples (denoised by
        Tweedie's step when the sampler was asked to).
    per_level
        ``(num_levels, num_samples, *event_shape)``: the chains at the end of
        each level, ``per_level[i]`` a draw of ``p_{σ_i}`` (largest σ first),
        for plots of the annealing.

    Examples
    --------
    >>> s = AnnealedSamples(jnp.zeros((5, 2)), jnp.zeros((3, 5, 2)))
    >>> s.samples.shape, s.per_level.shape[0]
    ((5, 2), 3)
    """

    samples: jax.Array
    per_level: jax.Array


# --------------------------------------------------------------------------- checks
def _check_energy(energy: Any, where: str) -> NoiseConditionalEnergy:
    if not isinstance(energy, NoiseConditionalEnergy):
        raise TypeError(f"{where} samples a noise-conditional energy E(x, σ) over a noise ladder, got "
                        f"{type(energy).__name__}; build one with ebmppl.noise.noise_conditional_mlp or "
                        "ebmppl.noise.noise_conditional (for a plain ebmppl.Energy use ebmppl.sample).")
    if energy.support.is_discrete:
        raise TypeError(f"{where} needs a continuous energy (gradients in x); this one is on {energy.support!r}.")
    return energy


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    return int(value)


def _initial(energy: NoiseConditionalEnergy, key: jax.Array, num_samples: int, init: Any) -> jax.Array:
    """``init`` checked, or draws of the VE prior ``N(center, σ_max² I)`` (center: the energy's typical region)."""
    dtype = jnp.result_type(float)
    shape = (num_samples, *energy.event_shape)
    if init is None:
        center, _ = energy.typical_region()
        return center + energy.ladder.sigma_max * jax.random.normal(key, shape, dtype)
    x = jnp.asarray(init)
    if x.shape != shape:
        raise ValueError(f"init has shape {x.shape}; pass one start per sample, of shape (num_samples, *event_shape) "
                         f"= {shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"init has dtype {x.dtype}; pass floating-point starts, e.g. init.astype(jnp.float32).")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("init holds non-finite values; pass finite starting points.")
    return x


def _finish(energy: NoiseConditionalEnergy, x: jax.Array, per_level: list[jax.Array], denoise: bool,
            where: str, advice: str) -> AnnealedSamples:
    levels = jnp.stack(per_level)
    if denoise:
        x = _tweedie(energy, x, jnp.asarray(energy.ladder.sigma_min, x.dtype))
    bad = ~np.asarray(jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1))
    if bad.any():
        raise FloatingPointError(f"{where}: {int(bad.sum())} of {x.shape[0]} samples are not finite: the chains "
                                 f"diverged. {advice}")
    return AnnealedSamples(x, levels)


# --------------------------------------------------------------------------- compiled pieces
def _score(energy: NoiseConditionalEnergy, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """``∇ₓ log p_σ`` of a batch of examples at one (traced) σ."""
    return jax.vmap(jax.grad(energy.noise_logdensity_fn), in_axes=(0, None))(x, sigma)


@eqx.filter_jit
def _tweedie(energy: NoiseConditionalEnergy, x: jax.Array, sigma: jax.Array) -> jax.Array:
    return x + sigma**2 * _score(energy, x, sigma)


@eqx.filter_jit
def _langevin_level(energy: NoiseConditionalEnergy, x: jax.Array, sigma: jax.Array, alpha: jax.Array,
                    key: jax.Array, num_steps: int) -> jax.Array:
    def step(x, k):
        z = jax.random.normal(k, x.shape, x.dtype)
        return x + 0.5 * alpha * _score(energy, x, sigma) + jnp.sqrt(alpha) * z, None

    x, _ = jax.lax.scan(step, x, jax.random.split(key, num_steps))
    return x


def _per_example_norm(v: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1)).reshape((-1,) + (1,) * (v.ndim - 1))


@eqx.filter_jit
def _pc_level(energy: NoiseConditionalEnergy, x: jax.Array, sigma: jax.Array, sigma_next: jax.Array,
              snr: jax.Array, key: jax.Array, corrector_steps: int) -> tuple[jax.Array, jax.Array]:
    """Corrector steps at σ, then the reverse-diffusion predictor to σ_next: (state at σ, state at σ_next)."""
    k_corr, k_pred = jax.random.split(key)

    def correct(x, k):
        z = jax.random.normal(k, x.shape, x.dtype)
        g = _score(energy, x, sigma)
        # Song et al.'s step ε = 2 (r ‖z‖ / ‖g‖)², the norms averaged over the samples as in their code: a
        # per-sample ‖g‖ near a mode is near 0 and its step explodes (in low dimension)
        eps = 2.0 * (snr * jnp.mean(_per_example_norm(z)) / jnp.maximum(jnp.mean(_per_example_norm(g)), 1e-30)) ** 2
        return x + eps * g + jnp.sqrt(2.0 * eps) * z, None

    if corrector_steps:
        x, _ = jax.lax.scan(correct, x, jax.random.split(k_corr, corrector_steps))
    var = sigma**2 - sigma_next**2
    z = jax.random.normal(k_pred, x.shape, x.dtype)
    return x, x + var * _score(energy, x, sigma) + jnp.sqrt(var) * z


# --------------------------------------------------------------------------- samplers
def annealed_langevin(energy: NoiseConditionalEnergy, key: jax.Array, num_samples: int, *,
                      steps_per_level: int = 100, step_scale: float | None = None, init: jax.Array | None = None,
                      denoise: bool = True, progress_bar: bool = True) -> AnnealedSamples:
    """Annealed Langevin dynamics over the energy's noise ladder (Song & Ermon 2019).

    Parameters
    ----------
    energy
        A :class:`~ebmppl.noise.NoiseConditionalEnergy` whose ladder has
        ``σ_min > 0`` (e.g. trained by
        :func:`~ebmppl.objectives.multiscale.multiscale_dsm`).
    key
        PRNG key.
    num_samples
        Independent samples (one chain each, vmapped).
    steps_per_level
        Langevin steps at each level (Song & Ermon: 100).
    step_scale
        ``ε`` of ``α_i = ε σ_i² / σ_L²``, in squared units of ``x``; the step
        relative to the level's scale, ``α_i / σ_i² = ε / σ_L²``, is the same at
        every level. Default ``0.05 σ_L²`` (relative step 0.05: each level
        relaxes over about 20 steps; Song & Ermon's CIFAR-10 run used 0.2).
    init
        Starting points ``(num_samples, *event_shape)``; default draws of
        ``N(center, σ_max² I)`` (the variance-exploding prior; ``center`` from
        ``energy.typical_region()``).
    denoise
        End with Tweedie's step ``x + σ_L² ∇ log p_{σ_L}(x)`` (see the module notes).
    progress_bar
        A tqdm bar over the levels.

    Returns
    -------
    AnnealedSamples
        ``samples`` and the chains at the end of each level, ``per_level``.

    Raises
    ------
    TypeError
        ``energy`` is not noise-conditional.
    ValueError
        The ladder has a ``σ = 0`` level (``α ∝ σ_i²/σ_L²`` is undefined: use
        :func:`predictor_corrector`); bad counts, step or ``init``.
    FloatingPointError
        The chains diverged (lower ``step_scale``).

    Examples
    --------
    The σ-smoothed two-mode mixture ``½ N(-2, 0.1²) + ½ N(2, 0.1²)``, in closed form at every level:

    >>> import jax, jax.numpy as jnp
    >>> from jax.scipy.stats import norm
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> def mix(p, x, s):
    ...     sd = jnp.sqrt(0.1**2 + s**2)
    ...     return -jax.nn.logsumexp(jnp.log(0.5) + norm.logpdf(x[0], jnp.array([-2.0, 2.0]), sd))
    >>> e = noise_conditional(mix, None, (1,), NoiseLadder.geometric(5.0, 0.05, 8))
    >>> out = annealed_langevin(e, jax.random.key(0), 400, steps_per_level=50, progress_bar=False)
    >>> out.samples.shape, out.per_level.shape
    ((400, 1), (8, 400, 1))
    >>> 0.4 < float((out.samples > 0).mean()) < 0.6        # both modes, about half each
    True
    """
    energy = _check_energy(energy, "annealed_langevin")
    key = check_key(key)
    num_samples = _check_int(num_samples, "num_samples", 1)
    steps_per_level = _check_int(steps_per_level, "steps_per_level", 1)
    ladder = energy.ladder
    if not ladder.sigma_min > 0:
        raise ValueError(f"annealed_langevin needs sigma_min > 0 (its step α_i = ε σ_i²/σ_L² divides by σ_L²), "
                         f"but the ladder {ladder.sigmas} has a σ = 0 level; use predictor_corrector (it takes one).")
    eps = 0.05 * ladder.sigma_min**2 if step_scale is None else float(step_scale)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"step_scale must be a finite number > 0, got {step_scale!r}.")
    k_init, k_run = jax.random.split(key)
    x = _initial(energy, k_init, num_samples, init)
    dtype = x.dtype
    per_level = []
    keys = jax.random.split(k_run, ladder.num_levels)
    with tqdm(total=ladder.num_levels * steps_per_level, desc="annealed_langevin", disable=not progress_bar,
              leave=False) as bar:
        for sigma, k in zip(ladder.sigmas, keys, strict=True):
            alpha = eps * sigma**2 / ladder.sigma_min**2
            x = _langevin_level(energy, x, jnp.asarray(sigma, dtype), jnp.asarray(alpha, dtype), k, steps_per_level)
            per_level.append(x)
            if progress_bar:
                jax.block_until_ready(x)
                bar.update(steps_per_level)
    return _finish(energy, x, per_level, denoise, "annealed_langevin",
                   "Lower step_scale (the relative step step_scale/σ_min² should stay well below 1).")


def predictor_corrector(energy: NoiseConditionalEnergy, key: jax.Array, num_samples: int, *,
                        corrector_steps: int = 1, snr: float = 0.16, init: jax.Array | None = None,
                        denoise: bool = True, progress_bar: bool = True) -> AnnealedSamples:
    """Predictor–corrector sampling over the energy's ladder (Song et al. 2021, VE SDE, Algorithm 2).

    At each level ``σ_i`` (largest first): ``corrector_steps`` Langevin steps
    of size ``ε = 2 (r ‖z‖ / ‖∇ₓlog p_{σ_i}(x)‖)²``, the norms averaged over
    the samples as in Song et al.'s code (so the step is shared by the batch:
    samples are exchangeable, not strictly independent), then the
    reverse-diffusion predictor to the next level. The ladder's levels are the
    discretisation of the reverse SDE: a finer ladder is a finer
    discretisation, and a coarse one (tens of levels over decades of σ) leaves
    the predictor's Euler–Maruyama error for the correctors to remove (Song et
    al. use 1000 levels; with the ~10 levels of an NCSN ladder prefer
    :func:`annealed_langevin`). The corrector is unadjusted Langevin: it biases
    the spread by about ``r²`` relative (2.6 % at ``r = 0.16``).

    Parameters
    ----------
    energy
        A :class:`~ebmppl.noise.NoiseConditionalEnergy` (a ``σ = 0`` level is allowed).
    key
        PRNG key.
    num_samples
        Independent samples (vmapped).
    corrector_steps
        Langevin corrector steps per level (``0``: the predictor alone, i.e.
        ancestral reverse diffusion).
    snr
        The signal-to-noise ratio ``r`` of the corrector (Song et al.: 0.16 on
        CIFAR-10 with the VE SDE).
    init, denoise, progress_bar
        As in :func:`annealed_langevin` (the final predictor step to ``σ = 0``,
        without noise, is Tweedie's denoising step).

    Returns
    -------
    AnnealedSamples
        ``samples`` and, per level, the chains after that level's corrector.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> gauss = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (2,),
    ...                           NoiseLadder.geometric(10.0, 0.01, 100))
    >>> out = predictor_corrector(gauss, jax.random.key(0), 2000, denoise=False, progress_bar=False)
    >>> 0.9 < float(out.samples.var()) < 1.15      # N(0, 1 + σ_min²), up to the corrector's bias
    True
    """
    energy = _check_energy(energy, "predictor_corrector")
    key = check_key(key)
    num_samples = _check_int(num_samples, "num_samples", 1)
    corrector_steps = _check_int(corrector_steps, "corrector_steps", 0)
    r = float(snr)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"snr must be a finite number > 0, got {snr!r}.")
    ladder = energy.ladder
    k_init, k_run = jax.random.split(key)
    x = _initial(energy, k_init, num_samples, init)
    dtype = x.dtype
    per_level = []
    keys = jax.random.split(k_run, ladder.num_levels)
    nexts = (*ladder.sigmas[1:], 0.0)
    with tqdm(total=ladder.num_levels, desc="predictor_corrector", disable=not progress_bar, leave=False) as bar:
        for i, (sigma, nxt, k) in enumerate(zip(ladder.sigmas, nexts, keys, strict=True)):
            at_level, predicted = _pc_level(energy, x, jnp.asarray(sigma, dtype), jnp.asarray(nxt, dtype),
                                            jnp.asarray(r, dtype), k, corrector_steps)
            per_level.append(at_level)
            # the last predictor goes to σ = 0: its mean is Tweedie's step (applied by _finish when denoise)
            x = predicted if i + 1 < ladder.num_levels else at_level
            if progress_bar:
                jax.block_until_ready(x)
                bar.update(1)
    return _finish(energy, x, per_level, denoise, "predictor_corrector",
                   "Lower snr or use more levels (a finer ladder).")
