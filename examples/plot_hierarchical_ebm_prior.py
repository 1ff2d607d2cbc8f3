"""
Learning an energy prior inside a hierarchical model
====================================================

Groups ``g = 1..G`` have unknown effects ``z_g``; each group gives ``n`` noisy
measurements ``x_gi ~ N(z_g, σ²)``. The prior over the effects is an
**energy-based model** whose parameters are learned from the data, together
with the effects' posterior — empirical Bayes, with NumPyro's own SVI:

.. code-block:: python

    def model(x):                                        # x: (G, n)
        prior = energy_module("prior", energy)           # θ = (μ, log τ): a numpyro.param
        with numpyro.plate("groups", G):
            z = ebm_sample("z", prior)                   # z_g ~ exp(-E_θ(z)) / Z_θ
            with numpyro.plate("obs", n):
                numpyro.sample("x", dist.Normal(z, σ), obs=x.T)

With the quadratic energy ``E_θ(z) = ½ ((z − μ) / τ)²`` the group means are
marginally ``x̄_g ~ N(μ, τ² + σ²/n)``, so the marginal maximum-likelihood
answer is known in closed form — ``μ̂ = mean(x̄_g)`` and
``τ̂² = var(x̄_g) − σ²/n`` — and we can watch the learners reach it.

``ebm_sample`` is what makes this work. The log joint needs
``-log Z_θ``, which no NumPyro site can compute; its gradient is
``E_{z ~ p_θ}[∇_θ E_θ(z)]``, and ``ebm_sample`` supplies it from persistent
negative chains kept in ``numpyro.mutable`` state. Without it — the same
model with a plain ``EnergyDistribution`` site, i.e. ``factor(-E_θ)`` — SVI
maximises the unnormalised density and flattens the prior: ``τ`` runs away.

Route (b) runs the same model by **Monte-Carlo EM** through
:func:`ebmppl.fit`: posterior chains over the effects as the positive phase,
prior chains as the negative phase (see the guide page *Learning energies
inside models*).

Set ``EBMPPL_FAST=1`` for a quick run.
"""

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

import ebmppl
from ebmppl.models import chain_report, ebm_sample, energy_module, mcem, prior_chains
from ebmppl.numpyro import EnergyDistribution

FAST = os.environ.get("EBMPPL_FAST") == "1"
NUM_STEPS = 600 if FAST else 5000

# %%
# Data: 200 groups, 5 measurements each; true μ = 1, τ = 0.8, σ = 1.
G, n, sigma = 200, 5, 1.0
k_z, k_x = jax.random.split(jax.random.key(0))
effects = 1.0 + 0.8 * jax.random.normal(k_z, (G,))
x = effects[:, None] + sigma * jax.random.normal(k_x, (G, n))
xbar = np.asarray(x.mean(1), np.float64)
mu_hat, tau_hat = xbar.mean(), np.sqrt(xbar.var() - sigma**2 / n)
print(f"closed-form marginal MLE: mu = {mu_hat:.3f}, tau = {tau_hat:.3f}")

# %%
# The energy prior and the model. ``energy_module`` registers θ as one
# ``numpyro.param``; ``ebm_sample`` is the energy site.
energy = ebmppl.Energy(lambda p, z: 0.5 * jnp.sum(((z - p["mu"]) * jnp.exp(-p["log_tau"])) ** 2),
                       {"mu": jnp.zeros(1), "log_tau": jnp.zeros(1)}, event_shape=(1,))
chains = prior_chains("mala", 1, num_mcmc_steps=10, capacity=2000)


def model(x, corrected=True):
    prior = energy_module("prior", energy)
    with numpyro.plate("groups", x.shape[0]):
        if corrected:
            z = ebm_sample("z", prior, negative=chains)
        else:  # the unnormalised factor alone: -log Z_θ missing
            z = numpyro.sample("z", EnergyDistribution(prior))
        numpyro.sample("x", dist.Normal(z, sigma).to_event(1), obs=x)  # (G, 1) effect broadcast over n


