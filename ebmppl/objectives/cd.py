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

from typing import Any

import jax
import jax.numpy as jnp
import optax

from ebmppl._validation import check_energy, check_sampler_params
from ebmppl.buffer import ChainInit, replay_buffer
from ebmppl.energy import Energy
from ebmppl.sharding import constrain_leading
from ebmppl.objectives.base import Trainer, TrainState, all_finite, apply_gradients, buffer_spread, initial_state
from ebmppl.samplers.base import Sampler
from ebmppl.samplers.registry import get_sampler

__all__ = ["cd_loss", "contrastive_divergence", "sample_negatives", "kernel_parameters"]

NOISE_PROBE = 16  # noise points per step behind the ``energy_noise`` metric
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
    energies = model.energy(jnp.concatenate([x_pos, jax.lax.stop_gradient(x_neg)]))
    e_pos, e_neg = energies[: x_pos.shape[0]], energies[x_pos.shape[0]:]
    if energy_clip is not None:
        e_pos, e_neg = jnp.clip(e_pos, -energy_clip, energy_clip), jnp.clip(e_neg, -energy_clip, energy_clip)
    loss = e_pos.mean() - e_neg.mean() + alpha * (jnp.mean(e_pos**2) + jnp.mean(e_neg**2))
    return loss, (e_pos.mean(), e_neg.mean())


