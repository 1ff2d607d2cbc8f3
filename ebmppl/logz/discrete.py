"""log Z of discrete energies: exact sums, AIS from an independent base, and the RBM AIS of Salakhutdinov & Murray.

:func:`ebmppl.log_partition` sends an energy on a discrete support (``energy.support.is_discrete``) here:

* ``method="exact"`` — the exact sum: :func:`ebmppl.discrete.rbm_log_partition` for an RBM (the smaller
  layer summed out) and :func:`ebmppl.discrete.enumerate_log_partition` otherwise (up to 2**22 states);
  ``stderr = 0``.
* ``method="ais"`` — annealed importance sampling (Neal 2001) along the geometric path
  ``f_β = q^{1-β} · p̃^β`` from an independent base ``q``: Bernoulli per binary coordinate, categorical per
  one-hot variable, fitted to the data's marginals when ``data`` is given (the *base-rate model*, Laplace
  smoothed) and uniform otherwise. The transitions are any exact discrete sampler of
  :mod:`ebmppl.samplers.discrete` on ``f_β`` (default: a systematic Gibbs sweep,
  ``gibbs(sweep=True)``; ``"gibbs_with_gradients"`` and ``"dmala"`` work too).
* an RBM (:func:`ebmppl.discrete.rbm`, temperature 1) gets the AIS of Salakhutdinov & Murray (ICML 2008)
  unless another sampler is asked for: the intermediate distributions are RBMs — weights and hidden
  bias scaled by ``β``, visible bias interpolated from the base's to the model's — whose marginal of ``v``
  is ``f_β`` exactly, and the transitions are their block Gibbs sweeps ``h ~ p_β(h | v)``,
  ``v ~ p_β(v | h)`` (:func:`~ebmppl.samplers.negatives.rbm_block_gibbs`), as cheap as two matrix
  products per chain.

Each chain's randomness comes from its own key and nothing is tuned on the estimating chains, so the
mean weight is unbiased for ``Z`` and its log a stochastic lower bound; the estimate comes with the
diagnosis every :class:`~ebmppl.logz.LogZEstimate` carries (ESS, Pareto ``k̂``, delta-method and
replicate standard errors, verdict).
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.energy import Energy
from ebmppl.logz.estimate import LogZEstimate, _summarise
from ebmppl.samplers.negatives import rbm_block_gibbs, rbm_of

__all__ = ["IndependentBase", "independent_base", "discrete_ais", "rbm_ais", "exact_log_partition",
           "sm_schedule", "linear_schedule"]

SMOOTHING = 1.0
"""Pseudo-count of the base-rate model per value (Laplace): no coordinate's base probability is 0 or 1."""


