"""Contrastive divergence: maximum likelihood with negatives from ebmppl's samplers.

The gradient of the negative log-likelihood of ``p_θ(x) ∝ exp(-E_θ(x))`` is

    ∇θ NLL = E_data[∇θ E_θ(x)] - E_model[∇θ E_θ(x)],

so the loss ``mean E_θ(x⁺) - mean E_θ(x⁻)`` with negatives ``x⁻`` from the
current model, held constant (``stop_gradient``), has exactly that gradient.
Du & Mordatch (2019) add an L2 penalty ``α (E(x⁺)² + E(x⁻)²)`` that keeps
energies near zero. That penalty is a regulariser, not part of the
likelihood: with ``α > 0`` the fit is no longer maximum likelihood and the
density comes out flatter than the data's (a Gaussian energy fitted to
N(1, 0.5 I) with ``α = 0.1`` gets variance 0.9-1.0, 1.7-2 times the truth).
Use it where nothing else keeps ``exp(-E)`` normalisable or the energies
bounded (images); :func:`ebmppl.fit`'s ``"density"`` recipe, whose
confinement term keeps ``Z`` finite, trains with ``α = 0``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from ebmppl._validation import check_energy
from ebmppl.buffer import ChainInit, replay_buffer, support_noise
from ebmppl.energy import Energy
from ebmppl.objectives.discrete import (DEFAULT_DISCRETE_SAMPLER, SupportCheck, _check_chain_init,
                                        discrete_negative_sampler, is_discrete)
from ebmppl.objectives.trainer import NOISE_PROBE, LossTerm, Objective, negative_chains
from ebmppl.samplers.base import Sampler
from ebmppl.sharding import concat_leading, split_leading
# negative-chain sampling lives in the inference layer; importable from here as before
from ebmppl.samplers.negatives import kernel_parameters, sample_negatives

__all__ = ["cd_loss", "contrastive_divergence", "ContrastiveDivergence", "check_cd_options", "sample_negatives",
           "kernel_parameters", "NOISE_PROBE"]

ADAPT_RATE = 0.05  # default gain of the step-size adaptation (``target_acceptance``)


def cd_loss(energy: Energy, params: Any, x_pos: jax.Array, x_neg: jax.Array, alpha: float = 0.1,
            energy_clip: float | None = None):
    """Contrastive-divergence loss ``mean E(x⁺) - mean E(x⁻) + α mean(E(x⁺)² + E(x⁻)²)``.

    ``x_neg`` is treated as a constant. The ``α`` term is a regulariser that
    biases the fit towards flatter densities (``α = 0``: maximum likelihood).
    With ``energy_clip = c`` every energy
    enters the loss as ``clip(E, -c, c)``: an example whose energy has run
    beyond ±c stops contributing a gradient, so a few runaway negatives cannot
    blow up an update (default ``None``: no clamping; the α penalty is the
    usual remedy). Returns ``(loss, (mean E(x⁺), mean E(x⁻)))``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: p * jnp.sum(x**2), jnp.float32(1.0), event_shape=(1,))
    >>> loss, (ep, en) = cd_loss(e, e.params, jnp.zeros((4, 1)), jnp.ones((4, 1)), alpha=0.0)
    >>> float(loss), float(ep), float(en)
    (-1.0, 0.0, 1.0)
    """
    model = energy.with_params(params)
    # one pass over data and negatives together: twice the rows per matrix product, one backward pass
    # (joined device block by device block when fit shards them: no rows cross devices)
    energies = model.energy(concat_leading([x_pos, jax.lax.stop_gradient(x_neg)]))
    e_pos, e_neg = split_leading(energies, (x_pos.shape[0], x_neg.shape[0]))
    if energy_clip is not None:
        e_pos, e_neg = jnp.clip(e_pos, -energy_clip, energy_clip), jnp.clip(e_neg, -energy_clip, energy_clip)
    loss = e_pos.mean() - e_neg.mean() + alpha * (jnp.mean(e_pos**2) + jnp.mean(e_neg**2))
    return loss, (e_pos.mean(), e_neg.mean())


class ContrastiveDivergence(LossTerm):
    """The contrastive-divergence loss term, :func:`cd_loss` on ``x⁺`` and ``x⁻`` (the α penalty and energy clip).

    Attributes
    ----------
    alpha
        Weight of the L2 energy penalty (a regulariser; ``0``: maximum likelihood).
    energy_clip
        Clamp energies to ``[-c, c]`` inside the loss (``None``: off).

    Examples
    --------
    >>> from ebmppl import Energy
    >>> from ebmppl.objectives import Phases
    >>> e = Energy(lambda p, x: p * jnp.sum(x**2), jnp.float32(1.0), event_shape=(1,))
    >>> loss, aux = ContrastiveDivergence(alpha=0.0)(e, Phases(None, jnp.zeros((4, 1)), jnp.ones((4, 1)), None), {})
    >>> float(loss), float(aux["energy_neg"])
    (-1.0, 1.0)
    """

    alpha: float = eqx.field(static=True, default=0.1)
    energy_clip: float | None = eqx.field(static=True, default=None)
    row_mean: ClassVar[bool] = True  # means of per-row energies (and their squares)

    def __call__(self, model, phases, extra):
        loss, (e_pos, e_neg) = cd_loss(model, model.params, phases.positive, phases.negative, self.alpha,
                                       self.energy_clip)
        return loss, {"energy_pos": e_pos, "energy_neg": e_neg}


def check_cd_options(alpha: float, energy_clip: float | None = None) -> tuple[float, float | None]:
    """``(alpha, energy_clip)`` as floats, or a ValueError naming the one out of range.

    Examples
    --------
    >>> check_cd_options(0.1, None)
    (0.1, None)
    >>> check_cd_options(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: alpha must be >= 0, got -1.0.
    """
    if not float(alpha) >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}.")
    if energy_clip is not None and not float(energy_clip) > 0:
        raise ValueError(f"energy_clip must be > 0 (or None), got {energy_clip!r}.")
    return float(alpha), None if energy_clip is None else float(energy_clip)


def contrastive_divergence(
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    sampler: str | Sampler | None = None,
    chain_init: ChainInit | None = None,
    num_mcmc_steps: int = 20,
    alpha: float | None = None,
    sampler_params: dict[str, Any] | None = None,
    energy_clip: float | None = None,
    target_acceptance: float | None = None,
    adapt_rate: float = ADAPT_RATE,
) -> Objective:
    """A contrastive-divergence trainer: K sampler steps for negatives, then one Optax update.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy` whose ``params`` are trained (its current
        params are only a template; ``init`` takes the starting params).
    optimizer
        Any Optax transformation, e.g. ``optax.adam(1e-3)``.
    sampler
        Sampler for the negatives (name or :class:`~ebmppl.samplers.Sampler`);
        default practical Langevin (``"gibbs_with_gradients"`` for an energy on a
        discrete support, which needs a discrete sampler: ``"gibbs"``,
        ``"block_gibbs"`` for RBMs, ...). MALA, HMC and ULA work as well: each
        training step re-initialises the sampler state from the stored
        positions under the current θ, so cached log-densities and gradients
        are never stale and the Metropolis ratio is right.
    chain_init
        Where chains start: :func:`~ebmppl.buffer.replay_buffer` (default),
        :func:`~ebmppl.buffer.short_run` or :func:`~ebmppl.buffer.cd_k`. For a
        discrete energy the default buffer draws its starts uniformly on the
        support (:func:`~ebmppl.buffer.support_noise`); a strategy left with the
        default noise gets that noise too, and one with other continuous noise is an error.
    num_mcmc_steps
        K, sampler steps per training step.
    alpha
        Weight ``α`` of the L2 energy penalty ``α (E(x⁺)² + E(x⁻)²)`` (Du &
        Mordatch; default 0.1, and 0 for a discrete energy, whose ``Z`` is
        always finite). It is a regulariser that BIASES the fit: it
        pulls energies towards 0, so the learned density is flatter than the maximum-likelihood
        one (a Gaussian energy on N(1, 0.5 I) data: variance 1.7-2 times the
        truth at ``α = 0.1``). Keep it where nothing else bounds the energies
        or keeps ``exp(-E)`` normalisable (images, recipe ``"none"``); with a
        base or confinement term use ``α = 0`` (what :func:`ebmppl.fit`'s
        ``"density"`` recipe does). It also holds the relative depth of
        well-separated modes that persistent chains do not cross between.
    sampler_params
        Overrides of the sampler's kernel parameters (e.g. ``{"step_size": 0.01}``).
    energy_clip
        Clamp energies to ``[-c, c]`` inside the loss (default ``None``: off); see
        :func:`cd_loss`. Related safeguards live where they act: the sampler's
        ``grad_clip`` and position ``clamp`` (:func:`ebmppl.samplers.langevin`;
        default off) and clipping of the parameter gradient by chaining
        ``optax.clip_by_global_norm(c)`` before the optimizer.
    target_acceptance
        Adapt the sampler's ``step_size`` during training towards this mean
        acceptance (default ``None``: the step stays fixed). As the energy
        sharpens, a fixed step is soon too large for it: acceptance falls
        to 0, the persistent chains freeze, and CD pushes the data's
        energy down without bound. With a target, after each training step
        ``log(step) += adapt_rate × (acceptance - target)``, never above the
        step you gave (the step only shrinks: where the given step is accepted
        often enough nothing changes). The factor lives in the training state
        (``state.buffer.log_step_scale``), so runs stay reproducible and
        resume to the bit; the step used is the ``step_size`` metric.
        :func:`ebmppl.fit`'s ``"density"`` recipe uses 0.6 with MALA.
    adapt_rate
        Robbins-Monro gain of that adaptation (default 0.05: an acceptance
        stuck at 0 shrinks the step ~20-fold in 100 training steps).

    Returns
    -------
    Objective
        The one trainer (:class:`~ebmppl.objectives.Objective`) configured
        with a :class:`~ebmppl.objectives.DataPhase`, :func:`~ebmppl.objectives.negative_chains`
        and the :class:`ContrastiveDivergence` term; it hashes by value.
        ``init(key, params)`` and ``step(state, batch)``; metrics per step:
        ``loss``, ``cd_gap`` (mean E(x⁺) - mean E(x⁻)), ``energy_pos``,
        ``energy_neg``, ``energy_noise`` (mean energy of 16 fresh noise points; nan for CD-k),
        ``grad_norm``, ``acceptance_rate`` (nan without an accept step),
        ``reinit_fraction``, ``buffer_std`` (spread of the negatives written back; nan without a
        buffer), ``step_size`` (the sampler step used; nan for a sampler without one) and ``finite``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, optax
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> trainer = contrastive_divergence(e, optax.adam(1e-2), sampler="mala", num_mcmc_steps=5,
    ...                                  sampler_params={"step_size": 0.5})
    >>> state = trainer.init(jax.random.key(0), e.params)
    >>> state, metrics = jax.jit(trainer.step)(state, jnp.ones((16, 2)))
    >>> sorted(metrics)[:5]
    ['acceptance_rate', 'buffer_std', 'cd_gap', 'energy_neg', 'energy_noise']
    """
    check_energy(energy)
    check_data = None
    if is_discrete(energy):  # discrete negatives: a discrete sampler bound to the support, starts on the support
        sampler = discrete_negative_sampler(DEFAULT_DISCRETE_SAMPLER if sampler is None else sampler, energy)
        if chain_init is None:
            chain_init = replay_buffer(noise=support_noise(energy.support))
        chain_init = _check_chain_init(chain_init, energy)
        check_data = SupportCheck(energy.support, tuple(energy.event_shape))
        alpha = 0.0 if alpha is None else alpha
    elif sampler is not None:
        sampler = discrete_negative_sampler(sampler, energy)  # a discrete sampler here is an error naming the fix
    alpha, energy_clip = check_cd_options(0.1 if alpha is None else alpha, energy_clip)
    negative = negative_chains("langevin" if sampler is None else sampler, energy.dim, sampler_params=sampler_params,
                               num_mcmc_steps=num_mcmc_steps, chain_init=chain_init,
                               target_acceptance=target_acceptance, adapt_rate=adapt_rate)
    return Objective("cd", energy, optimizer, ContrastiveDivergence(alpha, energy_clip), negative=negative,
                     check_data=check_data)
