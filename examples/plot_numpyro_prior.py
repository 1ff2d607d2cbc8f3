"""
An energy as a prior inside a NumPyro model
===========================================

A fitted energy is a density you can reuse. Here an energy over 2-D
positions — the ring target, whose mass sits on a circle of radius 2 — is a
*prior* for an unknown location ``z``. We observe a handful of noisy
measurements ``y_i ~ N(z, 1)`` and ask NumPyro for the posterior:

.. code-block:: python

    def model(y):
        z = numpyro.sample("z", EnergyDistribution(ring_energy))   # EBM prior
        with numpyro.plate("obs", 3):
            numpyro.sample("y", dist.Normal(z, 1.0).to_event(1), obs=y)

``EnergyDistribution.log_prob`` is ``-E(z)/T`` without ``log Z``; that is
fine for inference over ``z`` (the constant cancels) and is exactly why θ of
an energy cannot be *learned* this way. The same model then runs through
ebmppl's own samplers via ``model_energy``, and ArviZ checks both runs.

Set ``EBMPPL_FAST=1`` for a quick run.
"""

import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

import ebmppl
from ebmppl import diagnostics
from ebmppl.numpyro import EnergyDistribution, model_energy
from ebmppl.plots import plot_density_2d
from ebmppl.targets import ring

FAST = os.environ.get("EBMPPL_FAST") == "1"
WARMUP, DRAWS = (200, 200) if FAST else (1000, 2000)

# %%
# The prior: an energy with its mass on a ring of radius 2.
prior = ring(radius=2.0, width=0.25)
true_z = jnp.array([1.2, 1.6])
y = true_z + 1.0 * jax.random.normal(jax.random.key(0), (3, 2))


def model(y=None):
    z = numpyro.sample("z", EnergyDistribution(prior.energy))
    with numpyro.plate("obs", 3):
        numpyro.sample("y", dist.Normal(z, 1.0).to_event(1), obs=y)


# %%
# NumPyro's NUTS on the model, four chains.
mcmc = MCMC(NUTS(model), num_warmup=WARMUP, num_samples=DRAWS, num_chains=4, chain_method="vectorized",
            progress_bar=False)
mcmc.run(jax.random.key(1), y=y)
idata = diagnostics.from_numpyro(mcmc)
print(diagnostics.summary(idata))

# %%
# The same model as an ebmppl energy over its unconstrained latents: ebmppl's MALA on it.
# ``sample`` recognises a model's energy: every chain starts from NumPyro's
# initialisation, and ``to_arviz()`` shows the model's named, constrained sites.
me = model_energy(model, jax.random.key(2), y=y)
out = ebmppl.sample(me, jax.random.key(3), sampler="mala", num_chains=4, num_warmup=WARMUP,
                    num_samples=DRAWS, progress_bar=False)
idata_mala = out.to_arviz()
z_mala = idata_mala.posterior["z"].values
print(diagnostics.summary(idata_mala))
print("max R-hat (ebmppl MALA):", float(diagnostics.rhat(z_mala).max()))
print("posterior mean  NumPyro NUTS", mcmc.get_samples()["z"].mean(0), "  ebmppl MALA", z_mala.mean((0, 1)))

# %%
# Prior, likelihood and posterior: three noisy measurements alone say little;
# the prior bends the posterior into an arc along the ring.
fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), layout="constrained")
plot_density_2d(prior.energy, axes[0], (-3.2, 3.2, -3.2, 3.2), cmap="Greys")
axes[0].scatter(*y.T, c="tab:orange", s=40, edgecolor="k", label="measurements y")
axes[0].scatter(*true_z, marker="*", s=250, c="gold", edgecolor="k", label="true z")
axes[0].set_title("EBM prior (ring) and the data")
axes[0].legend(loc="lower left")
z_nuts = mcmc.get_samples()["z"]
plot_density_2d(prior.energy, axes[1], (-3.2, 3.2, -3.2, 3.2), cmap="Greys")
axes[1].scatter(*z_nuts[::4].T, s=3, alpha=0.4, label="NumPyro NUTS")
axes[1].scatter(*z_mala.reshape(-1, 2)[::4].T, s=3, alpha=0.4, label="ebmppl MALA")
axes[1].scatter(*y.mean(0), marker="x", s=60, c="tab:orange", label="mean of y")
axes[1].set_title("posterior of z")
axes[1].legend(loc="lower left", markerscale=2)
fig.savefig(os.environ.get("EBMPPL_FIGURE", "numpyro_prior.png"), dpi=100)
