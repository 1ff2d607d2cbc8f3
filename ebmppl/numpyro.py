"""The NumPyro bridge: energies inside model code, and model code as an energy.

Into NumPyro:

* :func:`energy_factor` adds ``-E(x)/T`` to a model's log-joint (a named
  ``numpyro.factor``);
* :class:`EnergyDistribution` is an unnormalised NumPyro distribution with
  ``log_prob = -E/T``, so ``numpyro.sample("x", EnergyDistribution(energy))``
  puts an EBM prior on ``x`` for NumPyro's NUTS/HMC; on an energy with a
  discrete support (:mod:`ebmppl.support`, :mod:`ebmppl.discrete`) it is a
  discrete site with exact draws, enumeration and ``log Z`` when the state set
  is small (``normalized=True`` adds the exact ``-log Z(θ)`` to ``log_prob``);
* :func:`potential_fn` is the function ``NUTS(potential_fn=...)`` wants.

Out of NumPyro:

* :func:`model_energy` turns any model (with or without energies in it) into
  an :class:`~ebmppl.Energy` over its flattened *unconstrained* latent
  vector, plus the map back to constrained values, so ebmppl's samplers run on
  it: ``ebmppl.sample(me, key)`` (or ``sample(me.energy, key)``) starts every
  chain from NumPyro's initialisation, and ``to_arviz()`` of the run shows the
  model's named, constrained sites;
* :func:`check_support` checks constrained draws (ebmppl's or NumPyro's own
  ``mcmc.get_samples()``) against each site's support and names the sites
  whose draws leave it (:class:`SupportWarning`).

.. warning::
   The parameters θ of an energy can NOT be learned through ``factor`` and
   SVI: the unnormalised ``-E_θ(x)/T`` lacks ``-log Z(θ)``, so maximising it
   drives energies to ``-∞``. Learn θ by maximum likelihood with
   contrastive divergence (``ebmppl`` fitting) instead, then use the fixed
   energy in NumPyro.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.initialization import init_to_uniform
from numpyro.infer.util import find_valid_initial_params, initialize_model

from ebmppl._validation import check_energy, check_key
from ebmppl.energy import Energy
from ebmppl.support import Support

__all__ = [
    "energy_factor", "EnergyDistribution", "potential_fn", "model_energy", "ModelEnergy", "check_support",
    "SupportWarning", "enumeration_gibbs_fn",
]


class SupportWarning(UserWarning):
    """Constrained draws of a model site lie outside that site's support.

    The message names the site, the fraction of draws outside and the
    reparametrisation that works (see :func:`check_support`).

    Examples
    --------
    >>> issubclass(SupportWarning, UserWarning)
    True
    """


def energy_factor(name: str, energy: Energy, x: jax.Array) -> None:
    """Add ``-E(x)/T`` to the model's log-density, as site ``name``.

    ``x`` may be batched (leading axes); the factor then has that batch shape,
    so it composes with ``numpyro.plate``. θ of the energy is NOT learned
    through this factor (``log Z(θ)`` is missing): see the module note.

    Examples
    --------
    >>> import jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer.util import log_density
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> def model():
    ...     x = numpyro.sample("x", dist.ImproperUniform(dist.constraints.real_vector, (), (2,)))
    ...     energy_factor("prior", e, x)
    >>> float(log_density(model, (), {}, {"x": jnp.ones(2)})[0])
    -1.0
    """
    numpyro.factor(name, energy.logdensity(x))


class _FiniteSet(constraints.Constraint):
    """The support of an :class:`EnergyDistribution` over a finite state set: one of the rows of ``states``."""

    is_discrete = True

    def __init__(self, states: jax.Array, event_dim: int):
        self.states = states
        self.event_dim = event_dim

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        event = self.states.shape[1:]
        flat = x.reshape((-1, 1, *event))
        axes = tuple(range(2, 2 + len(event)))
        inside = jnp.any(jnp.all(flat == self.states[None], axis=axes), axis=1)
        return inside.reshape(x.shape[: x.ndim - len(event)])

    def __repr__(self) -> str:
        return f"FiniteSet(num_states={self.states.shape[0]}, event_shape={tuple(self.states.shape[1:])})"

    def feasible_like(self, prototype: jax.Array) -> jax.Array:
        return jnp.broadcast_to(self.states[0], jnp.shape(prototype)).astype(jnp.result_type(prototype))

    def tree_flatten(self):
        return (self.states,), (("states",), {"event_dim": self.event_dim})


class _DiscreteSupport(constraints.Constraint):
    """The support of an :class:`EnergyDistribution` of a discrete energy: its :class:`~ebmppl.support.Support`."""

    is_discrete = True

    def __init__(self, support: Support, event_shape: tuple[int, ...]):
        self.support = support
        self.event_shape = tuple(event_shape)
        self.event_dim = len(self.event_shape)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.support.contains(jnp.asarray(x), self.event_shape)

    def __repr__(self) -> str:
        return f"DiscreteSupport({self.support!r}, event_shape={self.event_shape})"

    def feasible_like(self, prototype: jax.Array) -> jax.Array:
        state = self.support.first_state(self.event_shape)
        return jnp.broadcast_to(state, jnp.shape(prototype)).astype(jnp.result_type(prototype))

    def tree_flatten(self):
        return (), ((), {"support": self.support, "event_shape": self.event_shape, "event_dim": self.event_dim})


MAX_EXACT_STATES = 2**16
"""Default ``max_enumerate`` of :class:`EnergyDistribution`: the most states it enumerates for exact draws."""


def _check_states(states: Any, event_shape: tuple[int, ...]) -> jax.Array:
    """``states`` as a float array ``(S, *event_shape)``, else a ValueError/TypeError that says what to pass."""
    try:
        states = jnp.asarray(states)
    except TypeError:
        raise TypeError(f"states must be an array of shape (num_states, *{event_shape}), got "
                        f"{type(states).__name__}.") from None
    if states.ndim != 1 + len(event_shape) or states.shape[1:] != event_shape or states.shape[0] < 1:
        raise ValueError(
            f"states has shape {states.shape}; pass every state of the finite set as one row, shape "
            f"(num_states, *event_shape) = (num_states, *{event_shape}), e.g. the 2**n sign vectors "
            "2.0 * ((jnp.arange(2**n)[:, None] >> jnp.arange(n)) & 1) - 1.0."
        )
    if not jnp.issubdtype(states.dtype, jnp.floating):
        states = states.astype(jnp.result_type(float))  # energies are defined on real inputs
    return states


class EnergyDistribution(dist.Distribution):
    """An unnormalised NumPyro distribution ``p(x) ∝ exp(-E(x)/T)``, on real ``x`` or on a finite state set.

    ``log_prob`` is ``-E(x)/T`` *without* ``-log Z``: fine for MCMC over ``x``
    (NUTS, HMC, ebmppl's samplers), wrong for anything that needs the
    normaliser (SVI over θ, model comparison); see the module note.

    On real ``x`` (the default) ``sample`` is not available: draw from an
    energy with :func:`ebmppl.sample`. Given ``states``, every value ``x``
    can take (e.g. the ``2**n`` sign vectors of ``n`` spins, up to about
    ``2**20`` states), the distribution is exact: ``sample`` draws by
    enumeration (categorical on ``-E(states)/T``, by inverse CDF) and
    :meth:`log_partition` is the exact ``log Z``. That is what lets
    :class:`ebmppl.models.exchange.Exchange` sample the posterior of the
    energy's parameters θ exactly when such a site is observed.

    An energy with a discrete :attr:`~ebmppl.Energy.support` (``BINARY``,
    ``SPINS``, ``Categorical(K)``; e.g. :func:`ebmppl.discrete.ising`) needs no
    ``states``: the site is discrete (``support.is_discrete``), values outside
    the support have ``log_prob = -inf``, and up to ``max_enumerate`` states
    (default ``2**16``) it enumerates them itself: :attr:`states`,
    ``has_enumerate_support``, :meth:`enumerate_support` (whole states, shape
    ``(num_states, *event_shape)``, as Pyro/funsor enumeration expects), exact
    :meth:`sample` (so ``numpyro.infer.Predictive`` works) and exact
    Exchange. :meth:`log_partition` enumerates in chunks up to ``2**22``
    states. Larger state sets are drawn with ebmppl's discrete samplers
    (:mod:`ebmppl.samplers.discrete`). NumPyro's ``DiscreteHMCGibbs`` and
    ``MixedHMC`` treat every coordinate as an integer ``0 … size-1``: they are
    not for these (whole-state) sites.

    Parameters
    ----------
    energy
        The :class:`~ebmppl.Energy`; its parameters may be latent sites of
        the model (``energy.with_params(theta)`` inside the model).
    states
        Optional ``(num_states, *event_shape)`` array: the finite set ``x``
        lives on. The support is then discrete (a latent site of this kind
        is not for NUTS/HMC).
    max_enumerate
        On a discrete support without ``states``: the most states enumerated
        for :attr:`states`, :meth:`enumerate_support` and exact :meth:`sample`.
    normalized
        ``True``: ``log_prob = -E/T - log Z`` with the exact ``log Z`` by
        enumeration (discrete supports or ``states``), a normalised likelihood
        that NUTS or SVI over θ can use directly; default ``False`` (``-E/T``).
    validate_args
        NumPyro's argument validation.

    Examples
    --------
    An EBM prior on a real ``x`` for NumPyro's NUTS:

    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC, NUTS
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,))
    >>> def model(y=None):
    ...     x = numpyro.sample("x", EnergyDistribution(e))
    ...     numpyro.sample("y", dist.Normal(x, 1.0).to_event(1), obs=y)
    >>> mcmc = MCMC(NUTS(model), num_warmup=200, num_samples=200, progress_bar=False)
    >>> mcmc.run(jax.random.key(0), y=jnp.array([2.0, -2.0]))
    >>> mcmc.get_samples()["x"].shape
    (200, 2)

    Three ±1 spins on a chain, ``E(x) = -β (x₁x₂ + x₂x₃)``: exact draws and ``log Z``.

    >>> n = 3
    >>> spins = 2.0 * ((jnp.arange(2**n)[:, None] >> jnp.arange(n)) & 1) - 1.0   # the 8 states
    >>> chain = Energy(lambda beta, x: -beta * jnp.sum(x[:-1] * x[1:]), jnp.array(0.5), event_shape=(n,))
    >>> d = EnergyDistribution(chain, states=spins)
    >>> d.sample(jax.random.key(0), (4,)).shape
    (4, 3)
    >>> round(float(d.log_partition()), 4)   # log(2 * (2 cosh 0.5)**2)
    2.3197

    The same with a discrete energy: no ``states`` needed, and a normalised ``log_prob``.

    >>> from ebmppl.discrete import ising
    >>> d = EnergyDistribution(ising(jnp.diag(jnp.ones(2), 1) + jnp.diag(jnp.ones(2), -1), beta=0.5), normalized=True)
    >>> d.support.is_discrete, d.enumerate_support().shape, round(float(d.log_partition()), 4)
    (True, (8, 3), 2.3197)
    >>> round(float(jnp.exp(d.log_prob(d.enumerate_support())).sum()), 4)
    1.0
    """

    arg_constraints: dict[str, Any] = {}
    pytree_data_fields = ("energy", "_states")
    pytree_aux_fields = ("max_enumerate", "normalized")
    reparametrized_params: list[str] = []

    def __init__(self, energy: Energy, *, states: jax.Array | None = None, max_enumerate: int = MAX_EXACT_STATES,
                 normalized: bool = False, validate_args: bool | None = None):
        check_energy(energy)
        self.energy = energy
        self._states = None if states is None else _check_states(states, energy.event_shape)
        if isinstance(max_enumerate, bool) or not isinstance(max_enumerate, (int, np.integer)) or max_enumerate < 1:
            raise ValueError(f"max_enumerate must be an int ≥ 1, got {max_enumerate!r}.")
        self.max_enumerate = int(max_enumerate)
        self.normalized = bool(normalized)
        if self.normalized and self._states is None and not energy.support.is_discrete:
            raise ValueError("normalized=True needs the exact log Z: give a discrete energy (Energy(..., "
                             "support=BINARY / SPINS / Categorical(K))) or states=...; a continuous energy's log Z "
                             "is estimated with ebmppl.log_partition.")
        super().__init__(batch_shape=(), event_shape=energy.event_shape, validate_args=validate_args)

    @property
    def states(self) -> jax.Array | None:
        """The finite state set: ``states`` as given, else every state of a discrete energy's support when there
        are at most ``max_enumerate`` (in :meth:`ebmppl.support.Support.enumerate` order), else ``None``.

        Examples
        --------
        >>> from ebmppl.discrete import ising
        >>> EnergyDistribution(ising(lattice=3)).states.shape, EnergyDistribution(ising(lattice=(5, 5))).states
        ((8, 3), None)
        """
        if self._states is not None:
            return self._states
        support = self.energy.support
        if support.is_discrete and support.num_states(self.energy.event_shape) <= self.max_enumerate:
            return support.enumerate(self.energy.event_shape)
        return None

    @constraints.dependent_property(is_discrete=False, event_dim=None)
    def support(self):
        if self._states is not None:
            return _FiniteSet(self._states, len(self.energy.event_shape))
        if self.energy.support.is_discrete:
            return _DiscreteSupport(self.energy.support, self.energy.event_shape)
        return constraints.independent(constraints.real, len(self.energy.event_shape))

    @property
    def has_enumerate_support(self) -> bool:
        """Whether :meth:`enumerate_support` lists the states (a finite set of at most ``max_enumerate`` states)."""
        return self.states is not None

    def enumerate_support(self, expand: bool = True) -> jax.Array:
        """Every state, ``(num_states, *event_shape)`` (the batch shape is empty, so ``expand`` changes nothing).

        Examples
        --------
        >>> from ebmppl.support import BINARY
        >>> from ebmppl import Energy
        >>> EnergyDistribution(Energy(lambda p, x: -x.sum(), event_shape=(2,), support=BINARY)).enumerate_support()
        Array([[0., 0.],
               [1., 0.],
               [0., 1.],
               [1., 1.]], dtype=float32)
        """
        return self._require_states("enumerable support")

    @property
    def has_exact_sampler(self) -> bool:
        """Whether :meth:`sample` draws exactly (``True`` when ``states`` is given or a discrete energy has at most
        ``max_enumerate`` states).

        Examples
        --------
        >>> from ebmppl import Energy
        >>> e = Energy(lambda p, x: -jnp.sum(x), event_shape=(2,))
        >>> EnergyDistribution(e).has_exact_sampler, EnergyDistribution(e, states=jnp.eye(2)).has_exact_sampler
        (False, True)
        """
        return self.states is not None

    def log_prob(self, value: jax.Array) -> jax.Array:
        """``-E(value)/T`` (no ``-log Z`` unless ``normalized=True``), batched over leading axes.

        On a discrete support (without ``states``) a value outside it has ``-inf``.

        Examples
        --------
        >>> from ebmppl import Energy
        >>> d = EnergyDistribution(Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,)))
        >>> d.log_prob(jnp.ones((3, 2))).tolist()
        [-1.0, -1.0, -1.0]
        """
        logp = self.energy.logdensity(value)
        if self._states is None and self.energy.support.is_discrete:
            logp = jnp.where(self.energy.support.contains(jnp.asarray(value), self.energy.event_shape), logp, -jnp.inf)
        if self.normalized:
            logp = logp - self.log_partition()
        return logp

    def _require_states(self, what: str) -> jax.Array:
        states = self.states
        if states is None and self.energy.support.is_discrete:
            n = self.energy.support.num_states(self.energy.event_shape)
            raise NotImplementedError(
                f"This discrete energy has {n:.4g} states, more than max_enumerate={self.max_enumerate}, so the "
                f"distribution has no {what} by enumeration. Draw from it with ebmppl's discrete samplers "
                "(ebmppl.samplers.discrete: gibbs, gibbs_with_gradients, dmala; block Gibbs for RBMs), or raise "
                "max_enumerate (enumeration costs one energy evaluation per state and draw batch)."
            )
        if states is None:
            raise NotImplementedError(
                f"An energy-based distribution has no {what}. Use it as a prior inside a model run by "
                "NUTS/HMC, or draw from it with ebmppl.sample(energy, key, ...) (log Z: ebmppl.log_partition); "
                "on a finite state set pass states=(num_states, *event_shape) to get both exactly."
            )
        return states

    def log_partition(self) -> jax.Array:
        """The exact ``log Z = logsumexp(-E(states)/T)`` over the finite state set.

        A discrete energy without ``states`` is enumerated in chunks
        (:func:`ebmppl.discrete.enumerate_log_partition`, up to ``2**22``
        states). Otherwise, without ``states``, it raises ``NotImplementedError``:
        estimate ``log Z`` with :func:`ebmppl.log_partition` instead.

        Examples
        --------
        >>> from ebmppl import Energy
        >>> d = EnergyDistribution(Energy(lambda p, x: -jnp.sum(x), event_shape=(1,)), states=jnp.array([[0.0], [1.0]]))
        >>> round(float(d.log_partition()), 4)   # log(1 + e)
        1.3133
        """
        if self._states is None and self.energy.support.is_discrete:
            from ebmppl.discrete.exact import enumerate_log_partition

            return enumerate_log_partition(self.energy)
        return jax.nn.logsumexp(self.energy.logdensity(self._require_states("known log Z")))

    def sample(self, key, sample_shape=()):
        """Exact draws by enumeration when ``states`` is given; otherwise ``NotImplementedError`` with the alternative.

        Examples
        --------
        >>> from ebmppl import Energy
        >>> d = EnergyDistribution(Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,)))
        >>> d.sample(jax.random.key(0))
        Traceback (most recent call last):
        ...
        NotImplementedError: An energy-based distribution has no direct sampler. ...
        >>> coin = EnergyDistribution(Energy(lambda p, x: -jnp.sum(x), event_shape=(1,)),
        ...                           states=jnp.array([[0.0], [1.0]]))
        >>> round(float(coin.sample(jax.random.key(0), (10000,)).mean()), 2)   # e / (1 + e) = 0.73
        0.73
        """
        states = self._require_states("direct sampler")
        logits = self.energy.logdensity(states)
        # inverse CDF: O(S + draws · log S) where Gumbel-max would cost draws · S
        cdf = jnp.cumsum(jnp.exp(logits - jnp.max(logits)))
        u = jax.random.uniform(key, tuple(sample_shape), dtype=cdf.dtype) * cdf[-1]
        index = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), states.shape[0] - 1)
        return states[index]


def enumeration_gibbs_fn(model: Callable, *model_args: Any, **model_kwargs: Any) -> Callable:
    """A ``gibbs_fn`` for NumPyro's ``HMCGibbs`` that redraws latent discrete energy sites exactly, by enumeration.

    For each Gibbs site (in the order NumPyro passes them) it lists the site's
    states (``EnergyDistribution.states``: at most ``max_enumerate``), evaluates
    the model's log joint with the site set to each state and every other site
    at its current value, and draws the new value from that exact full
    conditional. ``HMCGibbs(NUTS(model), gibbs_fn=enumeration_gibbs_fn(model,
    *args), gibbs_sites=[...])`` then samples a model with a latent discrete
    energy (an Ising or RBM prior, say) beside continuous sites. Each update
    costs one model evaluation per state.

    Parameters
    ----------
    model
        The NumPyro model.
    *model_args, **model_kwargs
        Its arguments (the same as passed to ``mcmc.run``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import MCMC, NUTS, HMCGibbs
    >>> from ebmppl.discrete import ising
    >>> def model(y):
    ...     x = numpyro.sample("x", EnergyDistribution(ising(lattice=3, beta=0.5)))
    ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(mu + x.sum(), 1.0), obs=y)
    >>> gibbs_fn = enumeration_gibbs_fn(model, 2.5)
    >>> gibbs_fn(jax.random.key(0), {"x": -jnp.ones(3)}, {"mu": jnp.array(0.0)})["x"].shape   # one exact update
    (3,)
    >>> kernel = HMCGibbs(NUTS(model), gibbs_fn=gibbs_fn, gibbs_sites=["x"])
    >>> mcmc = MCMC(kernel, num_warmup=500, num_samples=1000, progress_bar=False)
    >>> mcmc.run(jax.random.key(0), 2.5)  # doctest: +SKIP
    """
    from numpyro.infer.util import log_density

    def joint(values: dict[str, jax.Array]) -> jax.Array:
        return log_density(model, model_args, model_kwargs, values)[0]

    def gibbs_fn(rng_key: jax.Array, gibbs_sites: dict[str, jax.Array], hmc_sites: dict[str, jax.Array]):
        current = {**hmc_sites, **gibbs_sites}
        tr = trace(substitute(seed(model, 0), data=current)).get_trace(*model_args, **model_kwargs)
        out = dict(gibbs_sites)
        for name, key in zip(gibbs_sites, jax.random.split(rng_key, max(len(gibbs_sites), 1)), strict=False):
            fn = tr[name]["fn"]
            if not isinstance(fn, EnergyDistribution):
                raise ValueError(f"enumeration_gibbs_fn: site '{name}' is a {type(fn).__name__}, not an "
                                 "EnergyDistribution (inside a plate or .expand() it is batched: give each example "
                                 "its own site, or sample the site with ebmppl's discrete samplers).")
            states = fn._require_states("exact full conditional")
            logp = jax.vmap(lambda state: joint({**current, **out, name: state}))(states)
            out[name] = states[jax.random.categorical(key, logp)]
        return out

    return gibbs_fn


def potential_fn(energy: Energy) -> Callable[[jax.Array], jax.Array]:
    """The ``potential_fn`` for ``numpyro.infer.NUTS(potential_fn=...)``: ``x -> E(x)/T``.

    NumPyro then needs ``init_params`` with a leading chain axis.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from numpyro.infer import MCMC, NUTS
    >>> from ebmppl import Energy
    >>> e = Energy(lambda p, x: 0.5 * jnp.sum((x - 3.0) ** 2), event_shape=(2,))
    >>> mcmc = MCMC(NUTS(potential_fn=potential_fn(e)), num_warmup=200, num_samples=400,
    ...             num_chains=2, chain_method="vectorized", progress_bar=False)
    >>> mcmc.run(jax.random.key(0), init_params=jnp.zeros((2, 2)))
    >>> bool(jnp.allclose(mcmc.get_samples().mean(0), 3.0, atol=0.3))
    True
    """
    check_energy(energy)
    return energy.potential_fn


def _latent_sites(tr) -> list[str]:
    return [k for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]
            and not v["fn"].support.is_discrete]


def _inside(site) -> jax.Array:
    """Whether a site's value lies in its distribution's support (one bool for the whole value)."""
    return jnp.all(site["fn"].support(site["value"]))


def _support_report(fractions: dict[str, float], supports: dict[str, str]) -> SupportWarning | None:
    bad = {k: f for k, f in fractions.items() if f > 0}
    if not bad:
        return None
    named = "; ".join(f"site '{k}': {100 * f:.1f} % of the draws lie outside its support {supports.get(k, '')}"
                      for k, f in bad.items())
    first = next(iter(bad))
    return SupportWarning(
        f"{named}. These draws are not from the model. A support whose bounds depend on another site, "
        "wrapped in another constraint (e.g. ImproperUniform(constraints.interval(0, 1 - a), (), ())), is "
        "mapped back by NumPyro's post-processing with the bounds of the initial point. Reparametrise on a "
        "fixed interval: sample a unit variable and scale it, adding the log-Jacobian of the scaling to a "
        f"flat density, e.g. u = numpyro.sample('{first}_unit', dist.ImproperUniform(constraints.unit_interval, "
        f"(), ())); {first} = numpyro.deterministic('{first}', (1 - a) * u); "
        f"numpyro.factor('{first}_jacobian', jnp.log(1 - a)) (a normalised Uniform(0, 1 - a) becomes "
        "u ~ Uniform(0, 1) with no factor), or write the site as a TransformedDistribution of a "
        "distribution on the fixed interval."
    )


class _ModelPotential:
    """``energy_fn`` of a :func:`model_energy`: NumPyro's potential on the flat unconstrained vector.

    It also carries what :func:`ebmppl.sample` needs to treat the energy as a
    model: per-chain initialisation and the post-processing to named,
    constrained sites. (Hashed by identity, as a static field of the Energy.)
    """

    _ebmppl_model_potential = True

    def __init__(self, model, model_args, model_kwargs, info, init_strategy):
        self.model, self.model_args, self.model_kwargs = model, model_args, model_kwargs
        self.flat, self.unravel = ravel_pytree(info.param_info.z)
        self.potential = info.potential_fn
        self.supports = {k: repr(info.model_trace[k]["fn"].support) for k in info.param_info.z}
        prototype = info.param_info.z

        def init(keys):
            (z, _, _), _ = find_valid_initial_params(
                keys, model, init_strategy=init_strategy, model_args=model_args, model_kwargs=model_kwargs,
                prototype_params=prototype,
            )
            return jax.vmap(lambda v: ravel_pytree(v)[0])(z)

        self._init = jax.jit(init)
        self._constrain = jax.jit(jax.vmap(self._constrain_one))

    def __call__(self, _params: Any, x: jax.Array) -> jax.Array:
        return self.potential(self.unravel(x))

    def _constrain_one(self, x):
        unconstrained = self.unravel(x)

        def substitute_fn(site):
            if site["type"] == "sample" and site["name"] in unconstrained:
                # the transform of the support at THIS point: bounds that depend on other sites follow them
                return biject_to(site["fn"].support)(unconstrained[site["name"]])
            return None

        tr = trace(substitute(seed(self.model, 0), substitute_fn=substitute_fn)).get_trace(
            *self.model_args, **self.model_kwargs
        )
        values = {k: v["value"] for k, v in tr.items() if k in unconstrained or v["type"] == "deterministic"}
        inside = {k: _inside(tr[k]) for k in unconstrained}
        return values, inside

    def init_positions(self, key: jax.Array, num_chains: int) -> jax.Array:
        return self._init(jax.random.split(key, num_chains))

    def postprocess(self, xs: jax.Array) -> dict[str, jax.Array]:
        xs = jnp.asarray(xs)
        batch = xs.shape[:-1]
        values, inside = self._constrain(xs.reshape(-1, self.flat.shape[0]))
        values = jax.tree.map(lambda v: v.reshape(batch + v.shape[1:]), values)
        if not isinstance(xs, jax.core.Tracer):
            fractions = {k: 1.0 - float(np.mean(v)) for k, v in inside.items()}
            report = _support_report(fractions, self.supports)
            if report is not None:
                warnings.warn(report, stacklevel=3)
        return values


class ModelEnergy(NamedTuple):
    """A NumPyro model seen as an energy over its unconstrained latent vector.

    Attributes
    ----------
    energy
        :class:`~ebmppl.Energy` whose ``E`` is NumPyro's potential (``-log
        joint`` in unconstrained space, Jacobians included); event shape ``(d,)``.
        :func:`ebmppl.sample` recognises it: chains start from NumPyro's
        initialisation and ``Samples.to_arviz()`` shows the named, constrained sites.
    init_position
        A valid unconstrained starting point, shape ``(d,)``.
    unravel
        Flat vector ``(d,)`` -> dict of unconstrained site values.
    postprocess
        Flat draws ``(..., d)`` -> dict of *constrained* site values with the
        same leading axes (deterministic sites included). The model is
        replayed at every draw, so a support whose bounds depend on other
        sites follows them; draws outside a site's support raise a
        :class:`SupportWarning` naming the site.
    init_positions
        ``init_positions(key, num_chains) -> (num_chains, d)``: NumPyro's
        initialisation strategy (default ``init_to_uniform``) per chain,
        redrawn (up to 100 times) where the potential or its gradient is not finite.

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model():
    ...     numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    >>> me = model_energy(model, jax.random.key(0))
    >>> me.energy.event_shape, round(float(me.postprocess(jnp.zeros((1,)))["scale"]), 3)   # exp(0)
    ((1,), 1.0)
    >>> me.init_positions(jax.random.key(1), 4).shape
    (4, 1)
    """

    energy: Energy
    init_position: jax.Array
    unravel: Callable[[jax.Array], dict[str, jax.Array]]
    postprocess: Callable[[jax.Array], dict[str, jax.Array]]
    init_positions: Callable[[jax.Array, int], jax.Array] | None = None


def model_energy(
    model: Callable, key: jax.Array, *model_args: Any, init_strategy: Callable = init_to_uniform, **model_kwargs: Any
) -> ModelEnergy:
    """Turn a NumPyro model into an energy for ebmppl's samplers (BlackJAX log-density = ``-potential``).

    Sample it with ``ebmppl.sample(me, key, ...)`` (or ``sample(me.energy,
    key, ...)``, the same thing): every chain starts from NumPyro's
    initialisation (``init_strategy`` per chain, ``init_to_uniform`` by
    default: uniform on ``[-2, 2]`` in unconstrained space, redrawn where the
    potential is not finite), and ``out.to_arviz()`` gives the model's named
    sites in their constrained space. ``init=`` still overrides the start
    (e.g. ``jnp.tile(me.init_position, (num_chains, 1))`` starts all chains at one point).

    Parameters
    ----------
    model
        A NumPyro model (continuous latent sites).
    key
        A ``jax.random`` key for the initial trace.
    *model_args, **model_kwargs
        Arguments of the model (data).
    init_strategy
        A NumPyro initialisation strategy (``numpyro.infer.init_to_median``,
        ``init_to_value(values=...)``, ...) for the starting positions.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from ebmppl import sample
    >>> def model():
    ...     numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    >>> me = model_energy(model, jax.random.key(0))
    >>> out = sample(me, jax.random.key(1), sampler="nuts", num_chains=2,
    ...              num_warmup=200, num_samples=300, progress_bar=False)
    >>> draws = me.postprocess(out.positions)
    >>> draws["scale"].shape, bool((draws["scale"] > 0).all())
    ((2, 300), True)
    >>> out.to_arviz().posterior["scale"].shape   # the named, constrained site
    (2, 300)
    """
    check_key(key)
    info = initialize_model(key, model, model_args=model_args, model_kwargs=model_kwargs, dynamic_args=False,
                            init_strategy=init_strategy)
    fn = _ModelPotential(model, model_args, model_kwargs, info, init_strategy)
    energy = Energy(fn, None, event_shape=fn.flat.shape, probe=fn.flat)
    return ModelEnergy(energy, fn.flat, fn.unravel, fn.postprocess, fn.init_positions)


def check_support(model: Callable, samples: dict[str, Any], *model_args: Any, **model_kwargs: Any) -> dict[str, float]:
    """Fraction of the draws of each latent site that lie outside the site's support; warns if any does.

    ``samples`` are constrained draws keyed by site, with any leading axes
    (NumPyro's ``mcmc.get_samples()``, with or without ``group_by_chain``, or
    :meth:`ModelEnergy.postprocess` output). The model is replayed at every
    draw, so supports that depend on other sites are checked at that draw's
    values. A site with draws outside is named in a :class:`SupportWarning`
    with the reparametrisation that works.

    Examples
    --------
    A flat prior on ``(0, 1 - a)``: draws with ``b > 1 - a`` are outside.

    >>> import warnings
    >>> from numpyro.distributions import constraints
    >>> def model():
    ...     a = numpyro.sample("a", dist.Uniform(0.0, 1.0))
    ...     numpyro.sample("b", dist.ImproperUniform(constraints.interval(0.0, 1.0 - a), (), ()))
    >>> draws = {"a": jnp.array([0.2, 0.5, 0.8]), "b": jnp.array([0.5, 0.4, 0.3])}
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     fractions = check_support(model, draws)
    >>> {k: round(v, 2) for k, v in fractions.items()}
    {'a': 0.0, 'b': 0.33}
    >>> "site 'b'" in str(caught[0].message)
    True
    """
    def replay(draw):  # the sites in draw take its values; others NumPyro's init (improper priors cannot be sampled)
        fill = lambda site: draw[site["name"]] if site["name"] in draw else init_to_uniform(site)  # noqa: E731
        return trace(substitute(seed(model, 0), substitute_fn=fill)).get_trace(*model_args, **model_kwargs)

    prototype = replay({})
    latent = _latent_sites(prototype)
    sites = [k for k in latent if k in samples]
    if not sites:
        raise ValueError(f"samples has none of the model's latent sites {latent}; pass constrained draws "
                         "keyed by site name (e.g. mcmc.get_samples()).")
    first = sites[0]
    batch_ndim = jnp.ndim(samples[first]) - jnp.ndim(prototype[first]["value"])
    flat = {k: jnp.reshape(jnp.asarray(samples[k]), (-1, *jnp.shape(samples[k])[batch_ndim:])) for k in sites}

    def one(draw):
        tr = replay(draw)
        return {k: _inside(tr[k]) for k in sites}

    inside = jax.jit(jax.vmap(one))(flat)
    fractions = {k: 1.0 - float(np.mean(inside[k])) for k in sites}
    report = _support_report(fractions, {k: repr(prototype[k]["fn"].support) for k in sites})
    if report is not None:
        warnings.warn(report, stacklevel=2)
    return fractions
