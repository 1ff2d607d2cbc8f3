"""Adaptive tempered sequential Monte Carlo: a population of particles from a Gaussian reference to the energy.

Built on BlackJAX's adaptive tempered SMC
(:func:`blackjax.smc.adaptive_tempered.build_kernel`). The path is geometric,

.. math:: \\pi_\\beta(x) \\propto q(x)^{1-\\beta}\\,\\tilde p(x)^{\\beta}
          = q(x)\\,\\exp\\{\\beta\\,[\\log\\tilde p(x) - \\log q(x)]\\},

from a normalised Gaussian reference ``q = N(m, s²)`` (``β = 0``) to the
energy's density ``p̃ = exp(-E/T)`` (``β = 1``). Each stage

1. picks the next ``β`` so that the incremental weights
   ``exp{(β' − β)(log p̃ − log q)}`` keep an effective sample size of
   ``target_ess · N`` (BlackJAX's bisection);
2. resamples the particles by their weights (systematic resampling by default);
3. moves every particle by ``num_mcmc_steps`` transitions of an exact ebmppl
   sampler (MALA by default; HMC, NUTS, Barker) that leave ``π_β`` invariant;
4. weights them by the increment; ``log`` of their mean weight is the stage's
   contribution to ``log Z`` (``q`` is normalised, so ``Z_0 = 1``).

The moves are tuned from the population, never by hand. Before each stage
the particles' weighted mean ``μ`` and per-coordinate standard deviation
``σ`` are computed, and the kernel steps in standardised coordinates
``z = (x − μ)/σ`` (diagonal preconditioning: for HMC it is the mass matrix
``diag(σ²)⁻¹``). There every tempered target has roughly unit scale, so a
single scalar step size serves the whole path: it starts at
``d^{-1/3}`` (MALA, Barker) or ``d^{-1/4}`` (HMC, NUTS) unless
``sampler_params={"step_size": ...}`` says otherwise. At each new ``β`` the
pilot run (below) tunes it before using it: ``TUNING_ROUNDS`` (3) rounds in
which every particle, resampled to equal weights, makes one move, each
followed by a secant step on the probit scale of the acceptance towards the
sampler's optimal one (0.574 for MALA, 0.65 for HMC): with ``q(a) = −Φ⁻¹(a/2)``,
``log h ← log h + ⅔ · log(q(target)/q(acceptance))`` — exact for MALA on a
Gaussian in high dimension, where ``a = 2Φ(−c·h^{3/2})`` (Roberts & Rosenthal
1998), and the stage's own moves update it once more. Where the path changes
shape fast (modes separating) the step then follows within a stage rather
than lagging behind by several.

A schedule that follows the very particles it weights makes ``Z``'s estimate
biased (by ``O(1/N)``: in 10-D with 512 particles, −0.022 ± 0.009 nats per
replicate, measured). So, as for AIS, the adaptation runs apart: a *pilot*
run of BlackJAX's adaptive tempered kernel chooses the temperatures ``β_k``
(the ESS rule), the preconditioners ``(μ_k, σ_k)`` and the step sizes, and
is discarded; then ``R`` independent *replicates* (vmapped, ``N`` particles
each, disjoint keys) follow that fixed schedule with BlackJAX's tempered
kernel. Each replicate's estimate of ``Z`` is then unbiased (Del Moral 2004)
— the same 10-D case: +0.005 ± 0.009 nats — and its ``log``, ``L_r``, biased
low by about half its variance. They are pooled as ``log mean_r exp(L_r)``,
whose Jensen bias (about ``stderr²/2``) shrinks with ``R``; the standard error
is the larger of the spread of the ``L_r`` over ``√R`` and the delta-method
error of the mean of ``exp(L_r)``. That spread includes every source of error
that varies between runs: resampling noise, poor mixing within a stage. With
``R = 16`` the interval ``± 2·stderr`` covers ``log Z`` about 94 % of the time
(Student-t with 15 degrees of freedom). What it cannot show is an error all
replicates share: a mode that no replicate's particles reach. Compare with an
independent estimator (:func:`ebmppl.logz.compare_estimators`).

After ``β = 1`` each replicate resamples once more and moves at ``β = 1``, so
the final particles are equally weighted.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import blackjax.smc.adaptive_tempered as adaptive_tempered
import blackjax.smc.resampling as resampling
import blackjax.smc.tempered as tempered
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from ebmppl._validation import check_energy, check_int, check_key, check_sampler_params
from ebmppl.energy import Energy
from ebmppl.logz.estimate import MIN_ESS, LogZEstimate, LogZWarning, _warn_unreliable
from ebmppl.normalisability import assert_normalisable
from ebmppl.samplers import Sampler, as_sampler, get_sampler

__all__ = ["SMCResult", "sample_smc", "REFERENCE_WIDTH", "TUNING_ROUNDS", "MAX_REPLICATE_SD", "MIN_ACCEPTANCE"]

REFERENCE_WIDTH = 2.0
"""The default reference is ``N(center, (REFERENCE_WIDTH · scale)²)`` of :meth:`~ebmppl.Energy.typical_region`."""
TUNING_ROUNDS = 3
"""Rounds of one move per particle in which the pilot tunes the step at each new temperature."""
MAX_REPLICATE_SD = 1.0
"""Replicate estimates of ``log Z`` that scatter by more than this (nats, sd) make the estimate unreliable."""
MIN_ACCEPTANCE = 0.05
"""A mean acceptance below this over the last stages makes the estimate unreliable: the moves do not move."""

WIDE_PARTICLES = 1.0
"""Final particles whose sd exceeds this multiple of the reference's scale (in any coordinate) make the estimate
unreliable: the target is wider than the reference (a reference fitted to the target is about twice as wide)."""

_KERNEL_STATE = ("position", "logdensity", "logdensity_grad")
_SMC_SAMPLERS = ("mala", "hmc", "nuts", "barker")
_TARGET_ACCEPTANCE = {"hmc": 0.65}  # HMC's asymptotically optimal acceptance (Beskos et al. 2013), not warm-up's 0.8
_RESAMPLING = {"systematic": resampling.systematic, "stratified": resampling.stratified,
               "multinomial": resampling.multinomial, "residual": resampling.residual}


class SMCResult(NamedTuple):
    """The result of :func:`sample_smc`: an equally weighted population, ``log Z``, and how each stage went.

    Attributes
    ----------
    positions
        The final particles, ``(num_replicates, num_particles, *event_shape)``:
        resampled at ``β = 1`` and moved there, so equally weighted; shuffled
        within each replicate (resampling puts copies side by side).
    log_z
        The :class:`~ebmppl.LogZEstimate` (``method="smc"``) pooled over the replicates.
    replicate_log_z
        Each replicate's own estimate of ``log Z``, ``(num_replicates,)``.
    schedule
        The inverse temperatures ``β_0 = 0 < β_1 < ... < β_K = 1`` of the stages, ``(K + 1,)``:
        chosen by the pilot run, followed by every replicate.
    step_size
        The step of the moves made at each ``β_k`` (in standardised coordinates), ``(K + 1,)``;
        the last is the final move at ``β = 1``.
    ess
        Effective sample size of the incremental weights of each replicate at each stage,
        ``(num_replicates, K)`` (of ``num_particles``).
    acceptance
        Mean acceptance of the moves of each replicate at each stage, ``(num_replicates, K)``.
    num_grad_evals
        Gradient evaluations of the energy over the pilot, all replicates, stages and particles.
    sampler
        Name of the kernel of the moves.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> res = sample_smc(gaussian([1.0, -1.0], [[1.0, 0.0], [0.0, 0.25]]).energy, jax.random.key(0),
    ...                  num_particles=256, num_replicates=4)
    >>> res.positions.shape, float(res.schedule[0]), float(res.schedule[-1]), res.sampler
    ((4, 256, 2), 0.0, 1.0, 'mala')
    >>> res.ess.shape == res.acceptance.shape == (4, res.num_stages)
    True
    """

    positions: jax.Array
    log_z: LogZEstimate
    replicate_log_z: np.ndarray
    schedule: np.ndarray
    step_size: np.ndarray
    ess: np.ndarray
    acceptance: np.ndarray
    num_grad_evals: int
    sampler: str

    @property
    def particles(self) -> jax.Array:
        """All replicates' particles in one batch, ``(num_replicates · num_particles, *event_shape)``."""
        return self.positions.reshape(-1, *self.positions.shape[2:])

    @property
    def num_stages(self) -> int:
        """Stages ``K`` from ``β = 0`` to ``β = 1``."""
        return len(self.schedule) - 1


