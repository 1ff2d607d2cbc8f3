"""Monte-Carlo EM through :func:`ebmppl.fit`: posterior chains over a model's energy site against prior chains.

A NumPyro model with an energy-based site ``z ~ p_θ(z) ∝ exp(-E_θ(z)/T)``
(:func:`~ebmppl.models.ebm_sample`, its parameters registered by
:func:`~ebmppl.models.energy_module`) and observations ``x | z`` has the
marginal log-likelihood gradient (Fisher's identity)::

    ∇_θ log p_θ(x) = E_{z ~ p_θ(z | x)}[-∇_θ E_θ(z)/T] - E_{z ~ p_θ(z)}[-∇_θ E_θ(z)/T]

— contrastive divergence whose positive examples are *posterior* draws of the
latent site instead of data. :func:`mcem` builds that as the one trainer of
:mod:`ebmppl.objectives`:

* the positive phase, :class:`PosteriorChains`, runs chains of any ebmppl
  sampler on ``z_i ↦ log p(x_i, z_i | θ)`` for every example ``x_i`` of the
  batch, θ held constant (the model itself gives the log density, evaluated
  one example at a time, with ``{param: θ}`` substituted); its step size
  follows a target acceptance;
* the negative phase is the persistent prior chains of
  :func:`~ebmppl.models.prior_chains` (any
  :func:`~ebmppl.objectives.negative_chains` value works);
* the loss is :class:`~ebmppl.objectives.ContrastiveDivergence` (no energy
  penalty: maximum likelihood); any Optax optimizer makes the update.

That is a stochastic-approximation EM (Younes 1999; Delyon, Lavielle &
Moulines 1999): with persistent chains and a decreasing learning rate θ
converges to a maximum of the marginal likelihood; with a constant one it
fluctuates around it (average the iterates).

Where posterior chains start
----------------------------
*Persistent* (``num_data=n``): every example keeps its own chain in
``TrainState.positive`` and each step continues the chains of the examples
drawn. Training data are then ``(x, index)`` pairs, ``fit(energy, key, (x,
jnp.arange(n)), objective=mcem(..., num_data=n))``: the library cannot tell
which stored chain belongs to an example from its values. When a batch draws
an example twice (``fit`` draws with replacement), both chains run and the
later one is stored.

*Short-run* (``num_data=None``): each step starts the posterior chains from
states of the persistent prior chains (warm starts in the spirit of Pang et
al. 2020, who start both from noise) and runs ``num_mcmc_steps``: plain array
data suffice and memory does not grow with the data, but finitely many steps
from the prior leave the posterior draws biased towards it; raise
``num_mcmc_steps`` until the fit stops moving.

Scope
-----
The energy site must be the model's only latent sample site, inside a plate
over the examples (``numpyro.plate("data", x.shape[0])``), and the model takes
the batch as its one argument (bind others with ``functools.partial``). Other
``numpyro.param`` sites of the model stay at their initial values (a warning
names them); learn them together with θ by NumPyro's SVI (:func:`~ebmppl.models.ebm_sample`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.distributions.transforms import biject_to
from numpyro.handlers import substitute, trace
from numpyro.infer.util import log_density

from ebmppl import _arviz
from ebmppl.energy import Energy
from ebmppl.models.sites import prior_chains
from ebmppl.numpyro import EnergyDistribution
from ebmppl.objectives.base import TrainState
from ebmppl.objectives.cd import ContrastiveDivergence, check_cd_options
from ebmppl.objectives.trainer import NegativeChains, Objective, PositivePhase, freeze_arrays, thaw_arrays
from ebmppl.samplers.negatives import kernel_parameters
from ebmppl.samplers.registry import as_sampler
from ebmppl.sharding import constrain_leading

__all__ = ["mcem", "PosteriorChains", "PosteriorState", "ModelDataCheck", "posterior_inference_data"]

MAX_LOG_STEP_SCALE = float(np.log(100.0))
"""The adapted posterior step stays within a factor 100 of the step given (either way)."""


class PosteriorState(NamedTuple):
    """The posterior chains' state (``TrainState.positive``).

    Attributes
    ----------
    chains
        ``(num_data, *event_shape)``: the current latent value of every example's chain (persistent), or
        ``(0, *event_shape)`` (short-run chains keep nothing).
    log_step_scale
        Log of the factor on the sampler's step (``0``: the step as given), adapted towards the target acceptance.

    Examples
    --------
    >>> s = PosteriorState(jnp.zeros((10, 3)), jnp.zeros(()))
    >>> s.chains.shape, float(s.log_step_scale)
    ((10, 3), 0.0)
    """

    chains: jax.Array
    log_step_scale: jax.Array


def _theta_arrays(energy: Energy) -> Any:
    """The floating-point arrays of the energy's parameters: the value of its ``numpyro.param`` site."""
    return eqx.partition(energy.params, eqx.is_inexact_array)[0]