# ---------------------------------------------------------------- schedules
def linear_schedule(num_temperatures: int) -> jax.Array:
    """``β_k = k/K``, k = 0..K.

    Examples
    --------
    >>> linear_schedule(4).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if int(num_temperatures) < 1:
        raise ValueError(f"num_temperatures must be >= 1, got {num_temperatures}.")
    return jnp.linspace(0.0, 1.0, int(num_temperatures) + 1)


def sm_schedule(num_temperatures: int) -> jax.Array:
    """Salakhutdinov & Murray's (2008) schedule at ``K`` temperatures: uniform steps on ``[0, 0.5]``,
    ``[0.5, 0.9]`` and ``[0.9, 1]`` in the proportions 500 : 4000 : 10000 of their 14,500 (steps 1e-3,
    1e-4, 1e-5 at ``K = 14500``): dense where an RBM's intermediate distributions change fastest.

    Examples
    --------
    >>> b = sm_schedule(145)
    >>> b.shape, float(b[0]), float(b[-1]), round(float(b[5]), 3), round(float(b[45]), 3)
    ((146,), 0.0, 1.0, 0.5, 0.9)
    """
    k = int(num_temperatures)
    if k < 3:
        return linear_schedule(k)
    n1 = max(1, round(k * 500 / 14500))
    n2 = max(1, round(k * 4000 / 14500))
    n3 = max(1, k - n1 - n2)
    return jnp.concatenate([jnp.linspace(0.0, 0.5, n1 + 1)[:-1], jnp.linspace(0.5, 0.9, n2 + 1)[:-1],
                            jnp.linspace(0.9, 1.0, n3 + 1)])


# ---------------------------------------------------------------- the base
class IndependentBase(eqx.Module):
    """A normalised product distribution on a discrete support: the base ``q`` of discrete AIS.

    Binary supports: ``logits`` are the log-odds of ``high`` per coordinate; categorical ones: ``logits``
    are log-probabilities along the last axis (normalised). Built by :func:`independent_base`.

    Examples
    --------
    >>> from ebmppl.support import SPINS
    >>> q = independent_base(SPINS, (3,))
    >>> round(float(q.log_prob(jnp.array([1.0, -1.0, 1.0]))), 4), round(-3 * math.log(2), 4)
    (-2.0794, -2.0794)
    """

    support: Any = eqx.field(static=True)
    logits: jax.Array

    @property
    def categorical(self) -> bool:
        return getattr(self.support, "num_categories", None) is not None

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``log q(x)`` of one state.

        Examples
        --------
        >>> from ebmppl.support import BINARY
        >>> q = independent_base(BINARY, (2,), data=jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]]))
        >>> total = sum(math.exp(float(q.log_prob(x))) for x in BINARY.enumerate((2,)))
        >>> round(total, 6)   # normalised over the four states
        1.0
        """
        if self.categorical:
            return jnp.sum(x * self.logits)
        u = (x - self.support.low) / (self.support.high - self.support.low)
        return jnp.sum(u * jax.nn.log_sigmoid(self.logits) + (1 - u) * jax.nn.log_sigmoid(-self.logits))

    def sample(self, key: jax.Array, batch_shape: tuple[int, ...] = ()) -> jax.Array:
        """Independent draws ``(*batch_shape, *event_shape)``.

        Examples
        --------
        >>> from ebmppl.support import SPINS
        >>> draws = independent_base(SPINS, (3,)).sample(jax.random.key(0), (5,))
        >>> draws.shape, sorted(set(draws.ravel().tolist())) in ([-1.0, 1.0], [-1.0], [1.0])
        ((5, 3), True)
        """
        shape = (*batch_shape, *self.logits.shape)
        if self.categorical:
            labels = jax.random.categorical(key, jnp.broadcast_to(self.logits, shape), axis=-1)
            return jax.nn.one_hot(labels, self.logits.shape[-1], dtype=self.logits.dtype)
        on = jax.random.bernoulli(key, jax.nn.sigmoid(self.logits), shape)
        return jnp.where(on, self.support.high, self.support.low).astype(self.logits.dtype)


def independent_base(support: Any, event_shape: tuple[int, ...], data: Any = None,
                     smoothing: float = SMOOTHING) -> IndependentBase:
    """The base of discrete AIS: uniform on ``support``, or fitted to the marginals of ``data`` (base-rate model).

    A coordinate's (variable's) probability of each value is ``(count + smoothing) / (n + smoothing · V)``
    with ``V`` values (2, or ``K``): Laplace smoothing keeps every state possible.

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> q = independent_base(BINARY, (2,), jnp.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    >>> [round(float(p), 2) for p in jax.nn.sigmoid(q.logits)]    # (3+1)/(3+2), (1+1)/(3+2)
    [0.8, 0.4]
    """
    ftype = jnp.result_type(float)
    categorical = getattr(support, "num_categories", None) is not None
    if data is None:
        logits = (jnp.full(event_shape, -math.log(event_shape[-1]), ftype) if categorical
                  else jnp.zeros(event_shape, ftype))
        return IndependentBase(support, logits)
    x = np.asarray(data, np.float64).reshape(-1, *event_shape)
    n = x.shape[0]
    if categorical:
        k = event_shape[-1]
        p = (x.sum(0) + smoothing) / (n + smoothing * k)
        return IndependentBase(support, jnp.asarray(np.log(p), ftype))
    u = (x - support.low) / (support.high - support.low)
    p = (u.sum(0) + smoothing) / (n + 2 * smoothing)
    return IndependentBase(support, jnp.asarray(np.log(p) - np.log1p(-p), ftype))