def sample_smc(
    energy: Energy, key: jax.Array, *, num_particles: int = 256, num_replicates: int = 16, target_ess: float = 0.5,
    num_mcmc_steps: int = 10, sampler: str | Sampler = "mala", sampler_params: Mapping[str, Any] | None = None,
    reference_mean: float | Sequence[float] | jax.Array | None = None,
    reference_scale: float | Sequence[float] | jax.Array | None = None, resampling: str = "systematic",
    max_stages: int = 500, check_normalisable: bool = True,
) -> SMCResult:
    """Draw a population from the energy by adaptive tempered SMC, with ``log Z`` and its standard error.

    SMC is not a Markov chain, so it is not a :class:`~ebmppl.samplers.Sampler`
    and has no place in :func:`ebmppl.sample`: no warm-up, no chain to run
    longer, no autocorrelation. It returns ``num_replicates`` independent
    populations of ``num_particles`` equally weighted draws. Within a
    population the draws are exchangeable but not independent (resampling
    copies particles, and the moves only partly decorrelate the copies), so
    their effective number is below ``num_particles``; the replicates are
    independent. ``positions`` is shaped ``(replicate, particle, *event_shape)``
    like the ``(chain, draw, ...)`` arrays ebmppl accepts for draws (to fit a
    base, as negatives, for moments); R-hat over it compares independent SMC
    runs (do they agree on the mode weights?), and an autocorrelation ESS over
    the particle axis means nothing. What SMC gives that chains do not: a
    tempered path that carries particles into every mode the reference
    covers, in proportion to their mass, and ``log Z``.

    The algorithm, the tuning of the moves and the error bar are described
    in :mod:`ebmppl.logz.smc`.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy` to draw from.
    key
        PRNG key; the pilot's and every replicate's keys are split from it.
    num_particles
        Particles ``N`` per replicate (at least 16).
    num_replicates
        Independent SMC runs ``R`` (at least 2), vectorised; their spread is the standard error.
    target_ess
        The next temperature keeps an effective sample size of ``target_ess · N`` (in (0, 1)):
        higher means more, closer stages.
    num_mcmc_steps
        Transitions per particle per stage.
    sampler
        The moves: an exact sampler of :mod:`ebmppl.samplers` whose state caches the
        log-density and its gradient: ``"mala"`` (default), ``"hmc"``, ``"nuts"``,
        ``"barker"``, or such a value (``samplers.hmc(num_integration_steps=5)``).
    sampler_params
        Overrides of the sampler's kernel parameters; ``{"step_size": ...}`` is the
        initial step in standardised coordinates (see above).
    reference_mean, reference_scale
        The Gaussian reference ``N(mean, scale²)`` (per coordinate, or one number).
        By default ``center`` and ``2·scale`` of :meth:`~ebmppl.Energy.typical_region`:
        twice as wide as where the mass is expected, so that mass the region
        misjudges or modes in its tails are still reached, at the cost of a few
        more stages (the number of stages grows with the log of the width ratio).
    resampling
        ``"systematic"`` (default), ``"stratified"``, ``"residual"`` or ``"multinomial"``.
    max_stages
        A replicate that has not reached ``β = 1`` after this many stages stops;
        the estimate is then unreliable.
    check_normalisable
        First probe the energy far out (:func:`ebmppl.normalisability.assert_normalisable`);
        a density with no finite ``Z`` raises instead of running.

    Returns
    -------
    SMCResult
        ``positions``, ``log_z`` (a :class:`~ebmppl.LogZEstimate`; an unreliable
        one also raises a :class:`~ebmppl.LogZWarning`), and per stage ``schedule``,
        ``ess``, ``acceptance`` and ``step_size``.

    Raises
    ------
    ValueError
        Bad arguments; a sampler that is not exact or whose state does not cache its gradient; the energy
        +inf at some of the reference's draws (a bounded support: use AIS with ``base="uniform"``).
    FloatingPointError
        The energy is NaN or ``-inf`` (``+inf`` log-density) at a particle, or a move diverged.
    NotNormalisableError
        (a ``ValueError``) ``exp(-E/T)`` is not normalisable.

    Examples
    --------
    Two modes 6 sd apart, weights 0.25 / 0.75: the particles find both, in proportion.

    >>> import numpy as np
    >>> from ebmppl.targets import gaussian_mixture
    >>> t = gaussian_mixture([0.25, 0.75], [[-3.0, 0.0], [3.0, 0.0]], [0.25 * np.eye(2)] * 2)
    >>> res = sample_smc(t.energy, jax.random.key(0), num_particles=512, num_replicates=4)
    >>> right = float((res.particles[:, 0] > 0).mean())
    >>> abs(right - 0.75) < 0.05, abs(res.log_z.log_z - t.log_z) < 3 * res.log_z.stderr + 0.02
    (True, True)
    """
    check_energy(energy)
    check_key(key)
    kernel, params, target = _resolve_moves(energy, sampler, sampler_params)
    for name, value, low in (("num_particles", num_particles, 16), ("num_replicates", num_replicates, 2),
                             ("num_mcmc_steps", num_mcmc_steps, 1), ("max_stages", max_stages, 1)):
        check_int(name, value, low)
    if not 0.0 < float(target_ess) < 1.0:
        raise ValueError(f"target_ess must be a fraction of the particles in (0, 1), got {target_ess!r} "
                         "(0.5 is usual; higher makes more, closer stages).")
    if resampling not in _RESAMPLING:
        raise ValueError(f"resampling must be one of {', '.join(repr(r) for r in _RESAMPLING)}, got {resampling!r}.")
    if check_normalisable:
        assert_normalisable(energy)
    mean, scale = _reference(energy, reference_mean, reference_scale)
    if reference_mean is None and reference_scale is None and not callable(
            getattr(energy.energy_fn, "typical_region", None)):
        warnings.warn("smc: the reference is N(0, 2²) in every coordinate: this energy declares no typical region "
                      "(Energy.typical_region), so mass far from the origin may be missed, and no diagnostic can see "
                      "a mode no particle reached. Pass reference_mean / reference_scale (log_partition: base_center "
                      "/ base_scale, or data=) covering the energy's mass.", LogZWarning, stacklevel=2)
    _check_support(energy, jax.random.fold_in(key, 5), mean, scale)
    out = _run(energy, key, kernel, params, mean, scale, int(num_particles), int(num_replicates),
               float(target_ess), float(target), int(num_mcmc_steps), int(max_stages), resampling)
    return _result(out, kernel.name, int(num_particles), int(num_replicates), int(max_stages), np.asarray(scale))


