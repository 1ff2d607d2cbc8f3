"""The NumPyro bridge: energies inside model code, and model code as an energy.

Into NumPyro:

* :func:`energy_factor` adds ``-E(x)/T`` to a model's log-joint (a named
  ``numpyro.factor``);
* :class:`EnergyDistribution` is an unnormalised NumPyro distribution with
  ``log_prob = -E/T``, so ``numpyro.sample("x", EnergyDistribution(energy))``
  puts an EBM prior on ``x`` for NumPyro's NUTS/HMC;
* :func:`potential_fn` is the function ``NUTS(potential_fn=...)`` wants.

Out of NumPyro:

* :func:`model_energy` turns any model (with or without energies in it) into
  an :class:`~ebmppl.Energy` over its flattened *unconstrained* latent
  vector, plus the map back to constrained values, so ebmppl's samplers run on it.

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

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints
from numpyro.infer.util import initialize_model

from ebmppl.energy import Energy

__all__ = ["energy_factor", "EnergyDistribution", "potential_fn", "model_energy", "ModelEnergy"]


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


class EnergyDistribution(dist.Distribution):
    """An unnormalised NumPyro distribution ``p(x) ∝ exp(-E(x)/T)`` on real ``x``.

    ``log_prob`` is ``-E(x)/T`` *without* ``-log Z``: fine for MCMC over ``x``
    (NUTS, HMC, ebmppl's samplers), wrong for anything that needs the
    normaliser (SVI over θ, model comparison); see the module note.
    ``sample`` is not available: draw from an energy with :func:`ebmppl.sample`.

    Examples
    --------
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
    """

    arg_constraints: dict[str, Any] = {}
    pytree_data_fields = ("energy",)
    reparametrized_params: list[str] = []

    def __init__(self, energy: Energy, *, validate_args: bool | None = None):
        if not isinstance(energy, Energy):
            raise TypeError(f"energy must be an ebmppl.Energy, got {type(energy).__name__}.")
        self.energy = energy
        super().__init__(batch_shape=(), event_shape=energy.event_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=None)
    def support(self):
        return constraints.independent(constraints.real, len(self.energy.event_shape))

    def log_prob(self, value: jax.Array) -> jax.Array:
        """``-E(value)/T`` (no ``-log Z``), batched over leading axes.

        Examples
        --------
        >>> from ebmppl import Energy
        >>> d = EnergyDistribution(Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,)))
        >>> d.log_prob(jnp.ones((3, 2))).tolist()
        [-1.0, -1.0, -1.0]
        """
        return self.energy.logdensity(value)

    def sample(self, key, sample_shape=()):
        """Not available: an energy has no direct sampler (raises ``NotImplementedError`` with the alternative).

        Examples
        --------
        >>> from ebmppl import Energy
        >>> d = EnergyDistribution(Energy(lambda p, x: 0.5 * jnp.sum(x**2), event_shape=(2,)))
        >>> d.sample(jax.random.key(0))
        Traceback (most recent call last):
        ...
        NotImplementedError: An energy-based distribution has no direct sampler. ...
        """
        raise NotImplementedError(
            "An energy-based distribution has no direct sampler. Use it as a prior inside a model "
            "run by NUTS/HMC, or draw from it with ebmppl.sample(energy, key, ...)."
        )


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
    if not isinstance(energy, Energy):
        raise TypeError(f"energy must be an ebmppl.Energy, got {type(energy).__name__}.")
    return lambda x: energy.energy_fn(energy.params, x) / energy.temperature


class ModelEnergy(NamedTuple):
    """A NumPyro model seen as an energy over its unconstrained latent vector.

    Attributes
    ----------
    energy
        :class:`~ebmppl.Energy` whose ``E`` is NumPyro's potential (``-log
        joint`` in unconstrained space, Jacobians included); event shape ``(d,)``.
    init_position
        A valid unconstrained starting point, shape ``(d,)``.
    unravel
        Flat vector ``(d,)`` -> dict of unconstrained site values.
    postprocess
        Flat draws ``(..., d)`` -> dict of *constrained* site values with the
        same leading axes (deterministic sites included).

    Examples
    --------
    >>> import numpyro, numpyro.distributions as dist
    >>> def model():
    ...     numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    >>> me = model_energy(model, jax.random.key(0))
    >>> me.energy.event_shape, round(float(me.postprocess(jnp.zeros((1,)))["scale"]), 3)   # exp(0)
    ((1,), 1.0)
    """

    energy: Energy
    init_position: jax.Array
    unravel: Callable[[jax.Array], dict[str, jax.Array]]
    postprocess: Callable[[jax.Array], dict[str, jax.Array]]


def model_energy(model: Callable, key: jax.Array, *model_args: Any, **model_kwargs: Any) -> ModelEnergy:
    """Turn a NumPyro model into an energy for ebmppl's samplers (BlackJAX log-density = ``-potential``).

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from ebmppl import sample
    >>> def model():
    ...     numpyro.sample("scale", dist.LogNormal(0.0, 0.5))
    >>> me = model_energy(model, jax.random.key(0))
    >>> out = sample(me.energy, jax.random.key(1), sampler="nuts", num_chains=2,
    ...              num_warmup=200, num_samples=300, progress_bar=False)
    >>> draws = me.postprocess(out.positions)
    >>> draws["scale"].shape, bool((draws["scale"] > 0).all())
    ((2, 300), True)
    """
    info = initialize_model(key, model, model_args=model_args, model_kwargs=model_kwargs, dynamic_args=False)
    flat, unravel = ravel_pytree(info.param_info.z)
    potential, to_constrained = info.potential_fn, info.postprocess_fn

    def energy_fn(_params, x):
        return potential(unravel(x))

    def postprocess(xs):
        xs = jnp.asarray(xs)
        batch = xs.shape[:-1]
        out = jax.vmap(lambda x: to_constrained(unravel(x)))(xs.reshape(-1, flat.shape[0]))
        return jax.tree.map(lambda v: v.reshape(batch + v.shape[1:]), out)

    energy = Energy(energy_fn, None, event_shape=flat.shape, probe=flat)
    return ModelEnergy(energy, flat, unravel, postprocess)