# ---------------------------------------------------------------- generic discrete AIS
@eqx.filter_jit
def _anneal(energy: Energy, key: jax.Array, betas: jax.Array, base: IndependentBase, sampler: Any,
            params: dict[str, Any], num_chains: int, num_mcmc_steps: int) -> jax.Array:
    """Forward AIS log-weights (``log q`` normalised, so they estimate ``log Z``) of independent chains."""
    ld = energy.logdensity_fn

    def chain(key):
        k0, k_path = jax.random.split(key)
        x0 = base.sample(k0)

        def body(carry, xs):
            x, log_w = carry
            b_prev, b_next, k = xs
            log_w = log_w + (b_next - b_prev) * (ld(x) - base.log_prob(x))

            def f(y):
                return (1 - b_next) * base.log_prob(y) + b_next * ld(y)

            def move(state, kk):
                return sampler.step(kk, state, f, params)[0], None

            state = sampler.init(None, x, f)
            state, _ = jax.lax.scan(move, state, jax.random.split(k, num_mcmc_steps))
            return (sampler.position(state), log_w), None

        keys = jax.random.split(k_path, betas.shape[0] - 1)
        (_, log_w), _ = jax.lax.scan(body, (x0, jnp.zeros((), x0.dtype)), (betas[:-1], betas[1:], keys))
        return log_w

    return jax.vmap(chain)(jax.random.split(key, num_chains))


def _transition(sampler: Any, energy: Energy) -> tuple[Any, dict[str, Any]]:
    """The AIS transitions: an exact discrete sampler bound to the energy's support, with its parameters."""
    from ebmppl.samplers.discrete import bind_support, gibbs
    from ebmppl.samplers.negatives import kernel_parameters
    from ebmppl.samplers.registry import as_sampler

    sampler = gibbs(sweep=True) if sampler is None else as_sampler(sampler)
    sampler = bind_support(sampler, energy)
    if not sampler.exact:
        raise ValueError(f"sampler {sampler.name!r} is not exact: AIS weights would be biased; use 'gibbs', "
                         "'gibbs_with_gradients', 'discrete_metropolis' or 'dmala'.")
    return sampler, kernel_parameters(sampler, energy.dim, None)


def discrete_ais(energy: Energy, key: jax.Array, *, num_chains: int = 256, num_temperatures: int = 1000,
                 num_mcmc_steps: int = 1, sampler: Any = None, sampler_params: dict[str, Any] | None = None,
                 data: Any = None, schedule: str = "linear") -> LogZEstimate:
    """AIS for ``log Z`` of a discrete energy from an independent base, with its standard error and verdict.

    Parameters
    ----------
    energy
        An :class:`~ebmppl.Energy` on a discrete support.
    key
        PRNG key.
    num_chains, num_temperatures, num_mcmc_steps
        Independent chains, intermediate distributions, transitions per temperature.
    sampler, sampler_params
        The transitions: an exact sampler of :mod:`ebmppl.samplers.discrete` (name or value; default a
        systematic Gibbs sweep) and overrides of its kernel parameters.
    data
        Examples ``(n, *event_shape)`` whose marginals the base is fitted to (default: a uniform base).
    schedule
        ``"linear"`` (``β_k = k/K``) or ``"sm"`` (:func:`sm_schedule`).

    Examples
    --------
    Ten independent spins with field ``h``: ``log Z = 10 log(2 cosh h)``.

    >>> from ebmppl.support import SPINS
    >>> e = Energy(lambda h, x: -h * jnp.sum(x), jnp.float32(0.7), event_shape=(10,), support=SPINS)
    >>> est = discrete_ais(e, jax.random.key(0), num_chains=64, num_temperatures=20)
    >>> abs(est.log_z - 10 * math.log(2 * math.cosh(0.7))) < 4 * est.stderr + 1e-3, est.method
    (True, 'ais')
    """
    kernel, params = _transition(sampler, energy)
    if sampler_params:
        from ebmppl.samplers.negatives import kernel_parameters

        params = kernel_parameters(kernel, energy.dim, dict(sampler_params))
    base = independent_base(energy.support, tuple(energy.event_shape), data)
    betas = _schedule(schedule, num_temperatures)
    energy = energy.with_params(jax.tree.map(_strong, energy.params))  # equal shapes, one compiled program
    log_w = _anneal(energy, key, betas, base, kernel, params, int(num_chains), int(num_mcmc_steps))
    return _summarise(np.asarray(log_w, np.float64), "ais", advice=_ADVICE)


