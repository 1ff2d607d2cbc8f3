"""
Multimodal targets: parallel tempering against local samplers
=============================================================

A local sampler (MALA, HMC, NUTS) stays in one mode of a mixture of
well-separated Gaussians for thousands of steps: its chains disagree and the
pooled draws weigh the modes by where the chains happened to be, not by the
target's weights. Non-reversible parallel tempering
(:func:`ebmppl.samplers.parallel_tempering`) runs a ladder of replicas from a
wide Gaussian reference (β = 0) to the target (β = 1), swaps neighbouring
levels in a deterministic even/odd pattern and adapts the ladder until every
pair rejects equally often (Syed, Bouchard-Côté, Deligiannidis & Doucet, JRSSB
2022).

Two targets:

1. The 2-D mixture of four Gaussians (sd 1) on the corners of a square of side
   8 sd, with unequal weights 0.1 / 0.2 / 0.3 / 0.4
   (:func:`ebmppl.targets.four_modes`). Every sampler gets the same gradient
   budget (warm-up and draws, per chain, counted in gradient evaluations:
   ``out.stats.num_grad_evals``); :func:`ebmppl.compare` judges the mode
   weights against the truth (within 4 Monte-Carlo standard errors) and flags
   chains stuck in different modes. At 8 sd in 2-D the local samplers do cross,
   rarely (NUTS about 14 times per chain in 29 000 draws; see the benchmark
   *Parallel tempering against NUTS on four modes*): their weights are off by
   0.1 or more in their worst mode here, and their R-hat says so.
2. A 20-D mixture of two Gaussians N(±1.5·**1**, I) with weights 0.3 / 0.7:
   the means are 2 · 1.5 · √20 ≈ 13.4 sd apart and the density half-way is
   e⁻²²·⁵ of its peak, so local samplers never cross (MALA 8 × 20 000 draws and
   NUTS 8 × 20 000 draws — a million gradients — crossed zero times). Parallel
   tempering's round trips between reference and target, its communication
   barrier Λ and its adapted ladder are drawn by :func:`ebmppl.plots.plot_ladder`.

Set ``EBMPPL_FAST=1`` for a small budget (the claims are then printed, not checked).
"""

import os
import warnings

import jax
import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import ChainHealthWarning, compare, sample, samplers
from ebmppl.compare import mode_weights
from ebmppl.plots import plot_ladder
from ebmppl.targets import four_modes, gaussian_mixture

FAST = os.environ.get("EBMPPL_FAST") == "1"
WARMUP, DRAWS = (200, 400) if FAST else (1000, 4000)
FIGURE = os.environ.get("EBMPPL_FIGURE", "parallel_tempering.png")
MAX_MCSE = 4.0
# local chains on separated modes warn that they disagree; compare's table below says the same
warnings.filterwarnings("ignore", category=ChainHealthWarning)

# %%
# Four modes, one gradient budget
# -------------------------------
# Parallel tempering with MALA on 8 levels costs 14 gradients per step: the reference level is drawn
# exactly, and each of the 7 others takes one local move and one refresh after the swaps. The budget is what it spends per chain in warm-up and draws; each
# local sampler gets the same number of gradients, spent on its own warm-up of ``WARMUP`` steps
# and as many draws as the rest pays for (NUTS's cost per draw is read from a short pilot run).
target = four_modes()
key = jax.random.key(0)
tempering = samplers.parallel_tempering(kernel="mala", num_replicas=8)
runs = {"parallel tempering": compare(target, key, {"parallel tempering": tempering}, num_chains=4,
                                      num_warmup=WARMUP, num_samples=DRAWS, max_mcse=MAX_MCSE,
                                      progress_bar=False)}
per_step = float(np.mean(runs["parallel tempering"].samples["parallel tempering"].stats.num_grad_evals))
budget = (WARMUP + DRAWS) * per_step
print(f"parallel tempering: {per_step:.0f} gradients per step; budget {budget:,.0f} gradients per chain")

for name, local in {"mala": samplers.mala(), "hmc": samplers.hmc(), "nuts": samplers.nuts()}.items():
    pilot = sample(target.energy, key, sampler=local, num_chains=4, num_warmup=WARMUP, num_samples=100,
                   progress_bar=False)
    cost = float(np.mean(pilot.stats.num_grad_evals))
    draws = int((budget - WARMUP * cost) / cost)
    runs[name] = compare(target, key, {name: local}, num_chains=4, num_warmup=WARMUP, num_samples=draws,
                         max_mcse=MAX_MCSE, progress_bar=False)
    print(f"{name}: {cost:.1f} gradients per step -> {draws:,} draws per chain")

