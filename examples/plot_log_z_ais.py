"""
Calibrated energies: log Z by annealed importance sampling
==========================================================

An energy is only known up to its normaliser ``Z``. Annealed importance
sampling (AIS) walks from a normalised base ``q`` to ``p̃ = exp(-E)`` through
``q^{1-β} p̃^β`` with MALA moves, accumulating importance weights. Forward AIS
gives a stochastic lower bound on ``log Z``; reverse AIS, started from samples
of ``p``, a stochastic upper bound. More temperatures close the bracket.

Here the truth is known: a 10-D correlated Gaussian and an 8-mode mixture.
Set ``EBMPPL_FAST=1`` for a quick run.
"""

import os

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import log_partition
from ebmppl.targets import gaussian_mixture, ill_conditioned_gaussian

FAST = os.environ.get("EBMPPL_FAST") == "1"
TEMPERATURES = [10, 30, 100] if FAST else [10, 30, 100, 300, 1000]
CHAINS = 128 if FAST else 512

targets = {
    "10-D Gaussian (condition 10)": (ill_conditioned_gaussian(10, 10.0), 3.0),
    "8-mode mixture": (gaussian_mixture([1 / 8] * 8, [[3 * np.cos(a), 3 * np.sin(a)] for a in np.arange(8) * np.pi / 4],
                                        [0.1 * np.eye(2)] * 8), 4.0),
}

# %%
# Forward and reverse AIS for a growing number of temperatures.
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
for ax, (name, (target, scale)) in zip(axes, targets.items(), strict=True):
    # exact draws, shaped (chains, draws, dim) so that log_partition can check them (R-hat, ESS) before reverse AIS
    exact_samples = target.sample(jax.random.key(9), 4 * CHAINS).reshape(4, CHAINS, -1)
    fwd, rev = [], []
    for k in TEMPERATURES:
        fwd.append(log_partition(target.energy, jax.random.key(k), num_chains=CHAINS, num_temperatures=k,
                                 base_scale=scale))
        rev.append(log_partition(target.energy, jax.random.key(k + 1), num_chains=CHAINS, num_temperatures=k,
                                 base_scale=scale, samples=exact_samples))
        print(f"{name:30s} K={k:5d}  forward {fwd[-1].log_z:8.3f} ± {fwd[-1].stderr:.3f}   "
              f"reverse {rev[-1].log_z:8.3f} ± {rev[-1].stderr:.3f}   exact {target.log_z:8.3f}")
    for est, label, colour in ((fwd, "forward AIS (lower bound)", "tab:blue"),
                               (rev, "reverse AIS (upper bound)", "tab:orange")):
        ax.errorbar(TEMPERATURES, [e.log_z for e in est], yerr=[2 * e.stderr for e in est], marker="o",
                    capsize=3, label=label, color=colour)
    ax.axhline(target.log_z, color="k", ls="--", label="exact log Z")
    ax.set(xscale="log", xlabel="number of temperatures", ylabel="log Z", title=name)
    ax.legend()
fig.suptitle("AIS brackets the exact log Z; error bars are 2 Monte-Carlo standard errors")
fig.savefig(os.environ.get("EBMPPL_FIGURE", "log_z_ais.png"), dpi=100)
