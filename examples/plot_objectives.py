"""
Score matching and NCE against contrastive divergence
=====================================================

Contrastive divergence pays for its exact-in-the-limit gradient with an MCMC
loop inside every update. Three objectives avoid the loop:

* **denoising score matching** (``"dsm"``) regresses the score
  ``-∇E(x̃)`` onto ``(x - x̃)/σ²`` for data blurred with ``N(0, σ²)`` — it
  learns the blurred density;
* **sliced score matching** (``"ssm"``) matches the score with random
  projections of its Jacobian — no blur, one extra backward pass;
* **noise-contrastive estimation** (``"nce"``) trains a logistic classifier
  between data and a known noise density, with ``log Z`` as a learned
  parameter ``log_c``.

All four fit the same network to two moons; a grid ``log Z`` makes the
held-out log-likelihood exact, and NCE's learned ``log_c`` can be checked
against it. A full comparison with timings is in the benchmarks
(``benchmarks/bench_objectives.py``). Set ``EBMPPL_FAST=1`` for a quick run.
"""

import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import Energy, buffer, fit, samplers
from ebmppl.data import two_moons
from ebmppl.evaluation import grid_log_partition, held_out_log_likelihood
from ebmppl.nn import MLPEnergy
from ebmppl.plots import plot_density_2d

FAST = os.environ.get("EBMPPL_FAST") == "1"
STEPS = 150 if FAST else 4000

moons = two_moons()
train, test = moons.sample(jax.random.key(0), 10_000), moons.sample(jax.random.key(1), 5_000)
entropy, _ = moons.entropy(jax.random.key(2))
center = jnp.mean(train, axis=0)

# %%
# The four objectives; everything else is shared.
objectives = {
    "CD (persistent)": dict(objective="cd", num_mcmc_steps=20, alpha=0.05,
                            sampler=samplers.langevin(step_size=0.005, noise_scale=0.1),
                            chain_init=buffer.replay_buffer(10_000, 0.05, buffer.uniform_noise(-1.8, 2.8))),
    "DSM (σ = 0.1)": dict(objective="dsm", sigma=0.1),
    "SSM": dict(objective="ssm"),
    "NCE": dict(objective="nce", noise_mean=center, noise_scale=1.5 * jnp.std(train, axis=0), noise_ratio=4),
}
rows = []
for name, options in objectives.items():
    net = MLPEnergy(2, (128, 128, 128), confinement_scale=2.5, confinement_center=(0.5, 0.25), key=jax.random.key(3))
    t0 = time.perf_counter()
    result = fit(Energy.from_equinox(net, event_shape=(2,)), jax.random.key(4), train, num_steps=STEPS,
                 optimizer=optax.adam(1e-3, b1=0.0), progress_bar=False, **options)
    seconds = time.perf_counter() - t0
    log_z = grid_log_partition(result.energy, moons.limits, 400)
    ll, se = held_out_log_likelihood(result.energy, test, log_z)
    rows.append((name, result, ll, se, seconds, log_z))
    print(f"{name:16s} held-out log-lik {ll:7.3f} ± {se:.3f}   {seconds:5.1f} s")
print(f"data's own log-likelihood {-entropy:.3f}")

# %%
# NCE learns log Z as a parameter; the grid says how well.
nce = rows[-1]
print(f"NCE's learned log_c {float(nce[1].state.params['log_c']):.3f}  vs grid log Z {nce[5]:.3f}")

# %%
# Learned densities (top) and held-out log-likelihood against training time (bottom right).
fig = plt.figure(figsize=(13, 6.2), layout="constrained")
grid = fig.add_gridspec(2, 4, height_ratios=[1.15, 1])
for col, (name, result, ll, se, seconds, _) in enumerate(rows):
    ax = fig.add_subplot(grid[0, col])
    plot_density_2d(result.energy, ax, moons.limits, resolution=200)
    ax.set(xlim=moons.limits[:2], ylim=moons.limits[2:], aspect="equal", xticks=[], yticks=[])
    ax.set_title(f"{name}\n{ll:.2f} ± {se:.2f} nats", fontsize=10)
ax = fig.add_subplot(grid[1, 2:])
for name, _, ll, se, seconds, _ in rows:
    ax.errorbar(seconds, ll, yerr=2 * se, fmt="o", capsize=3, label=name)
ax.axhline(-entropy, color="k", ls="--", lw=1, label="data's own")
ax.set(xlabel="training time (s)", ylabel="held-out log-likelihood (nats)")
ax.legend(fontsize=8)
ax = fig.add_subplot(grid[1, :2])
ax.scatter(*np.asarray(test[:3000]).T, s=1, c="0.4")
ax.set(xlim=moons.limits[:2], ylim=moons.limits[2:], aspect="equal", title="held-out data")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "objectives.png"), dpi=100)
