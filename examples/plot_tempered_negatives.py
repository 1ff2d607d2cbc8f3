"""
Tempered negatives: contrastive divergence that learns mode weights
===================================================================

Contrastive divergence lowers the energy of the data and raises that of the
model's samples, the *negatives*. When the negatives come from a local
sampler (Langevin, MALA) whose chains never leave the mode they start in,
the gradient says nothing about how much mass each mode should get: the
share of negatives in a mode is frozen, whatever the model's weight there,
so the weights drift freely and the learned model can put almost all its mass
in one mode while every mode looks right.

Parallel tempering (``samplers.parallel_tempering``) fixes the negatives:
hot replicas cross between the modes and swaps carry their states down to
the target, so the negatives follow the model's own weights and CD corrects
them. ``fit`` sets the tempering reference from the data (mean and 2 sd per
coordinate), and adapts the ladder and a step per level while the energy
changes (``result.state.buffer.sampler_state``).

Three Gaussian blobs with weights 0.5 / 0.3 / 0.2, one small MLP energy, the
``"density"`` recipe, and the same optimizer and budget of K = 10 sampler
steps per training step for both: MALA negatives (the recipe's default
sampler) against parallel tempering with 4 levels over MALA. The mode weights
of each *learned* model are exact, up to quadrature: ``exp(-E)`` integrated
on a fine grid over each mode's Voronoi cell. Set ``EBMPPL_FAST=1`` for a
quick run (the weights are then not yet converged).
"""

import os

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import Energy, fit, samplers
from ebmppl.nn import MLPEnergy
from ebmppl.plots import plot_density_2d

FAST = os.environ.get("EBMPPL_FAST") == "1"
STEPS = 300 if FAST else 1500
CENTERS = np.array([[-3.0, -2.0], [3.0, -2.0], [0.0, 3.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])
LIMITS = (-6.5, 6.5, -6.0, 6.5)

# %%
# Data: 4000 draws of the mixture (component sd 0.5, the modes 6 sd or more apart).
k_comp, k_noise = jax.random.split(jax.random.key(100))
component = jax.random.choice(k_comp, 3, (4000,), p=jnp.asarray(WEIGHTS))
data = jnp.asarray(CENTERS, jnp.float32)[component] + 0.5 * jax.random.normal(k_noise, (4000, 2))
data_weights = np.bincount(np.asarray(component), minlength=3) / len(component)


def mode_weights(energy, n=300):
    """Mass of each mode: exp(log p) summed over a grid, split by the nearest centre."""
    gx, gy = np.linspace(-7.0, 7.0, n), np.linspace(-7.0, 7.0, n)
    points = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    logp = np.asarray(jax.jit(jax.vmap(energy.logdensity_fn))(jnp.asarray(points, jnp.float32)), np.float64)
    w = np.exp(logp - logp.max())
    cell = np.argmin(((points[:, None, :] - CENTERS[None]) ** 2).sum(-1), axis=1)
    mass = np.array([w[cell == k].sum() for k in range(len(CENTERS))])
    return mass / mass.sum()


# %%
# The same fit twice; only the negative-phase sampler differs.
def train(sampler):
    energy = Energy.from_equinox(MLPEnergy(2, (64, 64), key=jax.random.key(0)), event_shape=(2,))
    options = {} if sampler is None else {"sampler": sampler}
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, STEPS, alpha=0.01), b1=0.0)
    return fit(energy, jax.random.key(0), data, num_steps=STEPS, batch_size=128, num_mcmc_steps=10,
               recipe="density", optimizer=optimizer, progress_bar=False, **options)


local = train(None)  # the recipe's MALA
tempered = train(samplers.parallel_tempering(kernel="mala", num_replicas=4))
weights = {"MALA negatives": mode_weights(local.energy), "tempered negatives": mode_weights(tempered.energy)}
for name, w in weights.items():
    print(f"{name:>20}: weights {np.round(w, 3).tolist()}, max error {np.abs(w - data_weights).max():.3f}")
ladder = tempered.state.buffer.sampler_state
print("adapted ladder", np.round(np.asarray(ladder["betas"], dtype=float), 3).tolist(),
      "swap acceptance", np.round(np.asarray(ladder["swap_acceptance"], dtype=float), 2).tolist())

# %%
# Data, the two learned densities, and the mode weights against the data's.
fig, axes = plt.subplots(1, 4, figsize=(17, 4.2), layout="constrained")
axes[0].scatter(*np.asarray(data[:2000]).T, s=2, alpha=0.4)
axes[0].set_title("data (weights 0.5 / 0.3 / 0.2)")
for ax, (name, result) in zip(axes[1:3], (("MALA negatives", local), ("tempered negatives", tempered)), strict=True):
    plot_density_2d(result.energy, ax, LIMITS)
    ax.set_title(f"learned density, {name}\nmax weight error {np.abs(weights[name] - data_weights).max():.3f}")
for ax in axes[:3]:
    ax.set(xlim=LIMITS[:2], ylim=LIMITS[2:], aspect="equal")
    for k, c in enumerate(CENTERS):
        ax.annotate(f"mode {k}", c + np.array([0.0, 1.5]), ha="center", fontsize=8)
bars = np.arange(len(CENTERS))
axes[3].bar(bars - 0.27, data_weights, 0.27, label="data", color="0.6")
axes[3].bar(bars, weights["MALA negatives"], 0.27, label="MALA negatives", color="tab:orange")
axes[3].bar(bars + 0.27, weights["tempered negatives"], 0.27, label="tempered negatives", color="tab:blue")
axes[3].set(xticks=bars, xticklabels=[f"mode {k}" for k in bars], ylabel="mode weight (grid integral)",
            title="mode weights of the learned models")
axes[3].legend()
fig.savefig(os.environ.get("EBMPPL_FIGURE", "tempered_negatives.png"), dpi=100)