def sample_negatives(energy: Energy, sampler: Sampler, kernel_params: dict[str, Any], num_steps: int,
                     key: jax.Array, params: Any, x0: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Run ``num_steps`` sampler steps from ``x0`` under the current θ; return (negatives, mean acceptance).

    The sampler state is initialised from the positions under ``params``, so
    no cached log-density or gradient from an older θ is ever used.

    Examples
    --------
    >>> from ebmppl import Energy, samplers
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> s = samplers.mala(step_size=0.5)
    >>> x, acc = sample_negatives(e, s, kernel_parameters(s, 2, None), 10, jax.random.key(0), e.params,
    ...                           jnp.full((64, 2), 3.0))
    >>> x.shape, bool(jnp.abs(x.mean()) < 1.0), 0.0 < float(acc) <= 1.0
    ((64, 2), True, True)
    """
    model = energy.with_params(jax.lax.stop_gradient(params))
    logdensity = lambda x: -model.energy_fn(model.params, x) / model.temperature  # noqa: E731
    x0 = constrain_leading(x0)  # no-op unless fit(devices=...) shards the chains
    # every chain's key for every step in one split, outside the loop: a split inside the
    # loop is one more threefry pass per step, ~8 % of a small MLP's Langevin step on CPU
    keys = jax.random.split(key, (num_steps + 1, x0.shape[0]))
    states = jax.vmap(sampler.init, in_axes=(0, 0, None))(keys[0], x0, logdensity)
    step_all = jax.vmap(sampler.step, in_axes=(0, 0, None, None))

    def body(states, step_keys):
        states, stats = step_all(step_keys, states, logdensity, kernel_params)
        return states, stats.acceptance_rate.mean()

    states, acceptance = jax.lax.scan(body, states, keys[1:])
    return jax.lax.stop_gradient(sampler.position(states)), acceptance.mean()


def kernel_parameters(sampler: Sampler, dim: int, overrides: dict[str, Any] | None) -> dict[str, jax.Array]:
    """The sampler's default kernel parameters with ``overrides``, validated.

    Examples
    --------
    >>> from ebmppl import samplers
    >>> p = kernel_parameters(samplers.mala(), 2, {"step_size": 0.2})
    >>> round(float(p["step_size"]), 3)
    0.2
    >>> kernel_parameters(samplers.mala(), 2, {"step_size": -1.0})
    Traceback (most recent call last):
    ...
    ValueError: sampler_params['step_size'] must be > 0, got -1.0.
    """
    defaults = sampler.default_params(dim)
    params = {**defaults, **check_sampler_params(overrides, defaults)}
    params = {k: jnp.asarray(v, dtype=jnp.result_type(float)) for k, v in params.items()}
    for name, value in params.items():
        if name in ("step_size", "noise_scale") and not float(value) > 0:
            raise ValueError(f"sampler_params[{name!r}] must be > 0, got {float(value)!r}.")
    return params


def contrastive_divergence(
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    sampler: str | Sampler = "langevin",
    chain_init: ChainInit | None = None,
    num_mcmc_steps: int = 20,
    alpha: float = 0.1,
    sampler_params: dict[str, Any] | None = None,
    energy_clip: float | None = None,
    target_acceptance: float | None = None,
    adapt_rate: float = ADAPT_RATE,
) -> Trainer:
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
        default practical Langevin. MALA, HMC and ULA work as well: each
        training step re-initialises the sampler state from the stored
        positions under the current θ, so cached log-densities and gradients
        are never stale and the Metropolis ratio is right.
    chain_init
        Where chains start: :func:`~ebmppl.buffer.replay_buffer` (default),
        :func:`~ebmppl.buffer.short_run` or :func:`~ebmppl.buffer.cd_k`.
    num_mcmc_steps
        K, sampler steps per training step.
    alpha
        Weight ``α`` of the L2 energy penalty ``α (E(x⁺)² + E(x⁻)²)`` (Du &
        Mordatch; default 0.1). It is a regulariser that BIASES the fit: it
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
    Trainer
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
    if isinstance(num_mcmc_steps, bool) or not isinstance(num_mcmc_steps, int) or num_mcmc_steps < 1:
        raise ValueError(f"num_mcmc_steps must be an int >= 1, got {num_mcmc_steps!r}.")
    if not float(alpha) >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}.")
    if energy_clip is not None and not float(energy_clip) > 0:
        raise ValueError(f"energy_clip must be > 0 (or None), got {energy_clip!r}.")
    sampler = get_sampler(sampler) if isinstance(sampler, str) else sampler
    chain_init = chain_init or replay_buffer()
    kernel_params = kernel_parameters(sampler, energy.dim, sampler_params)
    if target_acceptance is not None:
        if not 0 < float(target_acceptance) < 1:
            raise ValueError(f"target_acceptance must be in (0, 1) (or None: a fixed step), got {target_acceptance!r}.")
        if "step_size" not in kernel_params:
            raise ValueError(f"target_acceptance adapts the sampler's step_size, but sampler {sampler.name!r} has "
                             f"none (its parameters: {sorted(kernel_params)}); pass target_acceptance=None.")
        if not float(adapt_rate) > 0:
            raise ValueError(f"adapt_rate must be > 0, got {adapt_rate!r}.")
    adapt = target_acceptance is not None

    def init(key: jax.Array, params: Any) -> TrainState:
        state = initial_state(key, params, optimizer, chain_init, energy.event_shape)
        if adapt:  # log of the factor on the step: 0 = the step as given
            state = state._replace(buffer=state.buffer._replace(log_step_scale=jnp.zeros((), jnp.result_type(float))))
        return state

    def step(state: TrainState, batch: jax.Array) -> tuple[TrainState, dict[str, jax.Array]]:
        key, k_start, k_chain, k_noise = jax.random.split(state.key, 4)
        x0, aux = chain_init.start(k_start, state.buffer, batch)
        params_k = kernel_params
        if adapt:  # exp(0) is exactly 1: while the step is not shrunk it is bit for bit the one given
            params_k = {**kernel_params, "step_size": kernel_params["step_size"] * jnp.exp(state.buffer.log_step_scale)}
        x_neg, acceptance = sample_negatives(energy, sampler, params_k, num_mcmc_steps, k_chain, state.params, x0)
        x_neg = jax.lax.stop_gradient(x_neg)
        (loss, (e_pos, e_neg)), grads = jax.value_and_grad(
            lambda p: cd_loss(energy, p, batch, x_neg, alpha, energy_clip), has_aux=True
        )(state.params)
        buffer = chain_init.finish(state.buffer, aux, x_neg)
        if adapt:
            shift = adapt_rate * (jnp.nan_to_num(acceptance, nan=target_acceptance) - target_acceptance)
            buffer = buffer._replace(log_step_scale=jnp.minimum(0.0, state.buffer.log_step_scale + shift)
                                     .astype(state.buffer.log_step_scale.dtype))
        guarded, ok = apply_gradients(state, grads, loss, optimizer, buffer, key, all_finite(x_neg))
        if chain_init.noise is not None:  # energy of fresh noise: where the model puts "nothing"
            # a small probe: a health signal averaged over steps, not worth a batch-sized forward pass
            probe = chain_init.noise(k_noise, (min(NOISE_PROBE, batch.shape[0]), *batch.shape[1:]))
            e_noise = energy.with_params(state.params).energy(probe).mean()
        else:
            e_noise = jnp.asarray(jnp.nan, e_pos.dtype)
        metrics = {
            "loss": loss,
            "cd_gap": e_pos - e_neg,
            "energy_pos": e_pos,
            "energy_neg": e_neg,
            "energy_noise": e_noise,
            "grad_norm": optax.tree.norm(grads),
            "acceptance_rate": acceptance,
            "reinit_fraction": jnp.asarray(chain_init.reinit_prob, jnp.float32),
            # spread of the persistent negatives (nan without a buffer): collapsing or
            # exploding buffers show up here first
            "buffer_std": buffer_spread(buffer, x_neg),
            "step_size": jnp.asarray(params_k.get("step_size", jnp.nan), e_pos.dtype),
            "finite": ok,
        }
        return guarded, metrics

    return Trainer("cd", init, step)
