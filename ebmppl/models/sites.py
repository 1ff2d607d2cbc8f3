"""Energy sites whose parameters NumPyro learns: the missing ``-log Z_θ`` supplied by persistent chains.

A model with an energy-based site ``z ~ p_θ(z) = exp(-E_θ(z)/T) / Z_θ`` has
the log joint ``log p(x, z) = -E_θ(z)/T - log Z_θ + log p(x | z)``. NumPyro
only sees what a site's ``log_prob`` returns, and an energy gives ``-E_θ/T``
alone: maximise that over θ (SVI, MAP) and the energy runs off to ``-∞``.
``log Z_θ`` itself is intractable, but its gradient is an expectation under
the model::

    ∇_θ (-log Z_θ) = E_{z ~ p_θ}[∇_θ E_θ(z) / T]

:func:`ebm_sample` adds exactly that gradient: next to the sample site it
keeps persistent negative chains (any ebmppl sampler, any chain-initialisation
strategy of :func:`ebmppl.objectives.negative_chains`) in ``numpyro.mutable``
state, advances them a few steps under the current θ (held constant) at every
evaluation of the model, and adds the factor ``mean_k E_θ(z⁻_k)/T`` (its value
subtracted, so the factor is 0 and only its gradient counts) once per draw of
the site. NumPyro's own ``SVI`` (any guide, any ELBO with one particle), its
optimizers and its plates then learn θ together with every other
``numpyro.param`` of the model.

:func:`energy_module` registers an energy's parameters as one
``numpyro.param``, in the spirit of NumPyro's ``eqx_module``.

The factor is added only where NumPyro runs the model with a random key (a
``seed`` handler: SVI, ``Predictive``); where it evaluates a log density
without one (the potential of ``MCMC`` over the latents, with θ fixed) the term
is a constant and is left out. The ELBO that SVI reports therefore leaves out
``N log Z_θ``: compare models by a marginal likelihood with ``log Z`` from
:func:`ebmppl.log_partition`, not by the ELBO's value.
"""

from __future__ import annotations

import contextvars
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from numpyro.handlers import replay, seed
from numpyro.primitives import _PYRO_STACK, mutable

from ebmppl._validation import check_energy
from ebmppl.buffer import gaussian_noise, replay_buffer
from ebmppl.energy import Energy
from ebmppl.numpyro import EnergyDistribution
from ebmppl.objectives.trainer import NegativeChains, negative_chains
from ebmppl.samplers.sample import ChainHealthWarning

__all__ = ["energy_module", "ebm_sample", "prior_chains", "chain_report", "site_energy"]

CHAINS_SUFFIX = "$chains"
_READING = contextvars.ContextVar("ebmppl_models_reading", default=False)  # site_energy reads a model: no chains
LOG_Z_SUFFIX = "$log_Z"


def energy_module(name: str, energy: Energy) -> Energy:
    """Register ``energy``'s parameters as the ``numpyro.param`` site ``name``; the energy at those values.

    The site holds the floating-point arrays of ``energy.params`` (any pytree:
    an Equinox network, a dict, one array; non-array leaves such as activation
    functions stay with the energy), so ``SVI`` learns them with the model's
    other parameters and ``svi.get_params(state)[name]`` returns them.
    Substituting ``{name: θ}`` (``numpyro.handlers.substitute``) evaluates the
    model at θ. The energy's own ``params`` are the starting point.

    Parameters
    ----------
    name
        The parameter site's name.
    energy
        An :class:`~ebmppl.Energy` with parameters.

    Returns
    -------
    Energy
        ``energy`` with the site's current values as its parameters.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from numpyro.handlers import seed, trace
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p["mean"]) ** 2), {"mean": jnp.zeros(2)}, event_shape=(2,))
    >>> tr = trace(seed(lambda: energy_module("prior", e), 0)).get_trace()
    >>> tr["prior"]["type"], tr["prior"]["value"]["mean"].shape
    ('param', (2,))
    """
    check_energy(energy)
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str (the numpyro.param site), got {name!r}.")
    arrays, static = eqx.partition(energy.params, eqx.is_inexact_array)
    if not jax.tree_util.tree_leaves(arrays):
        raise ValueError(f"energy_module({name!r}, ...): the energy has no floating-point parameters to learn "
                         f"(its params are {type(energy.params).__name__}). Build the Energy with its parameters "
                         "as its second argument: Energy(energy_fn, params, event_shape=...).")
    # an Equinox network's array part is itself callable, and numpyro.param calls a callable init value
    # (with a key) instead of storing it: hand such values over through an init function
    arrays = numpyro.param(name, (lambda _: arrays) if callable(arrays) else arrays)
    return energy.with_params(eqx.combine(arrays, static))


