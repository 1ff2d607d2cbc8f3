"""
Persistent chains, short-run chains and CD-k
============================================

Contrastive divergence needs negatives from the current model; *where the
chains start* decides what is learned. Three schemes, the same network, the
same Langevin sampler, the same budget, on eight Gaussians:

* **persistent** (replay buffer): chains continue from the last negatives, 5 %
  restarted from noise each step — after enough steps they sample the model,
  so the energy is a density with a calibrated likelihood;
* **short-run**: every step starts from uniform noise and runs K steps — the
  energy learns to be a K-step *generator*, not a density;
* **CD-k**: chains start at the data batch — cheap, but they never visit
  regions far from the data, so nothing there is pushed up.

Held-out log-likelihoods use a grid log Z (exact in 2-D). What the full run
shows (3000 steps): short-run chains give the best-looking *samples* and the
worst density — the mode weights are wrong, because the energy only has to
steer noise to the data in K steps. Persistent chains are unbiased in the
limit but seldom cross between modes, so some modes get too little weight.
CD-k wins on likelihood *here*: the modes are close to the data, and the
Gaussian confinement term of ``MLPEnergy`` already keeps far regions improbable,
which is the part CD-k cannot learn by itself. Set ``EBMPPL_FAST=1`` for a
quick run.
"""

import os

import jax
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import Energy, buffer, fit, sample, samplers
from ebmppl.data import eight_gaussians
from ebmppl.evaluation import grid_log_partition, held_out_log_likelihood
from ebmppl.nn import MLPEnergy
from ebmppl.plots import plot_density_2d

FAST = os.environ.get("EBMPPL_FAST") == "1"
STEPS = 150 if FAST else 3000

data = eight_gaussians()
train, test = data.sample(jax.random.key(0), 10_000), data.sample(jax.random.key(1), 5_000)
entropy, _ = data.entropy(jax.random.key(2))
box = buffer.uniform_noise(data.limits[0], data.limits[1])

# %%
# One recipe, three chain initialisations. K = 20 Langevin steps per update
# (K = 60 for short-run chains, which start from scratch each time).
schemes = {
    "persistent (replay buffer)": dict(chain_init=buffer.replay_buffer(10_000, 0.05, box), num_mcmc_steps=20),
    "short-run from noise": dict(chain_init=buffer.short_run(box), num_mcmc_steps=60),
    "CD-k from the data": dict(chain_init=buffer.cd_k(), num_mcmc_steps=20),
}
langevin = samplers.langevin(step_size=0.005, noise_scale=0.1)
results = {}
for name, options in schemes.items():
    net = MLPEnergy(2, (128, 128, 128), confinement_scale=6.0, key=jax.random.key(3))
    result = fit(Energy.from_equinox(net, event_shape=(2,)), jax.random.key(4), train, num_steps=STEPS,
                 optimizer=optax.adam(1e-3, b1=0.0), alpha=0.05, progress_bar=False,
                 sampler=langevin, **options)
    log_z = grid_log_partition(result.energy, data.limits, 300)
    ll, se = held_out_log_likelihood(result.energy, test, log_z)
    results[name] = (result, ll, se)
    print(f"{name:28s} held-out log-likelihood {ll:.3f} ± {se:.3f}  (data's own {-entropy:.3f})")



# %%
# What each scheme's chains produce from the final energy: the same K Langevin
# steps, started where that scheme starts them (buffer, noise, data).
def negatives(name, result):
    k = schemes[name]["num_mcmc_steps"]
    if name.startswith("persistent"):
        x0 = result.state.buffer.samples[:2000]
    elif name.startswith("short-run"):
        x0 = box(jax.random.key(5), (2000, 2))
    else:
        x0 = test[:2000]
    out = sample(result.energy, jax.random.key(6), sampler=langevin, num_chains=2000, num_warmup=k - 1,
                 num_samples=1, init=x0, adapt=False, progress_bar=False)
    return np.asarray(out.positions[:, 0])


# %%
# Top: the learned densities. Bottom: the negatives over the data.
fig, axes = plt.subplots(2, 3, figsize=(12, 8), sharex=True, sharey=True, layout="constrained")
for col, (name, (result, ll, se)) in enumerate(results.items()):
    plot_density_2d(result.energy, axes[0, col], data.limits, resolution=200)
    axes[0, col].set_title(f"{name}\nlog-lik {ll:.2f} ± {se:.2f} (data {-entropy:.2f})", fontsize=10)
    axes[1, col].scatter(*np.asarray(test[:2000]).T, s=1, c="0.75", label="data")
    axes[1, col].scatter(*negatives(name, result).T, s=1.5, c="tab:red", alpha=0.5, label="negatives")
    axes[1, col].set_title("negatives (red) over held-out data (grey)", fontsize=10)
    for ax in axes[:, col]:
        ax.set(xlim=data.limits[:2], ylim=data.limits[2:], aspect="equal")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "training_schemes.png"), dpi=100)