def learn(corrected):
    m = lambda x: model(x, corrected)  # noqa: E731
    lr = optax.piecewise_constant_schedule(0.02, {NUM_STEPS // 2: 0.2})
    svi = SVI(m, AutoNormal(m), optax.adam(lr), Trace_ELBO())
    state = svi.init(jax.random.key(1), x)

    def body(s, _):
        s, loss = svi.update(s, x)
        p = svi.get_params(s)["prior"]
        return s, (p["mu"][0], jnp.exp(p["log_tau"][0]))

    state, trace = jax.jit(lambda s: jax.lax.scan(body, s, None, length=NUM_STEPS))(state)
    return state, np.asarray(trace[0]), np.asarray(trace[1])


state, mu_svi, tau_svi = learn(True)
_, mu_plain, tau_plain = learn(False)
tail = slice(-NUM_STEPS // 4, None)
print(f"SVI + ebm_sample:    mu = {mu_svi[tail].mean():.3f}, tau = {tau_svi[tail].mean():.3f}")
print(f"SVI + plain factor:  mu = {mu_plain[-1]:.3f}, tau = {tau_plain[-1]:.3f}  (runs away)")
print("negative chains:", chain_report(state.mutable_state, "z"))

# %%
# Route (b): Monte-Carlo EM through ``ebmppl.fit`` on the same model. Each
# group keeps a persistent posterior chain (so the data carry the groups'
# indices), the prior chains are the negative phase, and ``fit`` brings its
# progress bar, training health and checkpoints.
EM_STEPS = 300 if FAST else 2000
objective = mcem(model, energy, optax.adam(optax.cosine_decay_schedule(0.02, EM_STEPS, 0.05), b1=0.0),
                 num_data=G, num_mcmc_steps=10)
em = ebmppl.fit(energy, jax.random.key(2), (x, jnp.arange(G)), objective=objective, num_steps=EM_STEPS,
                batch_size=50, progress_bar=False)
mu_em, tau_em = float(em.energy.params["mu"][0]), float(np.exp(em.energy.params["log_tau"][0]))
print(f"MCEM (ebmppl.fit):   mu = {mu_em:.3f}, tau = {tau_em:.3f}")

# %%
# The learned prior against the group means, and the learners' paths.
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
steps = np.arange(1, NUM_STEPS + 1)
for ax, (path, plain, truth, label) in zip(axes[:2], [(mu_svi, mu_plain, mu_hat, "μ"),
                                                      (tau_svi, tau_plain, tau_hat, "τ")]):
    ax.plot(steps, path, lw=1, label="SVI + ebm_sample")
    ax.plot(steps, plain, lw=1, color="tab:red", label="SVI + plain factor")
    ax.axhline(truth, color="k", ls="--", lw=1, label="closed-form MLE")
    ax.plot([NUM_STEPS], [{"μ": mu_em, "τ": tau_em}[label]], "*", ms=12, color="tab:green",
            label="MCEM through fit (end)")
    ax.set_xlabel("SVI step")
    ax.set_title(label)
axes[1].set_ylim(0, 3 * tau_hat)
axes[0].legend(fontsize=8)
grid = np.linspace(xbar.min() - 1, xbar.max() + 1, 300)
mu_end, tau_end = mu_svi[tail].mean(), tau_svi[tail].mean()
axes[2].hist(xbar, bins=30, density=True, color="0.8", label="group means x̄_g")
axes[2].plot(grid, np.exp(-0.5 * ((grid - mu_end) / tau_end) ** 2) / (tau_end * np.sqrt(2 * np.pi)),
             label="learned prior p_θ(z)")
s = np.sqrt(tau_end**2 + sigma**2 / n)
axes[2].plot(grid, np.exp(-0.5 * ((grid - mu_end) / s) ** 2) / (s * np.sqrt(2 * np.pi)), ls=":",
             label="implied marginal of x̄_g")
axes[2].legend(fontsize=8)
axes[2].set_title("prior and data")
fig.tight_layout()
fig.savefig(os.environ.get("EBMPPL_FIGURE", "hierarchical_ebm_prior.png"), dpi=100)