def _check_support(energy: Energy, key: jax.Array, mean: jax.Array, scale: jax.Array, n: int = 512) -> None:
    """A ``ValueError`` when the energy is +inf where the reference puts mass (a bounded support): tempering from
    a Gaussian reference then starts from particles of weight zero."""
    x = mean + scale * jax.random.normal(key, (n, *energy.event_shape), mean.dtype)
    ld = np.asarray(jax.vmap(energy.logdensity_fn)(x))
    outside = float(np.mean(ld == -np.inf))
    if outside > 0:
        raise ValueError(
            f"smc: the energy is +inf (outside its support) at {outside:.0%} of the reference's draws: SMC tempers "
            "from a Gaussian reference, which must lie where the energy is finite. For an energy on a bounded "
            "support use log_partition(method='ais', base='uniform', base_center=..., base_scale=...) covering the "
            "support, or sample an unconstrained reparametrisation.")


def _resolve_moves(energy: Energy, sampler: Any, sampler_params: Any) -> tuple[Sampler, dict[str, Any], float]:
    """The kernel of the moves, its parameters (``step_size`` initial) and its target acceptance."""
    if isinstance(sampler, str):
        if sampler not in _SMC_SAMPLERS:
            raise ValueError(f"sampler={sampler!r} cannot move SMC particles; use an exact sampler whose state "
                             f"caches its gradient: {', '.join(repr(s) for s in _SMC_SAMPLERS)} (or such a value).")
        sampler = get_sampler(sampler)
    elif not isinstance(sampler, Sampler):
        sampler = as_sampler(sampler, "sampler")
    if not sampler.exact:
        raise ValueError(f"sampler {sampler.name!r} is not exact (no Metropolis correction): it would not leave the "
                         f"tempered targets invariant; use one of {', '.join(_SMC_SAMPLERS)}.")
    dim = energy.dim
    probe = jax.eval_shape(lambda: sampler.init(jax.random.key(0), jnp.zeros(energy.event_shape), energy.logdensity_fn))
    if getattr(probe, "_fields", None) != _KERNEL_STATE:
        raise ValueError(f"sampler {sampler.name!r} keeps state beyond (position, logdensity, logdensity_grad), "
                         f"which the standardised moves cannot carry; use one of {', '.join(_SMC_SAMPLERS)}.")
    defaults = dict(sampler.default_params(dim))
    if "step_size" not in defaults:
        raise ValueError(f"sampler {sampler.name!r} has no step_size to adapt; use one of {', '.join(_SMC_SAMPLERS)}.")
    overrides = check_sampler_params(None if sampler_params is None else dict(sampler_params), defaults,
                                     sampler=sampler)
    power = 1 / 4 if "inverse_mass_matrix" in defaults else 1 / 3  # HMC/NUTS: d^{-1/4}; MALA/Barker: d^{-1/3}
    params = {**defaults, "step_size": dim ** -power, **overrides}
    step = params["step_size"]
    if not (np.ndim(step) == 0 and 0 < float(step) < float("inf")):
        raise ValueError(f"sampler_params['step_size'] must be a number > 0, got {step!r}.")
    target = _TARGET_ACCEPTANCE.get(sampler.name, sampler.target_acceptance)
    return sampler, params, target


