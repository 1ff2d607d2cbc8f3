"""What a run trains: the network, the optimiser, the sampler and where its chains start, from a :class:`FitConfig`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from ebmppl import buffer as buffers
from ebmppl import recipes
from ebmppl.buffer import ChainInit
from ebmppl.energy import Energy
from ebmppl.nn import MLPEnergy
from ebmppl.runs.config import FitConfig
from ebmppl.samplers import get_sampler, langevin, ula

__all__ = ["build_energy", "optimizer", "negative_sampler", "chain_init", "state_template"]


def build_energy(cfg: FitConfig, train: jax.Array, legacy: bool = False) -> Energy:
    """The network as the user gives it to :func:`ebmppl.fit` (the ``"density"`` recipe adds the rest).

    ``legacy``: the 2-D network of run folders written before ebmppl recorded the energy in its
    checkpoints (trained in data units with its own Gaussian base term), to load those.

    Examples
    --------
    >>> cfg = FitConfig(widths=(8,)).resolved()
    >>> build_energy(cfg, jnp.zeros((10, 2))).event_shape
    (2,)
    """
    event_shape = tuple(train.shape[1:])
    if legacy and cfg.data is None and cfg.dataset != "digits":
        spread = 3.0 * float(jnp.max(jnp.std(train, axis=0)))
        center = [float(c) for c in jnp.mean(train, axis=0)]
        net = MLPEnergy(2, cfg.widths, confinement_scale=spread, confinement_center=center,
                        key=jax.random.key(cfg.seed))
    else:  # digits: pixels clamped to [-1, 1]; else the recipe's confinement keeps exp(-E) normalisable
        net = MLPEnergy(math.prod(event_shape), cfg.widths, key=jax.random.key(cfg.seed))
    return Energy.from_equinox(net, event_shape=event_shape)


def optimizer(cfg: FitConfig) -> optax.GradientTransformation:
    """Adam (b1 = 0) at ``cfg.lr`` for the first half of the run, then a cosine decay to ``lr / 10``.

    Examples
    --------
    >>> opt = optimizer(FitConfig(steps=10).resolved())
    >>> isinstance(opt, optax.GradientTransformation)
    True
    """
    half = cfg.steps // 2
    schedule = optax.join_schedules(
        [optax.constant_schedule(cfg.lr), optax.cosine_decay_schedule(cfg.lr, max(1, cfg.steps - half), alpha=0.1)],
        [half])
    return optax.adam(schedule, b1=0.0, b2=0.999)


def negative_sampler(cfg: FitConfig):
    """The sampler of the negative chains: ``cfg.sampler`` at ``cfg.step_size`` (Langevin: with ``cfg.noise_scale``,
    clamped to the pixel range [-1, 1] on digits).

    Examples
    --------
    >>> negative_sampler(FitConfig().resolved()).name
    'mala'
    """
    if cfg.sampler == "langevin":
        clamp = (-1.0, 1.0) if cfg.dataset == "digits" else None
        return langevin(step_size=cfg.step_size, noise_scale=cfg.noise_scale, clamp=clamp)
    if cfg.sampler == "ula":
        return ula(step_size=cfg.step_size)
    return get_sampler(cfg.sampler, step_size=cfg.step_size)


def chain_init(cfg: FitConfig) -> ChainInit:
    """Where the negative chains start (``cfg.init_strategy``); noise on the pixel range for digits, else on the
    ``"density"`` recipe's box in standardised units (:data:`ebmppl.recipes.NOISE_BOX`).

    Examples
    --------
    >>> chain_init(FitConfig(init_strategy="short_run").resolved()).name
    'short_run'
    """
    box = 1.0 if cfg.dataset == "digits" else recipes.NOISE_BOX
    noise = buffers.uniform_noise(-box, box)
    return {
        "replay_buffer": lambda: buffers.replay_buffer(cfg.buffer_size, cfg.reinit_prob, noise),
        "short_run": lambda: buffers.short_run(noise),
        "cd_k": buffers.cd_k,
    }[cfg.init_strategy]()


def state_template(cfg: FitConfig, energy: Energy):
    """A training state of the run's structure (to read an older checkpoint into).

    Examples
    --------
    >>> cfg = FitConfig(widths=(8,), init_strategy="short_run").resolved()
    >>> state = state_template(cfg, build_energy(cfg, jnp.zeros((10, 2))))
    >>> int(state.step)
    0
    """
    from ebmppl.objectives import contrastive_divergence

    trainer = contrastive_divergence(energy, optimizer(cfg), sampler=negative_sampler(cfg), chain_init=chain_init(cfg),
                                     num_mcmc_steps=cfg.num_mcmc_steps, alpha=cfg.alpha,
                                     sampler_params=cfg.sampler_params)
    return trainer.init(jax.random.key(0), energy.params)
