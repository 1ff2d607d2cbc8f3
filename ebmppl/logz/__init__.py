"""Partition functions: log Z of an energy by annealed importance sampling, importance sampling or a grid.

An energy gives ``p(x) = exp(-E(x)/T) / Z``; nothing can be compared across
models, and no likelihood reported, until ``log Z`` is known. One module per
estimator, one entry point :func:`log_partition` that dispatches:

* ``method="ais"`` — annealed importance sampling (Neal 2001,
  :mod:`ebmppl.logz.ais`) from a normalised base ``q`` (by default a Student-t
  fitted to where the mass is: to data, to samples or to a pilot run's
  population, :mod:`ebmppl.logz.base`) along the geometric path
  ``f_β = q^{1-β} · p̃^β``, with the transitions of an exact sampler of
  :mod:`ebmppl.samplers` (MALA by default), all chains vectorised in one
  ``lax.scan``. The step sizes are tuned by a separate pilot run and then held
  fixed, so forward AIS is unbiased for ``Z`` and its ``log`` is a stochastic
  *lower* bound; reverse AIS (:mod:`ebmppl.logz.reverse`), started from
  samples of ``p`` (checked for convergence first), is unbiased for ``1/Z``
  and gives a stochastic *upper* bound; :func:`ais_bracket` runs both and
  reports a bracket whose sides cross.
* ``method="importance"`` — plain importance sampling from ``q``
  (:mod:`ebmppl.logz.importance`; fine in low dimension, hopeless in high).
* ``method="grid"`` — quadrature for dimension ≤ 2
  (:func:`~ebmppl.logz.grid.grid_log_partition`).
* energies on a discrete support (``energy.support``, :mod:`ebmppl.support`):
  ``method="exact"`` (enumeration; an RBM sums out its smaller layer) and
  ``method="ais"`` from an independent base with Gibbs (or any exact
  discrete sampler's) transitions, or, for an RBM, the AIS of Salakhutdinov &
  Murray (2008) (:mod:`ebmppl.logz.discrete`).
* ``method="smc"`` — adaptive tempered sequential Monte Carlo from a Gaussian
  reference (:mod:`ebmppl.logz.smc`, on BlackJAX): independent replicates
  give the standard error; :func:`~ebmppl.logz.smc.sample_smc` also returns
  the particles.

:func:`compare_estimators` (:mod:`ebmppl.logz.report`) runs several of them on
one energy and flags pairs that disagree beyond their error bars.

Everything is in log space. Every estimate carries its own diagnosis
(:mod:`ebmppl.logz.estimate`): the effective sample size and spread of its
weights, the Pareto ``k̂`` of their tail, a standard error checked against
independent replicate groups, and a verdict (``reliable``, ``reason``,
``advice``); an unreliable one raises a :class:`LogZWarning`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ebmppl._deprecation import UNSET, renamed
from ebmppl._validation import check_energy, check_int, check_key, check_sampler_params
from ebmppl.energy import Energy
from ebmppl.logz.ais import _ais, _pilot, ais_schedule
from ebmppl.logz.discrete import discrete_ais, exact_log_partition, rbm_ais
from ebmppl.logz.base import _TAIL_ADVICE, _Base, _fit_base, _flat_points, _tail_notes
# the constants of the verdict rules stay readable as ebmppl.logz.MIN_ESS etc.
from ebmppl.logz.estimate import (
    BRACKET_Z,
    MIN_ESS,
    NUM_REPLICATES,
    PARETO_K_MAX,
    PARETO_MIN_WEIGHTS,
    REPLICATE_LEVEL,
    LogZBracket,
    LogZEstimate,
    LogZWarning,
    pareto_k,
)
from ebmppl.logz.grid import GRID_OUTER_TOLERANCE, GRID_TOLERANCE, _grid, grid_log_partition
from ebmppl.logz.importance import _importance
from ebmppl.logz.report import ESTIMATORS, LogZComparison, _grid_limits, compare_estimators
from ebmppl.logz.pf_ode import PFODELogLikelihood, pf_ode_log_likelihood
from ebmppl.logz.reverse import MAX_RHAT, MIN_SAMPLE_ESS, _reverse_starts
from ebmppl.logz.smc import SMCResult, sample_smc
from ebmppl.logz.smc import _log_partition as _smc
from ebmppl.logz.stepping_stone import stepping_stone
from ebmppl.normalisability import assert_normalisable
from ebmppl.samplers import Sampler, available, as_sampler, get_sampler, hmc
from ebmppl.samplers.negatives import rbm_of

__all__ = ["LogZEstimate", "LogZBracket", "LogZWarning", "log_partition", "ais_bracket", "ais_schedule",
           "pareto_k", "grid_log_partition", "sample_smc", "SMCResult", "compare_estimators", "LogZComparison",
           "ESTIMATORS", "pf_ode_log_likelihood", "PFODELogLikelihood"]

STEP_SIZE = 0.05
"""Initial step size of the pilot run that tunes the AIS transitions (``sampler_params={"step_size": ...}``)."""


def log_partition(
    energy: Energy,
    key: jax.Array | None = None,
    *,
    method: str = "ais",
    num_chains: int = 256,
    num_temperatures: int = 1000,
    num_mcmc_steps: int | None = None,
    num_replicates: int = 16,
    target_ess: float = 0.5,
    sampler: str | Sampler = UNSET,
    sampler_params: Mapping[str, Any] | None = None,
    base: str = "auto",
    base_scale: float | Sequence[float] | jax.Array | None = None,
    base_center: float | Sequence[float] | jax.Array | None = None,
    base_df: float = 5.0,
    data: jax.Array | None = None,
    samples: Any = None,
    require_converged: bool = True,
    limits: Sequence[float] | None = None,
    resolution: int = 400,
    pilot_chains: int = 64,
    check_normalisable: bool = True,
    transition: str = UNSET,
    num_leapfrog: int = UNSET,
    step_size: float = UNSET,
) -> LogZEstimate:
    """Estimate ``log Z = log ∫ exp(-E(x)/T) dx``, with its standard error and a verdict on both.

    AIS runs in stages, each with its own key: unless you give the base, it
    is *fitted* (to ``data``, else to ``samples``, else to the final
    population of an exploring pilot run from ``N(center, (3·scale)²)`` of
    :meth:`Energy.typical_region`); a *pilot* population (``pilot_chains``
    chains) then tunes one step size per temperature from that base and is
    discarded; the *estimating* run moves ``num_chains`` independent chains
    under that fixed schedule. Because nothing in a chain's transitions
    depends on the estimating chains themselves, the mean importance weight
    is unbiased for ``Z`` (reverse AIS: for ``1/Z``). Its log is then biased
    low by about ``stderr² / 2`` (Jensen; reverse: high).

    Every estimate carries its diagnosis (:class:`LogZEstimate`): the weights'
    ESS, the spread of the log-weights, the Pareto ``k̂`` of their tail, the
    spread of independent replicate groups, and a verdict ``reliable`` with
    ``reason`` and ``advice``. An unreliable verdict also raises a
    :class:`LogZWarning`.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy`.
    key
        PRNG key (not needed for ``method="grid"``).
    method
        For an energy on a discrete support: ``"ais"`` (from an independent base, uniform or fitted to
        ``data``'s marginals, with ``sampler`` transitions, default a Gibbs sweep, linear schedule; an
        RBM of :func:`ebmppl.discrete.rbm` without ``sampler``: the AIS of Salakhutdinov & Murray, block Gibbs
        on intermediate RBMs, their schedule) or ``"exact"`` (:mod:`ebmppl.logz.discrete`). Otherwise:
        ``"ais"`` (forward AIS; with ``samples``: reverse AIS), ``"importance"``, ``"grid"``, ``"smc"`` or
        ``"stepping_stone"`` (:func:`~ebmppl.logz.stepping_stone.stepping_stone` on a parallel-tempering
        ladder: ``sampler`` a ``samplers.parallel_tempering(...)`` value, ``num_chains`` ladders (default 8),
        ``base_center``/``base_scale`` its reference).
        For both sides of AIS at once see :func:`ais_bracket`; to run several and compare them,
        :func:`compare_estimators`.
    num_chains
        AIS chains / importance samples / SMC particles per replicate.
    num_temperatures
        Intermediate distributions (``β = (k/K)^4``). SMC chooses its own (adaptively).
    num_mcmc_steps
        Transitions per temperature (default 1; SMC: per stage and particle, default 10).
    num_replicates, target_ess
        SMC only (:func:`~ebmppl.logz.smc.sample_smc`): independent replicates, whose spread is
        the standard error, and the fraction of particles each stage's weights keep as ESS.
    sampler
        The transitions: an exact (Metropolis-adjusted) sampler of
        :mod:`ebmppl.samplers` with a ``step_size`` parameter, by name
        (``"mala"``, the default; ``"hmc"``, ``"nuts"``, ``"barker"``,
        ``"ghmc"``) or as a value (``samplers.hmc(num_integration_steps=5)``),
        stepping on the tempered log-density. Its name gets its default options.
    sampler_params
        Overrides of the sampler's kernel parameters (its ``default_params``),
        e.g. ``{"step_size": 0.1}``: the *initial* step size of the pilot run
        (default 0.05), which adapts it along the path towards the sampler's
        ``target_acceptance`` (0.574 for MALA); the estimating run uses the
        pilot's per-temperature steps, fixed.
    base
        The family of the normalised base ``q``. ``"auto"`` (default): a
        Student-t fitted to where the mass is when neither ``base_center`` nor
        ``base_scale`` is given, otherwise ``"gaussian"``. ``"student_t"``
        (``base_df`` degrees of freedom) and ``"gaussian"`` are fitted the same
        way unless located by hand; ``"uniform"`` is the box ``center ± scale``.
        A fitted base takes the points' mean and covariance (full when there
        are at least 5 points per dimension, else diagonal); a Gaussian is
        widened 1.5 times, a Student-t covers with its tails.
    base_scale, base_center
        Place the base by hand (per coordinate): ``N(center, scale²)``, a
        Student-t with that scale, or the box ``center ± scale``. A missing one
        defaults to ``center, 3·scale`` of :meth:`Energy.typical_region`. For SMC
        they place its Gaussian reference (default: ``center, 2·scale``; with
        ``data`` or ``samples``: their mean and twice their standard deviation).
    base_df
        Degrees of freedom of the Student-t base.
    data
        Points where the mass of the energy is, ``(n, *event_shape)`` (the
        training data, say): the base is fitted to them.
    samples
        Samples of ``p`` to run reverse AIS from (an upper bound): a
        :class:`~ebmppl.Samples` or ``(chains, draws, *event_shape)``, whose
        split R-hat (≤ 1.01) and bulk/tail ESS (≥ 100) are checked first; a flat
        ``(n, *event_shape)`` array is used with a warning that convergence
        could not be checked. At most ``num_chains`` draws, evenly spaced, start
        the reverse chains; the base is fitted to the others (all of them when
        there are no others). With ``method="importance"``: only fit the base.
    require_converged
        Reverse AIS from samples that fail the check raises ``ValueError``;
        ``False`` runs it anyway and flags the estimate unreliable.
    limits, resolution
        For ``method="grid"`` (dimension ≤ 2).
    pilot_chains
        Chains of the pilot runs (the exploring one that locates the mass when
        no base, data or samples are given, and the one that tunes the step
        sizes; each costs ``pilot_chains / num_chains`` of the estimating run).
    check_normalisable
        First probe the energy far from its typical region
        (:func:`ebmppl.normalisability.assert_normalisable`; the grid also checks
        that its outer region converges) and raise
        :class:`~ebmppl.normalisability.NotNormalisableError` rather than return
        a number for a density with no finite ``Z``. ``False`` skips it. Not
        run with ``base="uniform"``: AIS and importance sampling from a box
        never leave it, so they estimate ``log ∫_box exp(-E/T)`` (the box is the
        support), finite for any energy bounded below on it — the way to
        integrate an image energy over its pixel range.
    transition, num_leapfrog, step_size
        Deprecated (one release): ``transition="hmc", num_leapfrog=5`` is
        ``sampler=samplers.hmc(num_integration_steps=5, jitter=0.0)``;
        ``step_size=0.1`` is ``sampler_params={"step_size": 0.1}``.

    Returns
    -------
    LogZEstimate
        ``stderr`` is the delta-method standard error from the spread of the
        independent chains' weights, replaced by the spread of
        ``NUM_REPLICATES`` (8) independent replicate groups when they scatter
        more than it allows. When ``reliable``, ``|log_z − log Z|`` exceeds
        ``4·stderr`` rarely. When not, ``reason`` says what was seen and
        ``advice`` what to change.

    Raises
    ------
    ValueError
        Bad arguments; reverse AIS from samples that are not shown to be converged.
    NotNormalisableError
        (a ``ValueError``) ``exp(-E/T)`` is not normalisable, or its mass does not visibly die off.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.5, -0.5], [[1.0, 0.3], [0.3, 0.5]])
    >>> est = log_partition(t.energy, jax.random.key(0), num_chains=256, num_temperatures=200)
    >>> est.reliable, abs(est.log_z - t.log_z) < 4 * est.stderr + 0.02
    (True, True)
    >>> abs(log_partition(t.energy, method="grid", limits=(-8, 8, -8, 8)).log_z - t.log_z) < 1e-4
    True
    """
    check_energy(energy)
    if getattr(energy.support, "is_discrete", False):  # sums and AIS over states: ebmppl.logz.discrete
        return _discrete_log_partition(energy, key, method=method, num_chains=num_chains,
                                       num_temperatures=num_temperatures, num_mcmc_steps=num_mcmc_steps,
                                       sampler=None if sampler is UNSET else sampler, sampler_params=sampler_params,
                                       base=base, data=data, samples=samples)
    if method == "exact":
        raise ValueError("method='exact' sums over the states of a discrete energy; this one is continuous: use "
                         "method='grid' (dimension <= 2), 'ais' or 'smc'.")
    tail_report = None
    if check_normalisable and base != "uniform":  # a density with no finite Z gets an error, never a number
        tail_report = assert_normalisable(energy)
    if method == "grid":
        return _grid(energy, limits, resolution, check_normalisable)
    if method not in ("ais", "importance", "smc", "stepping_stone"):
        raise ValueError(f"unknown method {method!r}; choose 'ais', 'importance', 'grid', 'smc' or "
                         "'stepping_stone'.")
    if key is None:
        raise ValueError(f"method={method!r} is random: pass a key (jax.random.key(0)).")
    check_key(key)
    if method == "stepping_stone":
        overrides = dict(sampler_params or {})
        for name, value in (("reference_mean", base_center), ("reference_scale", base_scale)):
            if value is not None:
                overrides[name] = jnp.broadcast_to(jnp.asarray(value, jnp.result_type(float)).reshape(-1),
                                                   (energy.dim,))
        return stepping_stone(energy, key, sampler=None if sampler is UNSET else sampler,
                              sampler_params=overrides or None, num_chains=8 if num_chains == 256 else num_chains)
    if method == "smc":
        if any(old is not UNSET for old in (transition, num_leapfrog, step_size)):
            raise TypeError("method='smc' takes sampler= and sampler_params= (transition=, num_leapfrog= and "
                            "step_size= are the deprecated names of AIS).")
        if base not in ("auto", "gaussian"):
            raise ValueError(f"method='smc' starts from a Gaussian reference: base must be 'auto' or 'gaussian', "
                             f"got {base!r}.")
        name, points = ("data", data) if data is not None else ("samples", samples)
        if points is not None:
            points = _flat_points(points, tuple(energy.event_shape), name, jnp.result_type(float))
        return _smc(energy, key, points=points, base_center=base_center, base_scale=base_scale,
                    num_particles=num_chains, num_replicates=num_replicates, target_ess=target_ess,
                    num_mcmc_steps=10 if num_mcmc_steps is None else num_mcmc_steps,
                    sampler="mala" if sampler is UNSET else sampler, sampler_params=sampler_params)
    num_mcmc_steps = 1 if num_mcmc_steps is None else num_mcmc_steps
    step_given = step_size is not UNSET or (isinstance(sampler_params, Mapping) and "step_size" in sampler_params)
    kernel, params = _resolve_sampler(energy, sampler, sampler_params, transition, num_leapfrog, step_size)
    if base not in ("auto", "gaussian", "student_t", "uniform"):
        raise ValueError(f"base must be 'auto', 'gaussian', 'student_t' or 'uniform', got {base!r}.")
    for name, value in (("num_chains", num_chains), ("num_temperatures", num_temperatures),
                        ("num_mcmc_steps", num_mcmc_steps)):
        check_int(name, value, 1)
    check_int("pilot_chains", pilot_chains, 2)
    if not 2.0 < float(base_df) < float("inf"):
        raise ValueError(f"base_df must be > 2 (a finite variance), got {base_df!r}.")
    ftype = jnp.result_type(float)  # float32, or float64 with jax_enable_x64
    event_shape = tuple(energy.event_shape)
    step = jnp.asarray(params.pop("step_size"), ftype)
    run = dict(sampler=kernel, params=params, num_temperatures=int(num_temperatures),
               num_mcmc_steps=int(num_mcmc_steps), pilot_chains=int(pilot_chains), step_size=step)
    k_explore, k_pilot, k_est = jax.random.split(key, 3)
    notes: list[str] = []
    starts = rest = None
    if samples is not None and method == "ais":
        starts, rest, notes = _reverse_starts(samples, event_shape, int(num_chains), bool(require_converged), ftype)
    region_center, region_scale = energy.typical_region()
    fitted = base != "uniform" and base_center is None and base_scale is None
    if not fitted:
        kind = "gaussian" if base == "auto" else base
        center = region_center if base_center is None else base_center
        scale = jnp.broadcast_to(jnp.asarray(3.0 * region_scale if base_scale is None else base_scale, ftype),
                                 event_shape)
        if not bool(jnp.all(scale > 0)):
            raise ValueError("base_scale must be > 0.")
        q = _Base(kind, jnp.broadcast_to(jnp.asarray(center, ftype), event_shape), scale, None, float(base_df))
    else:
        kind = "student_t" if base == "auto" else base
        if data is not None:
            points = _flat_points(data, event_shape, "data", ftype)
        elif starts is not None:
            points = starts if rest is None else rest
        elif samples is not None:  # importance sampling: the samples locate the mass
            points = _flat_points(samples, event_shape, "samples", ftype)
        else:  # an exploring pilot from the typical region: its population at β = 1 locates the mass
            q0 = _Base("gaussian", jnp.asarray(region_center, ftype), jnp.asarray(3.0 * region_scale, ftype))
            _, points = _pilot(energy, k_explore, ais_schedule(int(num_temperatures)).astype(ftype), q0, kernel,
                               params, int(pilot_chains), int(num_mcmc_steps),
                               step if step_given else _scaled_step(step, q0))
            if not bool(jnp.all(jnp.isfinite(points))):
                raise FloatingPointError("the exploring pilot run diverged: lower the step size (sampler_params="
                                         "{'step_size': ...}), or give the base (base_center/base_scale) or points "
                                         "where the mass is (data=).")
        q = _fit_base(points, kind, float(base_df), event_shape, ftype)
    if not step_given:  # the default initial step is for unit scale: follow a narrower base down
        run["step_size"] = _scaled_step(step, q)
    tail_notes = [] if tail_report is None or q.kind == "uniform" else _tail_notes(tail_report, q)
    advice = _TAIL_ADVICE if tail_notes else None
    if method == "importance":
        return _importance(energy, k_est, q, int(num_chains), notes=tail_notes, advice=advice)
    if starts is not None:
        return _ais(energy, k_est, k_pilot, q, start=starts, notes=notes, num_chains=int(starts.shape[0]), **run)
    return _ais(energy, k_est, k_pilot, q, num_chains=int(num_chains), notes=tail_notes, advice=advice, **run)


def _scaled_step(step: jax.Array, q: _Base) -> jax.Array:
    """The default initial step ``STEP_SIZE`` (for an energy of unit scale) shrunk with a base narrower than 1.

    The pilot tunes the step per temperature by small nudges; started from 0.05 on an energy whose spread is 1e-3,
    no proposal is ever accepted and the tuning cannot catch up. The base's geometric-mean scale is the energy's
    scale as far as is known before the pilot; bases of scale >= 1 keep the step as it was.
    """
    scale = jnp.exp(jnp.mean(jnp.log(jnp.asarray(q.scale, step.dtype))))
    return step * jnp.minimum(1.0, scale)


def _discrete_log_partition(energy: Energy, key: Any, *, method: str, num_chains: int, num_temperatures: int,
                            num_mcmc_steps: int | None, sampler: Any, sampler_params: Any, base: str, data: Any,
                            samples: Any) -> LogZEstimate:
    """:func:`log_partition` of a discrete energy: ``"exact"`` or ``"ais"`` (:mod:`ebmppl.logz.discrete`)."""
    if method == "exact":
        return exact_log_partition(energy)
    if method != "ais":
        raise ValueError(f"method={method!r} does not apply to a discrete energy (support {energy.support!r}); "
                         "choose 'ais' or 'exact' (enumeration, at most 2**22 states; an RBM sums out its smaller "
                         "layer).")
    if key is None:
        raise ValueError("method='ais' is random: pass a key (jax.random.key(0)).")
    check_key(key)
    if samples is not None:
        raise ValueError("reverse AIS from samples is not available for discrete energies; drop samples= "
                         "(forward AIS gives a stochastic lower bound with its standard error).")
    if base not in ("auto", "uniform"):
        raise ValueError(f"a discrete energy's AIS base is an independent Bernoulli / categorical: base must be "
                         f"'auto' (fitted to data's marginals when data= is given, else uniform) or 'uniform', got "
                         f"{base!r}.")
    steps = 1 if num_mcmc_steps is None else num_mcmc_steps
    for name, value in (("num_chains", num_chains), ("num_temperatures", num_temperatures),
                        ("num_mcmc_steps", steps)):
        check_int(name, value, 1)
    if data is not None:
        data = _flat_points(data, tuple(energy.event_shape), "data", jnp.result_type(float))
        energy.support.check(data, energy.event_shape, name="data")
    data = None if base == "uniform" else data
    if sampler is None and sampler_params is None and rbm_of(energy) is not None and float(energy.temperature) == 1.0:
        return rbm_ais(energy, key, num_chains=num_chains, num_temperatures=num_temperatures, num_mcmc_steps=steps,
                       data=data)
    return discrete_ais(energy, key, num_chains=num_chains, num_temperatures=num_temperatures, num_mcmc_steps=steps,
                        sampler=sampler, sampler_params=sampler_params, data=data)


_AIS_SAMPLERS = ("mala", "hmc", "nuts", "barker", "ghmc")
"""The samplers by name that AIS can use (exact, with a ``step_size`` to tune): named in error messages."""


def _resolve_sampler(energy: Energy, sampler: Any, sampler_params: Any, transition: Any, num_leapfrog: Any,
                     step_size: Any) -> tuple[Sampler, dict[str, Any]]:
    """The AIS transitions and their parameters from ``sampler``/``sampler_params`` (or the deprecated names)."""
    old = transition is not UNSET
    sampler = renamed("log_partition", "transition", transition, "sampler", sampler, default="mala", stacklevel=4)
    leapfrog = renamed("log_partition", "num_leapfrog", num_leapfrog,
                       "sampler=ebmppl.samplers.hmc(num_integration_steps", UNSET, stacklevel=4)
    what = "transition" if old else "sampler"
    if isinstance(sampler, str):
        if sampler not in available():
            raise ValueError(f"{what}={sampler!r} is not a sampler; AIS takes an exact one with a step size: "
                             f"{', '.join(repr(s) for s in _AIS_SAMPLERS)} (or a Sampler value).")
        if sampler == "hmc" and (old or leapfrog is not None):  # the old AIS HMC: fixed trajectory, no jitter
            sampler = hmc(num_integration_steps=5 if leapfrog is None else int(leapfrog), jitter=0.0)
        else:
            if leapfrog is not None:
                raise TypeError(f"num_leapfrog= applies to sampler='hmc' only, not {sampler!r}.")
            sampler = get_sampler(sampler)
    elif not isinstance(sampler, Sampler):
        sampler = as_sampler(sampler, what)  # a Sampler class, or not a sampler at all: the error says which
    elif leapfrog is not None:
        raise TypeError("num_leapfrog= does not apply to a Sampler value; build it with "
                        "samplers.hmc(num_integration_steps=...).")
    if not sampler.exact:
        raise ValueError(f"sampler {sampler.name!r} is not exact (no Metropolis correction): AIS weights would be "
                         f"biased; use an exact one ({', '.join(_AIS_SAMPLERS)}).")
    defaults = dict(sampler.default_params(int(math.prod(energy.event_shape))))
    if "step_size" not in defaults:
        raise ValueError(f"sampler {sampler.name!r} has no step_size parameter for the pilot run to tune; use one of "
                         f"{', '.join(_AIS_SAMPLERS)}.")
    overrides = check_sampler_params(None if sampler_params is None else dict(sampler_params), defaults,
                                     sampler=sampler)
    initial = renamed("log_partition", "step_size", step_size, 'sampler_params["step_size"]',
                      overrides.pop("step_size", UNSET), default=STEP_SIZE, stacklevel=4)
    try:
        valid = 0 < float(initial) < float("inf")
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"step_size (sampler_params['step_size']) must be a number > 0, got {initial!r}.")
    return sampler, {**defaults, **overrides, "step_size": initial}


def ais_bracket(energy: Energy, key: jax.Array, samples: Any, *, data: jax.Array | None = None,
                **kwargs: Any) -> LogZBracket:
    """Forward and reverse AIS in one call: ``log Z`` bracketed, and the bracket checked.

    Reverse AIS runs from ``samples`` (checked for convergence first, see
    :func:`log_partition`), forward AIS from the base; both fit their base to
    ``data`` if given, else to the samples. The bracket is *inconsistent* when
    the reverse side falls below the forward side by more than ``BRACKET_Z``
    (3) combined standard errors; that, or an unreliable side, makes the
    verdict unreliable and raises one :class:`LogZWarning`.

    What it proves: with exact transitions and enough effective weights on
    both sides, ``lower ≲ log Z ≲ upper`` up to their standard errors. What it
    does not: a reverse side from samples that are not from ``p`` is no
    upper bound, and two sides that meet are not evidence when both miss the
    same mass.

    Parameters
    ----------
    energy, key
        As for :func:`log_partition`.
    samples
        Samples of the energy: a :class:`~ebmppl.Samples` or ``(chains, draws, *event_shape)``.
    data
        Points to fit the base to instead of the samples.
    **kwargs
        Passed to :func:`log_partition` for both sides (``num_chains``, ``num_temperatures``, ...).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.0, 2.0], [[1.0, 0.3], [0.3, 0.5]])
    >>> draws = t.sample(jax.random.key(1), 512).reshape(4, 128, 2)   # exact draws as 4 "chains"
    >>> b = ais_bracket(t.energy, jax.random.key(0), draws, num_chains=128, num_temperatures=50)
    >>> b.reliable, b.gap > -3 * math.hypot(b.lower.stderr, b.upper.stderr)
    (True, True)
    """
    if samples is None:
        raise ValueError("ais_bracket needs samples of the energy (a Samples or (chains, draws, *event_shape)).")
    for name in ("method", "samples"):
        if name in kwargs:
            raise TypeError(f"ais_bracket does not take {name}=; it runs method='ais' forward and from the samples.")
    check_energy(energy)
    check_key(key)
    k_fwd, k_rev = jax.random.split(key)
    ftype = jnp.result_type(float)
    points = data if data is not None else _flat_points(samples, tuple(energy.event_shape), "samples", ftype)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        upper = log_partition(energy, k_rev, samples=samples, data=points, **kwargs)  # checks the samples first
        lower = log_partition(energy, k_fwd, data=points, **kwargs)
    for w in caught:  # the sides' own verdicts are folded into one warning below
        if not issubclass(w.category, LogZWarning) or "no chain structure" in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    se = math.hypot(lower.stderr, upper.stderr)
    consistent = upper.log_z >= lower.log_z - BRACKET_Z * se
    reasons = []
    if not consistent:
        reasons.append(f"the reverse side {upper.log_z:.4g} ± {upper.stderr:.2g} lies {lower.log_z - upper.log_z:.3g} "
                       f"nats below the forward side {lower.log_z:.4g} ± {lower.stderr:.2g}, beyond {BRACKET_Z:g} "
                       "combined standard errors: at least one side is wrong")
    reasons += [f"{side}: {est.reason}" for side, est in (("forward", lower), ("reverse", upper)) if not est.reliable]
    reliable = not reasons
    advice = "" if reliable else (
        "check that the samples come from the energy (longer chains, an exact sampler), and add temperatures "
        "(num_temperatures) or transitions per temperature (num_mcmc_steps) until both sides are reliable and meet")
    bracket = LogZBracket(lower, upper, consistent, reliable, "; ".join(reasons), advice)
    if not reliable:
        warnings.warn(f"AIS bracket [{lower.log_z:.4g} ± {lower.stderr:.2g}, {upper.log_z:.4g} ± {upper.stderr:.2g}] "
                      f"is unreliable: {bracket.reason}. To fix: {advice}.", LogZWarning, stacklevel=2)
    return bracket


def _estimator(method: str):
    """:func:`log_partition` with ``method``, as an estimator of :func:`compare_estimators` (the grid gets a default
    box, ``center ± 6·scale`` of the typical region)."""
    def estimate(energy: Energy, key: jax.Array, **options: Any) -> LogZEstimate:
        if method == "grid" and options.get("limits") is None:
            options["limits"] = _grid_limits(energy)
        return log_partition(energy, key, method=method, **options)

    estimate.__name__ = estimate.__qualname__ = method
    return estimate


ESTIMATORS.update({m: _estimator(m) for m in ("grid", "importance", "ais", "smc")})
ESTIMATORS["stepping_stone"] = stepping_stone