def _reference(energy: Energy, mean: Any, scale: Any) -> tuple[jax.Array, jax.Array]:
    """The reference's mean and scale, of the event shape: given, or from the energy's typical region."""
    ftype = jnp.result_type(float)
    center, region = energy.typical_region()
    mean = center if mean is None else mean
    scale = REFERENCE_WIDTH * region if scale is None else scale
    try:
        mean = jnp.broadcast_to(jnp.asarray(mean, ftype), energy.event_shape)
        scale = jnp.broadcast_to(jnp.asarray(scale, ftype), energy.event_shape)
    except (TypeError, ValueError):
        raise ValueError(f"reference_mean and reference_scale must be numbers or arrays broadcastable to the event "
                         f"shape {energy.event_shape}.") from None
    if not bool(jnp.all(jnp.isfinite(mean))):
        raise ValueError("reference_mean must be finite.")
    if not bool(jnp.all((scale > 0) & jnp.isfinite(scale))):
        raise ValueError("reference_scale must be finite and > 0.")
    return mean, scale


def _standardised(sampler: Sampler):
    """BlackJAX ``(init, step)`` of ``sampler`` in coordinates standardised by the population.

    ``step(key, state, logdensity_fn, _mean, _scale, **params)`` takes a state in
    ``x`` and steps in ``z = (x − mean)/scale`` on ``z ↦ logdensity_fn(mean + scale·z)``
    (the Jacobian is a constant and cancels in the Metropolis ratio). The
    cached log-density is the same in both coordinates and the gradient is
    scaled, so nothing is re-evaluated.
    """
    def init(position, logdensity_fn):
        return sampler.init(None, position, logdensity_fn)

    def step(key, state, logdensity_fn, _mean, _scale, **params):
        def logdensity_z(z):
            return logdensity_fn(_mean + _scale * z)

        z_state = state._replace(position=(state.position - _mean) / _scale,
                                 logdensity_grad=state.logdensity_grad * _scale)
        z_state, stats = sampler.step(key, z_state, logdensity_z, params)
        return z_state._replace(position=_mean + _scale * z_state.position,
                                logdensity_grad=z_state.logdensity_grad / _scale), stats

    return init, step


