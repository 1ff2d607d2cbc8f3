"""Multi-σ denoising score matching (Song & Ermon 2019): one noise-conditional energy for a whole noise ladder.

Denoising score matching at one noise scale σ (``fit(objective="dsm")``)
learns the score of the σ-smoothed data, ``p_σ = p_data * N(0, σ²I)``. Too
small a σ leaves the score unlearnt away from the data (where Langevin chains
start); too large a σ blurs the density. Song & Ermon train ONE
noise-conditional energy ``E(x, σ)`` (:mod:`ebmppl.noise`) at every level of a
ladder ``σ_1 > … > σ_L`` at once, with the per-level weight ``λ(σ) = σ²`` that
makes every level's loss O(1):

    ``L(θ) = E_σ E_x E_ε ½ ‖σ s_θ(x + σε, σ) + ε‖²``,   ``s_θ = -∇ₓE/T``,

σ drawn per example uniformly among the ladder's levels (NCSN), or
log-uniformly on ``[σ_min, σ_max]`` (``continuous=True``: every σ in the range
is trained, which the probability-flow ODE needs). The trained energy samples
with :func:`ebmppl.samplers.annealed.annealed_langevin` or
:func:`~ebmppl.samplers.annealed.predictor_corrector`; as an
:class:`~ebmppl.Energy` it is the density ``p_{σ_min}``, the data smoothed by
the smallest level.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ebmppl.energy import Energy
from ebmppl.noise import LadderScaleCheck, NoiseConditionalEnergy
from ebmppl.objectives.trainer import LossTerm, Objective

__all__ = ["MultiscaleDSM", "multiscale_dsm", "multiscale_dsm_loss", "draw_sigmas"]


def draw_sigmas(energy: NoiseConditionalEnergy, key: jax.Array, num: int, *, continuous: bool = False,
                dtype: Any = None) -> jax.Array:
    """``num`` noise scales: uniform over the ladder's levels, or log-uniform on ``[σ_min, σ_max]``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> e = noise_conditional(lambda p, x, s: jnp.sum(x**2) / (1 + s**2), None, (1,), NoiseLadder((1.0, 0.1)))
    >>> sorted(set(draw_sigmas(e, jax.random.key(0), 100).tolist()))
    [0.10000000149011612, 1.0]
    >>> s = draw_sigmas(e, jax.random.key(0), 1000, continuous=True)
    >>> bool((s >= 0.1).all() & (s <= 1.0).all())
    True
    """
    dtype = jnp.result_type(float) if dtype is None else dtype
    ladder = energy.ladder
    if continuous:
        lo, hi = math.log(ladder.sigma_min), math.log(ladder.sigma_max)
        return jnp.exp(jax.random.uniform(key, (num,), dtype, lo, hi))
    idx = jax.random.randint(key, (num,), 0, ladder.num_levels)
    return jnp.asarray(ladder.sigmas, dtype)[idx]


def multiscale_dsm_loss(energy: NoiseConditionalEnergy, params: Any, x: jax.Array, key: jax.Array, *,
                        continuous: bool = False) -> jax.Array:
    """The σ²-weighted multi-σ DSM loss ``E_σ ½ E ‖σ s_θ(x + σε, σ) + ε‖²`` on the batch ``x``.

    Examples
    --------
    The exact σ-smoothed energy of ``N(0, 1)`` beats a model that ignores σ:

    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> ladder = NoiseLadder.geometric(2.0, 0.1, 5)
    >>> exact = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (1,), ladder)
    >>> blind = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2), None, (1,), ladder)
    >>> x = jax.random.normal(jax.random.key(0), (20000, 1))
    >>> k = jax.random.key(1)
    >>> bool(multiscale_dsm_loss(exact, None, x, k) < multiscale_dsm_loss(blind, None, x, k))
    True
    """
    model = energy.with_params(params)
    k_sigma, k_eps = jax.random.split(key)
    n = x.shape[0]
    sigma = draw_sigmas(model, k_sigma, n, continuous=continuous, dtype=x.dtype)
    eps = jax.random.normal(k_eps, x.shape, x.dtype)
    s_b = sigma.reshape((n,) + (1,) * (x.ndim - 1))
    score = jax.vmap(jax.grad(model.noise_logdensity_fn))(x + s_b * eps, sigma)
    return 0.5 * jnp.mean(jnp.sum((s_b * score + eps).reshape(n, -1) ** 2, axis=1))


class MultiscaleDSM(LossTerm):
    """The multi-σ DSM term: :func:`multiscale_dsm_loss` on ``x⁺`` (the model must be noise-conditional).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from ebmppl.noise import NoiseLadder, noise_conditional
    >>> from ebmppl.objectives import Phases
    >>> e = noise_conditional(lambda p, x, s: 0.5 * jnp.sum(x**2) / (1 + s**2), None, (1,), NoiseLadder((1.0, 0.1)))
    >>> x = jax.random.normal(jax.random.key(0), (4096, 1))
    >>> loss, aux = MultiscaleDSM()(e, Phases(None, x, None, jax.random.key(1)), {})
    >>> loss.shape, aux
    ((), {})
    """

    continuous: bool = eqx.field(static=True, default=False)
    needs_key = True

    def __call__(self, model, phases, extra):
        return multiscale_dsm_loss(model, model.params, phases.positive, phases.key, continuous=self.continuous), {}


def multiscale_dsm(energy: NoiseConditionalEnergy, optimizer: optax.GradientTransformation, *,
                   continuous: bool = False) -> Objective:
    """A multi-σ denoising-score-matching trainer (Song & Ermon 2019) for a noise-conditional energy.

    Parameters
    ----------
    energy
        A :class:`~ebmppl.noise.NoiseConditionalEnergy` over a ladder with
        ``σ_min > 0`` (built by :func:`ebmppl.noise.noise_conditional_mlp` or
        :func:`ebmppl.noise.noise_conditional`).
    optimizer
        Any Optax transformation.
    continuous
        Draw σ log-uniformly on ``[σ_min, σ_max]`` instead of among the
        ladder's levels (train every σ in the range: the probability-flow ODE
        integrates over all of them).

    Returns
    -------
    Objective
        Named ``"multiscale_dsm"``; drive it with
        ``ebmppl.fit(energy, key, data, objective=trainer, num_steps=...)``.

    Raises
    ------
    TypeError
        ``energy`` is a plain :class:`~ebmppl.Energy` (the error names the fix).
    ValueError
        The ladder has a ``σ = 0`` level (DSM's target ``-ε/σ`` is undefined there).

    Warns
    -----
    NoiseLadderWarning
        When :func:`ebmppl.fit` hands it the data (``check_data``): the ladder or the network's confinement does
        not cover the data's scale (:class:`~ebmppl.noise.LadderScaleCheck`: ``σ_max`` below the data's spread,
        the smallest σ above its finest scale, a confinement narrower than the data); the data are not
        standardised for this objective. The message suggests ``NoiseLadder.geometric(...)`` from the data.

    Examples
    --------
    >>> import jax, optax
    >>> from ebmppl.noise import NoiseLadder, noise_conditional_mlp
    >>> e = noise_conditional_mlp(jax.random.key(0), (2,), NoiseLadder.geometric(1.0, 0.05, 6), hidden=(16, 16))
    >>> trainer = multiscale_dsm(e, optax.adam(1e-3))
    >>> state, metrics = jax.jit(trainer.step)(trainer.init(jax.random.key(1), e.params), jax.numpy.ones((8, 2)))
    >>> trainer.name, bool(metrics["finite"])
    ('multiscale_dsm', True)
    """
    if not isinstance(energy, NoiseConditionalEnergy):
        if isinstance(energy, Energy):
            raise TypeError("multiscale_dsm trains a noise-conditional energy E(x, σ), got a plain ebmppl.Energy; "
                            "build one with ebmppl.noise.noise_conditional_mlp(key, event_shape, ladder) or "
                            "ebmppl.noise.noise_conditional(noise_energy_fn, params, event_shape, ladder) (or use "
                            "objective='dsm' for one noise scale).")
        raise TypeError(f"energy must be an ebmppl.noise.NoiseConditionalEnergy, got {type(energy).__name__}; build "
                        "one with ebmppl.noise.noise_conditional_mlp or ebmppl.noise.noise_conditional.")
    if not energy.ladder.sigma_min > 0:
        raise ValueError(f"multiscale_dsm needs sigma_min > 0, but the ladder {energy.ladder.sigmas} has a σ = 0 "
                         "level (denoising score matching's target -ε/σ is undefined there); use a ladder with "
                         "sigma_min > 0, e.g. NoiseLadder.geometric(sigma_max, 0.01, num_levels).")
    if not isinstance(continuous, bool):
        raise TypeError(f"continuous must be True or False, got {continuous!r}.")
    return Objective("multiscale_dsm", energy, optimizer, MultiscaleDSM(continuous),
                     check_data=LadderScaleCheck.for_energy(energy, "multiscale_dsm"))
