"""A log Z estimate and its verdict: what every estimator of :mod:`ebmppl.logz` returns.

:func:`_summarise` turns the chains' log-weights into a :class:`LogZEstimate`:
the effective sample size and spread of the weights, the Pareto ``k̂`` of
their tail, a standard error checked against independent replicate groups,
and the verdict (``reliable``, ``reason``, ``advice``); an unreliable one
raises a :class:`LogZWarning`.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["LogZEstimate", "LogZBracket", "LogZWarning", "pareto_k", "MIN_ESS", "PARETO_K_MAX",
           "PARETO_MIN_WEIGHTS", "NUM_REPLICATES", "REPLICATE_LEVEL", "BRACKET_Z"]

MIN_ESS = 30
"""Below this effective sample size of the weights an estimate is unreliable (and comes with a :class:`LogZWarning`)."""
PARETO_K_MAX = 0.7
"""Above this Pareto shape ``k̂`` of the weights' right tail an estimate is unreliable (PSIS, Vehtari et al.)."""
PARETO_MIN_WEIGHTS = 200
"""``k̂`` judges the verdict from this many weights on (a tail of >= 40; its sd is about ``(1 + k)/√tail``)."""
NUM_REPLICATES = 8
"""The chains are split into this many independent replicate groups to check the delta-method standard error."""
REPLICATE_LEVEL = 0.99
"""Replicate groups scattered beyond this quantile of their law under the delta method overrule it."""
BRACKET_Z = 3.0
"""A bracket whose reverse side lies this many combined standard errors below its forward side is inconsistent."""


class LogZWarning(UserWarning):
    """A log Z estimate whose verdict is unreliable: its error bar cannot be trusted (the warning says why, and the fix).

    Examples
    --------
    >>> import warnings
    >>> from ebmppl.targets import gaussian
    >>> from ebmppl import log_partition
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
        ``"ais"``, ``"ais-reverse"``, ``"importance"``, ``"grid"`` or ``"smc"``. For SMC
        (:mod:`ebmppl.logz.smc`) the "weights" are its replicates' estimates ``Z_r``:
        ``log_weight_sd`` is the spread of their logs, ``replicate_stderr`` that over ``√R``,
        ``delta_stderr`` the delta-method error of their mean, ``ess`` the smallest
        effective sample size of any stage summed over the replicates, ``num_chains``
        all particles, ``pareto_k`` ``nan``.
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
    >>> from ebmppl import log_partition
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
    with np.errstate(over="ignore"):  # a far worse profile point overflows to inf: its weight is 0, as it should be
        weights = 1.0 / np.sum(np.exp(profile[None, :] - profile[:, None]), axis=1)
    theta_hat = np.sum(weights * theta)
    k = float(np.mean(np.log1p(-theta_hat * y)))  # the usual sign: > 0 for a heavy right tail
    return (m * k + 10 * 0.5) / (m + 10)


def _f_quantile(dof: int, level: float) -> float:
    """``q`` with ``P(χ²_dof / dof ≤ q) = level`` (Wilson-Hilferty: within 0.3 % for dof ≥ 3 at level 0.99)."""
    z = statistics.NormalDist().inv_cdf(level)
    return (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


_ADVICE = {
    "ais": "add temperatures (num_temperatures) or transitions per temperature (num_mcmc_steps, sampler='hmc'), "
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
            "+inf: the energy (or its gradient) is NaN somewhere along the path — an energy undefined somewhere (log or "
            "sqrt of a negative) must return +inf there — or it overflowed; for overflow lower the step size "
            "(sampler_params={'step_size': ...}), add temperatures, or place the base where the mass is (data=, "
            "base_center/base_scale)."
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
    >>> import jax
    >>> from ebmppl import ais_bracket
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