def _step_update(acceptance, target):
    """``⅔ · log(q(target)/q(acceptance))`` with ``q(a) = −Φ⁻¹(a/2)``, clipped to ±log 4: the change of the log
    step that brings MALA's acceptance ``2Φ(−c·h^{3/2})`` to the target in one step."""
    def q(a):
        return -ndtri(jnp.clip(a, 0.005, 0.995) / 2)

    return jnp.clip(2.0 / 3.0 * jnp.log(q(target) / q(acceptance)), -math.log(4), math.log(4))


def _gaussian_log_prob(mean, scale):
    def log_prob(x):
        z = (x - mean) / scale
        return -0.5 * jnp.sum(z**2) - jnp.sum(jnp.log(scale)) - 0.5 * x.size * math.log(2 * math.pi)

    return log_prob


class _Schedule(NamedTuple):
    """The stages the pilot chose, padded to ``max_stages``: ``betas[k]`` and the move made at ``β_k``, its
    preconditioner ``means[k]``, ``scales[k]`` and step ``steps[k]`` (index ``K``: the final move at ``β_K``)."""

    betas: jax.Array
    means: jax.Array
    scales: jax.Array
    steps: jax.Array


class _Carry(NamedTuple):
    """One run's loop state, and what it records per stage ``k`` (from ``β_k`` to ``β_{k+1}``)."""

    state: Any  # BlackJAX TemperedSMCState
    key: jax.Array
    stage: jax.Array
    log_z: jax.Array
    ess: jax.Array  # (max_stages,): ESS of the incremental weights
    acceptance: jax.Array  # (max_stages,): mean acceptance of the moves
    grad_evals: jax.Array
    bad: jax.Array  # a non-finite weight or particle was seen


