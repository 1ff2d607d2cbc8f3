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

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ebmppl._deprecation import UNSET, renamed
from ebmppl.buffer import ChainInit
from ebmppl.energy import Energy
from ebmppl.objectives.cd import ContrastiveDivergence, check_cd_options
from ebmppl.objectives.trainer import NegativeChains, Objective, PositivePhase, freeze_arrays, negative_chains, \
    thaw_arrays
from ebmppl.samplers.base import Sampler
from ebmppl.samplers.negatives import kernel_parameters, sample_masked

__all__ = ["recovery_contrastive_divergence", "RecoveryPhase"]


class RecoveryPhase(PositivePhase):
    """The positive phase of CD on incomplete data: ``x⁺`` completes each ``(x, mask)`` example by recovery chains.

    The observed entries (``mask`` True) are held; the missing ones start
    from noise uniform on ``[-1, 1]`` and run ``num_mcmc_steps`` sampler
    steps on ``p_θ(x_missing | x_observed)`` under the current θ
    (:func:`ebmppl.samplers.negatives.sample_masked`). Takes two keys
    (chains, starting noise).

    Examples
    --------
    >>> from ebmppl import samplers
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), None, event_shape=(2,))
    >>> phase = RecoveryPhase.build(samplers.mala(step_size=0.5), 2, None, 50)
    >>> x = phase(jax.random.split(jax.random.key(0)), e, (jnp.full((512, 2), 3.0), jnp.array([[True, False]] * 512)))
    >>> bool(jnp.all(x[:, 0] == 3.0)), bool(jnp.abs(x[:, 1].mean()) < 0.2)
    (True, True)
    """

    sampler: Any = eqx.field(static=True)
    sampler_params: tuple = eqx.field(static=True)
    num_mcmc_steps: int = eqx.field(static=True)
    num_keys = 2

    @classmethod
    def build(cls, sampler: Sampler, dim: int, sampler_params: dict[str, Any] | None,
              num_mcmc_steps: int) -> RecoveryPhase:
        """The phase with ``sampler_params`` validated against the sampler."""
        if isinstance(num_mcmc_steps, bool) or int(num_mcmc_steps) < 1:
            raise ValueError(f"num_mcmc_steps of the recovery chains must be >= 1, got {num_mcmc_steps!r}.")
        return cls(sampler, freeze_arrays(kernel_parameters(sampler, dim, sampler_params)), int(num_mcmc_steps))

    def __call__(self, keys, model, batch):
        x, mask = batch
        k_rec, k_noise = keys
        x_init = jnp.where(mask, x, jax.random.uniform(k_noise, x.shape, minval=-1.0, maxval=1.0))
        return sample_masked(model, self.sampler, thaw_arrays(self.sampler_params), self.num_mcmc_steps, k_rec, x,
                             mask, x_init)


def recovery_contrastive_divergence(
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    num_mcmc_steps: int = 20,
    alpha: float = 0.1,
    sampler: str | Sampler = "langevin",
    sampler_params: dict[str, Any] | None = None,
    chain_init: ChainInit | None = None,
    recovery_steps: int = UNSET,
) -> Objective:
    """CD on incomplete data: batches are ``(x, mask)`` with ``mask`` True where observed.

    Parameters
    ----------
    energy, optimizer, sampler, chain_init, alpha, sampler_params
        As in :func:`~ebmppl.objectives.contrastive_divergence` (synthesis side).
    num_mcmc_steps
        Sampler steps of every chain run: the synthesis chains (negatives) and
        the recovery chains that complete each incomplete example
        (:class:`RecoveryPhase`, started from the observed entries and noise
        on ``[-1, 1]`` elsewhere).
    recovery_steps
        Deprecated (use ``num_mcmc_steps``); for one more release it still
        sets the recovery chains' steps alone, with a warning.

    Returns
    -------
    Objective
        The one trainer with a :class:`RecoveryPhase`, negative chains and the
        CD term; metrics as :func:`~ebmppl.objectives.contrastive_divergence`'s
        (``energy_noise`` is nan).

    Examples
    --------
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> t = recovery_contrastive_divergence(e, optax.adam(1e-2), sampler="mala", num_mcmc_steps=2)
    >>> s = t.init(jax.random.key(0), e.params)
    >>> s, m = jax.jit(t.step)(s, (jnp.ones((4, 2)), jnp.array([[True, False]] * 4)))
    >>> bool(m["finite"])
    True
    """
    # recovery_steps= was the recovery side's own count; num_mcmc_steps now counts every chain's steps
    steps = renamed("recovery_contrastive_divergence", "recovery_steps", recovery_steps, "num_mcmc_steps", UNSET,
                    default=num_mcmc_steps)
    alpha, _ = check_cd_options(alpha)
    negative: NegativeChains = negative_chains(sampler, energy.dim, sampler_params=sampler_params,
                                               num_mcmc_steps=num_mcmc_steps, chain_init=chain_init, noise_probe=0)
    positive = RecoveryPhase.build(negative.sampler, energy.dim, sampler_params, steps)
    return Objective("recovery_cd", energy, optimizer, ContrastiveDivergence(alpha), positive=positive,
                     negative=negative)
