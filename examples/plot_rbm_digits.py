"""
An RBM on binarised digits: samples, and its log-likelihood by AIS against the exact value
===========================================================================================

A restricted Boltzmann machine over 64 binary pixels, ``p(v) ∝ exp(-F(v))`` with the free energy
``F(v) = -bᵀv - Σⱼ softplus(cⱼ + (Wᵀv)ⱼ)`` (:func:`ebmppl.discrete.rbm`), trained on the 8x8 digits
thresholded at half intensity by persistent contrastive divergence through :func:`ebmppl.fit`: the
negatives come from the RBM's own block Gibbs sampler (``sampler="block_gibbs"``: ``h ~ p(h | v)``,
``v ~ p(v | h)``), whose persistent chains start uniformly on ``{0, 1}⁶⁴``.

Its log-likelihood needs ``log Z``. With 12 hidden units it is exact (:func:`ebmppl.discrete.rbm_log_partition`
sums out ``h``: 4096 terms); for larger hidden layers only an estimate is possible, and
:func:`ebmppl.log_partition` gives the annealed importance sampling of Salakhutdinov & Murray (2008):
intermediate RBMs with weights ``β·W``, from the data's base-rate model at ``β = 0``, moved by block
Gibbs. The right panel checks it against the exact value as the number of temperatures grows (its error
bar is the estimate's own standard error); the left one shows samples of a wider RBM (64 hidden units)
after 1000 block Gibbs sweeps from uniform noise, next to training digits.
Set ``EBMPPL_FAST=1`` for a quick run.
"""

import os
import warnings

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import fit, log_partition
from ebmppl.data import binarized_digits
from ebmppl.discrete import rbm, rbm_log_partition
from ebmppl.samplers.negatives import rbm_block_gibbs
from ebmppl.support import BINARY

FAST = os.environ.get("EBMPPL_FAST") == "1"
STEPS = 600 if FAST else 5000
TEMPERATURES = [30, 100, 300] if FAST else [30, 100, 300, 1000, 3000, 10000]

x, _ = binarized_digits("train")
x_test, _ = binarized_digits("test")

# %%
# Train two RBMs by PCD with block Gibbs negatives (5 sweeps per step).
models = {}
for hidden in (12, 64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the health monitor's probes are for continuous samplers' steps
        result = fit(rbm(64, hidden, key=jax.random.key(hidden)), jax.random.key(1), x, num_steps=STEPS,
                     batch_size=128, sampler="block_gibbs", num_mcmc_steps=5,
                     optimizer=optax.adam(optax.cosine_decay_schedule(1e-2, STEPS, 0.05)), progress_bar=False)
    models[hidden] = result.energy

# %%
# The 12-hidden RBM's test log-likelihood: exact, and by AIS at a growing number of temperatures.
small = models[12]
mean_log_density = float(jnp.mean(small.logdensity(jnp.asarray(x_test))))
exact = mean_log_density - float(rbm_log_partition(small))
estimates = [log_partition(small, jax.random.key(k), num_chains=256, num_temperatures=k, data=x) for k in TEMPERATURES]
ll = np.array([mean_log_density - e.log_z for e in estimates])
se = np.array([e.stderr for e in estimates])
print(f"12 hidden units: exact test log-likelihood {exact:.3f} nats; AIS at {TEMPERATURES[-1]} temperatures "
      f"{ll[-1]:.3f} ± {se[-1]:.3f} (error {ll[-1] - exact:+.3f})")
wide = log_partition(models[64], jax.random.key(7), num_chains=256, num_temperatures=TEMPERATURES[-1], data=x)
print(f"64 hidden units: AIS test log-likelihood "
      f"{float(jnp.mean(models[64].logdensity(jnp.asarray(x_test)))) - wide.log_z:.3f} ± {wide.stderr:.3f} nats")

# %%
# Samples of the 64-hidden RBM: 1000 block Gibbs sweeps from uniform noise.
start = BINARY.uniform(jax.random.key(3), (36,), (64,))
v = rbm_block_gibbs(models[64].params, jax.random.key(4), start, 1000)


def mosaic(images):
    rows = [np.concatenate([np.pad(im.reshape(8, 8), 1) for im in images[r * 6:(r + 1) * 6]], 1) for r in range(6)]
    return np.concatenate(rows, 0)


fig, axes = plt.subplots(1, 3, figsize=(14, 4.6), layout="constrained")
axes[0].imshow(mosaic(x[:36]), cmap="gray_r")
axes[0].set_title("binarised training digits")
axes[1].imshow(mosaic(np.asarray(v)), cmap="gray_r")
axes[1].set_title("RBM (64 hidden): samples after 1000 sweeps")
for ax in axes[:2]:
    ax.axis("off")
axes[2].errorbar(TEMPERATURES, ll, yerr=2 * se, marker="o", capsize=3, label="AIS (± 2 standard errors)")
axes[2].axhline(exact, color="k", ls="--", label=f"exact {exact:.2f} nats")
axes[2].set_xscale("log")
axes[2].set_xlabel("AIS temperatures")
axes[2].set_ylabel("mean test log-likelihood (nats)")
axes[2].set_title("RBM (12 hidden): AIS against the exact value")
axes[2].legend()
fig.savefig(os.environ.get("EBMPPL_FIGURE", "rbm_digits.png"), dpi=100)