def prior_chains(sampler: Any = "mala", dim: int = 1, *, num_mcmc_steps: int = 20, capacity: int = 1000,
                 reinit_prob: float = 0.0, noise_scale: float = 1.0, noise_mean: float = 0.0,
                 sampler_params: dict[str, Any] | None = None,
                 target_acceptance: float | None = 0.6) -> NegativeChains:
    """The default negative chains of :func:`ebm_sample`: persistent chains (a replay buffer of ``capacity``).

    The stored chains of an observed site start at the data, as persistent CD
    does; those of a latent site start from the noise ``N(noise_mean,
    noise_scale²)`` (the guide's first draws are arbitrary guesses, often all
    in one place, and local chains keep the mode shares they start with). Each
    evaluation of the model starts as many chains as the site has draws
    from stored states (a fraction ``reinit_prob`` from fresh Gaussian noise
    ``N(noise_mean, noise_scale²)``), runs ``num_mcmc_steps`` steps of ``sampler``
    under the current θ and stores them back. A sampler given by name
    without a ``step_size`` starts at ``noise_scale² · dim^(-1/3)`` (sized for
    a prior of scale ``noise_scale``); the step adapts downwards towards
    ``target_acceptance`` (``None``: fixed). Any
    :func:`ebmppl.objectives.negative_chains` value works as ``negative=`` too.

    Parameters
    ----------
    sampler
        Any ebmppl sampler or registry name.
    dim
        Coordinates of one draw of the site (the kernel defaults depend on it).
    num_mcmc_steps, capacity, reinit_prob, noise_scale, noise_mean, sampler_params, target_acceptance
        As above; ``sampler_params`` as in :func:`ebmppl.sample`.

    Examples
    --------
    >>> chains = prior_chains("mala", 3, num_mcmc_steps=10, capacity=500)
    >>> chains.num_mcmc_steps, chains.strategy.capacity, chains.target_acceptance
    (10, 500, 0.6)
    """
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
        raise ValueError(f"capacity must be an int >= 1 (stored chains), got {capacity!r}.")
    strategy = replay_buffer(int(capacity), reinit_prob, gaussian_noise(noise_scale, noise_mean))
    if isinstance(sampler, str) and "step_size" not in (sampler_params or {}):
        # a sampler named without a step: one sized for a prior of scale noise_scale (MALA's optimal scaling
        # ε ∝ d^(-1/3)); the adaptation towards target_acceptance only ever shrinks it
        sampler_params = {**(sampler_params or {}), "step_size": float(noise_scale) ** 2 * max(int(dim), 1) ** (-1 / 3)}
    return negative_chains(sampler, dim, sampler_params=sampler_params, num_mcmc_steps=num_mcmc_steps,
                           chain_init=strategy, target_acceptance=target_acceptance, noise_probe=0)


def _check_observed(name: str, energy: Energy, obs: Any) -> None:
    """Observed values of an energy site: the energy's event shape, and finite where they can be looked at."""
    shape, event = tuple(jnp.shape(obs)), tuple(energy.event_shape)
    if shape[len(shape) - len(event):] != event or len(shape) < len(event):
        raise ValueError(f"ebm_sample({name!r}, obs=...): obs has shape {shape}, but the energy's event shape is {event}, "
                         f"so obs must end in {event} (e.g. (num_examples, {', '.join(map(str, event))})). Reshape "
                         "obs, or build the Energy with the event_shape of one example.")
    if not isinstance(obs, jax.core.Tracer):
        finite = np.isfinite(np.asarray(obs))
        if not finite.all():
            rows = np.flatnonzero(~finite.reshape(finite.shape[0], -1).all(1)) if finite.ndim > len(event) else []
            raise ValueError(f"ebm_sample({name!r}, obs=...): obs holds {int((~finite).sum())} non-finite values "
                             f"(NaN or inf{', in rows ' + ', '.join(map(str, rows[:10])) if len(rows) else ''}); θ "
                             "would turn NaN at the first step. Remove or impute those rows first.")