def _strong(leaf: Any) -> Any:
    """A weakly typed array (``jnp.full(n, 0.0)``) as a strongly typed one of its dtype: jit caches on weak types."""
    if isinstance(leaf, jax.Array) and getattr(leaf, "weak_type", False):
        return jnp.array(leaf, dtype=leaf.dtype)
    return leaf


_ADVICE = ("add temperatures (num_temperatures) or transitions per temperature (num_mcmc_steps), or fit the "
           "base to the data's marginals (data=)")


def _schedule(schedule: Any, num_temperatures: int) -> jax.Array:
    if isinstance(schedule, str):
        if schedule == "linear":
            return linear_schedule(num_temperatures)
        if schedule == "sm":
            return sm_schedule(num_temperatures)
        raise ValueError(f"schedule must be 'linear', 'sm' or an array of inverse temperatures, got {schedule!r}.")
    betas = jnp.asarray(schedule, jnp.result_type(float))
    if betas.ndim != 1 or betas.shape[0] < 2 or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0 or \
            not bool(jnp.all(jnp.diff(betas) >= 0)):
        raise ValueError("schedule must rise from 0 to 1 (a 1-D array of at least two inverse temperatures).")
    return betas


# ---------------------------------------------------------------- RBM AIS (Salakhutdinov & Murray 2008)
@eqx.filter_jit
def _rbm_anneal(rbm: Any, key: jax.Array, betas: jax.Array, base_logits: jax.Array, num_chains: int,
                num_mcmc_steps: int) -> jax.Array:
    """Log-weights of the RBM AIS: ``log Z_0 + Σ_k log p*_k(v_{k-1}) - log p*_{k-1}(v_{k-1})``."""
    a = base_logits

    def log_p(v, beta):  # log p*_β(v) (unnormalised): (1-β) aᵀv + β bᵀv + Σ_j softplus(β (c + Wᵀv)_j)
        return (1 - beta) * (v @ a) + beta * (v @ rbm.b) + jnp.sum(jax.nn.softplus(beta * rbm.hidden_logits(v)), -1)

    k0, k_path = jax.random.split(key)
    v = jax.random.bernoulli(k0, jax.nn.sigmoid(a), (num_chains, a.shape[0])).astype(a.dtype)
    log_z0 = jnp.sum(jax.nn.softplus(a)) + rbm.num_hidden * math.log(2.0)

    def body(carry, xs):
        v, log_w = carry
        b_prev, b_next, k = xs
        log_w = log_w + log_p(v, b_next) - log_p(v, b_prev)
        v = rbm_block_gibbs(rbm, k, v, num_mcmc_steps, beta=b_next, base_logits=a)
        return (v, log_w), None

    keys = jax.random.split(k_path, betas.shape[0] - 1)
    (_, log_w), _ = jax.lax.scan(body, (v, jnp.full((num_chains,), log_z0, a.dtype)), (betas[:-1], betas[1:], keys))
    return log_w