table = pd.concat([c.table for c in runs.values()], ignore_index=True)
print(table[["sampler", "converged", "rhat_max", "ess_bulk_min", "grad_evals", "mode_weights", "mode_err_mcse",
             "stuck_chains"]].to_string())
for name, c in runs.items():
    print(f"{name}: {c.table.loc[0, 'flag'] or 'converged'}")

# %%
# Each sampler's draws coloured by the mode they sit in, and the mode weights against the truth
# (error bars: 2 MCSE). The local samplers' weights say where their four chains started.
mode_colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"]
fig, axes = plt.subplots(1, 5, figsize=(18, 3.9), layout="constrained")
for ax, (name, c) in zip(axes, runs.items()):
    x = np.asarray(c.samples[name].positions).reshape(-1, 2)
    x = x[:: max(1, len(x) // 4000)]
    ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.4, c=[mode_colours[k] for k in target.modes.assign(x)])
    for k, mu in enumerate(target.modes.means):
        ax.text(mu[0], mu[1], str(k), ha="center", va="center", fontsize=11, weight="bold")
    verdict = "converged" if c.table.loc[0, "converged"] else "NOT converged"
    ax.set(xlim=(-8, 8), ylim=(-8, 8), aspect="equal",
           title=f"{name}\n{verdict}, R-hat {c.table.loc[0, 'rhat_max']:.2f}")
width = 0.2
for j, (name, c) in enumerate(runs.items()):
    w = c.mode_weights[name]
    axes[4].bar(np.arange(4) + (j - 1.5) * width, w.estimate, width, yerr=2 * w.mcse, label=name, capsize=2,
                color=["tab:blue", "tab:gray", "tab:olive", "tab:brown"][j])
axes[4].hlines(target.modes.weights, np.arange(4) - 0.45, np.arange(4) + 0.45, color="k", lw=2, label="truth")
axes[4].set(xticks=range(4), xlabel="mode", ylabel="weight", ylim=(0, 1), title="mode weights (±2 MCSE)")
axes[4].legend(fontsize=7, loc="upper left")
fig.suptitle(f"four modes 8 sd apart, weights 0.1/0.2/0.3/0.4: {budget:,.0f} gradients per chain for every sampler")
fig.savefig(FIGURE, dpi=90)

if not FAST:  # the must-show: tempering converges, every local sampler is flagged
    pt = runs["parallel tempering"].table.loc[0]
    assert pt["converged"] and pt["rhat_max"] <= 1.01 and pt["mode_err_mcse"] <= MAX_MCSE, pt["flag"]
    assert not any(runs[name].table.loc[0, "converged"] for name in ("mala", "hmc", "nuts"))

# %%
# Twenty dimensions, two modes 13.4 sd apart
# ------------------------------------------
# The reference is N(center, (2·scale)²) from the energy's typical region: wide enough to cover both
# modes. 12 levels: the barrier Λ comes out near 4, and R ≈ 2Λ levels suffice.
dim, m = 20, 1.5
twenty = gaussian_mixture([0.3, 0.7], np.stack([-m * np.ones(dim), m * np.ones(dim)]), [np.eye(dim)] * 2)
draws20 = 400 if FAST else 4000
out = sample(twenty.energy, jax.random.key(1), sampler=samplers.parallel_tempering(kernel="mala", num_replicas=12),
             num_chains=4, num_warmup=draws20 // 2 if FAST else 2000, num_samples=draws20, progress_bar=False)
summary = samplers.tempering_summary(out)
print(summary)
weights = mode_weights(out.positions, twenty.modes)
print(f"mode weights {weights.estimate.round(3).tolist()} ± {weights.mcse.round(3).tolist()} (truth 0.3/0.7), "
      f"worst error {weights.z.max():.1f} MCSE")

# %%
# The adapted ladder crowds its levels near β = 0, where the reference's wide cloud starts to feel the
# two modes; every pair then rejects about equally often, and the round-trip rate comes close to the
# ideal 1/(2 + 2Λ) of non-reversible swaps.
plot_ladder(summary).savefig(FIGURE.replace(".png", "_ladder.png"), dpi=90)

if not FAST:
    assert summary.round_trip_rate * 1000 >= 10, summary
    assert weights.z.max() <= MAX_MCSE, weights