def _examples_and_index(batch: Any) -> tuple[jax.Array, jax.Array | None]:
    if isinstance(batch, tuple) and len(batch) == 2:
        return batch[0], batch[1]
    return batch, None


class PosteriorChains(PositivePhase):
    """The positive phase of MCEM: chains on ``p(z_i | x_i, θ)`` for every example of the batch; ``x⁺`` = their ``z``.

    Build it with :func:`mcem` (which validates the options). Each example's
    chain runs ``num_mcmc_steps`` steps of ``sampler`` on ``z ↦ log p(x_i, z |
    θ)``, the model's log joint for that one example (NumPyro's
    ``log_density`` with the energy's parameters substituted into the
    ``numpyro.param`` site ``param``), θ held constant. Its state
    (:class:`PosteriorState`) holds the persistent chains (``num_data``) and
    the log step scale. Metrics: ``positive_acceptance_rate``,
    ``positive_step_size``.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from ebmppl.models import energy_module, ebm_sample
    >>> e = Energy(lambda p, z: 0.5 * jnp.sum((z - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> def model(x):
    ...     with numpyro.plate("data", x.shape[0]):
    ...         z = ebm_sample("z", energy_module("prior", e))
    ...         numpyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)
    >>> objective = mcem(model, e, optax.sgd(0.1), num_mcmc_steps=50)
    >>> state = objective.init(jax.random.key(0), e.params)
    >>> x = jnp.full((256, 2), 4.0)
    >>> z, _, metrics = objective.positive.run(jax.random.split(jax.random.key(1)), e, x, state)
    >>> z.shape, bool(jnp.allclose(z.mean(0), 2.0, atol=0.2))     # p(z | x) = N((x + 0) / 2, 1/2)
    ((256, 2), True)
    >>> sorted(metrics)
    ['positive_acceptance_rate', 'positive_step_size']
    """

    model: Callable = eqx.field(static=True)
    site: str = eqx.field(static=True)
    param: str = eqx.field(static=True)
    sampler: Any = eqx.field(static=True)
    sampler_params: tuple = eqx.field(static=True)
    num_mcmc_steps: int = eqx.field(static=True)
    num_data: int | None = eqx.field(static=True, default=None)
    target_acceptance: float | None = eqx.field(static=True, default=0.6)
    adapt_rate: float = eqx.field(static=True, default=0.05)
    noise_scale: float = eqx.field(static=True, default=1.0)
    num_keys: ClassVar[int] = 2
    #: batches are observations of the model (their shape is the model's business, not the energy's)
    observes_model: ClassVar[bool] = True

    def __call__(self, keys, model, batch):
        raise TypeError("PosteriorChains keeps state: the trainer calls phase.run(keys, model, batch, state).")

    def init(self, key: jax.Array, event_shape: tuple[int, ...]) -> PosteriorState:
        """Persistent chains from ``N(0, noise_scale²)`` (``num_data`` rows; none for short-run chains).

        Examples
        --------
        >>> e = Energy(lambda p, z: 0.5 * jnp.sum((z - p) ** 2), jnp.zeros(3), event_shape=(3,))
        >>> PosteriorChains(None, "z", "prior", as_sampler("mala"), (), 5, num_data=100).init(
        ...     jax.random.key(0), (3,)).chains.shape
        (100, 3)
        """
        rows = self.num_data or 0
        dtype = jnp.result_type(float)
        return PosteriorState(self.noise_scale * jax.random.normal(key, (rows, *event_shape), dtype),
                              jnp.zeros((), dtype))

    def logdensity(self, energy: Energy, x_i: jax.Array, z_i: jax.Array) -> jax.Array:
        """``log p(x_i, z_i | θ)`` (up to ``log Z_θ``) for ONE example, θ the parameters of ``energy``.

        Examples
        --------
        >>> import numpyro, numpyro.distributions as dist
        >>> from ebmppl.models import energy_module, ebm_sample
        >>> def model(x):   # z ~ N(0, 1), x | z ~ N(z, 1)
        ...     with numpyro.plate("data", x.shape[0]):
        ...         numpyro.sample("x", dist.Normal(ebm_sample("z", energy_module("prior", e)), 1.0).to_event(1), obs=x)
        >>> e = Energy(lambda p, z: 0.5 * jnp.sum((z - p) ** 2), jnp.zeros(1), event_shape=(1,))
        >>> phase = mcem(model, e, optax.sgd(0.1)).positive
        >>> round(float(phase.logdensity(e, jnp.ones(1), jnp.zeros(1))), 4)   # -0 - 0.5 - log sqrt(2π)
        -1.4189
        """
        m = substitute(self.model, data={self.param: _theta_arrays(energy)})
        return log_density(m, (x_i[None],), {}, {self.site: z_i[None]})[0]

    def step_size(self, state: PosteriorState) -> jax.Array:
        """The sampler's current step: the one given times ``exp(state.log_step_scale)``.

        Examples
        --------
        >>> from ebmppl.objectives.trainer import freeze_arrays
        >>> phase = PosteriorChains(None, "z", "prior", as_sampler("mala"), freeze_arrays({"step_size": 0.1}), 5)
        >>> round(float(phase.step_size(phase.init(jax.random.key(0), (3,)))), 4)
        0.1
        """
        return thaw_arrays(self.sampler_params)["step_size"] * jnp.exp(state.log_step_scale)

    def chains(self, key: jax.Array, energy: Energy, x: jax.Array, z0: jax.Array, state: PosteriorState,
               num_mcmc_steps: int, record: bool = False) -> tuple[jax.Array, jax.Array]:
        """Run one chain per example from ``z0``: ``(z, acceptance per chain and step)``, or every draw with ``record``.

        Examples
        --------
        >>> import numpyro, numpyro.distributions as dist
        >>> from ebmppl.models import energy_module, ebm_sample
        >>> e = Energy(lambda p, z: 0.5 * jnp.sum((z - p) ** 2), jnp.zeros(1), event_shape=(1,))
        >>> def model(x):
        ...     with numpyro.plate("data", x.shape[0]):
        ...         numpyro.sample("x", dist.Normal(ebm_sample("z", energy_module("prior", e)), 1.0).to_event(1), obs=x)
        >>> phase = mcem(model, e, optax.sgd(0.1)).positive
        >>> z, acc = phase.chains(jax.random.key(0), e, jnp.ones((4, 1)), jnp.zeros((4, 1)),
        ...                       phase.init(jax.random.key(1), (1,)), 10)
        >>> z.shape, acc.shape
        ((4, 1), (4, 10))
        """
        kernel = thaw_arrays(self.sampler_params)
        if "step_size" in kernel:
            kernel = {**kernel, "step_size": self.step_size(state)}
        sampler = self.sampler

        def one(k, z_init, x_i):
            ld = lambda z: self.logdensity(energy, x_i, z)  # noqa: E731
            k_init, k_run = jax.random.split(k)
            s = sampler.init(k_init, z_init, ld)

            def body(s, k_step):
                s, stats = sampler.step(k_step, s, ld, kernel)
                return s, (sampler.position(s) if record else None, stats.acceptance_rate)

            s, (draws, acc) = jax.lax.scan(body, s, jax.random.split(k_run, num_mcmc_steps))
            return (draws if record else sampler.position(s)), acc

        keys = jax.random.split(key, x.shape[0])
        return jax.vmap(one)(keys, constrain_leading(z0), constrain_leading(x))

    def run(self, keys, model, batch, state):
        x, index = _examples_and_index(batch)
        pos = state.positive
        k_start, k_run = keys
        if self.num_data:
            if index is None:
                raise ValueError(f"the posterior chains are persistent (num_data={self.num_data}): batches must "
                                 "carry the examples' indices, fit(energy, key, (x, jnp.arange(len(x))), ...); or "
                                 "build mcem(..., num_data=None) for short-run chains.")
            z0 = pos.chains[index]
        else:  # short-run: warm starts from the persistent prior chains (noise without any)
            prior = getattr(getattr(state, "buffer", None), "samples", None)
            if prior is not None and prior.shape[0]:
                z0 = prior[jax.random.randint(k_start, (x.shape[0],), 0, prior.shape[0])].astype(pos.chains.dtype)
            else:
                z0 = self.noise_scale * jax.random.normal(k_start, (x.shape[0], *pos.chains.shape[1:]),
                                                          pos.chains.dtype)
        z, acc = self.chains(k_run, model, x, z0, pos, self.num_mcmc_steps)
        acceptance = jnp.mean(acc)
        chains = pos.chains
        if self.num_data:
            # an example drawn twice: the last of its chains is stored (a deterministic write, on any device count)
            rows = jnp.arange(index.shape[0])
            last = jnp.full((self.num_data,), -1, rows.dtype).at[index].max(rows)
            target = jnp.where(last[index] == rows, index, self.num_data)  # out of range: dropped
            chains = chains.at[target].set(z.astype(chains.dtype), mode="drop")
        log_scale = pos.log_step_scale
        if self.target_acceptance is not None:
            shift = self.adapt_rate * (jnp.nan_to_num(acceptance, nan=self.target_acceptance) - self.target_acceptance)
            log_scale = jnp.clip(log_scale + shift, -MAX_LOG_STEP_SCALE, MAX_LOG_STEP_SCALE).astype(log_scale.dtype)
        new = PosteriorState(chains, log_scale)
        kernel = thaw_arrays(self.sampler_params)
        step = self.step_size(pos) if "step_size" in kernel else jnp.asarray(jnp.nan)
        return z, new, {"positive_acceptance_rate": acceptance, "positive_step_size": step}


