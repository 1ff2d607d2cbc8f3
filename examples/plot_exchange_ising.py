"""
Bayesian EBM parameters: the exchange algorithm on an Ising model
=================================================================

Infer the interaction strength β of an Ising model from observed spin
configurations, with a full posterior, although the model's normaliser
``Z(β)`` is unknown to the sampler.

An energy site whose data are *observed*,

.. code-block:: python

    def model(x):
        beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
        numpyro.sample("x", EnergyDistribution(ising.with_params(beta), states=spins), obs=x)

has the posterior ``p(β | x) ∝ p(β) exp(-Σ_n E_β(x_n)) / Z(β)^N``: *doubly
intractable*, because a Metropolis ratio would need ``Z(β) / Z(β')``. The
**exchange algorithm** (Murray, Ghahramani & MacKay, UAI 2006) proposes β',
draws *auxiliary data* ``y`` of the observed shape from the model at β', and
accepts with ``p(β') f_β'(x) f_β(y) / (p(β) f_β(x) f_β'(y))``, in which every
``Z`` cancels. ``ebmppl.models.exchange.Exchange`` is that algorithm as a
NumPyro kernel: ``MCMC(Exchange(model), ...)``.

**When it applies.** The energy's parameters are what you want a posterior
over, its data are observed, and you can draw from the model at any θ. The
draws are *exact* when the energy lives on a finite set you can enumerate
(here the 2¹⁶ states of a 4×4 grid of ±1 spins: ``EnergyDistribution(energy,
states=...)`` samples by enumeration); the chain then targets the exact
posterior. For an energy on real vectors ``Exchange(model, auxiliary="mala",
auxiliary_params=..., num_mcmc_steps=...)`` draws ``y`` with a long MCMC run
started at the observed data instead: these are **approximate auxiliary
draws**, not exactly from ``p_θ'``. The chain is then biased (towards the
prior when the auxiliary chains mix too little), says so with an
``ApproximateExchangeWarning``, and the result should be checked for
stability under a larger ``num_mcmc_steps``. For learning a point estimate of
θ, or energies with many parameters (networks), fit by maximum likelihood
instead (``ebmppl.fit``, or the SVI and MCEM routes of the guide page
"Learning energies inside models").

Because this model is small, the exact posterior is also computable here: on a
fine grid of β, with ``log Z(β)`` summed over all 65 536 states. The exchange
chains are compared against it.

Set ``EBMPPL_FAST=1`` for a quick run.
"""

import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC

from ebmppl import Energy, diagnostics
from ebmppl.models.exchange import Exchange
from ebmppl.numpyro import EnergyDistribution

FAST = os.environ.get("EBMPPL_FAST") == "1"
WARMUP, DRAWS, CHAINS = (200, 400, 2) if FAST else (1000, 4000, 4)

# %%
# A 4×4 grid of ±1 spins with nearest-neighbour couplings (free boundary, 24 edges):
# ``E_β(x) = -β Σ_{i~j} x_i x_j``. ``states`` lists all 2¹⁶ configurations, so the
# distribution samples exactly and knows its ``log Z``.
L = 4
n = L * L
edges = jnp.array([(i, i + 1) for i in range(n) if i % L < L - 1] + [(i, i + L) for i in range(n - L)])
spins = 2.0 * ((jnp.arange(2**n)[:, None] >> jnp.arange(n)) & 1) - 1.0


def coupling(x):
    return jnp.sum(x[..., edges[:, 0]] * x[..., edges[:, 1]], axis=-1)


ising = Energy(lambda beta, x: -beta * coupling(x), jnp.array(0.0), event_shape=(n,))

true_beta, num_data = 0.35, 40
data = EnergyDistribution(ising.with_params(jnp.array(true_beta)), states=spins).sample(jax.random.key(0),
                                                                                         (num_data,))


def model(x):
    beta = numpyro.sample("beta", dist.Normal(0.0, 1.0))
    numpyro.sample("x", EnergyDistribution(ising.with_params(beta), states=spins), obs=x)


# %%
# The exchange algorithm, four vectorised chains. The random-walk scale adapts during
# warm-up towards an acceptance rate of 0.4.
mcmc = MCMC(Exchange(model), num_warmup=WARMUP, num_samples=DRAWS, num_chains=CHAINS, chain_method="vectorized",
            progress_bar=False)
mcmc.run(jax.random.key(1), data)
idata = diagnostics.from_numpyro(mcmc)
print(diagnostics.summary(idata))
beta = np.asarray(mcmc.get_samples(group_by_chain=True)["beta"])
print("acceptance rate:", float(mcmc.get_extra_fields()["accept_prob"].mean()))

# %%
# The exact posterior by enumeration: ``log p(β | x) = log p(β) + β Σ_n S(x_n) - N log Z(β)``
# with ``S`` the sum of the couplings and ``Z(β)`` summed over every state (its exact
# value is ``EnergyDistribution.log_partition()``); mean and sd by quadrature.
grid = np.linspace(-0.2, 1.0, 2401)
stat_states = coupling(spins)
log_z = np.asarray(jax.lax.map(lambda b: jax.nn.logsumexp(b * stat_states), jnp.asarray(grid)), np.float64)
log_post = dist.Normal(0.0, 1.0).log_prob(grid) + grid * float(coupling(data).sum()) - num_data * log_z
density = np.exp(log_post - log_post.max())
density /= np.trapezoid(density, grid)
exact_mean = np.trapezoid(grid * density, grid)
exact_sd = np.sqrt(np.trapezoid((grid - exact_mean) ** 2 * density, grid))
mcse_mean = float(diagnostics.mcse(beta[..., None])[0])
mcse_sd = float(diagnostics.mcse(beta[..., None], method="sd")[0])
print(f"posterior mean: exchange {beta.mean():.4f} ± {mcse_mean:.4f} (MCSE), exact {exact_mean:.4f}")
print(f"posterior sd:   exchange {beta.std():.4f} ± {mcse_sd:.4f} (MCSE), exact {exact_sd:.4f}")

# %%
# Four of the observed configurations, the posterior against the exact one, and the chains.
fig = plt.figure(figsize=(12, 4.2), layout="constrained")
sub = fig.subfigures(1, 3, width_ratios=[1.0, 1.4, 1.6])
tiles = sub[0].subplots(2, 2)
for ax, x in zip(tiles.ravel(), np.asarray(data[:4])):
    ax.imshow(x.reshape(L, L), cmap="gray", vmin=-1, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
sub[0].suptitle(f"4 of the {num_data} observed\nconfigurations (true β = {true_beta})")
ax = sub[1].subplots()
ax.hist(beta.ravel(), bins=30 if FAST else 60, density=True, alpha=0.5, color="tab:blue", label="exchange algorithm")
ax.plot(grid, density, "k", lw=2, label="exact (enumeration)")
ax.axvline(true_beta, color="tab:red", ls="--", label="true β")
ax.set_xlim(exact_mean - 5 * exact_sd, exact_mean + 5 * exact_sd)
ax.set_xlabel("β")
ax.set_title("posterior of the interaction strength")
ax.legend(loc="upper right", fontsize=8)
ax = sub[2].subplots()
for c in range(beta.shape[0]):
    ax.plot(beta[c], lw=0.5, alpha=0.8)
ax.set_xlabel("draw (after warm-up)")
ax.set_ylabel("β")
ax.set_title(f"trace (acceptance {float(mcmc.get_extra_fields()['accept_prob'].mean()):.2f})")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "exchange_ising.png"), dpi=100)