def _seeded() -> bool:
    """Whether NumPyro runs the model under a ``seed`` handler (SVI, Predictive), i.e. a key can be drawn."""
    return any(isinstance(handler, seed) for handler in _PYRO_STACK)


def ebm_sample(name: str, energy: Energy, *, negative: NegativeChains | None = None,
               obs: jax.Array | None = None) -> jax.Array:
    """A sample site ``name ~ p_θ ∝ exp(-E_θ/T)`` whose θ NumPyro can learn (``-log Z_θ``'s gradient supplied).

    Use it like ``numpyro.sample`` (inside plates, observed with ``obs=`` or
    latent): the site's ``log_prob`` is ``-E_θ(z)/T``
    (:class:`~ebmppl.numpyro.EnergyDistribution`). Under a ``seed`` handler
    (SVI) it also advances the persistent negative chains kept in the
    ``numpyro.mutable`` site ``name + "$chains"`` and adds the factor
    ``name + "$log_Z"``: value 0, gradient ``E_{p_θ}[∇_θ E_θ/T]`` per draw
    of the site, which is the gradient of the missing ``-log Z_θ``. Learn θ
    by registering the energy with :func:`energy_module` and running
    NumPyro's ``SVI`` (``Trace_ELBO`` with one particle, or any ELBO that
    keeps mutable state).

    Parameters
    ----------
    name
        The site's name.
    energy
        The energy at the current θ (usually :func:`energy_module`'s result).
    negative
        The negative chains: :func:`prior_chains` (default: MALA, 20 steps,
        1000 persistent chains from ``N(0, I)``) or any
        :func:`ebmppl.objectives.negative_chains` value.
    obs
        Observed values (then θ is fitted to them by maximum likelihood).

    Returns
    -------
    jax.Array
        The site's value: ``(*plates, *event_shape)``.

    Examples
    --------
    The maximum-likelihood mean of observed data, learned by NumPyro's SVI:

    >>> import jax, jax.numpy as jnp, numpyro, optax
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> x = 3.0 + jax.random.normal(jax.random.key(1), (200, 2))
    >>> def model(x):
    ...     prior = energy_module("theta", e)
    ...     with numpyro.plate("data", x.shape[0]):
    ...         ebm_sample("x", prior, obs=x, negative=prior_chains("mala", 2, num_mcmc_steps=5))
    >>> svi = SVI(model, lambda x: None, optax.adam(0.05), Trace_ELBO())
    >>> result = svi.run(jax.random.key(0), 400, x, progress_bar=False)
    >>> bool(jnp.allclose(result.params["theta"], x.mean(0), atol=0.25))
    True
    """
    check_energy(energy)
    event_ndim = len(energy.event_shape)
    if obs is not None:
        _check_observed(name, energy, obs)
    value = numpyro.sample(name, EnergyDistribution(energy), obs=obs)
    if not _seeded() or _READING.get():  # a log density without a key (MCMC's potential): -log Z_θ is constant
        return value
    dim = int(np.prod(energy.event_shape)) if event_ndim else 1
    chains = prior_chains("mala", dim) if negative is None else negative
    if not isinstance(chains, NegativeChains):
        raise TypeError(f"ebm_sample({name!r}, negative=...) must be ebmppl.models.prior_chains(...) or "
                        f"ebmppl.objectives.negative_chains(...), got {type(chains).__name__}.")
    draws = jnp.reshape(jax.lax.stop_gradient(value), (-1, *energy.event_shape))
    k_init, k_start, k_run = jax.random.split(numpyro.prng_key(), 3)
    buffer = chains.init(k_init, energy.event_shape)
    if buffer.samples.shape[0] and obs is not None:  # observed: persistent chains start at the data, as
        # persistent CD does (noise of the wrong scale or place leaves them crawling while θ runs away). A latent
        # site's first draws are the guide's initial guesses, often all in one place: chains started there keep
        # that place's share of any mode they later find, so latent sites start from the noise
        idx = jax.random.randint(k_init, (buffer.samples.shape[0],), 0, draws.shape[0])
        buffer = buffer._replace(samples=draws[idx].astype(buffer.samples.dtype))
    zeros = jnp.zeros(energy.event_shape)
    fresh = {"buffer": buffer, "acceptance_rate": jnp.zeros(()), "finite": jnp.asarray(True),
             "params_finite": jnp.asarray(True), "site_mean": zeros, "site_std": zeros, "chain_mean": zeros,
             "chain_std": zeros}
    state = mutable(name + CHAINS_SUFFIX, fresh)
    if state is fresh and isinstance(draws, jax.core.Tracer) and any(isinstance(h, replay) for h in _PYRO_STACK):
        # an ELBO step (a replayed guide, traced under jit) that was handed no stored chains: NumPyro drops
        # mutable state with num_particles > 1, and chains restarted from noise every step let θ run away
        raise ValueError(
            f"ebm_sample({name!r}): NumPyro handed this SVI step no stored negative chains, so they would restart "
            "from noise at every step and θ would run away. NumPyro keeps mutable state only with one particle: "
            "use Trace_ELBO() (num_particles=1), or TraceMeanField_ELBO(); average over more SVI steps instead of "
            "more particles.")
    theta = jax.lax.stop_gradient(energy.params)
    x_neg, buffer, metrics = chains([k_start, k_run], energy.with_params(None), theta, state["buffer"], draws)
    finite = jnp.all(jnp.isfinite(x_neg))
    # never store a diverged chain: keep the old buffer, and let the NaN reach the loss, where SVI shows it
    state["buffer"] = jax.tree_util.tree_map(lambda new, old: jnp.where(finite, new, old), buffer, state["buffer"])
    state["acceptance_rate"] = metrics["acceptance_rate"]
    state["finite"] = finite
    # where the site's draws and the chains are: at the maximum-likelihood θ the draws' aggregate matches the
    # prior (for the energy's sufficient statistics), so a lasting gap says the chains missed the prior's mass
    state["site_mean"], state["site_std"] = draws.mean(0), draws.std(0)
    state["chain_mean"], state["chain_std"] = x_neg.mean(0), x_neg.std(0)
    state["params_finite"] = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in
                                                  jax.tree_util.tree_leaves(eqx.filter(theta, eqx.is_inexact_array))]))
    energies = -energy.logdensity(x_neg)  # E_θ(z⁻)/T, differentiable in θ; z⁻ is a constant
    surrogate = jnp.mean(energies) - jax.lax.stop_gradient(jnp.mean(energies))
    batch_shape = jnp.shape(value)[:jnp.ndim(value) - event_ndim]
    numpyro.factor(name + LOG_Z_SUFFIX, jnp.broadcast_to(surrogate, batch_shape))
    return value