def rbm_ais(model: Any, key: jax.Array, *, num_chains: int = 256, num_temperatures: int = 14500,
            num_mcmc_steps: int = 1, data: Any = None, schedule: Any = "sm") -> LogZEstimate:
    """``log Z`` of an RBM by the AIS of Salakhutdinov & Murray (ICML 2008), with its standard error and verdict.

    The path runs from the base RBM with no weights and visible bias ``a`` (the base-rate model of the
    data's pixel marginals, :func:`independent_base`; zero without data) to the model through the RBMs
    with weights ``β·W``, hidden bias ``β·c`` and visible bias ``(1−β)·a + β·b``; the transitions are
    their block Gibbs sweeps. ``log Z_0 = Σᵢ log(1 + e^{aᵢ}) + H log 2``.

    Parameters
    ----------
    model
        An :class:`ebmppl.discrete.RBM` or the :class:`~ebmppl.Energy` :func:`ebmppl.discrete.rbm` builds
        (temperature 1).
    key
        PRNG key.
    num_chains, num_temperatures, num_mcmc_steps
        Independent chains (runs), intermediate distributions (default 14,500 as in the paper),
        block Gibbs sweeps per temperature.
    data
        Visible examples ``(n, num_visible)`` (or ``(n, *event_shape)``) for the base-rate model.
    schedule
        ``"sm"`` (:func:`sm_schedule`, default), ``"linear"``, or an array of inverse temperatures.

    Examples
    --------
    >>> from ebmppl.discrete import rbm, rbm_log_partition
    >>> e = rbm(10, 4, key=jax.random.key(0), scale=1.0)
    >>> est = rbm_ais(e, jax.random.key(1), num_chains=128, num_temperatures=500)
    >>> abs(est.log_z - float(rbm_log_partition(e))) < 4 * est.stderr + 0.02, est.method
    (True, 'ais-rbm')
    """
    rbm = rbm_of(model) if isinstance(model, Energy) else model
    if rbm is None or not hasattr(rbm, "hidden_logits"):
        raise TypeError("rbm_ais takes an ebmppl.discrete.RBM or the Energy that ebmppl.discrete.rbm() returns; "
                        "for other discrete energies use log_partition(energy, key) (AIS from an independent base).")
    if isinstance(model, Energy) and float(model.temperature) != 1.0:
        raise ValueError(f"rbm_ais anneals the RBM at temperature 1; this energy has temperature {model.temperature}: "
                         "use log_partition(energy, key, sampler='gibbs') for p ∝ exp(-F/T).")
    from ebmppl.support import BINARY

    nv = rbm.num_visible
    base = independent_base(BINARY, (nv,), None if data is None else np.asarray(data).reshape(-1, nv))
    betas = _schedule(schedule, num_temperatures)
    rbm = jax.tree.map(_strong, rbm)
    log_w = _rbm_anneal(rbm, key, betas, base.logits, int(num_chains), int(num_mcmc_steps))
    return _summarise(np.asarray(log_w, np.float64), "ais-rbm", advice=_ADVICE)


# ---------------------------------------------------------------- exact
def exact_log_partition(energy: Energy) -> LogZEstimate:
    """The exact ``log Z`` of a discrete energy as a :class:`~ebmppl.logz.LogZEstimate` (``stderr = 0``).

    An RBM (:func:`ebmppl.discrete.rbm`, temperature 1) sums its smaller layer out
    (:func:`ebmppl.discrete.rbm_log_partition`); any other energy is enumerated
    (:func:`ebmppl.discrete.enumerate_log_partition`, at most 2**22 states).

    Examples
    --------
    >>> from ebmppl.support import BINARY
    >>> e = Energy(lambda b, x: -jnp.sum(b * x), jnp.array([0.5, -1.0]), event_shape=(2,), support=BINARY)
    >>> est = exact_log_partition(e)
    >>> round(est.log_z, 4), round(math.log1p(math.exp(0.5)) + math.log1p(math.exp(-1.0)), 4), est.stderr
    (1.2873, 1.2873, 0.0)
    """
    from ebmppl.discrete import enumerate_log_partition, rbm_log_partition

    if not getattr(energy.support, "is_discrete", False):
        raise ValueError("method='exact' sums over the states of a discrete energy; this one is continuous: use "
                         "method='grid' (dimension <= 2), 'ais' or 'smc'.")
    is_rbm = rbm_of(energy) is not None and float(energy.temperature) == 1.0
    log_z = float(rbm_log_partition(energy) if is_rbm else enumerate_log_partition(energy))
    return LogZEstimate(log_z, 0.0, float("nan"), "exact", 0)
