"""CD (persistent), CD (short-run), DSM, SSM and NCE on two moons, through ``ebmppl.fit``.

Same network (MLP 2-128-128-128-1 with a Gaussian base term), same data, same
number of optimisation steps and Adam settings; only the objective differs.
For each: held-out log-likelihood with an exact grid log Z (two-level grid),
the gap to the data's own log-likelihood (-entropy, exact density), MMD
between model samples (exact ULA from noise) and held-out data, and training
time. Writes ``docs/benchmarks/objectives.md`` (table) and
``docs/_static/objectives_two_moons.png`` (learned densities and samples), and
prints JSON.

Usage::

    python benchmarks/bench_objectives.py [--steps 5000]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from ebmppl import Energy, buffer, fit, sample, samplers
from ebmppl.data import two_moons
from ebmppl.evaluation import grid_log_partition, held_out_log_likelihood, mmd
from ebmppl.nn import MLPEnergy
from ebmppl.plots import plot_density_2d

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()

    moons = two_moons()
    train = moons.sample(jax.random.key(0), 10_000)
    test = moons.sample(jax.random.key(1), 5_000)
    entropy, _ = moons.entropy(jax.random.key(2))
    spread = 3.0 * float(jnp.max(jnp.std(train, axis=0)))
    center = [float(c) for c in jnp.mean(train, axis=0)]
    noise_box = buffer.uniform_noise(-1.8, 2.8)
    langevin = samplers.langevin(step_size=0.005, noise_scale=0.1)
    methods = {
        "CD (persistent)": dict(objective="cd", sampler=langevin, num_mcmc_steps=20, alpha=0.05,
                                chain_init=buffer.replay_buffer(10_000, 0.05, noise_box)),
        "CD (short-run)": dict(objective="cd", sampler=samplers.langevin(step_size=0.01, noise_scale=float(np.sqrt(0.02))),
                               num_mcmc_steps=60, alpha=0.05, chain_init=buffer.short_run(noise_box)),
        "DSM (σ=0.05)": dict(objective="dsm", sigma=0.05),
        "SSM": dict(objective="ssm"),
        "NCE": dict(objective="nce", noise_mean=center, noise_scale=1.5 * np.asarray(jnp.std(train, axis=0)),
                    noise_ratio=4),
    }
    rows, energies, samples_by = [], {}, {}
    for name, options in methods.items():
        net = MLPEnergy(2, (128, 128, 128), base_scale=spread, base_center=center, key=jax.random.key(3))
        energy = Energy.from_equinox(net, event_shape=(2,))
        t0 = time.perf_counter()
        result = fit(energy, train, key=jax.random.key(4), num_steps=args.steps, batch_size=128,
                     optimizer=optax.adam(1e-3, b1=0.0, b2=0.999), progress_bar=False, **options)
        seconds = time.perf_counter() - t0
        log_z = grid_log_partition(result.energy, moons.limits, 400)
        ll, se = held_out_log_likelihood(result.energy, test, log_z)
        init = jax.random.uniform(jax.random.key(5), (2000, 2), minval=-1.8, maxval=2.8)
        draws = sample(result.energy, jax.random.key(6), sampler=samplers.ula(step_size=0.005), num_chains=2000,
                       num_warmup=3000, num_samples=1, init=init, progress_bar=False).positions[:, 0]
        rows.append({"method": name, "test_log_likelihood": ll, "stderr": se, "gap_nats": -entropy - ll,
                     "mmd": mmd(draws, test[:2000]), "train_seconds": seconds})
        energies[name], samples_by[name] = result.energy, np.asarray(draws)
        print(json.dumps(rows[-1]), flush=True)

    floor = mmd(train[:2000], test[:2000])
    lines = [
        f"Two moons, {args.steps} steps of Adam (1e-3), batch 128, MLP 2-128-128-128-1 + Gaussian base term. "
        f"The data's own log-likelihood (−entropy) is **{-entropy:.3f}** nats; MMD between two data samples "
        f"of 2000 (the noise floor) is {floor:.4f}. Reproduce: `python benchmarks/bench_objectives.py`.",
        "",
        "| method | held-out log-likelihood (nats) | gap to data | MMD (samples vs data) | training time (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['test_log_likelihood']:.3f} ± {r['stderr']:.3f} | {r['gap_nats']:.3f} | "
                     f"{r['mmd']:.4f} | {r['train_seconds']:.1f} |")
    out_md = ROOT / "docs" / "benchmarks" / "objectives.md"
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("# Objectives compared on two moons\n\n" + "\n".join(lines) + "\n\n"
                      "![learned densities and samples](../_static/objectives_two_moons.png)\n")

    fig, axes = plt.subplots(2, len(rows), figsize=(3.3 * len(rows), 6.4), sharex=True, sharey=True,
                             layout="constrained")
    lim = moons.limits
    for i, r in enumerate(rows):
        plot_density_2d(energies[r["method"]], axes[0, i], lim, resolution=200)
        axes[0, i].set_title(f"{r['method']}\nLL {r['test_log_likelihood']:.2f} (data {-entropy:.2f})", fontsize=9)
        s = samples_by[r["method"]]
        axes[1, i].scatter(s[:, 0], s[:, 1], s=1.5, alpha=0.4, color="tab:orange")
        axes[1, i].set_title(f"samples, MMD {r['mmd']:.3f}", fontsize=9)
        for ax in axes[:, i]:
            ax.set(xlim=lim[:2], ylim=lim[2:], aspect="equal")
    fig.suptitle("Same network, five objectives: learned density (top) and ULA samples (bottom)")
    out_png = ROOT / "docs" / "_static" / "objectives_two_moons.png"
    fig.savefig(out_png, dpi=90)
    print(f"wrote {out_md} and {out_png}")
    return rows


if __name__ == "__main__":
    main()