class ModelDataCheck(eqx.Module):
    """``check(data)``: the model, site and parameter names of an MCEM objective checked against the data.

    :func:`ebmppl.fit` calls it before the first step (``Objective.check_data``).
    The model is traced on the first two examples (no random key; latent
    sites take the point of their support at unconstrained zero): an unknown ``site``, a site that is not an energy
    site, an observed one, one outside the plate over the examples, another
    latent site, an unknown ``param`` or one that does not hold the energy's
    parameters is a ``ValueError`` naming the argument and the fix; other
    ``numpyro.param`` sites are named in a warning (they are not trained).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from ebmppl.models import energy_module, ebm_sample
    >>> e = Energy(lambda p, z: 0.5 * jnp.sum((z - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> def model(x):   # one z shared by all examples: not a latent per example
    ...     z = ebm_sample("z", energy_module("prior", e))
    ...     numpyro.sample("x", dist.Normal(z, 1.0).expand(x.shape).to_event(2), obs=x)
    >>> mcem(model, e, optax.sgd(0.1)).check_data(jnp.zeros((10, 2)))
    Traceback (most recent call last):
    ...
    ValueError: site='z' must have one draw per example, inside a plate over the examples ...
    """

    phase: PosteriorChains = eqx.field(static=True)
    energy_fn: Callable = eqx.field(static=True)
    event_shape: tuple[int, ...] = eqx.field(static=True)
    theta_shapes: tuple = eqx.field(static=True)  # (treedef, ((shape, dtype), ...)) of the energy's parameters

    def __call__(self, data: Any) -> None:
        phase, event_shape = self.phase, self.event_shape
        x, index = _examples_and_index(data)
        if phase.num_data:
            if index is None:
                raise ValueError(f"mcem(..., num_data={phase.num_data}) keeps one posterior chain per example: pass "
                                 "the data with the examples' indices, fit(energy, key, (x, jnp.arange(len(x))), "
                                 "...), or build mcem(..., num_data=None) for short-run chains.")
            idx = np.asarray(index)
            if not np.issubdtype(idx.dtype, np.integer) or idx.size and (idx.min() < 0 or idx.max() >= phase.num_data):
                raise ValueError(f"the data's indices must be integers in [0, num_data={phase.num_data}), got "
                                 f"{idx.dtype} in [{idx.min() if idx.size else ''}, {idx.max() if idx.size else ''}]; "
                                 "pass jnp.arange(len(x)) and num_data=len(x).")
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[0] < 1:
            raise ValueError(f"data must have a leading axis of examples, got shape {x.shape}.")
        x = x[: min(2, x.shape[0])]
        n = x.shape[0]

        def fill(site):  # latent sites get the point of their support at unconstrained zero: no key needed
            if site["type"] == "sample" and not site["is_observed"]:
                to_support = biject_to(site["fn"].support)
                return to_support(jnp.zeros(to_support.inverse_shape(site["fn"].shape()), jnp.result_type(float)))
            return None

        tr = trace(substitute(phase.model, substitute_fn=fill)).get_trace(x)  # params at their initial values
        samples = {k: v for k, v in tr.items() if v["type"] == "sample"}
        params = [k for k, v in tr.items() if v["type"] == "param"]
        if phase.site not in samples:
            raise ValueError(f"site={phase.site!r} is not a sample site of the model; its sample sites: "
                             f"{sorted(samples)} (the energy site is the one ebm_sample(name, ...) creates).")
        site = samples[phase.site]
        if not isinstance(site["fn"], EnergyDistribution) and not isinstance(getattr(site["fn"], "base_dist", None),
                                                                             EnergyDistribution):
            raise ValueError(f"site={phase.site!r} is a {type(site['fn']).__name__} site, not an energy site: pass the "
                             "name of the site ebmppl.models.ebm_sample(name, energy) (or numpyro.sample(name, "
                             "ebmppl.numpyro.EnergyDistribution(energy))) creates.")
        if site["is_observed"]:
            raise ValueError(f"site={phase.site!r} is observed (obs=...): MCEM samples a latent energy site; for an "
                             "observed one fit the energy to the data directly, fit(energy, key, data).")
        model_energy = site["fn"].energy if isinstance(site["fn"], EnergyDistribution) else site["fn"].base_dist.energy
        if model_energy.energy_fn != self.energy_fn or tuple(model_energy.event_shape) != event_shape:
            raise ValueError(f"the energy given to mcem is not the energy of site={phase.site!r} (another energy "
                             "function or event shape): pass the energy the model registers with "
                             f"energy_module({phase.param!r}, energy).")
        others = [k for k, v in samples.items() if not v["is_observed"] and k != phase.site]
        if others:
            raise ValueError(f"the model has latent sites {others} besides site={phase.site!r}; mcem's posterior "
                             "chains sample the energy site alone. Make them numpyro.param sites, or learn the "
                             "model with NumPyro's SVI (ebmppl.models.ebm_sample supplies -log Z's gradient there).")
        if tuple(np.shape(site["value"])) != (n, *event_shape) or not any(
                frame.size == n for frame in site["cond_indep_stack"]):
            raise ValueError(f"site={phase.site!r} must have one draw per example, inside a plate over the examples "
                             f"(with numpyro.plate('data', x.shape[0]): ...); its value has shape "
                             f"{tuple(np.shape(site['value']))} for {n} examples.")
        if phase.param not in params:
            raise ValueError(f"param={phase.param!r} is not a numpyro.param site of the model; its param sites: "
                             f"{sorted(params)} (the one energy_module(name, energy) registers).")
        value = tr[phase.param]["value"]
        treedef, leaves = self.theta_shapes
        if (jax.tree.structure(value), [tuple(np.shape(a)) for a in jax.tree.leaves(value)]) != (
                treedef, [shape for shape, _ in leaves]):
            raise ValueError(f"param={phase.param!r} does not hold the energy's parameters (other structure or "
                             f"shapes): pass the name given to energy_module(name, energy) for this energy.")
        untrained = sorted(set(params) - {phase.param})
        if untrained:
            warnings.warn(f"mcem trains the energy's parameters (param={phase.param!r}) only; the model's other "
                          f"numpyro.param sites {untrained} stay at their initial values. Learn them together with "
                          "the energy by NumPyro's SVI (ebmppl.models.ebm_sample), or make them constants.",
                          UserWarning, stacklevel=3)


