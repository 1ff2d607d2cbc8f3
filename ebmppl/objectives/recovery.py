"""Training on incomplete data: contrastive divergence between a recovery and a synthesis dynamics.

When examples come with missing entries, the positive phase cannot use the
data as it is. Following the lecture's energy-based inpainting scheme, two
Langevin dynamics run under the current θ: *recovery* completes each
incomplete example (observed entries held fixed, missing ones sampled from
``p_θ(x_missing | x_observed)``), *synthesis* draws negatives from the model
(replay buffer or noise). Contrasting them, ``mean E(x_recovered) - mean
E(x_synthesised)``, is a stochastic EM step for the maximum-likelihood fit
under data missing at random.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ebmppl.buffer import ChainInit, replay_buffer
from ebmppl.conditional import _run as _complete
from ebmppl.energy import Energy
from ebmppl.objectives.base import Trainer, all_finite, apply_gradients, buffer_spread, initial_state
from ebmppl.objectives.cd import cd_loss, kernel_parameters, sample_negatives
from ebmppl.samplers import Sampler, get_sampler

__all__ = ["recovery_contrastive_divergence"]


def recovery_contrastive_divergence(
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    sampler: str | Sampler = "langevin",
    chain_init: ChainInit | None = None,
    num_mcmc_steps: int = 20,
    recovery_steps: int = 20,
    alpha: float = 0.1,
    sampler_params: dict[str, Any] | None = None,
) -> Trainer:
    """CD on incomplete data: batches are ``(x, mask)`` with ``mask`` True where observed.

    Parameters
    ----------
    energy, optimizer, sampler, chain_init, num_mcmc_steps, alpha, sampler_params
        As in :func:`~ebmppl.objectives.contrastive_divergence` (synthesis side).
    recovery_steps
        Sampler steps completing each incomplete example (recovery side),
        started from the observed entries and noise on ``[-1, 1]`` elsewhere.

    Examples
    --------
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> t = recovery_contrastive_divergence(e, optax.adam(1e-2), sampler="mala", num_mcmc_steps=2, recovery_steps=2)
    >>> s = t.init(jax.random.key(0), e.params)
    >>> s, m = jax.jit(t.step)(s, (jnp.ones((4, 2)), jnp.array([[True, False]] * 4)))
    >>> bool(m["finite"])
    True
    """
    if int(recovery_steps) < 1:
        raise ValueError(f"recovery_steps must be >= 1, got {recovery_steps!r}.")
    sampler = get_sampler(sampler) if isinstance(sampler, str) else sampler
    chain_init = chain_init or replay_buffer()
    kernel_params = kernel_parameters(sampler, energy.dim, sampler_params)

    def init(key, params):
        return initial_state(key, params, optimizer, chain_init, energy.event_shape)

    def step(state, batch):
        x, mask = batch
        key, k_start, k_chain, k_rec, k_noise = jax.random.split(state.key, 5)
        frozen = energy.with_params(jax.lax.stop_gradient(state.params))
        x_init = jnp.where(mask, x, jax.random.uniform(k_noise, x.shape, minval=-1.0, maxval=1.0))
        x_pos = jax.lax.stop_gradient(
            _complete(frozen, sampler, kernel_params, int(recovery_steps), k_rec, x, mask, x_init))
        x0, aux = chain_init.start(k_start, state.buffer, x_pos)
        x_neg, acceptance = sample_negatives(energy, sampler, kernel_params, num_mcmc_steps, k_chain, state.params, x0)
        (loss, (e_pos, e_neg)), grads = jax.value_and_grad(
            lambda p: cd_loss(energy, p, x_pos, x_neg, alpha), has_aux=True)(state.params)
        buffer = chain_init.finish(state.buffer, aux, x_neg)
        guarded, ok = apply_gradients(state, grads, loss, optimizer, buffer, key, all_finite(x_neg) & all_finite(x_pos))
        nan = jnp.asarray(jnp.nan, loss.dtype)
        metrics = {"loss": loss, "cd_gap": e_pos - e_neg, "energy_pos": e_pos, "energy_neg": e_neg,
                   "energy_noise": nan, "grad_norm": optax.tree.norm(grads), "acceptance_rate": acceptance,
                   "reinit_fraction": jnp.asarray(chain_init.reinit_prob, loss.dtype),
                   "buffer_std": buffer_spread(buffer, x_neg),
                   "finite": ok}
        return guarded, metrics

    return Trainer("recovery_cd", init, step)