def _moments(state, floor):
    """The weighted mean and per-coordinate standard deviation (at least ``floor``) of the particles."""
    w = state.weights.reshape(-1, *([1] * (state.particles.ndim - 1)))
    mean = jnp.sum(w * state.particles, 0)
    return mean, jnp.maximum(jnp.sqrt(jnp.sum(w * (state.particles - mean) ** 2, 0)), floor)


@eqx.filter_jit
def _run(energy, key, sampler, params, mean, scale, num_particles, num_replicates, target_ess, target_acceptance,
         num_mcmc_steps, max_stages, resampling_name):
    """A pilot run of BlackJAX's adaptive tempered kernel fixes the stages; then the replicates, vmapped, follow
    them with BlackJAX's tempered kernel. Each run is a ``lax.while_loop`` over stages."""
    ftype = mean.dtype
    event = energy.event_shape
    ref_log_prob = _gaussian_log_prob(mean, scale)
    ld = energy.logdensity_fn

    def loglikelihood(x):  # log p̃ − log q; a zero density (E = +inf) is a weight of zero, not a NaN at β = 0
        ll = ld(x) - ref_log_prob(x)
        return jnp.where(ll == -jnp.inf, jnp.finfo(ftype).min / 4, ll)

    mcmc_init, mcmc_step = _standardised(sampler)
    parts = (ref_log_prob, loglikelihood, mcmc_step, mcmc_init, _RESAMPLING[resampling_name])
    adaptive = adaptive_tempered.build_kernel(*parts, target_ess)
    fixed = tempered.build_kernel(*parts)

    def shared(step, mu, sd):  # BlackJAX shares a parameter between particles when its leading axis is 1
        return jax.tree.map(lambda v: jnp.asarray(v)[None], {**params, "step_size": step, "_mean": mu, "_scale": sd})

    def advance(c: _Carry, key, new, info) -> tuple[_Carry, jax.Array]:
        """The carry after a stage, and the stage's mean acceptance."""
        stats = info.update_info
        acc = jnp.mean(jnp.nan_to_num(stats.acceptance_rate))
        bad = (c.bad | ~jnp.isfinite(info.log_likelihood_increment) | ~jnp.all(jnp.isfinite(new.weights))
               | ~jnp.all(jnp.isfinite(new.particles)))
        i = c.stage
        grad = c.grad_evals + jnp.sum(stats.num_grad_evals) + num_particles  # + each move's init
        return _Carry(new, key, i + 1, c.log_z + info.log_likelihood_increment,
                      c.ess.at[i].set(1.0 / jnp.sum(new.weights**2), mode="drop"),
                      c.acceptance.at[i].set(acc, mode="drop"), grad, bad), acc

    def start(key):
        k_init, k_run = jax.random.split(key)
        x0 = mean + scale * jax.random.normal(k_init, (num_particles, *event), ftype)
        state = adaptive_tempered.init(x0)._replace(tempering_param=jnp.asarray(0.0, ftype))
        nan = jnp.full((max_stages,), jnp.nan, ftype)
        return _Carry(state, k_run, jnp.asarray(0), jnp.asarray(0.0, ftype), nan, nan, jnp.asarray(0, jnp.int32),
                      jnp.asarray(False))

    def tune(key, state, mu, sd, log_step):
        """``TUNING_ROUNDS`` rounds of one move of every particle (resampled to equal weights) at the state's β,
        each followed by the step's update from their acceptance."""
        k_res, k_moves = jax.random.split(key)
        x = state.particles[_RESAMPLING[resampling_name](k_res, state.weights, num_particles)]

        def logdensity(y):  # BlackJAX's tempered log-density at β
            return ref_log_prob(y) + state.tempering_param * loglikelihood(y)

        def one_round(carry, k):
            states, log_step = carry
            p = {**params, "step_size": jnp.exp(log_step), "_mean": mu, "_scale": sd}
            states, stats = jax.vmap(lambda kk, st: mcmc_step(kk, st, logdensity, **p))(
                jax.random.split(k, num_particles), states)
            acc = jnp.mean(jnp.nan_to_num(stats.acceptance_rate))
            return (states, log_step + _step_update(acc, target_acceptance)), None

        states = jax.vmap(lambda y: mcmc_init(y, logdensity))(x)
        (_, log_step), _ = jax.lax.scan(one_round, (states, log_step), jax.random.split(k_moves, TUNING_ROUNDS))
        return log_step

    def pilot_stage(carry):
        c, sched, log_step = carry
        key, k_tune, k = jax.random.split(c.key, 3)
        mu, sd = _moments(c.state, 1e-6 * scale)
        log_step = tune(k_tune, c.state, mu, sd, log_step)
        step = jnp.exp(log_step)
        new, info = adaptive(k, c.state, num_mcmc_steps, shared(step, mu, sd))
        c, acc = advance(c, key, new, info)
        c = c._replace(grad_evals=c.grad_evals + (TUNING_ROUNDS + 1) * num_particles)
        i = c.stage - 1
        sched = _Schedule(sched.betas.at[i + 1].set(new.tempering_param), sched.means.at[i].set(mu),
                          sched.scales.at[i].set(sd), sched.steps.at[i].set(step))
        return c, sched, log_step + _step_update(acc, target_acceptance)

    def pilot_cond(carry):
        c = carry[0]
        return (c.state.tempering_param < 1.0) & (c.stage < max_stages) & ~c.bad

    k_pilot, k_reps = jax.random.split(key)
    empty = _Schedule(jnp.full((max_stages + 1,), jnp.nan, ftype).at[0].set(0.0),
                      jnp.zeros((max_stages + 1, *event), ftype), jnp.ones((max_stages + 1, *event), ftype),
                      jnp.full((max_stages + 1,), jnp.nan, ftype))
    log_step0 = jnp.log(jnp.asarray(params["step_size"], ftype))
    pilot, sched, log_step = jax.lax.while_loop(pilot_cond, pilot_stage, (start(k_pilot), empty, log_step0))
    last = pilot.stage  # K: the stages are fixed from here on; the final move at β_K uses the pilot's last moments
    mu, sd = _moments(pilot.state, 1e-6 * scale)
    sched = sched._replace(means=sched.means.at[last].set(mu), scales=sched.scales.at[last].set(sd),
                           steps=sched.steps.at[last].set(jnp.exp(log_step)))

    def replicate_stage(c: _Carry) -> _Carry:
        key, k = jax.random.split(c.key)
        i = c.stage
        # stage K is the final move: to β_K again (an increment of 0), so resample once more and move at β_K
        new, info = fixed(k, c.state, num_mcmc_steps, sched.betas[jnp.minimum(i + 1, last)],
                          shared(sched.steps[i], sched.means[i], sched.scales[i]))
        return advance(c, key, new, info)[0]

    def replicate(key):
        k_run, k_perm = jax.random.split(key)
        c = jax.lax.while_loop(lambda c: (c.stage <= last) & ~c.bad, replicate_stage, start(k_run))
        x = c.state.particles[jax.random.permutation(k_perm, num_particles)]
        return dict(positions=x, log_z=c.log_z, ess=c.ess, acceptance=c.acceptance, grad_evals=c.grad_evals,
                    bad=c.bad)

    out = jax.vmap(replicate)(jax.random.split(k_reps, num_replicates))
    return dict(out, betas=sched.betas, steps=sched.steps, num_stages=last, pilot_bad=pilot.bad,
                pilot_grad_evals=pilot.grad_evals)