def mcem(
    model: Callable,
    energy: Energy,
    optimizer: optax.GradientTransformation,
    *,
    site: str = "z",
    param: str = "prior",
    sampler: Any = "mala",
    sampler_params: dict[str, Any] | None = None,
    num_mcmc_steps: int = 20,
    num_data: int | None = None,
    target_acceptance: float | None = 0.6,
    adapt_rate: float = 0.05,
    noise_scale: float = 1.0,
    negative: NegativeChains | None = None,
    alpha: float = 0.0,
) -> Objective:
    """Monte-Carlo EM for an energy inside a NumPyro model: posterior chains (x⁺) against prior chains (x⁻).

    Drive it with :func:`ebmppl.fit`: ``fit(energy, key, data, objective=mcem(model, energy, optimizer, ...))``
    with ``data`` the model's observations (``(x, jnp.arange(n))`` for persistent chains, see ``num_data``).

    Parameters
    ----------
    model
        A NumPyro model ``model(x)`` of a batch of observations, with the energy registered by
        ``energy_module(param, energy)`` and its latent site ``ebm_sample(site, ...)`` inside a plate
        over the examples (see the module notes for the scope).
    energy
        The energy of that site; its ``params`` are where training starts.
    optimizer
        Any Optax transformation.
    site
        The energy site's name.
    param
        The ``numpyro.param`` site holding the energy's parameters.
    sampler, sampler_params
        The posterior chains' sampler (any ebmppl sampler or registry name) and its kernel parameters.
    num_mcmc_steps
        Steps per training step of the posterior chains and (for the default ``negative``) the prior chains.
    num_data
        Number of training examples: keep one persistent posterior chain per example (batches are then
        ``(x, index)``); ``None``: short-run chains from the prior chains' states at every step (biased
        towards the prior for few steps).
    target_acceptance, adapt_rate
        The posterior step adapts (both ways, within a factor 100) towards this acceptance;
        ``None``: fixed step.
    noise_scale
        Scale of the Gaussian noise the persistent posterior chains start from.
    negative
        The prior chains (default :func:`~ebmppl.models.prior_chains` with ``sampler`` and
        ``num_mcmc_steps``: 1000 persistent chains from ``N(0, I)``, never re-initialised, a named sampler's
        step sized for a prior of unit scale and shrunk towards acceptance 0.6). For a prior far wider than
        1, pass ``prior_chains(..., noise_scale=...)``: a step too small shows as prior-chain acceptance near 1.
    alpha
        CD's energy penalty (default 0: maximum likelihood).

    Returns
    -------
    Objective
        The one trainer, named ``"mcem"``, with :class:`PosteriorChains` as its positive phase. Metrics add
        ``positive_acceptance_rate`` and ``positive_step_size`` to CD's.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> from ebmppl import fit
    >>> from ebmppl.models import energy_module, ebm_sample
    >>> e = Energy(lambda p, z: 0.5 * jnp.sum((z - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> def model(x):
    ...     prior = energy_module("prior", e)
    ...     with numpyro.plate("data", x.shape[0]):
    ...         z = ebm_sample("z", prior)
    ...         numpyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)
    >>> x = 2.0 + 1.2 * jax.random.normal(jax.random.key(0), (200, 2))
    >>> objective = mcem(model, e, optax.adam(0.05), num_data=200, num_mcmc_steps=10)
    >>> result = fit(e, jax.random.key(1), (x, jnp.arange(200)), objective=objective, num_steps=200,
    ...              batch_size=100, progress_bar=False)
    >>> bool(jnp.allclose(result.energy.params, x.mean(0), atol=0.3))   # the marginal MLE of the mean
    True
    """
    from ebmppl._validation import check_energy

    check_energy(energy)
    if not callable(model):
        raise TypeError(f"model must be a NumPyro model (a callable model(x)), got {type(model).__name__}.")
    for name, value in (("site", site), ("param", param)):
        if not isinstance(value, str) or not value:
            raise TypeError(f"{name} must be a site name (a non-empty str), got {value!r}.")
    if isinstance(num_mcmc_steps, bool) or not isinstance(num_mcmc_steps, (int, np.integer)) or num_mcmc_steps < 1:
        raise ValueError(f"num_mcmc_steps must be an int >= 1, got {num_mcmc_steps!r}.")
    if num_data is not None and (isinstance(num_data, bool) or not isinstance(num_data, (int, np.integer))
                                 or num_data < 1):
        raise ValueError(f"num_data must be None (short-run chains) or the number of examples (an int >= 1), "
                         f"got {num_data!r}.")
    if target_acceptance is not None and not 0 < float(target_acceptance) < 1:
        raise ValueError(f"target_acceptance must be in (0, 1) (or None: a fixed step), got {target_acceptance!r}.")
    if not float(adapt_rate) > 0:
        raise ValueError(f"adapt_rate must be > 0, got {adapt_rate!r}.")
    if not float(noise_scale) > 0:
        raise ValueError(f"noise_scale must be > 0, got {noise_scale!r}.")
    alpha, _ = check_cd_options(alpha)
    chosen = as_sampler(sampler)
    kernel = kernel_parameters(chosen, energy.dim, sampler_params)
    if target_acceptance is not None and "step_size" not in kernel:
        raise ValueError(f"target_acceptance adapts the sampler's step_size, but sampler {chosen.name!r} has none; "
                         "pass target_acceptance=None.")
    if negative is None:
        # a sampler named by a string gets prior_chains' step sized for a prior of unit scale
        negative = prior_chains(sampler if isinstance(sampler, str) else chosen, energy.dim,
                                num_mcmc_steps=int(num_mcmc_steps))
    elif not isinstance(negative, NegativeChains):
        raise TypeError(f"negative must be ebmppl.models.prior_chains(...) or ebmppl.objectives.negative_chains(...), "
                        f"got {type(negative).__name__}.")
    phase = PosteriorChains(model, site, param, chosen, freeze_arrays(kernel), int(num_mcmc_steps),
                            None if num_data is None else int(num_data),
                            None if target_acceptance is None else float(target_acceptance), float(adapt_rate),
                            float(noise_scale))
    return Objective("mcem", energy, optimizer, ContrastiveDivergence(alpha), positive=phase, negative=negative,
                     check_data=ModelDataCheck(phase, energy.energy_fn, tuple(energy.event_shape), _shapes(energy)))


