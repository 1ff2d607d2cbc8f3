"""Issue 15, findings 5 and 6: the α penalty's bias, and the short-run generator's defaults, measured.

1. ``--quadratic``: a quadratic energy (learnable mean and log-scale) fitted with ``fit``'s defaults to
   N(1, 0.5 I) data (2-D, 2000 points) for several seeds: fitted variance (exact, from the Hessian) over the
   MLE (the sample variance), for the current default and for the former one (alpha 0.1, MALA step 0.01).
2. ``--api``: ``benchmarks/bench_defaults.py``'s three 2-D data sets and eight Gaussians, current defaults.
3. ``--generator``: four blobs at (100, -50) ± 25 (sd 4), trained by short-run practical Langevin in the
   "density" recipe's coordinates; MMD (standardised units) of the starting noise, of
   ``short_run_generator`` with its defaults (the stored training settings), with the former defaults
   (60 steps of 1, clamp [-1, 1]) and of the training sampler itself from the same noise.

Usage: ``python benchmarks/bench_alpha_bias.py [--quadratic] [--api] [--generator] [--seeds 0 1 2 3 4]``
(the quadratic: ~5 s per seed and setting; the generator: ~30 s; the API rows: ~1 min each, on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl import Energy, buffer, fit, samplers
from ebmppl.evaluation import mmd
from ebmppl.latent import short_run_generator
from ebmppl.nn import MLPEnergy
from ebmppl.objectives.cd import kernel_parameters, sample_negatives
from ebmppl.recipes import standard_coordinates


def quadratic_ratio(seed: int, steps: int, former: bool) -> np.ndarray:
    fn = lambda p, x: 0.5 * jnp.sum(((x - p["m"]) * jnp.exp(p["s"])) ** 2)  # noqa: E731
    data = 1.0 + np.sqrt(0.5) * jax.random.normal(jax.random.key(100 + seed), (2000, 2))
    extra = {"recipe": "density", "alpha": 0.1, "sampler": samplers.mala(step_size=0.01)} if former else {}
    result = fit(Energy(fn, {"m": jnp.zeros(2), "s": jnp.zeros(2)}, event_shape=(2,)), data, key=jax.random.key(seed),
                 num_steps=steps, progress_bar=False, health=False, **extra)
    hessian = jax.hessian(lambda x: result.energy.energy(x))(jnp.ones(2))
    return np.diag(np.linalg.inv(np.asarray(hessian, np.float64))) / np.asarray(data).var(0)


def generator_row(steps: int = 400) -> dict:
    centers = jnp.array([[100.0, -50.0]]) + 25.0 * jnp.array([[1, 1], [1, -1], [-1, 1], [-1, -1.0]])

    def blobs(key, n):
        k1, k2 = jax.random.split(key)
        return centers[jax.random.randint(k1, (n,), 0, 4)] + 4.0 * jax.random.normal(k2, (n, 2))

    train, test = np.asarray(blobs(jax.random.key(1), 2000)), np.asarray(blobs(jax.random.key(2), 1000))
    k = jax.random.key(0)
    result = fit(Energy.from_equinox(MLPEnergy(2, (32, 32), key=k), event_shape=(2,)), train, key=k, num_steps=steps,
                 progress_bar=False, health=False, recipe="density", alpha=0.0,
                 sampler=samplers.langevin(step_size=0.01, noise_scale=0.01), num_mcmc_steps=30,
                 chain_init=buffer.short_run(buffer.uniform_noise(-3.0, 3.0)), optimizer=optax.adam(1e-3, b1=0.5))
    mean, std = train.mean(0), train.std(0)
    st = lambda x: (np.asarray(x) - mean) / std  # noqa: E731
    u = jax.random.uniform(jax.random.key(3), (1000, 2), minval=-3.0, maxval=3.0)
    z = jnp.asarray(mean + std * np.asarray(u))
    z_energy, _, _ = standard_coordinates(result.energy)
    lv = samplers.langevin(step_size=0.01, noise_scale=0.01)
    negatives, _ = sample_negatives(z_energy, lv, kernel_parameters(lv, 2, None), 30, jax.random.key(4),
                                    result.energy.params, u)
    former = short_run_generator(result.energy, num_steps=60, step_size=1.0, clamp=(-1.0, 1.0))
    return {"noise": mmd(st(z), st(test)), "defaults": mmd(st(short_run_generator(result.energy)(z)), st(test)),
            "former defaults": mmd(st(former(z)), st(test)), "training sampler": mmd(np.asarray(negatives), st(test)),
            "train vs test (floor)": mmd(st(train[:1000]), st(test))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quadratic", action="store_true")
    parser.add_argument("--api", action="store_true")
    parser.add_argument("--generator", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.quadratic:
        print("| setting | seed | variance / MLE (x, y) |\n|---|---|---|")
        for former in (False, True):
            ratios = []
            for seed in args.seeds:
                r = quadratic_ratio(seed, args.steps, former)
                ratios.append(r)
                print(f"| {'former (alpha 0.1, step 0.01)' if former else 'default'} | {seed} | "
                      f"{r[0]:.3f}, {r[1]:.3f} |", flush=True)
            flat = np.ravel(ratios)
            print(f"| {'former' if former else 'default'} | all | mean {flat.mean():.3f}, sd {flat.std(ddof=1):.3f} |")
    if args.api:
        import bench_defaults  # noqa: PLC0415  (same folder)

        from ebmppl.data import toy  # noqa: PLC0415

        eight = toy("eight_gaussians")  # separated modes of equal width
        bench_defaults.DATA["eight Gaussians"] = lambda: (eight.sample, eight.log_prob)

        print("\n| data | gap ± SE (nats) | log Z 10× / 30× | health warnings | s |\n|---|---|---|---|---|")
        for name in bench_defaults.DATA:
            r = bench_defaults.api_row(name)
            print(f"| {r['data']} | {r['gap']:.3f} ± {r['gap_se']:.3f} | {r['log_z10']:.3f} / {r['log_z30']:.3f} | "
                  f"{r['warnings']} | {r['seconds']:.0f} |", flush=True)
    if args.generator:
        print("\n| MMD (standardised units) | value |\n|---|---|")
        for k, v in generator_row().items():
            print(f"| {k} | {v:.4f} |")


if __name__ == "__main__":
    main()
