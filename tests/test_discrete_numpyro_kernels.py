"""A latent Ising site moved by ebmppl's discrete kernels inside NumPyro's HMCGibbs: the exact posterior."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import MCMC, NUTS, HMCGibbs

from ebmppl import diagnostics
from ebmppl.discrete import ising
from ebmppl.models import discrete_gibbs_fn
from ebmppl.numpyro import EnergyDistribution

SIGMA = 0.8
PRIOR = ising(lattice=(3, 3), beta=0.4, periodic=False)
Y = jnp.asarray([1.3, 0.4, -0.9, 1.1, 0.2, -1.4, 0.8, 1.6, -0.3])


def model(y):
    x = numpyro.sample("x", EnergyDistribution(PRIOR))
    mu = numpyro.sample("mu", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(mu + x, SIGMA), obs=y)


def exact_posterior():
    """E[mu | y] and E[mean(x) | y]: enumerate the 512 spin states, integrate mu in closed form."""
    states = np.asarray(PRIOR.support.enumerate(PRIOR.event_shape), np.float64)
    log_prior = -np.asarray(PRIOR.energy(jnp.asarray(states)), np.float64)
    n, y = states.shape[1], np.asarray(Y, np.float64)
    cov = SIGMA**2 * np.eye(n) + np.ones((n, n))  # y | x ~ N(x, σ²I + 11ᵀ) once mu ~ N(0, 1) is integrated out
    inv = np.linalg.inv(cov)
    r = y[None] - states
    log_w = log_prior - 0.5 * np.einsum("si,ij,sj->s", r, inv, r)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    mu_given_x = (r.sum(1) / SIGMA**2) / (1.0 + n / SIGMA**2)
    return float(w @ mu_given_x), float(w @ states.mean(1))


def test_hmc_gibbs_with_a_discrete_kernel_matches_the_exact_posterior(sampler="gibbs_with_gradients"):
    kernel = HMCGibbs(NUTS(model), gibbs_fn=discrete_gibbs_fn(model, Y, sampler=sampler, num_steps=5),
                      gibbs_sites=["x"])
    mcmc = MCMC(kernel, num_warmup=200, num_samples=1000, num_chains=2, chain_method="sequential",
                progress_bar=False)
    mcmc.run(jax.random.key(3), Y)
    draws = mcmc.get_samples(group_by_chain=True)
    stats = np.stack([np.asarray(draws["mu"]), np.asarray(draws["x"]).mean(-1)], axis=-1)  # (chain, draw, 2)
    truth = np.asarray(exact_posterior())
    z = np.abs(stats.mean((0, 1)) - truth) / diagnostics.mcse(stats)
    assert np.all(z < 4), (stats.mean((0, 1)), truth, z)
    assert set(np.unique(np.asarray(draws["x"])).tolist()) <= {-1.0, 1.0}


def test_an_inexact_or_continuous_kernel_is_refused():
    with pytest.raises(ValueError, match="not exact"):
        discrete_gibbs_fn(model, Y, sampler="dula")
    gibbs_fn = discrete_gibbs_fn(model, Y, sampler="mala")
    with pytest.raises(TypeError, match="discrete"):
        gibbs_fn(jax.random.key(0), {"x": -jnp.ones(9)}, {"mu": jnp.array(0.0)})
