"""Partition functions: log Z of an energy by annealed importance sampling, importance sampling or a grid.

An energy gives ``p(x) = exp(-E(x)/T) / Z``; nothing can be compared across
models, and no likelihood reported, until ``log Z`` is known. Three estimators:

* ``method="ais"`` — annealed importance sampling (Neal 2001) from a
  normalised base ``q`` (by default a Student-t fitted to where the mass is:
  to data, to samples or to a pilot run's population) along the geometric path
  ``f_β = q^{1-β} · p̃^β`` with MALA (or HMC) transitions, all chains
  vectorised in one ``lax.scan``. The transitions' step sizes are tuned by a
  separate pilot run and then held fixed, so forward AIS is unbiased for
  ``Z`` and its ``log`` is a stochastic *lower* bound; reverse AIS, started
  from samples of ``p`` (checked for convergence first), is unbiased for
  ``1/Z`` and gives a stochastic *upper* bound; :func:`ais_bracket` runs both
  and reports a bracket whose sides cross.
* ``method="importance"`` — plain importance sampling from ``q`` (fine in
  low dimension, hopeless in high).
* ``method="grid"`` — quadrature for dimension ≤ 2 (see
  :func:`ebmppl.evaluation.grid_log_partition`).

Everything is in log space. Every estimate carries its own diagnosis: the
effective sample size and spread of its weights, the Pareto ``k̂`` of their
tail, a standard error checked against independent replicate groups, and a
verdict (``reliable``, ``reason``, ``advice``); an unreliable one raises a
:class:`LogZWarning`.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl._validation import check_energy, check_int, check_key
from ebmppl.energy import Energy
from ebmppl.evaluation import grid_log_partition
from ebmppl.normalisability import assert_normalisable

__all__ = ["LogZEstimate", "LogZBracket", "LogZWarning", "log_partition", "ais_bracket", "ais_schedule",
           "pareto_k"]


MIN_ESS = 30
"""Below this effective sample size of the weights an estimate is unreliable (and comes with a :class:`LogZWarning`)."""
GRID_TOLERANCE = 0.01
"""Grid discretisation error (nats) above which :func:`log_partition` warns."""
PARETO_K_MAX = 0.7
"""Above this Pareto shape ``k̂`` of the weights' right tail an estimate is unreliable (PSIS, Vehtari et al.)."""
PARETO_MIN_WEIGHTS = 200
"""``k̂`` judges the verdict from this many weights on (a tail of >= 40; its sd is about ``(1 + k)/√tail``)."""
NUM_REPLICATES = 8
"""The chains are split into this many independent replicate groups to check the delta-method standard error."""
REPLICATE_LEVEL = 0.99
"""Replicate groups scattered beyond this quantile of their law under the delta method overrule it."""
MAX_RHAT = 1.01


