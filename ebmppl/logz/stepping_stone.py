"""log Z by stepping stones along a parallel-tempering ladder.

Parallel tempering (:mod:`ebmppl.samplers.tempering`) samples every level
``π_β ∝ π₀^{1−β} p̃^β`` of the path from a normalised Gaussian reference
``π₀`` to the unnormalised target ``p̃``. Consecutive normalisers are ratios of
expectations under the lower level (Xie et al. 2011, "stepping stones"),

    log Z = Σ_i log E_{π_{β_i}}[exp((β_{i+1} − β_i) ℓ(x))],    ℓ = log p̃ − log π₀,

so the draws parallel tempering makes anyway give ``log Z`` with no extra
energy evaluations beyond ``ℓ`` at every level. Unlike AIS, every level is a
Markov chain in equilibrium (after warm-up) that swaps states with its
neighbours, so modes that the reference reaches are weighted correctly.

The standard error comes from the spread of the independent chains' own
estimates (``sd / √C``), which carries the draws' autocorrelation and the
ladder's mixing; the estimate itself pools every chain. It is declared
unreliable when a level's ratio rests on too few effective weights (add
replicas), when a level's ratio weights are heavy-tailed (Pareto k̂ > 0.7:
the target's tails are heavier than the reference's), when the local kernel
is not exact, or when no chain completed a round trip between reference and
target (the target level's mode weights then come from the start, not from
the ladder). The reference level is drawn exactly, also where the energy is
infinite (outside a bounded support), so ``Z₀ = 1`` holds.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._validation import check_energy, check_examples, check_int, check_key
from ebmppl.energy import Energy
from ebmppl.logz.estimate import MIN_ESS, PARETO_K_MAX, PARETO_MIN_WEIGHTS, LogZEstimate, _warn_unreliable, pareto_k
from ebmppl.samplers.negatives import kernel_parameters
from ebmppl.samplers.registry import as_sampler
from ebmppl.samplers.tempering import ParallelTempering, _reference_logdensity, reference_params

__all__ = ["stepping_stone"]

_ADVICE = ("more replicas (num_replicas) so that neighbouring levels overlap, a longer run (num_samples), or a "
           "reference that covers the target's modes (sampler_params reference_mean / reference_scale)")


@eqx.filter_jit
def _run(energy: Energy, sampler: ParallelTempering, key: jax.Array, x0: jax.Array, params: dict,
         num_warmup: int, num_samples: int):
    ld = energy.logdensity_fn
    k_init, k_warm, k_draw = jax.random.split(key, 3)
    n = x0.shape[0]
    states = jax.vmap(sampler.init, in_axes=(0, 0, None))(jax.random.split(k_init, n), x0, ld)
    if num_warmup:
        states, params, _ = sampler.warmup.run(sampler, ld, k_warm, states, params, num_warmup, False)
    step = jax.vmap(sampler.step, in_axes=(0, 0, None, None))
    mean, scale = params["reference_mean"], params["reference_scale"]

    def ratio(x):
        return ld(x) - _reference_logdensity(x, mean, scale)

    def body(states, k):
        states, stats = step(jax.random.split(k, n), states, ld, params)
        x = sampler.kernel.position(states.replicas)  # (chain, level, *event)
        return states, jax.vmap(jax.vmap(ratio))(x)

    states, ells = jax.lax.scan(body, states, jax.random.split(k_draw, num_samples))
    return ells, params, states.round_trips


def _log_mean_exp(a: np.ndarray, axis) -> np.ndarray:
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top, axis=axis) + np.log(np.mean(np.exp(a - top), axis=axis))


def stepping_stone(
    energy: Energy,
    key: jax.Array,
    *,
    sampler: ParallelTempering | None = None,
    sampler_params: dict[str, Any] | None = None,
    num_chains: int = 8,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    init: jax.Array | None = None,
    warn: bool = True,
) -> LogZEstimate:
    """``log Z`` of ``exp(-E/T)`` by stepping stones on a parallel-tempering run.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy`.
    key
        A ``jax.random`` key.
    sampler
        A :func:`ebmppl.samplers.parallel_tempering` value (default: MALA
        within 16 replicas). Its warm-up adapts the ladder.
    sampler_params
        Overrides of its kernel parameters, e.g. the reference
        (``reference_mean`` / ``reference_scale``; default from
        :meth:`Energy.typical_region`: center and 2·scale).
    num_chains
        Independent ladders (≥ 4: the standard error is their spread).
    num_warmup, num_samples
        Warm-up steps (ladder adaptation) and recorded steps per chain.
    init
        Starting positions ``(num_chains, *event_shape)``, where the energy is
        finite; default uniform on ``reference_mean ± reference_scale``.
    warn
        Emit a :class:`~ebmppl.logz.LogZWarning` when the estimate is unreliable.

    Returns
    -------
    LogZEstimate
        ``method="stepping-stone"``; ``ess`` is the smallest effective number
        of weights over the levels, ``num_chains`` the number of ladders.

    Raises
    ------
    ValueError
        ``num_chains < 4``; a sampler that is not parallel tempering; ``init``
        of the wrong shape, or the energy not finite at some starting position.
    FloatingPointError
        ``ℓ`` is NaN or +inf at some draw (the energy overflowed).

    Examples
    --------
    A normalised 3-D Gaussian scaled by ``e²`` (log Z = 2):

    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - 1.0) ** 2) - 2.0 + 1.5 * jnp.log(2 * jnp.pi), None,
    ...            event_shape=(3,))
    >>> est = stepping_stone(e, jax.random.key(0), num_warmup=500, num_samples=500)
    >>> est.method, abs(est.log_z - 2.0) < 4 * est.stderr, est.reliable
    ('stepping-stone', True, True)
    """
    check_energy(energy)
    check_key(key)
    check_int("num_chains", num_chains, 4)
    check_int("num_warmup", num_warmup, 0)
    check_int("num_samples", num_samples, 1)
    sampler = ParallelTempering("mala", 16) if sampler is None else as_sampler(sampler)
    if not isinstance(sampler, ParallelTempering):
        raise ValueError(f"sampler must be a samplers.parallel_tempering(...) value (stepping stones need the "
                         f"whole ladder), got {getattr(sampler, 'name', sampler)!r}.")
    k_init, k_run = jax.random.split(key)
    params = reference_params(kernel_parameters(sampler, energy.dim, sampler_params), energy, sampler_params)
    if init is None:  # in the reference's core (the typical region's, unless the reference was given)
        shape = (num_chains, *energy.event_shape)
        center = params["reference_mean"].reshape(energy.event_shape)
        half = params["reference_scale"].reshape(energy.event_shape) / 2.0
        init = center + half * jax.random.uniform(k_init, shape, minval=-2.0, maxval=2.0)
        origin = "the default init (uniform on reference_mean ± reference_scale)"
    else:
        init = check_examples("init", init, energy.event_shape, num_chains, "pass finite starting positions.")
        origin = "the init you passed"
    init = jnp.asarray(init, jnp.result_type(float))
    finite = np.asarray(jax.vmap(lambda x: jnp.isfinite(energy.logdensity_fn(x)))(init))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"stepping_stone: the energy is not finite at {bad.size} of {num_chains} starting positions "
                         f"(chains {bad[:10].tolist()}) from {origin}; pass init= inside the energy's support "
                         "(where it is finite), or a reference (sampler_params reference_mean / reference_scale) "
                         "centred there.")
    ells, params, trips = _run(energy, sampler, k_run, init, params, num_warmup, num_samples)
    ells = np.asarray(ells, np.float64)  # (draw, chain, level)
    if np.any(np.isnan(ells) | (ells == np.inf)):
        raise FloatingPointError("stepping_stone: the energy is NaN (or -inf) at some draws. Every level's draws "
                                 "include the reference's, which covers all of space: an energy undefined somewhere "
                                 "(log or sqrt of a negative) must return +inf there (jnp.where), and one that "
                                 "overflows must be fixed.")
    betas = np.asarray(params["betas"], np.float64)
    log_w = (betas[1:] - betas[:-1])[None, None, :] * ells[:, :, :-1]  # (draw, chain, level - 1)
    per_level = _log_mean_exp(log_w.reshape(-1, log_w.shape[-1]), axis=0)
    log_z = float(per_level.sum())
    per_chain = _log_mean_exp(log_w, axis=0).sum(axis=-1)  # each ladder's own estimate
    stderr = float(np.std(per_chain, ddof=1) / math.sqrt(num_chains))
    flat = log_w.reshape(-1, log_w.shape[-1])
    w = np.exp(flat - flat.max(axis=0))
    ess_levels = w.sum(0) ** 2 / np.sum(w**2, axis=0)
    # the weights of successive draws are correlated: the effective number is at most the pooled ESS
    ess = float(ess_levels.min())
    reasons = []
    if ess < MIN_ESS:
        worst = int(np.argmin(ess_levels))
        reasons.append(f"the ratio between levels {worst} and {worst + 1} (β {betas[worst]:.3g} → "
                       f"{betas[worst + 1]:.3g}) rests on {ess:.1f} effective weights (< {MIN_ESS})")
    top = [pareto_k(flat[:, i]) for i in range(flat.shape[1])] if flat.shape[0] >= PARETO_MIN_WEIGHTS else []
    heavy = [i for i, k in enumerate(top) if k > PARETO_K_MAX]
    if heavy:
        i = max(heavy, key=lambda j: top[j])
        reasons.append(f"the ratio weights between levels {i} and {i + 1} are heavy-tailed (Pareto k̂ = {top[i]:.2f} "
                       f"> {PARETO_K_MAX}): the target has heavier tails than the reference, and the estimate may be "
                       "far off whatever its error bar")
    if not sampler.kernel.exact:
        reasons.append(f"the local kernel {sampler.kernel.name!r} is not exact (no Metropolis correction): every "
                       "level is sampled with a step-size bias")
    trips = np.asarray(trips)
    if int(trips.sum()) == 0:
        reasons.append("no chain completed a round trip between reference and target, so the target level's "
                       "mode weights may still be those of its starting points")
    est = LogZEstimate(log_z, stderr, ess, "stepping-stone", int(num_chains), float(np.std(per_chain, ddof=1)),
                       float("nan"), float("nan"), stderr, not reasons, "; ".join(reasons),
                       _ADVICE if reasons else "")
    if warn and reasons:
        _warn_unreliable(est)
    return est