def _result(out: dict[str, jax.Array], name: str, num_particles: int, num_replicates: int,
            max_stages: int, scale: np.ndarray) -> SMCResult:
    """The :class:`SMCResult` with its :class:`LogZEstimate` and verdict, from the runs' raw output."""
    k = int(out["num_stages"])
    bad = np.asarray(out["bad"])
    if bool(out["pilot_bad"]) or bool(np.any(bad)):
        which = "the pilot run" if bool(out["pilot_bad"]) else f"replicate(s) {np.flatnonzero(bad).tolist()}"
        raise FloatingPointError(
            f"smc: non-finite weights or particles in {which}: the energy is NaN or -inf (log-density +inf) at a "
            "particle, or a move diverged. Check the energy where the reference N(reference_mean, reference_scale²) "
            "puts particles, or lower the initial step (sampler_params={'step_size': ...}).")
    betas = np.asarray(out["betas"][: k + 1], np.float64)
    ess = np.asarray(out["ess"][:, :k], np.float64)
    acc = np.asarray(out["acceptance"][:, :k], np.float64)
    log_zs = np.asarray(out["log_z"], np.float64)
    est = _estimate(log_zs, betas, ess, acc, num_particles, max_stages)
    # particles as wide as the reference or wider: the target reaches beyond it, where moves from the reference's
    # particles cannot carry mass in a few stages (all replicates miss the same mass: their spread cannot show it)
    x = np.asarray(out["positions"], np.float64)
    spread = x.reshape(x.shape[0], x.shape[1], -1).std(axis=1).mean(0) / scale.reshape(-1)
    if np.max(spread) > WIDE_PARTICLES:
        i = int(np.argmax(spread))
        reason = (f"the final particles spread {spread[i]:.2g}× the reference's scale in coordinate {i}: the target is "
                  "wider than the reference, and mass beyond the reference is missed by every replicate alike")
        fix = "a wider reference (reference_scale; log_partition: base_scale or data=) of at least 3× the particles' sd"
        est = est._replace(reliable=False, reason="; ".join(r for r in (est.reason, reason) if r),
                           advice="; ".join(a for a in (est.advice, fix) if a))
    if not est.reliable:
        _warn_unreliable(est, stacklevel=4)
    grads = int(np.sum(out["grad_evals"])) + int(out["pilot_grad_evals"])
    return SMCResult(out["positions"], est, log_zs, betas, np.asarray(out["steps"][: k + 1], np.float64), ess, acc,
                     grads, name)


