"""The closed-form check of the MCEM route (``ebmppl.models.mcem`` through ``ebmppl.fit``), shared by
tests/test_models_mcem.py and its two-device script.

The model, data and marginal MLE are the SVI route's (tests/_svi_closed_form.py): z_i ~ EBM_θ with a quadratic
energy, x_i | z_i ~ N(z_i, σ² I); the MLE is μ = x̄ and exp(2s) = var(x) − σ² (1/N). Here θ is learned by
stochastic-approximation EM at a constant learning rate: the iterates fluctuate around the MLE, and the average of
the last half is compared with it in units of its Monte-Carlo standard error (ESS of the iterate trace).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _svi_closed_form import D, ENERGY, N, SIGMA, data, mle, model  # noqa: F401  (one model and data for both routes)

import ebmppl
from ebmppl.diagnostics import ess
from ebmppl.models import prior_chains
from ebmppl.models.mcem import mcem

NUM_STEPS, BATCH, EVERY = 2000, 100, 5  # θ is recorded every EVERY steps; the last half is averaged
# the prior chains start with a step larger than the prior's scale and shrink it towards acceptance 0.6
NEGATIVE = prior_chains("mala", D, num_mcmc_steps=10, capacity=500, sampler_params={"step_size": 2.0})
OBJECTIVE = mcem(model, ENERGY, optax.adam(0.01, b1=0.0), num_data=N, num_mcmc_steps=10, negative=NEGATIVE)


def run(x, key, devices=None, num_steps: int = NUM_STEPS):
    """``fit`` with the MCEM objective; returns the result and θ's trace ``(num_steps // EVERY, 2 D)``."""
    trace = []

    def record(step, state, metrics):
        trace.append(np.concatenate([np.asarray(state.params["mean"]), np.asarray(state.params["log_scale"])]))

    result = ebmppl.fit(ENERGY, key, (x, jnp.arange(x.shape[0])), objective=OBJECTIVE, num_steps=num_steps,
                        batch_size=BATCH, chunk_size=EVERY, callbacks=[record], progress_bar=False, devices=devices)
    return result, np.stack(trace)


def tail_summary(trace: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the last half of the iterates and its MCSE (their standard deviation over sqrt(ESS))."""
    tail = trace[trace.shape[0] // 2:]
    return tail.mean(0), tail.std(0) / np.sqrt(np.asarray(ess(tail[None])))


def truth(x) -> np.ndarray:
    mu_hat, ls_hat = mle(x)
    return np.concatenate([mu_hat, ls_hat])
