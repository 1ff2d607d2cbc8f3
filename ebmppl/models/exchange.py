"""The exchange algorithm: MCMC over the parameters θ of an energy whose normaliser is unknown.

A model ``θ ~ prior; x ~ EBM_θ`` with the EBM site *observed* has the
posterior ``p(θ | x) ∝ p(θ) f_θ(x) / Z(θ)``: doubly intractable, since
``Z(θ) = ∫ f_θ`` changes with θ and a Metropolis ratio would need
``Z(θ) / Z(θ')``. The exchange algorithm (Murray, Ghahramani & MacKay,
UAI 2006) removes it. For a proposal θ' it draws *auxiliary data*
``y ~ p_θ'`` of the shape of ``x`` and accepts with

.. math::

    \\log α = \\log p(θ') f_{θ'}(x) - \\log p(θ) f_θ(x) + \\log f_θ(y) - \\log f_{θ'}(y),

in which every ``Z`` cancels. With exact draws of ``y`` the chain's
stationary law is the exact posterior.

:class:`Exchange` is a NumPyro ``MCMCKernel``: ``MCMC(Exchange(model), ...)``
with any ``num_chains`` and ``chain_method`` (``"vectorized"`` included). Its
proposal is a random walk on the unconstrained latent sites (the Jacobians are
in NumPyro's potential), its step size and diagonal scale adapt during warm-up
(NumPyro's dual averaging and Welford windows) towards ``target_accept_prob``.
The EBM sites are the observed :class:`~ebmppl.numpyro.EnergyDistribution`
sites of the model (inside plates and masks too):

* an ``EnergyDistribution(energy, states=...)`` over a finite state set, or of
  a discrete energy with at most ``max_enumerate`` states, draws ``y``
  *exactly* by enumeration: the exchange algorithm is then exact;
* on real ``x``, or a discrete energy with more states, there is no exact sampler: ``auxiliary=`` names an ebmppl
  sampler that runs ``num_mcmc_steps`` steps per auxiliary draw, started at
  the observed data. The draws are then only approximately from ``p_θ'`` and
  the chain targets the posterior only approximately (biased towards the prior
  when the auxiliary chains mix too little); :class:`ApproximateExchangeWarning`
  says so once per kernel.

Only the inference layer is imported here (samplers); the diagnostics are
NumPyro's and ArviZ's: ``ebmppl.diagnostics.from_numpyro(mcmc)``,
``mcmc.print_summary()``, and the acceptance rate per draw in
``mcmc.get_extra_fields()["accept_prob"]`` (``acceptance_rate`` in ArviZ's
``sample_stats``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.hmc_util import HMCAdaptState, warmup_adapter
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.mcmc import MCMCKernel
from numpyro.infer.util import initialize_model
from numpyro.util import is_prng_key

from ebmppl.numpyro import EnergyDistribution
from ebmppl.samplers import Sampler, as_sampler, kernel_parameters, sample_negatives
from ebmppl.samplers.discrete import bind_support

__all__ = ["Exchange", "ExchangeState", "ApproximateExchangeWarning"]


class ApproximateExchangeWarning(UserWarning):
    """The exchange algorithm runs with approximate auxiliary draws (an MCMC run per proposal, not exact).

    Raised once per :class:`Exchange` kernel whose model has an observed
    EBM site without an exact sampler (no ``states=``). The chain then targets
    the posterior only approximately; lengthen ``num_mcmc_steps`` until the
    result stops changing.

    Examples
    --------
    >>> issubclass(ApproximateExchangeWarning, UserWarning)
    True
    """


class ExchangeState(NamedTuple):
    """The state of one exchange chain.

    Attributes
    ----------
    i
        Iteration (warm-up included).
    z
        Unconstrained latent sites, a dict (NumPyro's ``sample_field``).
    potential_energy
        NumPyro's potential at ``z`` with the *unnormalised* EBM likelihood
        (``-log prior - log f_θ(x)``, Jacobians included); not the log
        posterior, which lacks ``-log Z(θ)``.
    accept_prob
        Acceptance probability ``min(1, α)`` of the last proposal.
    mean_accept_prob
        Running mean of ``accept_prob`` (restarted after warm-up).
    aux_accept_prob
        Mean acceptance rate of the auxiliary chains (``nan`` for exact draws).
    adapt_state
        NumPyro's ``HMCAdaptState``: ``step_size``, the diagonal ``inverse_mass_matrix``
        (the proposal's squared scale per coordinate), dual-averaging and Welford states.
    rng_key
        The chain's key.

    Examples
    --------
    >>> ExchangeState._fields[:4]
    ('i', 'z', 'potential_energy', 'accept_prob')
    """

    i: jax.Array
    z: dict[str, jax.Array]
    potential_energy: jax.Array
    accept_prob: jax.Array
    mean_accept_prob: jax.Array
    aux_accept_prob: jax.Array
    adapt_state: HMCAdaptState
    rng_key: jax.Array


class _EBMSite(NamedTuple):
    """An observed EBM site: its name, how to draw auxiliary data (exactly or by a sampler) and its sampler params."""

    name: str
    exact: bool
    sampler_params: dict[str, jax.Array] | None
    sampler: Sampler | None = None  # the auxiliary sampler, bound to the site's support


def _base(fn: Any) -> Any:
    """The distribution under NumPyro's wrappers (plates' ExpandedDistribution, Independent, MaskedDistribution)."""
    while not isinstance(fn, EnergyDistribution) and hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def _trace_at(model: Callable, args: tuple, kwargs: dict, unconstrained: dict[str, jax.Array]) -> Any:
    """The model's trace with its latent sites at ``unconstrained`` (mapped to their supports)."""
    def substitute_fn(site):
        if site["type"] == "sample" and site["name"] in unconstrained:
            return biject_to(site["fn"].support)(unconstrained[site["name"]])
        return None

    return trace(substitute(seed(model, 0), substitute_fn=substitute_fn)).get_trace(*args, **kwargs)


def _check_members(name: str, observed: Any, states: Any) -> None:
    """Every observed row must be one of the finite site's states (a 0/1 vs ±1 slip would run, silently wrong)."""
    if isinstance(observed, jax.core.Tracer) or isinstance(states, jax.core.Tracer):
        return  # traced (inside a transformation): nothing to look at
    states = np.ascontiguousarray(np.asarray(states))
    event = states.shape[1:]
    rows = np.ascontiguousarray(np.asarray(observed, states.dtype).reshape(-1, *event))
    as_bytes = lambda a: a.reshape(a.shape[0], -1).view(np.dtype((np.void, a.dtype.itemsize * int(np.prod(event)))))  # noqa: E731
    outside = ~np.isin(as_bytes(rows).ravel(), as_bytes(states).ravel())
    if outside.any():
        first = rows[int(np.flatnonzero(outside)[0])].ravel()[:8]
        raise ValueError(
            f"EBM site '{name}': {int(outside.sum())} of {rows.shape[0]} observed values are not among the "
            f"{states.shape[0]} states of its EnergyDistribution (e.g. {first.tolist()}); the exact auxiliary draws "
            "can never produce them, so the posterior would be of other data. Encode the data as the states are "
            "encoded (e.g. ±1 spins, not 0/1), or pass the states the data come from."
        )


class Exchange(MCMCKernel):
    """The exchange algorithm as a NumPyro kernel: posteriors over the parameters of an observed EBM.

    For a model ``θ ~ prior; x ~ EnergyDistribution(energy.with_params(θ))``
    with ``x`` observed, ``MCMC(Exchange(model), ...)`` samples ``p(θ | x)``
    although ``Z(θ)`` is unknown (see the module docstring for the
    acceptance ratio). Each step proposes ``z' = z + step_size ·
    sqrt(inverse_mass_matrix) · ε`` on the unconstrained latents, draws
    auxiliary data of the observed shape from every EBM site at ``θ'``
    and accepts or rejects.

    Parameters
    ----------
    model
        A NumPyro model with at least one *observed*
        :class:`~ebmppl.numpyro.EnergyDistribution` site and continuous latent
        sites; other observed sites (ordinary likelihoods) are allowed.
    auxiliary
        ``None`` (default): every EBM site must draw exactly
        (``EnergyDistribution(..., states=...)``, or a discrete energy with at
        most ``max_enumerate`` states). Otherwise an ebmppl sampler
        (a name such as ``"mala"``, ``"gibbs_with_gradients"`` for a discrete
        site — it is bound to the site's support — or a
        :class:`~ebmppl.samplers.Sampler` value) that draws the auxiliary data of the sites without an exact
        sampler: ``num_mcmc_steps`` steps per draw, one chain per observed
        example, started at the observed data. Approximate; an
        :class:`ApproximateExchangeWarning` says so. Sites with ``states``
        still draw exactly.
    auxiliary_params
        Kernel parameters of ``auxiliary`` (its ``sampler_params``, e.g.
        ``{"step_size": 0.3}``); the sampler's defaults otherwise. Tune them for
        the energy near the posterior's θ: they are not adapted.
    num_mcmc_steps
        Steps of each auxiliary chain per exchange step.
    step_size
        Initial random-walk scale (unconstrained units).
    adapt_step_size, adapt_mass_matrix
        Adapt the scale by dual averaging, and a diagonal scale per coordinate
        from the warm-up draws (NumPyro's windows), during warm-up.
    target_accept_prob
        Acceptance rate the step-size adaptation aims for. A random walk's
        optimum is 0.44 in one dimension and falls towards 0.23 in many
        (Roberts & Rosenthal, 2001); the auxiliary draws add noise to the
        ratio, which moves the optimum up a little (one β of a 3×3 Ising
        model, 4×2500 draws: bulk ESS 440, 770, 1130, 770 at targets 0.2,
        0.35, 0.5, 0.6). Lower it for many latent sites.
    init_strategy
        NumPyro initialisation strategy of the latent sites.

    Raises
    ------
    ValueError
        At ``init``: the model has no observed EBM site, an EBM site is latent,
        the model has discrete or no latent sites, an EBM site is scaled
        (``numpyro.handlers.scale``, subsampling), or an EBM site has no exact
        sampler and ``auxiliary`` is ``None``. At construction: a bad option.

    Notes
    -----
    ``mcmc.run(key, ..., init_params=...)`` takes *unconstrained* values, as
    NumPyro's HMC does. The diagnostics: ``mcmc.get_extra_fields()["accept_prob"]``
    (collected by default), ``mcmc.print_summary()``, and
    ``ebmppl.diagnostics.from_numpyro(mcmc)`` (ArviZ; the unnormalised EBM
    "likelihood" is left out of ``log_likelihood``: it lacks ``-log Z``).

    Examples
    --------
    Nine ±1 spins on a 3×3 grid, ``E_β(x) = -β Σ_{i~j} x_i x_j``; 20 observed
    configurations, a Normal prior on β:

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC
    >>> from ebmppl import Energy
    >>> from ebmppl.numpyro import EnergyDistribution
    >>> right = [(i, i + 1) for i in range(9) if i % 3 < 2]
    >>> down = [(i, i + 3) for i in range(6)]
    >>> edges = jnp.array(right + down)
    >>> spins = 2.0 * ((jnp.arange(2**9)[:, None] >> jnp.arange(9)) & 1) - 1.0
    >>> ising = Energy(lambda beta, x: -beta * jnp.sum(x[edges[:, 0]] * x[edges[:, 1]]), jnp.array(0.4),
    ...                event_shape=(9,))
    >>> data = EnergyDistribution(ising, states=spins).sample(jax.random.key(0), (20,))
    >>> def model(x):
    ...     beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("x", EnergyDistribution(ising.with_params(beta), states=spins), obs=x)
    >>> mcmc = MCMC(Exchange(model), num_warmup=300, num_samples=500, num_chains=2,
    ...             chain_method="vectorized", progress_bar=False)
    >>> mcmc.run(jax.random.key(1), data)
    >>> mcmc.get_samples()["beta"].shape
    (1000,)
    >>> 0.1 < float(mcmc.get_extra_fields()["accept_prob"].mean()) < 0.7
    True
    """

    sample_field = "z"

    def __init__(
        self,
        model: Callable,
        *,
        auxiliary: str | Sampler | None = None,
        auxiliary_params: dict[str, Any] | None = None,
        num_mcmc_steps: int = 100,
        step_size: float = 0.1,
        adapt_step_size: bool = True,
        adapt_mass_matrix: bool = True,
        target_accept_prob: float = 0.4,
        init_strategy: Callable = init_to_uniform,
    ):
        if not callable(model):
            raise TypeError(f"model must be a NumPyro model (a callable), got {type(model).__name__}.")
        if isinstance(num_mcmc_steps, bool) or not isinstance(num_mcmc_steps, int) or num_mcmc_steps < 1:
            raise ValueError(f"num_mcmc_steps must be an int >= 1 (auxiliary chain steps per exchange step), "
                             f"got {num_mcmc_steps!r}.")
        if not float(step_size) > 0:
            raise ValueError(f"step_size must be > 0, got {step_size!r}.")
        if not 0.0 < float(target_accept_prob) < 1.0:
            raise ValueError(f"target_accept_prob must lie in (0, 1), got {target_accept_prob!r}; "
                             "0.2-0.5 suits a random walk.")
        self._model = model
        self._auxiliary = None if auxiliary is None else as_sampler(auxiliary, "auxiliary")
        if auxiliary is None and auxiliary_params is not None:
            raise ValueError("auxiliary_params is given but auxiliary is None; pass the sampler it belongs to, "
                             "e.g. auxiliary='mala'.")
        self._auxiliary_params = auxiliary_params
        self._num_mcmc_steps = num_mcmc_steps
        self._step_size = float(step_size)
        self._adapt_step_size = bool(adapt_step_size)
        self._adapt_mass_matrix = bool(adapt_mass_matrix)
        self._target_accept_prob = float(target_accept_prob)
        self._init_strategy = init_strategy
        self._sample_fn = None
        self._postprocess_fn = None
        self._sites: tuple[_EBMSite, ...] = ()
        self._warned = False

    # ------------------------------------------------------------- properties
    @property
    def model(self) -> Callable:
        """The NumPyro model (ArviZ's ``from_numpyro`` reads it)."""
        return self._model

    @property
    def default_fields(self) -> tuple[str, ...]:
        """Collected by ``MCMC.run``: the latents ``z`` and the acceptance probability of each step."""
        return ("z", "accept_prob")

    def get_diagnostics_str(self, state: ExchangeState) -> str:
        """The progress-bar text: the mean acceptance probability.

        Examples
        --------
        >>> state = ExchangeState(0, {}, 0.0, 0.5, 0.25, float("nan"), None, None)
        >>> Exchange(lambda: None).get_diagnostics_str(state)
        'acc. prob=0.25'
        """
        return "acc. prob={:.2f}".format(state.mean_accept_prob)

    def postprocess_fn(self, args: tuple, kwargs: dict) -> Callable:
        """Unconstrained ``z`` -> constrained and deterministic sites (NumPyro's, set by :meth:`init`; identity before).

        Examples
        --------
        >>> Exchange(lambda: None).postprocess_fn((), {})({"s": 0.0})   # before init (see init for after)
        {'s': 0.0}
        """
        if self._postprocess_fn is None:
            return lambda z: z
        return self._postprocess_fn(*args, **kwargs)

    # ------------------------------------------------------------------ setup
    def _find_sites(self, key: jax.Array, args: tuple, kwargs: dict) -> tuple[_EBMSite, ...]:
        """The observed EBM sites of the model, checked (clear errors for what the algorithm cannot do)."""
        tr = trace(substitute(seed(self._model, key), substitute_fn=init_to_uniform)).get_trace(*args, **kwargs)
        samples = {k: v for k, v in tr.items() if v["type"] == "sample"}
        ebm = {k: v for k, v in samples.items() if isinstance(_base(v["fn"]), EnergyDistribution)}
        latent_ebm = [k for k, v in ebm.items() if not v["is_observed"]]
        if latent_ebm:
            raise ValueError(
                f"EBM site(s) {latent_ebm} are not observed: the exchange algorithm needs x ~ "
                "EnergyDistribution(...) observed (numpyro.sample(name, EnergyDistribution(...), obs=x)) to infer "
                "the energy's parameters. For a fixed energy as a prior on latent values use NUTS."
            )
        if not ebm:
            raise ValueError(
                "the model has no observed EBM site: Exchange samples the parameters θ of an energy whose data is "
                "observed, numpyro.sample('x', EnergyDistribution(energy.with_params(theta)), obs=x). A model "
                "without one has a normalised likelihood: use NUTS."
            )
        latent = {k: v for k, v in samples.items() if not v["is_observed"]}
        discrete = [k for k, v in latent.items() if v["fn"].support.is_discrete]
        if discrete:
            raise ValueError(f"latent site(s) {discrete} are discrete; Exchange proposes a random walk on continuous "
                             "latent sites only. Marginalise them or make them observed.")
        if not latent:
            raise ValueError("the model has no latent site: there is nothing to sample. Declare θ as a "
                             "numpyro.sample site with a prior.")
        sites, approximate = [], []
        for name, site in ebm.items():
            if site.get("scale") is not None:
                raise ValueError(
                    f"EBM site '{name}' is scaled (numpyro.handlers.scale or a subsampling plate); the exchange "
                    "algorithm needs the full likelihood f_θ(x): remove the scale or the subsample_size."
                )
            base = _base(site["fn"])
            if base.has_exact_sampler:
                _check_members(name, site["value"], base.states)
                sites.append(_EBMSite(name, True, None))
                continue
            support = base.energy.support
            if self._auxiliary is None:
                if support.is_discrete:
                    raise ValueError(
                        f"EBM site '{name}' has {support.num_states(base.energy.event_shape):.3g} states, more than "
                        f"its EnergyDistribution enumerates for exact draws (max_enumerate={base.max_enumerate}), "
                        "and auxiliary is None. Pass a discrete sampler for approximate auxiliary draws, e.g. "
                        "Exchange(model, auxiliary='gibbs_with_gradients', num_mcmc_steps=...), or raise "
                        "max_enumerate if the states fit in memory.")
                raise ValueError(
                    f"EBM site '{name}' has no exact sampler (its EnergyDistribution has no states=), and "
                    "auxiliary is None. Pass auxiliary=<an ebmppl sampler>, e.g. Exchange(model, auxiliary='mala', "
                    "auxiliary_params={'step_size': ...}, num_mcmc_steps=...) for approximate auxiliary draws, or "
                    "give a finite state set with EnergyDistribution(energy, states=...) for exact ones."
                )
            sampler = bind_support(self._auxiliary, base.energy)  # a continuous kernel on spins is an error
            params = kernel_parameters(sampler, base.energy.dim, self._auxiliary_params)
            sites.append(_EBMSite(name, False, params, sampler))
            approximate.append(name)
        if approximate and not self._warned:
            self._warned = True  # once per kernel (NumPyro calls init once per chain outside "vectorized")
            warnings.warn(ApproximateExchangeWarning(
                f"EBM site(s) {approximate} have no exact sampler: the auxiliary data come from "
                f"{self._num_mcmc_steps} steps of {type(self._auxiliary).__name__} started at the observed data, so "
                "the exchange chain targets the posterior only approximately (pulled towards the prior when the "
                "auxiliary chains mix too little). Check that the result is stable under a larger num_mcmc_steps."
            ), stacklevel=4)
        return tuple(sites)

    def init(self, rng_key, num_warmup, init_params=None, model_args=(), model_kwargs=None):
        """The initial :class:`ExchangeState` (one chain, or a batch for ``chain_method="vectorized"``).

        ``MCMC.run`` calls it; ``init_params`` are unconstrained values
        (NumPyro's convention), with a leading chain axis for several chains.
        The model's EBM sites are found and checked here (see the class's Raises).

        Examples
        --------
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from ebmppl import Energy
        >>> bits = jnp.array([[0.0], [1.0]])
        >>> tempered = Energy(lambda t, x: -jnp.sum(x) / t, jnp.array(1.0), event_shape=(1,))   # p(x=1) = σ(1/t)
        >>> def model(x):
        ...     t = numpyro.sample("t", dist.LogNormal())
        ...     numpyro.sample("x", EnergyDistribution(tempered.with_params(t), states=bits), obs=x)
        >>> kernel, x = Exchange(model), jnp.ones((5, 1))
        >>> state = kernel.init(jax.random.key(0), 100, model_args=(x,))
        >>> int(state.i), sorted(state.z), round(float(state.adapt_state.step_size), 3)
        (0, ['t'], 0.1)
        >>> float(kernel.postprocess_fn((x,), {})({"t": jnp.array(0.0)})["t"])   # unconstrained -> constrained: exp(0)
        1.0
        >>> kernel.init(jax.random.split(jax.random.key(0), 3), 100, model_args=(x,)).z["t"].shape  # vectorized
        (3,)
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        vectorized = not is_prng_key(rng_key)
        if vectorized:
            rng_key, key_init = jnp.swapaxes(jax.vmap(jax.random.split)(rng_key), 0, 1)
        else:
            rng_key, key_init = jax.random.split(rng_key)
        self._sites = self._find_sites(key_init[0] if vectorized else key_init, model_args, model_kwargs)
        info = initialize_model(key_init, self._model, init_strategy=self._init_strategy, dynamic_args=True,
                                model_args=model_args, model_kwargs=model_kwargs, validate_grad=False)
        potential_gen = info.potential_fn
        self._postprocess_fn = info.postprocess_fn
        z0 = info.param_info.z if init_params is None else init_params
        if init_params is not None:  # NumPyro's convention: unconstrained values; the potential comes from them
            pe = potential_gen(*model_args, **model_kwargs)
            pe0 = jax.vmap(pe)(z0) if vectorized else pe(z0)
        else:
            pe0 = info.param_info.potential_energy
        one = jax.tree.map(lambda v: v[0], z0) if vectorized else z0
        dim = ravel_pytree(one)[0].shape[0]
        adapt_init, adapt_update = warmup_adapter(
            num_warmup, adapt_step_size=self._adapt_step_size, adapt_mass_matrix=self._adapt_mass_matrix,
            target_accept_prob=self._target_accept_prob,
        )
        ftype = jnp.result_type(float)
        step0 = jnp.asarray(self._step_size, ftype)

        def init_one(z, pe, key):
            key, key_adapt = jax.random.split(key)
            adapt = adapt_init((ravel_pytree(z)[0], None, None), key_adapt, step_size=step0, mass_matrix_size=dim)
            adapt = adapt._replace(step_size=jnp.asarray(adapt.step_size, ftype))
            nan = jnp.asarray(jnp.nan, ftype)
            return ExchangeState(jnp.array(0), z, jnp.asarray(pe, ftype), jnp.zeros((), ftype), jnp.zeros((), ftype),
                                 nan, adapt, key)

        sample_one = self._build_sample(potential_gen, num_warmup, adapt_update)
        if vectorized:
            self._sample_fn = jax.vmap(sample_one, in_axes=(0, None, None))
            return jax.vmap(init_one)(z0, pe0, rng_key)
        self._sample_fn = sample_one
        return init_one(z0, pe0, rng_key)

    # ------------------------------------------------------------------- step
    def _auxiliary_logratio(self, key, z, z_new, args, kwargs):
        """``Σ_sites log f_θ(y) - log f_θ'(y)`` with ``y ~ p_θ'`` per EBM site, and the auxiliary acceptance."""
        old = _trace_at(self._model, args, kwargs, z)
        new = _trace_at(self._model, args, kwargs, z_new)
        total = jnp.zeros((), jnp.result_type(float))
        accepts = []
        for site, k in zip(self._sites, jax.random.split(key, len(self._sites))):
            fn_new, fn_old = new[site.name]["fn"], old[site.name]["fn"]
            x = jnp.asarray(new[site.name]["value"])
            base = _base(fn_new)
            flat = x.reshape((-1, *base.event_shape))
            if site.exact:
                y = base.sample(k, (flat.shape[0],))
            else:
                y, accept = sample_negatives(base.energy, site.sampler, site.sampler_params, self._num_mcmc_steps,
                                             k, base.energy.params, flat.astype(jnp.result_type(float)))
                accepts.append(accept)
            y = y.reshape(x.shape)
            total = total + jnp.sum(fn_old.log_prob(y)) - jnp.sum(fn_new.log_prob(y))
        accept = jnp.mean(jnp.stack(accepts)) if accepts else jnp.asarray(jnp.nan, total.dtype)
        return total, accept

    def _build_sample(self, potential_gen, num_warmup, adapt_update):
        def sample_one(state: ExchangeState, model_args, model_kwargs) -> ExchangeState:
            kwargs = {} if model_kwargs is None else model_kwargs
            potential = potential_gen(*model_args, **kwargs)
            key, key_prop, key_aux, key_acc = jax.random.split(state.rng_key, 4)
            flat, unravel = ravel_pytree(state.z)
            adapt = state.adapt_state
            scale = adapt.step_size * jnp.sqrt(adapt.inverse_mass_matrix)
            z_new = unravel(flat + scale * jax.random.normal(key_prop, flat.shape, flat.dtype))
            pe_new = potential(z_new)
            log_aux, aux_accept = self._auxiliary_logratio(key_aux, state.z, z_new, model_args, kwargs)
            log_alpha = state.potential_energy - pe_new + log_aux
            log_alpha = jnp.where(jnp.isnan(log_alpha), -jnp.inf, log_alpha)
            accept_prob = jnp.exp(jnp.minimum(log_alpha, 0.0))
            accepted = jnp.log(jax.random.uniform(key_acc, dtype=flat.dtype)) < log_alpha
            z = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), z_new, state.z)
            pe = jnp.where(accepted, pe_new, state.potential_energy)
            itr = state.i + 1
            if num_warmup > 0:
                adapt = jax.lax.cond(
                    state.i < num_warmup,
                    lambda a: adapt_update(state.i, accept_prob, (ravel_pytree(z)[0], None, None), a),
                    lambda a: a, adapt)
            n = jnp.where(state.i < num_warmup, itr, itr - num_warmup)
            mean_accept = state.mean_accept_prob + (accept_prob - state.mean_accept_prob) / n
            return ExchangeState(itr, z, pe, accept_prob, mean_accept, aux_accept, adapt, key)

        return sample_one

    def sample(self, state: ExchangeState, model_args: tuple, model_kwargs: dict) -> ExchangeState:
        """One exchange step from ``state`` (a batch of states after a vectorized ``init``).

        Examples
        --------
        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from ebmppl import Energy
        >>> coin = Energy(lambda b, x: -b * jnp.sum(x), jnp.array(0.0), event_shape=(1,))   # p(x=1) = σ(b)
        >>> def model(x):
        ...     b = numpyro.sample("b", dist.Normal())
        ...     numpyro.sample("x", EnergyDistribution(coin.with_params(b), states=jnp.array([[0.0], [1.0]])), obs=x)
        >>> kernel, x = Exchange(model), jnp.ones((5, 1))
        >>> state = kernel.init(jax.random.key(0), 0, model_args=(x,))
        >>> for _ in range(20):
        ...     state = kernel.sample(state, (x,), {})
        >>> int(state.i), 0.0 <= float(state.accept_prob) <= 1.0, bool(jnp.isnan(state.aux_accept_prob))  # exact draws
        (20, True, True)
        """
        return self._sample_fn(state, model_args, model_kwargs)