def _estimate(log_zs: np.ndarray, betas: np.ndarray, ess: np.ndarray, acc: np.ndarray, num_particles: int,
              max_stages: int) -> LogZEstimate:
    """Pool the replicates' ``log Z``: ``log mean exp(L_r)``, its standard error, and the verdict."""
    r = log_zs.shape[0]
    top = float(log_zs.max())
    z = np.exp(log_zs - top)
    log_z = top + math.log(float(z.mean()))
    delta = float(np.std(z, ddof=1) / (math.sqrt(r) * z.mean()))
    spread = float(np.std(log_zs, ddof=1))
    replicate = spread / math.sqrt(r)
    stderr = max(delta, replicate)
    min_ess = float(np.sum(ess.min(1))) if ess.shape[1] else float(r * num_particles)
    reasons, advice = [], []
    if not betas[-1] >= 1.0:
        reasons.append(f"the pilot run did not reach β = 1 in max_stages={max_stages} stages (β = {betas[-1]:.3g}): "
                       "this is log Z of a tempered density, not of the energy")
        advice.append("raise max_stages, or lower target_ess")
    if spread > MAX_REPLICATE_SD:
        reasons.append(f"the {r} replicates' log Z scatter by {spread:.3g} nats (sd; > {MAX_REPLICATE_SD}): the "
                       "pooled estimate rests on one or two of them")
        advice.append("more particles (num_particles), more moves per stage (num_mcmc_steps) or a higher target_ess")
    late = float(np.mean(acc[:, -3:])) if acc.shape[1] else float("nan")
    if late < MIN_ACCEPTANCE:
        reasons.append(f"the moves of the last stages accept {late:.3f} of proposals (< {MIN_ACCEPTANCE}): the "
                       "particles are copies of a few ancestors and the spread of the replicates understates the error")
        advice.append("a smaller initial step (sampler_params={'step_size': ...}) or another sampler ('hmc')")
    if min_ess < MIN_ESS:
        reasons.append(f"the smallest effective sample size of a stage, summed over the replicates, is {min_ess:.1f} "
                       f"(< {MIN_ESS})")
        advice.append("more particles (num_particles)")
    return LogZEstimate(log_z, stderr, min_ess, "smc", r * num_particles, spread, float("nan"), delta, replicate,
                        not reasons, "; ".join(reasons), "; ".join(dict.fromkeys(advice)))


def _log_partition(energy: Energy, key: jax.Array, *, points: jax.Array | None, base_center: Any, base_scale: Any,
                   **options: Any) -> LogZEstimate:
    """``log_partition(method="smc")``: the reference from ``base_center``/``base_scale``, a missing one from
    ``points`` (data or samples, ``(n, *event_shape)``: their mean and ``REFERENCE_WIDTH`` times their standard
    deviation), else from the energy's typical region."""
    if points is not None:
        x = np.asarray(points, np.float64)
        sd = x.std(0)
        floor = 1e-2 * float(np.median(sd)) if np.any(sd > 0) else 1.0  # a coordinate the points never vary in
        base_center = x.mean(0) if base_center is None else base_center
        base_scale = REFERENCE_WIDTH * np.maximum(sd, floor) if base_scale is None else base_scale
    return sample_smc(energy, key, reference_mean=base_center, reference_scale=base_scale, check_normalisable=False,
                      **options).log_z
