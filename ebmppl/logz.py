"""Partition functions: log Z of an energy by annealed importance sampling, importance sampling or a grid.

An energy gives ``p(x) = exp(-E(x)/T) / Z``; nothing can be compared across
models, and no likelihood reported, until ``log Z`` is known. Three estimators:

* ``method="ais"`` — annealed importance sampling (Neal 2001) from a
  normalised base ``q`` (Gaussian or uniform box) along the geometric path
  ``f_β = q^{1-β} · p̃^β`` with MALA (or HMC) transitions, all chains
  vectorised in one ``lax.scan``. The transitions' step sizes are tuned by a
  separate pilot run and then held fixed, so forward AIS is unbiased for
  ``Z`` and its ``log`` is a stochastic *lower* bound; reverse AIS, started
  from samples of ``p``, is unbiased for ``1/Z`` and gives a stochastic
  *upper* bound.
* ``method="importance"`` — plain importance sampling from ``q`` (fine in
  low dimension, hopeless in high).
* ``method="grid"`` — quadrature for dimension ≤ 2 (see
  :func:`ebmppl.evaluation.grid_log_partition`).

Everything is in log space; every estimate comes with its Monte-Carlo
standard error and the effective sample size of its importance weights.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ebmppl._validation import check_energy, check_int, check_key
from ebmppl.energy import Energy
from ebmppl.evaluation import grid_log_partition

__all__ = ["LogZEstimate", "LogZWarning", "log_partition", "ais_schedule"]


MIN_ESS = 30
GRID_TOLERANCE = 0.01
"""Grid discretisation error (nats) above which :func:`log_partition` warns."""
"""Below this effective sample size of the weights, an estimate comes with a :class:`LogZWarning`."""


class LogZWarning(UserWarning):
    """A log Z estimate whose error bar cannot be trusted (too few effective weights, or a coarse grid).

    Examples
    --------
    >>> import warnings
    >>> from ebmppl.targets import gaussian
    >>> narrow = gaussian([0.0], [[1e-4]])              # sd 0.01 on a grid with cells of 0.05
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = log_partition(narrow.energy, method="grid", limits=(-10, 10))
    >>> [w.category.__name__ for w in caught], est.stderr > 0.01
    (['LogZWarning'], True)
    """


class LogZEstimate(NamedTuple):
    """An estimate of ``log Z``.

    Attributes
    ----------
    log_z
        The estimate.
    stderr
        Its Monte-Carlo standard error (delta method on the mean weight). For
        the grid: the discretisation error, estimated from the same grid at
        half the resolution (midpoint rule, error ∝ h²: ``|fine − coarse| / 3``).
    ess
        Effective sample size of the normalised importance weights (``nan`` for the grid).
    method
        ``"ais"``, ``"ais-reverse"``, ``"importance"`` or ``"grid"``.
    num_chains
        Number of weights (chains) behind the estimate.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> est = log_partition(gaussian([0.0], [[1.0]]).energy, method="grid", limits=(-10, 10))
    >>> est.method, round(est.log_z, 4)   # log √(2π)
    ('grid', 0.9189)
    """

    log_z: float
    stderr: float
    ess: float
    method: str
    num_chains: int


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


def _summarise(log_w: jax.Array, method: str, sign: float = 1.0) -> LogZEstimate:
    log_w = jnp.asarray(log_w, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    n = log_w.shape[0]
    if not bool(jnp.all(jnp.isfinite(log_w))):
        raise FloatingPointError(
            f"{method}: non-finite importance weights; lower the MALA step size, add temperatures, "
            "or widen the base distribution (base_scale)."
        )
    log_mean = logsumexp(log_w) - math.log(n)
    w = jnp.exp(log_w - logsumexp(log_w))  # normalised weights
    ess = 1.0 / jnp.sum(w**2)
    # relative standard error of the mean weight: sd(w)/(sqrt(n) mean(w)), in log space
    rel = jnp.sqrt(jnp.maximum(jnp.sum((n * w - 1.0) ** 2) / (n - 1), 0.0) / n)
    if float(ess) < MIN_ESS:
        # with a few weights dominating, the spread of the weights (and so the standard error)
        # is itself badly estimated: the error bar can be tight on a value that is far off
        warnings.warn(
            f"{method}: log Z = {float(sign * log_mean):.4g} ± {float(rel):.2g} rests on an effective sample size "
            f"of {float(ess):.1f} of {n} weights (< {MIN_ESS}): the standard error is unreliable and the estimate may "
            "be far off. Put the base where the mass is (base_center/base_scale; energies from fit() declare it, "
            "see Energy.typical_region), or add temperatures (num_temperatures) and chains.",
            LogZWarning, stacklevel=3)
    return LogZEstimate(float(sign * log_mean), float(rel), float(ess), method, n)


class _Base(eqx.Module):
    kind: str = eqx.field(static=True)
    center: jax.Array
    scale: jax.Array

    def log_prob(self, x):
        d = x.size
        if self.kind == "gaussian":
            z = (x - self.center) / self.scale
            return -0.5 * jnp.sum(z**2) - d * 0.5 * math.log(2 * math.pi) - jnp.sum(jnp.log(self.scale) * jnp.ones_like(x))
        inside = jnp.all(jnp.abs(x - self.center) <= self.scale)
        return jnp.where(inside, -jnp.sum(jnp.log(2 * self.scale) * jnp.ones_like(x)), -jnp.inf)

    def sample(self, key, shape):
        if self.kind == "gaussian":
            return self.center + self.scale * jax.random.normal(key, shape)
        return self.center + self.scale * jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)


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
    Returns ``steps`` of shape ``(K+1,)``: ``steps[j]`` is the step for moving
    under ``β_j`` (``steps[0] = steps[1]``; the base and ``β_1`` barely differ).
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
    _, log_steps = jax.lax.scan(body, (states, jnp.log(step_size)), (betas[1:], keys))
    return jnp.exp(jnp.concatenate([log_steps[:1], log_steps]))


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


_pilot_jit = jax.jit(_pilot, static_argnums=(4, 5, 7, 8))
_ais_jit = jax.jit(_ais, static_argnums=(4, 5, 8, 9, 10))


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
    base: str = "gaussian",
    base_scale: float | Sequence[float] | jax.Array | None = None,
    base_center: float | Sequence[float] | jax.Array | None = None,
    samples: jax.Array | None = None,
    limits: Sequence[float] | None = None,
    resolution: int = 400,
    pilot_chains: int = 64,
) -> LogZEstimate:
    """Estimate ``log Z = log ∫ exp(-E(x)/T) dx``.

    AIS runs twice: a *pilot* population (``pilot_chains`` chains, its own
    key) tunes one step size per temperature and is discarded; the
    *estimating* run then moves ``num_chains`` independent chains under that
    fixed schedule. Because nothing in a chain's transitions depends on the
    estimating chains themselves, the mean importance weight is unbiased for
    ``Z`` (reverse AIS: for ``1/Z``). Its log is then biased low by about
    ``stderr² / 2`` (Jensen; reverse: high): negligible when ``stderr`` is small.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy`.
    key
        PRNG key (not needed for ``method="grid"``).
    method
        ``"ais"`` (forward AIS; with ``samples``: reverse AIS), ``"importance"`` or ``"grid"``.
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
    base, base_scale, base_center
        The normalised base ``q``: ``"gaussian"`` ``N(center, scale²)`` or
        ``"uniform"`` on ``center ± scale`` (per coordinate). Cover the mass of ``p``.
        Default: ``center, 3·scale`` from :meth:`Energy.typical_region`
        (``N(0, 3²)`` unless the energy declares where its mass is; energies
        returned by :func:`ebmppl.fit` do).
    samples
        Samples of ``p`` ``(n, *event_shape)``: run reverse AIS from them (an upper bound).
    limits, resolution
        For ``method="grid"`` (dimension ≤ 2).
    pilot_chains
        Chains of the AIS pilot run that tunes the step-size schedule (forward
        from the base, also for reverse AIS; costs ``pilot_chains / num_chains``
        of the estimating run).

    Returns
    -------
    LogZEstimate
        ``stderr`` is the delta-method standard error of ``log Z`` from the
        spread of the independent chains' weights; ``|log_z - log Z|`` exceeds
        ``4 * stderr`` rarely when ``ess`` is large (say > 30). A small ``ess``
        means a heavy-tailed weight distribution whose spread, and so
        ``stderr``, is itself underestimated: add temperatures.

    Examples
    --------
    >>> from ebmppl.targets import gaussian
    >>> t = gaussian([0.5, -0.5], [[1.0, 0.3], [0.3, 0.5]])
    >>> est = log_partition(t.energy, jax.random.key(0), num_chains=256, num_temperatures=200)
    >>> abs(est.log_z - t.log_z) < 4 * est.stderr + 0.02
    True
    >>> abs(log_partition(t.energy, method="grid", limits=(-8, 8, -8, 8)).log_z - t.log_z) < 1e-4
    True
    """
    check_energy(energy)
    if method == "grid":
        if limits is None:
            raise ValueError("method='grid' needs limits=(low, high) or (xmin, xmax, ymin, ymax).")
        fine = grid_log_partition(energy, limits, resolution)
        coarse = grid_log_partition(energy, limits, max(resolution // 2, 2))
        error = abs(fine - coarse) / 3.0
        if error > GRID_TOLERANCE:
            warnings.warn(f"grid: log Z = {fine:.4g} changes by {abs(fine - coarse):.3g} when the resolution is "
                          f"halved: the grid is too coarse for the detail of this energy. Raise resolution "
                          f"(now {resolution}) or narrow limits to where the mass is.", LogZWarning, stacklevel=2)
        return LogZEstimate(fine, error, float("nan"), "grid", 0)
    if method not in ("ais", "importance"):
        raise ValueError(f"unknown method {method!r}; choose 'ais', 'importance' or 'grid'.")
    if key is None:
        raise ValueError(f"method={method!r} is random: pass a key (jax.random.key(0)).")
    check_key(key)
    if transition not in ("mala", "hmc"):
        raise ValueError(f"transition must be 'mala' or 'hmc', got {transition!r}.")
    if base not in ("gaussian", "uniform"):
        raise ValueError(f"base must be 'gaussian' or 'uniform', got {base!r}.")
    for name, value in (("num_chains", num_chains), ("num_temperatures", num_temperatures),
                        ("num_mcmc_steps", num_mcmc_steps)):
        check_int(name, value, 1)
    check_int("pilot_chains", pilot_chains, 1)
    if not 0 < float(step_size) < float("inf"):
        raise ValueError(f"step_size must be > 0, got {step_size!r}.")
    ftype = jnp.result_type(float)  # float32, or float64 with jax_enable_x64
    region_center, region_scale = energy.typical_region()
    base_center = region_center if base_center is None else base_center
    base_scale = 3.0 * region_scale if base_scale is None else base_scale
    scale = jnp.broadcast_to(jnp.asarray(base_scale, ftype), energy.event_shape)
    if not bool(jnp.all(scale > 0)):
        raise ValueError("base_scale must be > 0.")
    q = _Base(base, jnp.broadcast_to(jnp.asarray(base_center, ftype), energy.event_shape), scale)
    if method == "importance":
        x = q.sample(key, (num_chains, *energy.event_shape))
        log_p = -jax.vmap(lambda xi: energy.energy_fn(energy.params, xi))(x) / energy.temperature
        log_w = log_p - jax.vmap(q.log_prob)(x)
        return _summarise(log_w, "importance")
    betas = ais_schedule(int(num_temperatures))
    if samples is not None:
        samples = jnp.asarray(samples, ftype)
        if samples.ndim != 1 + len(energy.event_shape) or samples.shape[1:] != energy.event_shape:
            raise ValueError(f"samples must be (n, *event_shape); got {samples.shape}.")
    # the schedule is fixed before the estimating run: pilot and estimating chains use disjoint keys
    k_pilot, k_est = jax.random.split(key)
    steps = _pilot_jit(energy, k_pilot, betas, q, int(pilot_chains), int(num_mcmc_steps),
                       jnp.asarray(step_size, ftype), transition, int(num_leapfrog))
    if samples is not None:
        log_w, _ = _ais_jit(energy, k_est, betas, q, samples.shape[0], int(num_mcmc_steps), steps, samples, True,
                            transition, int(num_leapfrog))
        return _summarise(log_w, "ais-reverse", sign=-1.0)
    log_w, _ = _ais_jit(energy, k_est, betas, q, int(num_chains), int(num_mcmc_steps), steps, None, False,
                        transition, int(num_leapfrog))
    return _summarise(log_w, "ais")
