"""Latent discrete energy sites in NumPyro models, updated by ebmppl's discrete kernels.

NumPyro's ``HMCGibbs`` alternates HMC/NUTS on the continuous sites with a
user ``gibbs_fn`` on the others. For a latent discrete energy site small
enough to enumerate, :func:`ebmppl.numpyro.enumeration_gibbs_fn` draws it
exactly from its full conditional. Beyond that (an Ising prior on a 10×10
lattice has 2¹⁰⁰ states) :func:`discrete_gibbs_fn` takes ``num_steps`` steps of
an ebmppl discrete sampler (Gibbs-with-Gradients by default) on the site's
full conditional — the model's log joint with every other site held at its
current value. Each of those kernels leaves the full conditional invariant,
so the combined chain (Metropolis-within-Gibbs) still targets the posterior
exactly; the steps only set how fast it mixes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from numpyro.handlers import seed, substitute, trace
from numpyro.infer.util import log_density

from ebmppl._validation import check_int
from ebmppl.numpyro import EnergyDistribution
from ebmppl.samplers import Sampler, as_sampler, kernel_parameters
from ebmppl.samplers.discrete import bind_support

__all__ = ["discrete_gibbs_fn"]


def discrete_gibbs_fn(model: Callable, *model_args: Any, sampler: str | Sampler = "gibbs_with_gradients",
                      sampler_params: dict[str, Any] | None = None, num_steps: int = 10,
                      **model_kwargs: Any) -> Callable:
    """A ``gibbs_fn`` for NumPyro's ``HMCGibbs``: latent discrete energy sites moved by an ebmppl discrete kernel.

    For each Gibbs site it runs ``num_steps`` steps of ``sampler`` (bound to
    the site energy's support) on the site's full conditional, the model's log
    joint with the other sites at their current values, started at the site's
    current value.

    Parameters
    ----------
    model
        The NumPyro model.
    *model_args, **model_kwargs
        Its arguments (the same as passed to ``mcmc.run``).
    sampler
        An exact discrete sampler (name or value): ``"gibbs_with_gradients"``
        (default), ``"gibbs"``, ``"discrete_metropolis"``, ``"dmala"``.
        ``"dula"`` is refused: it does not leave the conditional invariant.
    sampler_params
        Its kernel parameters (e.g. ``{"step_size": 0.3}`` for ``"dmala"``);
        default: the sampler's own (no warm-up runs inside a Gibbs update).
    num_steps
        Sampler steps per Gibbs update (one GwG step flips at most one
        coordinate: take several per update for a large site).

    Raises
    ------
    ValueError
        ``num_steps`` < 1, an inexact sampler, or (when the kernel runs) a Gibbs
        site that is not an ``EnergyDistribution`` of a discrete energy.
    TypeError
        A continuous sampler (``"mala"``, ...): it would leave the support.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
    >>> from numpyro.infer import HMCGibbs, MCMC, NUTS
    >>> from ebmppl.discrete import ising
    >>> def model(y):
    ...     x = numpyro.sample("x", EnergyDistribution(ising(lattice=(4, 4), beta=0.3)))
    ...     mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    ...     numpyro.sample("y", dist.Normal(mu + x, 1.0), obs=y)
    >>> y = jnp.zeros(16)
    >>> gibbs_fn = discrete_gibbs_fn(model, y, num_steps=5)
    >>> new = gibbs_fn(jax.random.key(0), {"x": -jnp.ones(16)}, {"mu": jnp.array(0.0)})
    >>> new["x"].shape, bool(jnp.all(jnp.abs(new["x"]) == 1))
    ((16,), True)
    >>> kernel = HMCGibbs(NUTS(model), gibbs_fn=gibbs_fn, gibbs_sites=["x"])
    >>> MCMC(kernel, num_warmup=500, num_samples=1000, progress_bar=False).run(jax.random.key(0), y)  # doctest: +SKIP
    """
    kernel = as_sampler(sampler, "sampler")
    if not kernel.exact:
        raise ValueError(f"sampler {kernel.name!r} is not exact (it does not leave the conditional invariant), so "
                         "the Gibbs chain would not target the posterior; use 'gibbs_with_gradients', 'gibbs', "
                         "'discrete_metropolis' or 'dmala'.")
    check_int("num_steps", num_steps, 1)
    overrides = dict(kernel_parameters(kernel, 1, sampler_params)) if sampler_params else {}
    overrides = {k: v for k, v in overrides.items() if k in (sampler_params or {})}  # checked here, outside jit

    def joint(values: dict[str, jax.Array]) -> jax.Array:
        return log_density(model, model_args, model_kwargs, values)[0]

    def update(key: jax.Array, name: str, fn: EnergyDistribution, values: dict[str, jax.Array]) -> jax.Array:
        s = bind_support(kernel, fn.energy)  # a discrete kernel on the site's support; a continuous one: TypeError
        params = {**s.default_params(fn.energy.dim), **overrides}  # no warm-up inside a Gibbs update

        def conditional(x: jax.Array) -> jax.Array:
            return joint({**values, name: x})

        def body(state, k):
            return s.step(k, state, conditional, params)[0], None

        start = s.init(None, values[name].astype(jax.numpy.result_type(float)), conditional)
        end, _ = jax.lax.scan(body, start, jax.random.split(key, num_steps))
        return s.position(end)

    def gibbs_fn(rng_key: jax.Array, gibbs_sites: dict[str, jax.Array], hmc_sites: dict[str, jax.Array]):
        values = {**hmc_sites, **gibbs_sites}
        tr = trace(substitute(seed(model, 0), data=values)).get_trace(*model_args, **model_kwargs)
        for name, key in zip(gibbs_sites, jax.random.split(rng_key, max(len(gibbs_sites), 1)), strict=False):
            fn = tr[name]["fn"]
            if not isinstance(fn, EnergyDistribution) or not fn.energy.support.is_discrete:
                raise ValueError(f"discrete_gibbs_fn: site '{name}' is a {type(fn).__name__}, not an "
                                 "EnergyDistribution of a discrete energy (inside a plate or .expand() it is batched: "
                                 "give each example its own site).")
            values[name] = update(key, name, fn, values)
        return {name: values[name] for name in gibbs_sites}

    return gibbs_fn