def chain_report(mutable_state: dict[str, Any], name: str) -> dict[str, float]:
    """The health of site ``name``'s negative chains after SVI: acceptance, step scale, spread; warns when unhealthy.

    Pass ``svi_state.mutable_state`` (or ``svi.run(...).state.mutable_state``).
    The report holds the last step's ``acceptance_rate``, whether its chains
    and θ were finite, the adapted ``step_scale``, the chains' mean spread
    ``chain_std``, and ``chain_site_gap``: how far the chains sit from the
    site's own draws (the largest, over coordinates, of the difference of
    means in units of their pooled spread and of ``|log(spread ratio)| /
    log 3``). Where θ fits the data the site's draws and the prior agree, so
    a gap above 1 says the chains never reached the prior's mass.

    Local chains cannot judge one thing: how the prior's mass is shared
    between well-separated modes. Chains that never cross between modes keep
    the weights they started with, and the learned θ follows them; nothing
    here detects that (check mode weights of a multimodal prior against a
    grid or ``log_partition`` of the parts).

    A ``ChainHealthWarning`` is raised as a warning when the last step's
    chains were not finite (the update was skipped and the loss is NaN) or
    the acceptance rate is below 0.2 (the chains barely move: ``-log Z_θ``'s
    gradient is then stale; lower ``sampler_params={"step_size": ...}`` or
    raise ``num_mcmc_steps``), when θ is not finite, and when
    ``chain_site_gap`` exceeds 1.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, optax
    >>> from numpyro.infer import SVI, Trace_ELBO
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> def model(x):
    ...     with numpyro.plate("data", x.shape[0]):
    ...         ebm_sample("x", energy_module("theta", e), obs=x, negative=prior_chains("mala", 2, num_mcmc_steps=5))
    >>> svi = SVI(model, lambda x: None, optax.adam(0.05), Trace_ELBO())
    >>> result = svi.run(jax.random.key(0), 50, jnp.ones((64, 2)), progress_bar=False)
    >>> report = chain_report(result.state.mutable_state, "x")
    >>> sorted(report), report["finite"]
    (['acceptance_rate', 'chain_site_gap', 'chain_std', 'finite', 'params_finite', 'step_scale'], True)
    """
    key = name + CHAINS_SUFFIX
    if not mutable_state:
        raise KeyError(f"chain_report({name!r}): the mutable state is empty ({mutable_state!r}). Pass "
                       "svi_state.mutable_state of an SVI run whose model calls ebm_sample; NumPyro keeps no mutable "
                       "state with Trace_ELBO(num_particles > 1) (use one particle).")
    if key not in mutable_state:
        known = sorted(k[:-len(CHAINS_SUFFIX)] for k in (mutable_state or {}) if k.endswith(CHAINS_SUFFIX))
        raise KeyError(f"no negative chains for site {name!r} in this mutable state; ebm_sample sites found: {known}. "
                       "Pass svi_state.mutable_state of an SVI run whose model calls ebm_sample(name, ...).")
    state = mutable_state[key]
    buffer = state["buffer"]
    scale = buffer.log_step_scale
    report = {"acceptance_rate": float(state["acceptance_rate"]), "finite": bool(state["finite"]),
              "step_scale": float(jnp.exp(scale)) if scale is not None else 1.0,
              "chain_std": float(jnp.mean(jnp.std(buffer.samples, axis=0))) if buffer.samples.shape[0] else
              float("nan")}
    gap = None
    if "site_mean" in state and buffer.samples.shape[0]:
        spread = np.sqrt((np.asarray(state["site_std"]) ** 2 + np.asarray(state["chain_std"]) ** 2) / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.abs(np.asarray(state["site_mean"]) - np.asarray(state["chain_mean"])) / spread
            ratio = np.asarray(state["chain_std"]) / np.asarray(state["site_std"])
        gap = float(np.nanmax(np.maximum(shift, np.abs(np.log(ratio)) / np.log(3.0))))
        report["chain_site_gap"] = gap
    params_finite = bool(state.get("params_finite", True))
    report["params_finite"] = params_finite
    if not params_finite:
        warnings.warn(f"site {name!r}: the energy's parameters θ are not finite (NaN or inf) — the loss diverged "
                      "before the chains did (NaN in the data, or too high a learning rate); everything learned "
                      "since is lost. Check the data and lower the learning rate.", ChainHealthWarning, stacklevel=2)
    elif not report["finite"]:
        warnings.warn(f"site {name!r}: the negative chains diverged (non-finite) at the last step; their update was "
                      "skipped and the loss is NaN. Lower the sampler's step (sampler_params={'step_size': ...} in "
                      "prior_chains) or the learning rate.", ChainHealthWarning, stacklevel=2)
    elif gap is not None and gap > 1.0:
        warnings.warn(f"site {name!r}: the negative chains sit apart from the site's draws (means "
                      f"{_show(state['chain_mean'])} against {_show(state['site_mean'])}, spreads "
                      f"{_show(state['chain_std'])} against {_show(state['site_std'])}). Where θ fits, the site's "
                      "draws and the prior agree, so the chains have likely not reached the prior's mass and "
                      "-log Z's gradient is wrong: put the latent on unit scale, raise num_mcmc_steps, or give the "
                      "chains a step for this scale (sampler_params={'step_size': ...}, noise_scale=).",
                      ChainHealthWarning, stacklevel=2)
    elif report["acceptance_rate"] < 0.2:
        warnings.warn(f"site {name!r}: the negative chains accept {report['acceptance_rate']:.2f} of their moves; "
                      "-log Z's gradient then comes from chains that barely move. Lower the step "
                      "(sampler_params={'step_size': ...}) or raise num_mcmc_steps in prior_chains.",
                      ChainHealthWarning, stacklevel=2)
    return report


def _show(values: Any) -> str:
    values = np.asarray(values).ravel()
    return "[" + ", ".join(f"{v:.3g}" for v in values[:4]) + (", ...]" if values.size > 4 else "]")


def site_energy(model: Any, params: dict[str, Any], name: str, *args: Any, **kwargs: Any) -> Energy:
    """The :class:`~ebmppl.Energy` of the energy site ``name`` of ``model`` at the parameters ``params``.

    What to hand to :func:`ebmppl.log_partition` (a marginal likelihood needs
    ``log Z_θ``, which training never computes), :func:`ebmppl.sample` (draws
    of the learned prior) or any other ebmppl function after SVI or
    :func:`ebmppl.fit` learned θ. ``params`` are the model's parameter values
    (``svi.get_params(state)``); ``args``/``kwargs`` are the model's.
    Latent sites are set to zeros while the model is traced (only the site's
    distribution is read).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.zeros(2), event_shape=(2,))
    >>> def model(n):
    ...     with numpyro.plate("data", n):
    ...         ebm_sample("z", energy_module("theta", e))
    >>> learned = site_energy(model, {"theta": jnp.ones(2)}, "z", 5)
    >>> learned.params.tolist(), learned.event_shape
    ([1.0, 1.0], (2,))
    """
    from numpyro.handlers import substitute, trace

    def zeros(msg):  # a placeholder for every latent site: only the site's distribution is read
        if msg["type"] == "sample" and not msg["is_observed"]:
            return jnp.zeros(msg["fn"].shape(msg["kwargs"].get("sample_shape", ())))
        return None

    if not isinstance(params, dict):
        raise TypeError(f"site_energy: params must be the dict of the model's parameter values (svi.get_params(state) "
                        f"or result.params), got {type(params).__name__}.")
    # seeded: a subsampling plate draws its indices (any will do: only the site's distribution is read)
    token = _READING.set(True)
    try:
        with trace() as tr, seed(rng_seed=0), substitute(data=params), substitute(substitute_fn=zeros):
            model(*args, **kwargs)
    finally:
        _READING.reset(token)
    missing = [k for k, v in tr.items() if v["type"] == "param" and k not in params]
    if missing:
        raise KeyError(f"site_energy: params has no value for the model's parameter site(s) {missing} (keys given: "
                       f"{sorted(params)}); the energy would be read at its initial parameters. Pass the whole dict "
                       "of parameters (svi.get_params(state), or result.params of svi.run).")
    if name not in tr or tr[name]["type"] != "sample":
        sites = [k for k, v in tr.items() if v["type"] == "sample"]
        raise KeyError(f"site_energy: model has no sample site {name!r}; its sample sites: {sites}.")
    fn = tr[name]["fn"]
    while not isinstance(fn, EnergyDistribution) and hasattr(fn, "base_dist"):  # plates wrap it (expand, mask)
        fn = fn.base_dist
    if not isinstance(fn, EnergyDistribution):
        raise TypeError(f"site_energy: site {name!r} has the distribution {type(tr[name]['fn']).__name__}, not an "
                        "energy (draw it with ebm_sample or EnergyDistribution).")
    return fn.energy
