"""
Quickstart: an energy, four samplers, one figure
================================================

An energy ``E(x)`` defines the density ``p(x) ∝ exp(-E(x)/T)``. Here we write
the banana energy by hand as a plain JAX function, register it as an
:class:`ebmppl.Energy`, and sample it with four BlackJAX samplers through one
call, ``ebmppl.sample``. Each run uses 4 chains, vectorised in one compiled
``lax.scan``; warm-up tunes the step size (and, for HMC/NUTS, a mass matrix)
pooled over the chains.

Set ``EBMPPL_FAST=1`` to run with a small budget (CI does).
"""

import os

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import ebmppl
from ebmppl import diagnostics
from ebmppl.plots import plot_density_2d

FAST = os.environ.get("EBMPPL_FAST") == "1"
NUM_WARMUP, NUM_SAMPLES = (200, 200) if FAST else (1000, 2000)


# %%
# The energy, written for ONE example and returning a scalar; ebmppl vmaps it.
def banana_energy(params, x):
    scale, curvature = params
    return 0.5 * (x[0] / scale) ** 2 + 0.5 * (x[1] - curvature * (x[0] ** 2 - scale**2)) ** 2


energy = ebmppl.Energy(banana_energy, params=(1.0, 1.0), event_shape=(2,))
print(energy.energy(jnp.zeros((3, 2))))  # batched: one energy per row

# %%
# Sample it with four samplers: same chains, same budget, same key.
names = ["mala", "hmc", "nuts", "barker"]
results = {
    name: ebmppl.sample(energy, jax.random.key(0), sampler=name, num_chains=4,
                        num_warmup=NUM_WARMUP, num_samples=NUM_SAMPLES, progress_bar=False)
    for name in names
}

# %%
# Diagnostics through ArviZ: split R-hat and bulk ESS per coordinate.
for name, out in results.items():
    draws = np.asarray(out.positions)
    print(f"{name:7s} R-hat max {diagnostics.rhat(draws).max():.3f}  "
          f"ESS min {diagnostics.ess(draws).min():6.0f}  "
          f"grad evals {int(out.stats.num_grad_evals.sum()):8d}  "
          f"step size {float(out.params['step_size']):.3f}")

# %%
# The draws over the true density, one panel per sampler.
fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 4), sharex=True, sharey=True,
                         layout="constrained")
for ax, (name, out) in zip(axes, results.items(), strict=True):
    plot_density_2d(energy, ax, limits=(-3.5, 3.5, -3, 8))
    pts = np.asarray(out.positions).reshape(-1, 2)[::4]
    ax.scatter(pts[:, 0], pts[:, 1], s=2, color="tab:orange", alpha=0.5)
    ess = diagnostics.ess(np.asarray(out.positions)).min()
    ax.set(xlim=(-3.5, 3.5), ylim=(-3, 8), title=f"{name}: min ESS {ess:.0f}")
    ax.set_xlabel("$x_1$")
axes[0].set_ylabel("$x_2$")
fig.suptitle("Banana energy: draws of four BlackJAX samplers through ebmppl.sample")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "sampling_quickstart.png"), dpi=110)