def _shapes(energy: Energy) -> tuple:
    leaves, treedef = jax.tree.flatten(_theta_arrays(energy))
    return treedef, tuple((tuple(np.shape(a)), np.dtype(jnp.result_type(a)).name) for a in leaves)


def posterior_inference_data(objective: Objective, state: TrainState, key: jax.Array, data: Any, *,
                             num_chains: int = 2, num_samples: int = 200, num_warmup: int = 100) -> Any:
    """Posterior draws of the energy site for every example of ``data``, as ArviZ ``InferenceData``.

    The chains of ``objective``'s :class:`PosteriorChains` run under the
    trained θ of ``state`` (``fit(...).state``), with its adapted step:
    ``num_chains`` chains per example, started from the persistent chains
    where there are (and ``data`` carries indices), else from the prior
    chains' states, ``num_warmup`` steps discarded, then ``num_samples``
    recorded. The posterior group holds the model's site name, ``(chain,
    draw, example, *event_shape)`` with dims ``"example"`` and
    ``"<site>_dim_i"``; ``sample_stats`` holds ``acceptance_rate``.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist; from ebmppl.models import energy_module, ebm_sample
    >>> e = Energy(lambda p, z: 0.5 * jnp.sum((z - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> def model(x):
    ...     with numpyro.plate("data", x.shape[0]):
    ...         numpyro.sample("x", dist.Normal(ebm_sample("latent", energy_module("prior", e)), 1.0).to_event(1), obs=x)
    >>> objective = mcem(model, e, optax.sgd(0.1), site="latent")
    >>> state = objective.init(jax.random.key(0), e.params)
    >>> idata = posterior_inference_data(objective, state, jax.random.key(1), jnp.ones((5, 2)), num_samples=50)
    >>> idata.posterior["latent"].shape, list(idata.posterior["latent"].dims)[2]
    ((2, 50, 5, 2), 'example')
    """
    phase = objective.positive
    if not isinstance(phase, PosteriorChains):
        raise TypeError(f"objective must be an mcem objective (positive phase PosteriorChains), got a "
                        f"{type(phase).__name__} positive phase.")
    for name, value in (("num_chains", num_chains), ("num_samples", num_samples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
    if isinstance(num_warmup, bool) or not isinstance(num_warmup, (int, np.integer)) or num_warmup < 0:
        raise ValueError(f"num_warmup must be an int >= 0, got {num_warmup!r}.")
    x, index = _examples_and_index(data)
    x = jnp.asarray(x)
    n = x.shape[0]
    model = objective.energy.with_params(objective.energy_params(state.params))
    pos = state.positive
    k_start, k_warm, k_run = jax.random.split(key, 3)
    if phase.num_data and index is not None:
        z0 = pos.chains[jnp.asarray(index)]
        z0 = jnp.broadcast_to(z0, (num_chains, *z0.shape))
    else:
        prior = state.buffer.samples
        z0 = prior[jax.random.randint(k_start, (num_chains, n), 0, prior.shape[0])] if prior.shape[0] else \
            phase.noise_scale * jax.random.normal(k_start, (num_chains, n, *pos.chains.shape[1:]))
    flat_x = jnp.broadcast_to(x, (num_chains, *x.shape)).reshape(num_chains * n, *x.shape[1:])
    flat_z = z0.reshape(num_chains * n, *z0.shape[2:])

    @jax.jit
    def draw(flat_z):
        if num_warmup:
            flat_z, _ = phase.chains(k_warm, model, flat_x, flat_z, pos, int(num_warmup))
        return phase.chains(k_run, model, flat_x, flat_z, pos, int(num_samples), record=True)

    draws, acc = draw(flat_z)  # (chains * n, draws, *event), (chains * n, draws)
    draws = np.asarray(draws).reshape(num_chains, n, num_samples, *draws.shape[2:]).swapaxes(1, 2)
    acc = np.asarray(acc).reshape(num_chains, n, num_samples).mean(axis=1)
    dims = {phase.site: ["example", *[f"{phase.site}_dim_{i}" for i in range(draws.ndim - 3)]]}
    return _arviz.from_dict(posterior={phase.site: draws}, sample_stats={"acceptance_rate": acc}, dims=dims)