def _rhat_limit(chains: int, draws: int, num_coordinates: int) -> float:
    """The R-hat above which draws are refused: ``MAX_RHAT``, or more where exact draws would exceed it by chance.

    For independent draws split into ``k = 2·chains`` halves of length ``n``,
    ``B/W`` follows ``F(k-1, ·) ≈ χ²_{k-1}/(k-1)``, so split R-hat ≈ ``1 + (F-1)/(2n)``.
    The limit is that expression at the ``1 - 0.001/(2m)`` quantile (bulk and
    tail R-hat of ``m`` coordinates, Bonferroni): with few draws even exact
    samples exceed 1.01 (256 draws in 2-D often reach 1.03), and refusing them
    would be a false alarm.
    """
    from scipy.stats import chi2

    k, n = 2 * chains, max(draws // 2, 1)
    q = float(chi2.ppf(1.0 - 0.001 / (2 * max(num_coordinates, 1)), k - 1)) / (k - 1)
    return max(MAX_RHAT, 1.0 + (q - 1.0) / (2.0 * n))
"""Largest split R-hat of the samples that reverse AIS accepts as converged."""
MIN_SAMPLE_ESS = 100
"""Smallest bulk and tail ESS of the samples that reverse AIS accepts as converged."""
BRACKET_Z = 3.0
"""A bracket whose reverse side lies this many combined standard errors below its forward side is inconsistent."""


class LogZWarning(UserWarning):
    """A log Z estimate whose verdict is unreliable: its error bar cannot be trusted (the warning says why, and the fix).

    Examples
    --------
    >>> import warnings
    >>> from ebmppl.targets import gaussian
    >>> narrow = gaussian([0.0], [[1e-4]])              # sd 0.01 on a grid with cells of 0.05
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = log_partition(narrow.energy, method="grid", limits=(-10, 10))
    >>> [w.category.__name__ for w in caught], est.stderr > 0.01, est.reliable
    (['LogZWarning'], True, False)
    """


class LogZEstimate(NamedTuple):
    """An estimate of ``log Z`` with its own diagnosis.

    The first five fields are positional as before; the rest say how far the
    estimate can be trusted and are computed from the weights alone.

    Attributes
    ----------
    log_z
        The estimate: ``log`` of the mean importance weight (reverse AIS: minus
        the log of the mean reverse weight).
    stderr
        Its standard error: the delta-method value, unless the independent
        replicate groups scatter more than it allows (then their spread,
        ``replicate_stderr``). For the grid: the discretisation error, estimated
        from the same grid at half the resolution (midpoint rule, error ∝ h²:
        ``|fine − coarse| / 3``).
    ess
        Effective sample size ``(Σw)²/Σw²`` of the importance weights (``nan`` for the grid).
    method
        ``"ais"``, ``"ais-reverse"``, ``"importance"`` or ``"grid"``.
    num_chains
        Number of weights (chains) behind the estimate.
    log_weight_sd
        Standard deviation of the log-weights (nats). The weights are
        log-normal-like when it is small; when it is several nats a few
        weights carry the estimate.
    pareto_k
        Shape ``k̂`` of a generalised Pareto fit to the largest weights
        (Zhang & Stephens, with the PSIS prior of Vehtari et al.). ``k̂ ≥ 0.5``:
        the weights' variance is infinite in effect, so the delta-method
        error has no footing; ``k̂ > 0.7``: the estimate itself is unreliable
        (judged from 200 weights on: with fewer the fit rests on too short a
        tail). ``nan`` with fewer than 20 weights.
    delta_stderr
        Delta-method standard error ``sd(w) / (√n · mean(w))``.
    replicate_stderr
        ``sd(L_r) / √R`` over ``R`` independent replicate groups of the chains,
        each with its own estimate ``L_r`` (``nan`` with fewer than 32 chains).
    reliable
        The verdict: ``False`` when the weights' ESS is below ``MIN_ESS`` (30),
        ``k̂ > 0.7`` (from 200 weights on), the replicate groups disagree beyond
        the delta method, or (reverse AIS) the samples were not shown to be converged.
    reason
        Why the verdict is unreliable (``""`` when reliable).
    advice
        The fix that applies (``""`` when reliable): more temperatures, a base
        fitted to samples or data, better transitions, converged samples.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> est = log_partition(gaussian([0.0], [[1.0]]).energy, method="grid", limits=(-10, 10))
    >>> est.method, round(est.log_z, 4), est.reliable   # log √(2π)
    ('grid', 0.9189, True)
    """

    log_z: float
    stderr: float
    ess: float
    method: str
    num_chains: int
    log_weight_sd: float = float("nan")
    pareto_k: float = float("nan")
    delta_stderr: float = float("nan")
    replicate_stderr: float = float("nan")
    reliable: bool = True
    reason: str = ""
    advice: str = ""

    def __str__(self) -> str:
        verdict = "reliable" if self.reliable else f"UNRELIABLE: {self.reason}"
        return (f"log Z = {self.log_z:.4f} ± {self.stderr:.3g} ({self.method}, ESS {self.ess:.1f} of "
                f"{self.num_chains}; {verdict})")


def ais_schedule(num_temperatures: int, power: float = 4.0) -> jax.Array:
    """Inverse temperatures ``β_k = (k/K)^power``, k = 0..K: dense near the base, where the path changes fastest.

    Examples
    --------
    >>> ais_schedule(4, power=1.0).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if num_temperatures < 1:
        raise ValueError(f"num_temperatures must be >= 1, got {num_temperatures}.")
    return (jnp.arange(num_temperatures + 1) / num_temperatures) ** power


def pareto_k(log_weights: np.ndarray) -> float:
    """Shape ``k̂`` of a generalised Pareto distribution fitted to the largest importance weights.

    The tail is the ``M = min(n/5, 3√n)`` largest weights above the next one;
    the shape is the Zhang & Stephens (2009) profile-likelihood estimate,
    shrunk towards 0.5 by the weak prior of PSIS (Vehtari et al. 2024).
    ``k̂ < 0.5``: the weights have a finite variance and the delta-method
    error means what it says; ``0.5 ≤ k̂ ≤ 0.7``: finite mean, the error
    bar is optimistic; ``k̂ > 0.7``: the estimate is unreliable.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> light = pareto_k(rng.normal(size=4000))             # log-normal weights with sd 1: a light tail
    >>> heavy = pareto_k(np.log(rng.pareto(1.0, 4000)))      # a Pareto tail of shape 1: infinite mean
    >>> light < 0.5 < 0.7 < heavy
    True
    """
    log_w = np.sort(np.asarray(log_weights, np.float64).ravel())
    n = log_w.size
    if n < 20 or np.any(np.isnan(log_w)) or not np.isfinite(log_w[-1]):  # zero weights (log -inf) are fine
        return float("nan")
    m = int(min(n // 5, math.ceil(3 * math.sqrt(n))))
    w = np.exp(log_w - log_w[-1])  # largest weight 1
    y = w[n - m:] - w[n - m - 1]  # exceedances over the threshold, ascending
    if not y[-1] > 0:
        return 0.0  # the weights are all equal: no tail at all
    grid = 30 + int(math.sqrt(m))
    quartile = y[max(int(m / 4 + 0.5) - 1, 0)]
    quartile = quartile if quartile > 0 else y[-1] / m
    theta = 1 / y[-1] + (1 - np.sqrt(grid / (np.arange(1, grid + 1) - 0.5))) / (3 * quartile)
    shape = -np.mean(np.log1p(-theta[:, None] * y[None, :]), axis=1)  # Zhang-Stephens k (negative: heavy)
    profile = m * (np.log(theta / shape) + shape - 1)
    weights = 1.0 / np.sum(np.exp(profile[None, :] - profile[:, None]), axis=1)
    theta_hat = np.sum(weights * theta)
    k = float(np.mean(np.log1p(-theta_hat * y)))  # the usual sign: > 0 for a heavy right tail
    return (m * k + 10 * 0.5) / (m + 10)


def _f_quantile(dof: int, level: float) -> float:
    """``q`` with ``P(χ²_dof / dof ≤ q) = level`` (Wilson-Hilferty: within 0.3 % for dof ≥ 3 at level 0.99)."""
    z = statistics.NormalDist().inv_cdf(level)
    return (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


_ADVICE = {
    "ais": "add temperatures (num_temperatures) or transitions per temperature (num_mcmc_steps, transition='hmc'), "
           "or give a base fitted to where the mass is (data= training data or samples of the energy)",
    "ais-reverse": "check that the samples come from the energy (converged chains: R-hat <= 1.01), add temperatures "
                   "(num_temperatures) or transitions per temperature (num_mcmc_steps)",
    "importance": "fit the base to where the mass is (data= training data or samples of the energy), or use "
                  "method='ais' with more temperatures",
}


def _summarise(log_w, method: str, sign: float = 1.0, notes: Sequence[str] = (), advice: str | None = None,
               warn: bool = True) -> LogZEstimate:
    """A :class:`LogZEstimate` from the chains' log-weights, with its diagnosis and verdict.

    ``notes`` are reasons for an unreliable verdict found before the weights
    (e.g. unconverged samples for reverse AIS).
    """
    log_w = np.asarray(log_w, np.float64)
    n = log_w.shape[0]
    # a weight of exactly zero (log -inf) is legitimate: a chain that ends where E = +inf (outside a bounded
    # support) contributes nothing; NaN or +inf is not
    if np.any(np.isnan(log_w) | (log_w == np.inf)):
        raise FloatingPointError(
            f"{method}: {int(np.sum(np.isnan(log_w) | (log_w == np.inf)))} of {n} importance weights are NaN or "
            "+inf (the energy or its gradient overflowed along the path); lower the step size (step_size), add "
            "temperatures, or place the base where the mass is (data=, base_center/base_scale)."
        )
    if not np.any(np.isfinite(log_w)):
        raise FloatingPointError(
            f"{method}: every one of the {n} weights is zero: no chain ended where exp(-E/T) > 0. For an energy "
            "on a bounded support (E = +inf outside it), put the base on the support: base='uniform' with "
            "base_center/base_scale covering it, or data= points inside it."
        )
    top = float(log_w.max())
    log_mean = top + math.log(float(np.mean(np.exp(log_w - top))))
    w = np.exp(log_w - log_w.max())
    w = w / w.sum()  # normalised weights
    ess = float(1.0 / np.sum(w**2))
    # relative standard error of the mean weight, sd(w)/(sqrt(n) mean(w)): the delta-method error of its log
    delta = float(math.sqrt(max(np.sum((n * w - 1.0) ** 2) / max(n - 1, 1), 0.0) / n)) if n > 1 else float("inf")
    finite = log_w[np.isfinite(log_w)]
    log_sd = float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan")
    k_hat = pareto_k(log_w)
    reasons = list(notes)
    stderr, replicate = delta, float("nan")
    groups = NUM_REPLICATES if n >= 4 * NUM_REPLICATES else 0
    if groups:
        size = n // groups
        blocks = log_w[: groups * size].reshape(groups, size)
        with np.errstate(divide="ignore", invalid="ignore"):  # a group of zero weights: L_r = -inf
            estimates = np.log(np.mean(np.exp(blocks - log_w.max()), axis=1)) + log_w.max()  # L_r, one per group
        replicate = float(np.std(estimates, ddof=1) / math.sqrt(groups))
        # under the delta method var(L_r) = groups · var(L) and s² / var(L_r) ~ χ²_{R-1}
        ratio = (replicate / delta) ** 2 * (groups * size / n) if delta > 0 else float("inf")
        if ratio > _f_quantile(groups - 1, REPLICATE_LEVEL):
            stderr = max(delta, replicate)
            reasons.append(f"{groups} independent replicate groups of {size} chains scatter by "
                           f"{replicate:.3g} (standard error), {math.sqrt(ratio):.1f}× the delta-method {delta:.3g}: "
                           "the weights are too heavy-tailed for the delta method")
    if ess < MIN_ESS:
        reasons.append(f"the effective sample size of the weights is {ess:.1f} of {n} (< {MIN_ESS}): a few weights "
                       "carry the estimate and the standard error is itself badly estimated")
    if k_hat > PARETO_K_MAX and n >= PARETO_MIN_WEIGHTS:
        reasons.append(f"the weights' right tail has Pareto k̂ = {k_hat:.2f} (> {PARETO_K_MAX}): their variance is "
                       "infinite in effect, so the estimate may be far off whatever its error bar")
    reliable = not reasons
    reason = "; ".join(reasons)
    fix = "" if reliable else (advice or _ADVICE.get(method, _ADVICE["ais"]))
    est = LogZEstimate(sign * log_mean, stderr, ess, method, n, log_sd, k_hat, delta, replicate, reliable, reason,
                       fix)
    if warn and not reliable:
        _warn_unreliable(est)
    return est


def _warn_unreliable(est: LogZEstimate, stacklevel: int = 4) -> None:
    warnings.warn(f"{est.method}: log Z = {est.log_z:.4g} ± {est.stderr:.2g} is unreliable: {est.reason}. "
                  f"To fix: {est.advice}.", LogZWarning, stacklevel=stacklevel)


class _Base(eqx.Module):
    """The normalised base ``q``: Gaussian, Student-t (``df``) or uniform box, diagonal or full (``tril``) scale."""

    kind: str = eqx.field(static=True)
    center: jax.Array
    scale: jax.Array
    tril: jax.Array | None = None
    df: float = eqx.field(static=True, default=5.0)
    tril_inv: jax.Array | None = None  # inverse of ``tril``: a matrix product is faster than a triangular solve

    def _standardise(self, x):
        r = (x - self.center).reshape(-1)
        if self.tril is None:
            return r / self.scale.reshape(-1), jnp.sum(jnp.log(self.scale) * jnp.ones_like(x))
        return self.tril_inv @ r, jnp.sum(jnp.log(jnp.diagonal(self.tril)))

    def log_prob(self, x):
        d = x.size
        if self.kind == "uniform":
            inside = jnp.all(jnp.abs(x - self.center) <= self.scale)
            return jnp.where(inside, -jnp.sum(jnp.log(2 * self.scale) * jnp.ones_like(x)), -jnp.inf)
        z, log_det = self._standardise(x)
        if self.kind == "gaussian":
            return -0.5 * jnp.sum(z**2) - d * 0.5 * math.log(2 * math.pi) - log_det
        nu = self.df  # multivariate Student-t
        const = (math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - 0.5 * d * math.log(nu * math.pi))
        return const - log_det - 0.5 * (nu + d) * jnp.log1p(jnp.sum(z**2) / nu)

    def sample(self, key, shape):
        if self.kind == "uniform":
            return self.center + self.scale * jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
        k_z, k_g = jax.random.split(key)
        batch = shape[: len(shape) - self.center.ndim]
        z = jax.random.normal(k_z, (*batch, self.center.size), self.center.dtype)
        if self.kind == "student_t":  # a Gaussian over the root of an independent χ²_ν / ν
            if float(self.df).is_integer() and self.df <= 30:  # χ²_ν as a sum of ν squares: cheap to compile
                g = jnp.sum(jax.random.normal(k_g, (*batch, int(self.df)), self.center.dtype) ** 2, -1,
                            keepdims=True) / self.df
            else:
                g = 2.0 * jax.random.gamma(k_g, self.df / 2, (*batch, 1), self.center.dtype) / self.df
            z = z / jnp.sqrt(g)
        step = z * self.scale.reshape(-1) if self.tril is None else z @ self.tril.T
        return self.center + step.reshape(shape)


_FIT_INFLATION = {"gaussian": 1.5, "student_t": 1.0}
"""Scale of a fitted base relative to the points' spread: a Gaussian is widened, a Student-t's tails cover."""


def _fit_base(points: jax.Array, kind: str, df: float, event_shape: tuple[int, ...], ftype) -> _Base:
    """A base fitted to ``points`` ``(n, *event_shape)``: their mean and covariance (full if n >= 5·dim, else diagonal).

    Coordinates with (almost) no spread get a floor of 1 % of the median variance
    (a model rarely collapses where its data happen to be constant). A Gaussian is
    widened by 1.5; a Student-t (``df`` degrees of freedom) is used at the points'
    covariance as its scale matrix (its covariance is then ``df/(df−2)`` times it).
    """
    x = np.asarray(points, np.float64).reshape(points.shape[0], -1)
    n, d = x.shape
    mean = x.mean(0)
    var = x.var(0, ddof=1) if n > 1 else np.ones(d)
    floor = 1e-2 * max(float(np.median(var)), 1e-12) if np.any(var > 0) else 1.0
    var = np.maximum(var, floor)
    inflate = _FIT_INFLATION[kind]
    center = jnp.asarray(mean.reshape(event_shape), ftype)
    scale = jnp.asarray((inflate * np.sqrt(var)).reshape(event_shape), ftype)
    if n >= 5 * d and d > 1:
        cov = np.cov(x, rowvar=False)
        sd = np.sqrt(np.maximum(np.diag(cov), 1e-300))
        corr = cov / np.outer(sd, sd)
        cov = np.outer(np.sqrt(var), np.sqrt(var)) * corr + 1e-6 * floor * np.eye(d)
        tril = np.linalg.cholesky(inflate**2 * cov)
        tril_inv = np.linalg.solve(tril, np.eye(d))
        return _Base(kind, center, scale, jnp.asarray(tril, ftype), float(df), jnp.asarray(tril_inv, ftype))
    return _Base(kind, center, scale, None, float(df))


class _TemperedState(NamedTuple):
    x: jax.Array
    log_q: jax.Array
    grad_q: jax.Array
    log_p: jax.Array
    grad_p: jax.Array


def _tempered(base: _Base, log_p_fn, x) -> _TemperedState:
    lq, gq = jax.value_and_grad(base.log_prob)(x)
    lp, gp = jax.value_and_grad(log_p_fn)(x)
    return _TemperedState(x, lq, jnp.nan_to_num(gq), lp, gp)


def _mala_move(key, s: _TemperedState, beta, step, base, log_p_fn):
    """One MALA step targeting f_β = (1-β) log q + β log p̃, reusing cached components."""
    def f(t):
        return (1 - beta) * t.log_q + beta * t.log_p

    def g(t):
        return (1 - beta) * t.grad_q + beta * t.grad_p

    k_noise, k_acc = jax.random.split(key)
    x_new = s.x + step * g(s) + jnp.sqrt(2 * step) * jax.random.normal(k_noise, s.x.shape)
    t = _tempered(base, log_p_fn, x_new)

    def log_kernel(to, frm):  # log N(to; frm + step ∇f(frm), 2 step)
        return -jnp.sum((to.x - frm.x - step * g(frm)) ** 2) / (4 * step)

    log_alpha = f(t) - f(s) + log_kernel(s, t) - log_kernel(t, s)
    log_alpha = jnp.where(jnp.isfinite(log_alpha), log_alpha, -jnp.inf)
    accept = jnp.log(jax.random.uniform(k_acc)) < log_alpha
    new = jax.tree.map(lambda a, b: jnp.where(accept, a, b), t, s)
    return new, jnp.minimum(1.0, jnp.exp(log_alpha))


def _hmc_move(key, s: _TemperedState, beta, step, base, log_p_fn, num_leapfrog):
    """One HMC transition (identity mass, ``num_leapfrog`` leapfrog steps) targeting f_β."""
    def f(t):
        return (1 - beta) * t.log_q + beta * t.log_p

    def g(t):
        return (1 - beta) * t.grad_q + beta * t.grad_p

    k_mom, k_acc = jax.random.split(key)
    p0 = jax.random.normal(k_mom, s.x.shape)
    p = p0 + 0.5 * step * g(s)

    def leap(carry, i):
        t, p = carry
        t = _tempered(base, log_p_fn, t.x + step * p)
        p = p + jnp.where(i == num_leapfrog - 1, 0.5, 1.0) * step * g(t)
        return (t, p), None

    (t, p), _ = jax.lax.scan(leap, (s, p), jnp.arange(num_leapfrog))
    log_alpha = f(t) - 0.5 * jnp.sum(p**2) - f(s) + 0.5 * jnp.sum(p0**2)
    log_alpha = jnp.where(jnp.isfinite(log_alpha), log_alpha, -jnp.inf)
    accept = jnp.log(jax.random.uniform(k_acc)) < log_alpha
    return jax.tree.map(lambda a, b: jnp.where(accept, a, b), t, s), jnp.minimum(1.0, jnp.exp(log_alpha))


_TARGET_ACCEPTANCE = {"mala": 0.574, "hmc": 0.65}


def _move_fn(transition, beta, step, base, log_p_fn, num_leapfrog):
    if transition == "hmc":
        return lambda k, s: _hmc_move(k, s, beta, step, base, log_p_fn, num_leapfrog)
    return lambda k, s: _mala_move(k, s, beta, step, base, log_p_fn)


def _log_p_fn(energy):
    return lambda x: -energy.energy_fn(energy.params, x) / energy.temperature


def _pilot(energy, key, betas, base, num_chains, num_mcmc_steps, step_size, transition="mala", num_leapfrog=5):
    """Tune one step size per temperature on a pilot population; its weights are thrown away.

    Forward along the path from the base; at each temperature the shared step is
    nudged (Robbins-Monro on its log) towards the kernel's optimal acceptance
    (0.574 for MALA, 0.65 for HMC) from the pilot chains' mean acceptance.
    Returns ``steps`` of shape ``(K+1,)`` (``steps[j]`` is the step for moving
    under ``β_j``; ``steps[0] = steps[1]``, the base and ``β_1`` barely differ)
    and the pilot population at ``β = 1`` ``(pilot_chains, *event_shape)``.
    """
    log_p_fn = _log_p_fn(energy)
    k0, k_run = jax.random.split(key)
    states = jax.vmap(lambda x: _tempered(base, log_p_fn, x))(base.sample(k0, (num_chains, *energy.event_shape)))
    target = _TARGET_ACCEPTANCE[transition]

    def body(carry, xs):
        states, log_step = carry
        beta, key = xs
        move = _move_fn(transition, beta, jnp.exp(log_step), base, log_p_fn, num_leapfrog)

        def one(c, k):
            states, _ = c
            states, acc = jax.vmap(move)(jax.random.split(k, num_chains), states)
            return (states, acc.mean()), None

        (states, acc), _ = jax.lax.scan(one, (states, jnp.zeros((), log_step.dtype)),
                                        jax.random.split(key, num_mcmc_steps))
        log_step = log_step + 0.05 * (acc - target)
        return (states, log_step), log_step

    keys = jax.random.split(k_run, betas.shape[0] - 1)
    (states, _), log_steps = jax.lax.scan(body, (states, jnp.log(step_size)), (betas[1:], keys))
    return jnp.exp(jnp.concatenate([log_steps[:1], log_steps])), states.x


def _ais(energy, key, betas, base, num_chains, num_mcmc_steps, steps, start, reverse, transition="mala",
         num_leapfrog=5):
    """AIS log-weights of ``num_chains`` independent chains under the fixed step schedule ``steps`` ``(K+1,)``.

    Chain ``i`` draws all its randomness from ``fold_in(key, i)``, and no
    quantity is shared between chains: each chain's weight is a function of its
    own key (and start) only, which is what makes ``mean(exp(log_w))`` unbiased
    for ``Z`` (forward) or ``1/Z`` (reverse).
    """
    log_p_fn = _log_p_fn(energy)
    # forward: β increases, weights multiply f_{β_k}/f_{β_{k-1}} before moving under β_k
    # reverse: β decreases from 1, weights multiply f_{β_{k-1}}/f_{β_k} (estimates 1/Z)
    b, s = (betas[::-1], steps[::-1]) if reverse else (betas, steps)
    pairs = jnp.stack([b[:-1], b[1:]], axis=1)
    move_steps = s[1:]  # the move after pair k is under b[k+1], with its own step

    def chain(i, x_start):
        k_init, k_path = jax.random.split(jax.random.fold_in(key, i))
        x0 = base.sample(k_init, energy.event_shape) if x_start is None else x_start
        state = _tempered(base, log_p_fn, x0)

        def body(carry, xs):
            state, log_w = carry
            (b_prev, b_next), step, key = xs
            log_w = log_w + (b_next - b_prev) * (state.log_p - state.log_q)
            move = _move_fn(transition, b_next, step, base, log_p_fn, num_leapfrog)

            def one(st, k):
                st, acc = move(k, st)
                return st, acc

            state, acc = jax.lax.scan(one, state, jax.random.split(key, num_mcmc_steps))
            return (state, log_w), acc.mean()

        keys = jax.random.split(k_path, pairs.shape[0])
        (_, log_w), acc = jax.lax.scan(body, (state, jnp.zeros((), steps.dtype)), (pairs, move_steps, keys))
        return log_w, acc

    index = jnp.arange(num_chains)
    if start is None:
        log_w, acc = jax.vmap(lambda i: chain(i, None))(index)
    else:
        log_w, acc = jax.vmap(chain)(index, start)
    return log_w, acc.mean()


def _importance(energy, key, base, num_samples):
    """Log-weights ``log p̃(x) − log q(x)`` of ``num_samples`` independent draws from the base."""
    x = base.sample(key, (num_samples, *energy.event_shape))
    log_p = jax.vmap(_log_p_fn(energy))(x)
    return log_p - jax.vmap(base.log_prob)(x)


_importance_jit = jax.jit(_importance, static_argnums=(3,))
_pilot_jit = jax.jit(_pilot, static_argnums=(4, 5, 7, 8))
_ais_jit = jax.jit(_ais, static_argnums=(4, 5, 8, 9, 10))


def _flat_points(points: Any, event_shape: tuple[int, ...], name: str, ftype) -> jax.Array:
    """``points`` as ``(n, *event_shape)``; a :class:`~ebmppl.Samples`, ``(chains, draws, *event)`` or ``(n, *event)``."""
    arr = jnp.asarray(points.positions if hasattr(points, "positions") else points, ftype)
    ev = len(event_shape)
    if arr.ndim == 2 + ev and tuple(arr.shape[2:]) == tuple(event_shape):
        arr = arr.reshape(-1, *event_shape)
    if arr.ndim != 1 + ev or tuple(arr.shape[1:]) != tuple(event_shape) or arr.shape[0] < 1:
        raise ValueError(f"{name} must be (n, *event_shape) or (chains, draws, *event_shape) with event_shape "
                         f"{tuple(event_shape)}; got shape {tuple(arr.shape)}.")
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError(f"{name} hold non-finite values (NaN or inf): drop those rows first.")
    return arr


def _reverse_starts(samples: Any, event_shape: tuple[int, ...], num_chains: int, require_converged: bool, ftype
                    ) -> tuple[jax.Array, jax.Array | None, list[str]]:
    """Check the samples for reverse AIS and pick its starts.

    Returns ``(starts, rest, notes)``: at most ``num_chains`` draws, evenly
    spaced through the chains; the draws not used as starts (for fitting the
    base), or ``None``; and reasons to call the estimate unreliable.
    """
    positions = samples.positions if hasattr(samples, "positions") else samples
    arr = np.asarray(positions)
    ev = len(event_shape)
    notes: list[str] = []
    if arr.ndim == 2 + ev and tuple(arr.shape[2:]) == tuple(event_shape):
        from ebmppl.diagnostics import arviz as _arviz  # every ArviZ call lives there

        chains, draws = arr.shape[:2]
        if draws < 4:
            raise ValueError(f"samples: {draws} draws per chain are too few to check convergence; pass at least 4 "
                             "(better hundreds) per chain.")
        flat = np.asarray(arr, np.float64).reshape(chains, draws, -1)
        if chains == 1:  # ArviZ needs two chains: split the one in halves (what split R-hat does anyway)
            flat = flat[:, : 2 * (draws // 2)].reshape(2, draws // 2, -1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # constant coordinates: R-hat is nan there
            rhat = float(np.nanmax(_arviz.rhat(flat), initial=1.0))
            ess = float(np.nanmin(np.minimum(_arviz.ess(flat, "bulk"), _arviz.ess(flat, "tail")),
                                  initial=float(chains * draws)))
        limit = _rhat_limit(flat.shape[0], flat.shape[1], flat.shape[2])
        if rhat > limit or ess < MIN_SAMPLE_ESS:
            seen = (f"the samples are not shown to come from the energy: largest split R-hat {rhat:.3f} "
                    f"(limit {limit:.3f}), smallest bulk/tail ESS {ess:.0f} (limit {MIN_SAMPLE_ESS}) over {chains} "
                    f"chains × {draws} draws; reverse AIS from them is no upper bound and proves nothing")
            if require_converged:
                raise ValueError(f"samples: {seen}. Run the chains longer (num_warmup, num_samples) or with an exact "
                                 "sampler (sampler='nuts' or 'hmc'), or pass require_converged=False to get an "
                                 "estimate flagged unreliable.")
            notes.append(seen)
        arr = arr.reshape(chains * draws, *event_shape)
    elif arr.ndim == 1 + ev and tuple(arr.shape[1:]) == tuple(event_shape):
        warnings.warn(
            f"samples of shape {arr.shape} carry no chain structure, so their convergence could not be checked; "
            "reverse AIS is an upper bound only if they come from the energy. Pass the Samples from ebmppl.sample or "
            "an array (chains, draws, *event_shape); exact independent draws x can be passed as x[None] (one chain).",
            LogZWarning, stacklevel=3)
    else:
        raise ValueError(f"samples must be a Samples, (chains, draws, *event_shape) or (n, *event_shape) with "
                         f"event_shape {tuple(event_shape)}; got shape {arr.shape}.")
    arr = jnp.asarray(arr, ftype)
    if not bool(jnp.all(jnp.isfinite(arr))):
        raise ValueError("samples hold non-finite values (NaN or inf): the chains diverged; rerun them.")
    m = arr.shape[0]
    if m <= num_chains:
        return arr, None, notes
    pick = np.unique(np.round(np.linspace(0, m - 1, num_chains)).astype(int))
    rest = np.setdiff1d(np.arange(m), pick)
    return arr[pick], arr[rest], notes


def log_partition(
    energy: Energy,
    key: jax.Array | None = None,
    *,
    method: str = "ais",
    num_chains: int = 256,
    num_temperatures: int = 1000,
    num_mcmc_steps: int = 1,
    transition: str = "mala",
    num_leapfrog: int = 5,
    step_size: float = 0.05,
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
        ``"ais"`` (forward AIS; with ``samples``: reverse AIS), ``"importance"`` or ``"grid"``.
        For both sides at once see :func:`ais_bracket`.
    num_chains
        AIS chains / importance samples.
    num_temperatures
        Intermediate distributions (``β = (k/K)^4``).
    num_mcmc_steps
        Transitions per temperature.
    transition
        ``"mala"`` or ``"hmc"`` (``num_leapfrog`` leapfrog steps, identity mass).
    num_leapfrog
        Leapfrog steps per HMC transition.
    step_size
        Initial step size of the pilot run, which adapts it along the path
        towards acceptance 0.574 (MALA) or 0.65 (HMC); the estimating run uses
        the pilot's per-temperature steps, fixed.
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
        defaults to ``center, 3·scale`` of :meth:`Energy.typical_region`.
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
    tail_report = None
    if check_normalisable and base != "uniform":  # a density with no finite Z gets an error, never a number
        tail_report = assert_normalisable(energy)
    if method == "grid":
        if limits is None:
            raise ValueError("method='grid' needs limits=(low, high) or (xmin, xmax, ymin, ymax).")
        fine = grid_log_partition(energy, limits, resolution, check_normalisable=check_normalisable)
        coarse = grid_log_partition(energy, limits, max(resolution // 2, 2), check_normalisable=check_normalisable)
        error = abs(fine - coarse) / 3.0
        if error > GRID_TOLERANCE:
            est = LogZEstimate(fine, error, float("nan"), "grid", 0, reliable=False,
                               reason=f"log Z = {fine:.4g} changes by {abs(fine - coarse):.3g} when the resolution "
                                      "is halved: the grid is too coarse for the detail of this energy",
                               advice=f"raise resolution (now {resolution}) or narrow limits to where the mass is")
            warnings.warn(f"grid: {est.reason}. To fix: {est.advice}.", LogZWarning, stacklevel=2)
            return est
        return LogZEstimate(fine, error, float("nan"), "grid", 0)
    if method not in ("ais", "importance"):
        raise ValueError(f"unknown method {method!r}; choose 'ais', 'importance' or 'grid'.")
    if key is None:
        raise ValueError(f"method={method!r} is random: pass a key (jax.random.key(0)).")
    check_key(key)
    if transition not in ("mala", "hmc"):
        raise ValueError(f"transition must be 'mala' or 'hmc', got {transition!r}.")
    if base not in ("auto", "gaussian", "student_t", "uniform"):
        raise ValueError(f"base must be 'auto', 'gaussian', 'student_t' or 'uniform', got {base!r}.")
    for name, value in (("num_chains", num_chains), ("num_temperatures", num_temperatures),
                        ("num_mcmc_steps", num_mcmc_steps)):
        check_int(name, value, 1)
    check_int("pilot_chains", pilot_chains, 2)
    if not 0 < float(step_size) < float("inf"):
        raise ValueError(f"step_size must be > 0, got {step_size!r}.")
    if not 2.0 < float(base_df) < float("inf"):
        raise ValueError(f"base_df must be > 2 (a finite variance), got {base_df!r}.")
    ftype = jnp.result_type(float)  # float32, or float64 with jax_enable_x64
    event_shape = tuple(energy.event_shape)
    betas = ais_schedule(int(num_temperatures))
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
            _, points = _pilot_jit(energy, k_explore, betas, q0, int(pilot_chains), int(num_mcmc_steps),
                                   jnp.asarray(step_size, ftype), transition, int(num_leapfrog))
            if not bool(jnp.all(jnp.isfinite(points))):
                raise FloatingPointError("the exploring pilot run diverged: lower step_size, or give the base "
                                         "(base_center/base_scale) or points where the mass is (data=).")
        q = _fit_base(points, kind, float(base_df), event_shape, ftype)
    tail_notes = [] if tail_report is None or q.kind == "uniform" else _tail_notes(tail_report, q)
    if method == "importance":
        return _summarise(_importance_jit(energy, k_est, q, int(num_chains)), "importance", notes=tail_notes,
                          advice=_TAIL_ADVICE if tail_notes else None)
    # the schedule is fixed before the estimating run: pilot and estimating chains use disjoint keys
    steps, _ = _pilot_jit(energy, k_pilot, betas, q, int(pilot_chains), int(num_mcmc_steps),
                          jnp.asarray(step_size, ftype), transition, int(num_leapfrog))
    if starts is not None:
        log_w, _ = _ais_jit(energy, k_est, betas, q, starts.shape[0], int(num_mcmc_steps), steps, starts, True,
                            transition, int(num_leapfrog))
        return _summarise(log_w, "ais-reverse", sign=-1.0, notes=notes)
    log_w, _ = _ais_jit(energy, k_est, betas, q, int(num_chains), int(num_mcmc_steps), steps, None, False,
                        transition, int(num_leapfrog))
    return _summarise(log_w, "ais", notes=tail_notes, advice=_TAIL_ADVICE if tail_notes else None)


_TAIL_ADVICE = ("a base with heavier tails: base='student_t' with a smaller base_df (> 2), or, for an energy on a "
                "bounded region, base='uniform' with base_center/base_scale covering it")


def _tail_notes(report, q: _Base) -> list[str]:
    """Whether the base's tails cover the energy's: the weights' second moment ``∫ p̃²/q`` must converge.

    Along the direction where the normalisability probe found the most mass far out, the integrand's shell
    bound ``2·max(-E/T) - log q + d·log r`` must fall over the outermost radii as the shell mass itself must
    (the same rule as :func:`~ebmppl.normalisability.assert_normalisable`). If it does not, the weights have
    infinite variance: the tail is under-sampled, the estimate low, and nothing in the weights shows it.
    """
    radii, m = np.asarray(report.radii, np.float64), np.asarray(report.max_log_density, np.float64)
    if m.shape[0] < 3 or not np.isfinite(m[-1]):
        return []
    shape = report.direction.shape
    points = (np.asarray(report.center).reshape(-1)[None] + radii[-3:, None] * np.asarray(report.scale).reshape(-1)[None]
              * np.asarray(report.direction).reshape(-1)[None])
    log_q = np.asarray(jax.vmap(q.log_prob)(jnp.asarray(points.reshape(-1, *shape), q.center.dtype)), np.float64)
    d = int(np.prod(shape))
    j = 2 * m[-3:] - log_q + d * np.log(radii[-3:])
    if not np.all(np.isfinite(j)) or j[-1] < j[0] - 1.0:
        return []
    slope = (m[-1] - m[-3]) / math.log(radii[-1] / radii[-3])
    return [f"the energy's tail is heavier than the base's: far out, exp(-E/T) falls like r^{slope:.2g} (d = {d}), "
            f"so the weights p̃/q have infinite variance; the tail is under-sampled and the estimate is likely too low "
            f"whatever its error bar"]


class LogZBracket(NamedTuple):
    """Forward and reverse AIS on one energy: a stochastic lower and upper side of ``log Z``, and their verdict.

    Attributes
    ----------
    lower
        Forward AIS (:class:`LogZEstimate`, ``method="ais"``): in expectation below ``log Z``.
    upper
        Reverse AIS from the samples (``method="ais-reverse"``): in expectation above ``log Z``.
    consistent
        ``False`` when the upper side lies more than ``BRACKET_Z`` (3) combined
        standard errors below the lower side: then at least one side is wrong.
    reliable
        Both sides reliable and the bracket consistent.
    reason, advice
        Why not, and what to do (``""`` when reliable).

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([1.0, -1.0], [[1.0, 0.0], [0.0, 0.5]])
    >>> draws = t.sample(jax.random.key(1), 512).reshape(4, 128, 2)   # exact draws as 4 "chains"
    >>> b = ais_bracket(t.energy, jax.random.key(0), draws, num_chains=128, num_temperatures=50)
    >>> b.consistent, b.lower.method, b.upper.method
    (True, 'ais', 'ais-reverse')
    >>> b.lower.log_z - 4 * b.lower.stderr < t.log_z < b.upper.log_z + 4 * b.upper.stderr
    True
    """

    lower: LogZEstimate
    upper: LogZEstimate
    consistent: bool
    reliable: bool
    reason: str
    advice: str

    @property
    def gap(self) -> float:
        """``upper.log_z − lower.log_z`` (≥ 0 in expectation)."""
        return self.upper.log_z - self.lower.log_z

    @property
    def log_z(self) -> float:
        """The midpoint of the two sides."""
        return 0.5 * (self.lower.log_z + self.upper.log_z)

    @property
    def stderr(self) -> float:
        """An uncertainty of the midpoint that covers the bracket: ``√((gap/2)² + (se_l² + se_u²)/4)``."""
        return math.sqrt((self.gap / 2) ** 2 + (self.lower.stderr**2 + self.upper.stderr**2) / 4)


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
