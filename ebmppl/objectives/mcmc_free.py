"""MCMC-free objectives: denoising and sliced score matching, and noise-contrastive estimation.

They fit the same energies as contrastive divergence through the same
:class:`~ebmppl.objectives.Objective` (``fit(..., objective="dsm")``), as its loss terms,
without sampling the model during training:

* **Denoising score matching** (Vincent 2011): match the model score
  ``s_θ = -∇ₓE/T`` at noisy points ``x̃ = x + σε`` to the score of the noise
  kernel, ``-(x̃ - x)/σ²``. Its optimum is the density of the *noise-smoothed*
  data, ``p_data * N(0, σ²I)``.
* **Sliced score matching** (Song et al. 2019): Hyvärinen's objective
  ``E[½‖s_θ‖² + tr ∇ₓs_θ]`` with the trace estimated by random projections,
  ``vᵀ∇ₓ(vᵀ s_θ)``; its optimum is the data density itself.
* **Noise-contrastive estimation** (Gutmann & Hyvärinen 2010): logistic
  classification of data against samples of a tractable noise density, with
  the model's log-normaliser ``c`` learned as a parameter, so that
  ``-E(x)/T - c`` becomes a normalised log-density.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ebmppl.energy import Energy
from ebmppl.objectives.trainer import LossTerm, Objective, freeze_arrays, thaw_arrays

__all__ = ["denoising_score_matching", "sliced_score_matching", "noise_contrastive_estimation", "dsm_loss",
           "ssm_loss", "nce_loss", "DenoisingScoreMatching", "SlicedScoreMatching", "NoiseContrastive"]


def _score_fn(energy: Energy, params: Any) -> Callable[[jax.Array], jax.Array]:
    return jax.grad(energy.with_params(params).logdensity_fn)


def dsm_loss(energy: Energy, params: Any, x: jax.Array, key: jax.Array, sigma: float) -> jax.Array:
    """Denoising score matching loss ``½ E ‖σ s_θ(x + σε) + ε‖²`` (scaled by σ² so it is O(1)).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2) / p, jnp.float32(1.0), event_shape=(1,))
    >>> float(dsm_loss(e, e.params, jnp.zeros((4096, 1)), jax.random.key(0), 0.1)) < 0.6
    True
    """
    eps = jax.random.normal(key, x.shape)
    score = jax.vmap(_score_fn(energy, params))(x + sigma * eps)
    return 0.5 * jnp.mean(jnp.sum((sigma * score + eps).reshape(x.shape[0], -1) ** 2, axis=1))


def ssm_loss(energy: Energy, params: Any, x: jax.Array, key: jax.Array, num_projections: int = 1) -> jax.Array:
    """Sliced score matching (variance-reduced): ``E[½‖s_θ(x)‖² + vᵀ ∇ₓ(vᵀ s_θ(x))]``, ``v ~ N(0, I)``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> x = jax.random.normal(jax.random.key(0), (20000, 2))
    >>> round(float(ssm_loss(e, None, x, jax.random.key(1))), 1)   # = -d/2 at the optimum
    -1.0
    """
    score = _score_fn(energy, params)
    v = jax.random.normal(key, (num_projections, *x.shape))

    def one(xi, vi):
        s, jvp = jax.jvp(score, (xi,), (vi,))  # jvp = ∇ₓ s · v
        return 0.5 * jnp.sum(s**2) + jnp.sum(vi * jvp)

    per = jax.vmap(lambda vp: jax.vmap(one)(x, vp))(v)
    return jnp.mean(per)


def nce_loss(energy: Energy, params: Any, log_c: jax.Array, x: jax.Array, noise: jax.Array,
             noise_log_prob: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """NCE logistic loss with model ``log p = -E/T - c`` and ``ν = len(noise)/len(x)`` noise samples per datum.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from jax.scipy.stats import norm
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(1,))
    >>> lp = lambda z: norm.logpdf(z).sum(-1)
    >>> x = jax.random.normal(jax.random.key(0), (1000, 1))
    >>> y = jax.random.normal(jax.random.key(1), (1000, 1))
    >>> round(float(nce_loss(e, None, jnp.float32(0.5 * jnp.log(2 * jnp.pi)), x, y, lp)), 3)  # model = noise
    1.386
    """
    model = energy.with_params(params)
    nu = noise.shape[0] / x.shape[0]

    def logit(z):  # log p_model(z) - log(ν q(z))
        return model.logdensity(z) - log_c - noise_log_prob(z) - math.log(nu)

    return jnp.mean(jax.nn.softplus(-logit(x))) + nu * jnp.mean(jax.nn.softplus(logit(noise)))


class DenoisingScoreMatching(LossTerm):
    """The denoising-score-matching term, :func:`dsm_loss` on ``x⁺`` with noise scale ``sigma``.

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2) / p, jnp.float32(1.0), event_shape=(1,))
    >>> loss, _ = DenoisingScoreMatching(0.1)(e, Phases(None, jnp.zeros((4096, 1)), None, jax.random.key(0)), {})
    >>> float(loss) < 0.6
    True
    """

    sigma: float = eqx.field(static=True)
    needs_key = True

    def __call__(self, model, phases, extra):
        return dsm_loss(model, model.params, phases.positive, phases.key, self.sigma), {}


class SlicedScoreMatching(LossTerm):
    """The sliced-score-matching term, :func:`ssm_loss` on ``x⁺`` with ``num_projections`` directions.

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> x = jax.random.normal(jax.random.key(0), (20000, 2))
    >>> round(float(SlicedScoreMatching()(e, Phases(None, x, None, jax.random.key(1)), {})[0]), 1)
    -1.0
    """

    num_projections: int = eqx.field(static=True, default=1)
    needs_key = True

    def __call__(self, model, phases, extra):
        return ssm_loss(model, model.params, phases.positive, phases.key, self.num_projections), {}


class NoiseContrastive(LossTerm):
    """The NCE term against Gaussian noise ``N(mean, scale²)``, ``noise_ratio`` noise draws per example.

    It trains the model's log-normaliser ``log_c`` (starting at 0) with the energy.

    Examples
    --------
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(1,))
    >>> term = NoiseContrastive.gaussian((1,), 0.0, 1.0)
    >>> x = jax.random.normal(jax.random.key(0), (4000, 1))
    >>> loss, _ = term(e, Phases(None, x, None, jax.random.key(1)), {"log_c": jnp.float32(0.919)})  # model = noise
    >>> round(float(loss), 2)
    1.39
    """

    mean: tuple = eqx.field(static=True)
    scale: tuple = eqx.field(static=True)
    noise_ratio: int = eqx.field(static=True, default=1)
    needs_key = True

    @classmethod
    def gaussian(cls, event_shape: tuple[int, ...], mean: Any = 0.0, scale: Any = 1.0,
                 noise_ratio: int = 1) -> NoiseContrastive:
        """The term for noise ``N(mean, scale²)`` (scalars or arrays broadcast to ``event_shape``), validated."""
        if int(noise_ratio) < 1:
            raise ValueError(f"noise_ratio must be >= 1, got {noise_ratio!r}.")
        mean = jnp.broadcast_to(jnp.asarray(mean, jnp.float32), event_shape)
        scale = jnp.broadcast_to(jnp.asarray(scale, jnp.float32), event_shape)
        if not bool(jnp.all(scale > 0)):
            raise ValueError("noise_scale must be > 0.")
        return cls(freeze_arrays({"mean": mean}), freeze_arrays({"scale": scale}), int(noise_ratio))

    def extra_params(self):
        return {"log_c": jnp.zeros(())}

    def __call__(self, model, phases, extra):
        mean, scale = thaw_arrays(self.mean, jnp.float32)["mean"], thaw_arrays(self.scale, jnp.float32)["scale"]
        d = math.prod(mean.shape)

        def noise_log_prob(z):
            zz = ((z - mean) / scale).reshape(z.shape[0], -1)
            return -0.5 * jnp.sum(zz**2, 1) - 0.5 * d * math.log(2 * math.pi) - jnp.sum(jnp.log(scale))

        x = phases.positive
        y = mean + scale * jax.random.normal(phases.key, (self.noise_ratio * x.shape[0], *x.shape[1:]))
        return nce_loss(model, model.params, extra["log_c"], x, y, noise_log_prob), {}


def denoising_score_matching(energy: Energy, optimizer: optax.GradientTransformation, *,
                             sigma: float = 0.1) -> Objective:
    """A denoising-score-matching trainer (noise scale ``sigma``); fits the σ-smoothed data density.

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> denoising_score_matching(e, optax.adam(1e-2), sigma=0.1).name
    'dsm'
    """
    if not float(sigma) > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}.")
    return Objective("dsm", energy, optimizer, DenoisingScoreMatching(float(sigma)))


def sliced_score_matching(energy: Energy, optimizer: optax.GradientTransformation, *,
                          num_projections: int = 1) -> Objective:
    """A sliced-score-matching trainer (``num_projections`` random directions per example).

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> sliced_score_matching(e, optax.adam(1e-2)).name
    'ssm'
    """
    if int(num_projections) < 1:
        raise ValueError(f"num_projections must be >= 1, got {num_projections!r}.")
    return Objective("ssm", energy, optimizer, SlicedScoreMatching(int(num_projections)))


def noise_contrastive_estimation(
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    noise_mean: Any = 0.0,
    noise_scale: Any = 1.0,
    noise_ratio: int = 1,
) -> Objective:
    """A noise-contrastive-estimation trainer against Gaussian noise ``N(noise_mean, noise_scale²)``.

    The training parameters are ``{"energy": θ, "log_c": c}``; after
    training, ``-E_θ(x)/T - c`` is (approximately) a normalised
    log-density, so ``c`` estimates ``log Z``. Choose the noise close to the
    data (e.g. the data's mean and a scale a little wider than its spread).

    Examples
    --------
    >>> import optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> t = noise_contrastive_estimation(e, optax.adam(1e-2), noise_scale=2.0)
    >>> sorted(t.init(jax.random.key(0), e.params).params)
    ['energy', 'log_c']
    """
    return Objective("nce", energy, optimizer, NoiseContrastive.gaussian(energy.event_shape, noise_mean, noise_scale,
                                                                       noise_ratio))
