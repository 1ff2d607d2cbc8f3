"""The closed-form check of the SVI route shared by tests/test_models_svi.py and its two-device script.

z_i ~ EBM_θ with E_θ(z) = ½ Σ_j ((z_j − μ_j) / exp(s_j))², x_i | z_i ~ N(z_i, σ² I): the marginal of x_i is
N(μ, exp(2s) + σ²), so the marginal MLE is μ = x̄ and exp(2s) = var(x) − σ² (variance with 1/N).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from ebmppl import Energy
from ebmppl.diagnostics import ess
from ebmppl.models import ebm_sample, energy_module, prior_chains
from ebmppl.numpyro import EnergyDistribution

D, N, SIGMA = 3, 500, 0.5
NUM_STEPS, TAIL = 4000, 1500  # the last TAIL iterates run at the final (small, constant) learning rate
MU, SCALE = jnp.array([1.0, -2.0, 0.5]), jnp.array([1.0, 2.0, 0.7])


def data(seed: int = 0) -> jax.Array:
    kz, kx = jax.random.split(jax.random.key(seed))
    z = MU + SCALE * jax.random.normal(kz, (N, D))
    return z + SIGMA * jax.random.normal(kx, (N, D))


def mle(x) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    return x.mean(0), 0.5 * np.log(x.var(0) - SIGMA**2)


def _quadratic(p, z):
    return 0.5 * jnp.sum(((z - p["mean"]) * jnp.exp(-p["log_scale"])) ** 2)


ENERGY = Energy(_quadratic, {"mean": jnp.zeros(D), "log_scale": jnp.zeros(D)}, event_shape=(D,))
CHAINS = prior_chains("mala", D, num_mcmc_steps=10, capacity=2000)


def model(x, correct: bool = True):
    prior = energy_module("prior", ENERGY)
    with numpyro.plate("data", x.shape[0]):
        if correct:
            z = ebm_sample("z", prior, negative=CHAINS)
        else:  # the plain unnormalised factor: -log Z_θ missing
            z = numpyro.sample("z", EnergyDistribution(prior))
        numpyro.sample("x", dist.Normal(z, SIGMA).to_event(1), obs=x)


def run_svi(x, key, correct: bool = True, num_steps: int = NUM_STEPS, trace_step=None):
    """SVI (AutoNormal guide: exact here, the posterior is Gaussian and factorised); θ's iterates."""
    schedule = optax.piecewise_constant_schedule(0.02, {1500: 0.25, 2500: 0.4})
    svi = SVI(lambda x: model(x, correct), AutoNormal(lambda x: model(x, correct)), optax.adam(schedule),
              Trace_ELBO())
    state = svi.init(key, x)

    def body(s, _):
        s, loss = svi.update(s, x)
        p = svi.get_params(s)["prior"]
        return s, (p["mean"], p["log_scale"])

    run = jax.jit(lambda s: jax.lax.scan(body, s, None, length=num_steps))
    if trace_step is not None:
        run = trace_step(run)
    state, (means, log_scales) = run(state)
    return state, np.asarray(means), np.asarray(log_scales)


def z_scores(x, means, log_scales) -> np.ndarray:
    """(tail average − MLE) / MCSE for the 2·D parameters; MCSE from the ESS of the tail iterates."""
    mu_hat, ls_hat = mle(x)
    tail = np.concatenate([means[-TAIL:], log_scales[-TAIL:]], axis=1)
    mcse = tail.std(0) / np.sqrt(np.asarray(ess(tail[None])))
    return (tail.mean(0) - np.concatenate([mu_hat, ls_hat])) / mcse
