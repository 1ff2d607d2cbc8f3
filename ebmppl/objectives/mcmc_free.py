"""MCMC-free objectives: denoising and sliced score matching, and noise-contrastive estimation.

They fit the same energies as contrastive divergence through the same
:class:`~ebmppl.objectives.Trainer` interface (``fit(..., objective="dsm")``),
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

import jax
import jax.numpy as jnp
import optax

from ebmppl.energy import Energy
from ebmppl.objectives.base import Trainer, apply_gradients, initial_state

__all__ = ["denoising_score_matching", "sliced_score_matching", "noise_contrastive_estimation", "dsm_loss",
           "ssm_loss", "nce_loss"]


def _score_fn(energy: Energy, params: Any) -> Callable[[jax.Array], jax.Array]:
    return jax.grad(lambda x: -energy.energy_fn(params, x) / energy.temperature)


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


def _trainer(name, energy, optimizer, loss_fn, wrap=lambda p: p, unwrap=lambda p: p):
    """A Trainer for a loss ``loss_fn(train_params, batch, key) -> scalar`` (no negatives, no buffer)."""

    def init(key, params):
        return initial_state(key, wrap(params), optimizer, None, energy.event_shape)

    def step(state, batch):
        key, k_loss = jax.random.split(state.key)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, k_loss)
        guarded, ok = apply_gradients(state, grads, loss, optimizer, state.buffer, key)
        e_pos = energy.with_params(unwrap(state.params)).energy(batch).mean()
        nan = jnp.asarray(jnp.nan, e_pos.dtype)
        metrics = {"loss": loss, "cd_gap": nan, "energy_pos": e_pos, "energy_neg": nan, "energy_noise": nan,
                   "grad_norm": optax.tree.norm(grads), "acceptance_rate": nan, "reinit_fraction": nan,
                   "buffer_std": nan, "finite": ok}
        return guarded, metrics

    return Trainer(name, init, step, unwrap)


def denoising_score_matching(energy: Energy, optimizer: optax.GradientTransformation, *, sigma: float = 0.1) -> Trainer:
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
    return _trainer("dsm", energy, optimizer, lambda p, x, k: dsm_loss(energy, p, x, k, sigma))


def sliced_score_matching(energy: Energy, optimizer: optax.GradientTransformation, *,
                          num_projections: int = 1) -> Trainer:
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
    return _trainer("ssm", energy, optimizer, lambda p, x, k: ssm_loss(energy, p, x, k, int(num_projections)))


def noise_contrastive_estimation(
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    noise_mean: Any = 0.0,
    noise_scale: Any = 1.0,
    noise_ratio: int = 1,
) -> Trainer:
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
    if int(noise_ratio) < 1:
        raise ValueError(f"noise_ratio must be >= 1, got {noise_ratio!r}.")
    mean = jnp.broadcast_to(jnp.asarray(noise_mean, jnp.float32), energy.event_shape)
    scale = jnp.broadcast_to(jnp.asarray(noise_scale, jnp.float32), energy.event_shape)
    if not bool(jnp.all(scale > 0)):
        raise ValueError("noise_scale must be > 0.")
    d = math.prod(energy.event_shape)

    def noise_log_prob(z):
        zz = ((z - mean) / scale).reshape(z.shape[0], -1)
        return -0.5 * jnp.sum(zz**2, 1) - 0.5 * d * math.log(2 * math.pi) - jnp.sum(jnp.log(scale))

    def loss(p, x, key):
        y = mean + scale * jax.random.normal(key, (int(noise_ratio) * x.shape[0], *x.shape[1:]))
        return nce_loss(energy, p["energy"], p["log_c"], x, y, noise_log_prob)

    return _trainer("nce", energy, optimizer, loss, wrap=lambda p: {"energy": p, "log_c": jnp.zeros(())},
                    unwrap=lambda p: p["energy"])
