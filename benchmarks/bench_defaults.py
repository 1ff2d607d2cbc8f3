"""Do the defaults fit? The two bars of issue 14, measured and printed as markdown tables.

1. ``ebmppl fit`` with every default (two moons), per seed: gap to the data's own
   held-out log-likelihood, the model samples' MMD against the held-out data with
   its delete-one jackknife standard error beside the train-vs-test floor,
   ``z = (MMD - floor) / sqrt(se² + se_floor²)``, health warnings, training seconds.
2. ``fit(Energy.from_equinox(MLPEnergy(2, key=k), event_shape=(2,)), data, key=k)``
   with nothing else on three 2-D data sets of other scales: gap to the true
   density (± SE over held-out points) and grid log Z with the outer box 10× and 30×.

Usage: ``python benchmarks/bench_defaults.py [--seeds 0 1 2] [--skip-cli] [--skip-api]``
(about 1.5 min per seed and 1 min per data set on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ebmppl import Energy, fit, runs
from ebmppl.data import rings
from ebmppl.evaluation import grid_log_partition, log_likelihood
from ebmppl.nn import MLPEnergy


def jackknife_mmd(x: np.ndarray, y: np.ndarray, bandwidths=(0.1, 0.2, 0.5, 1.0, 2.0)) -> tuple[float, float]:
    """Unbiased MMD² with a sum of Gaussian kernels (as ``ebmppl.evaluation.mmd``) and its jackknife SE."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n = x.shape[0]

    def k(a, b):
        d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None] - 2 * a @ b.T
        return sum(np.exp(-0.5 * d2 / h**2) for h in bandwidths)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    np.fill_diagonal(kxx, 0.0)
    np.fill_diagonal(kyy, 0.0)
    sx, sy, sxy = kxx.sum(), kyy.sum(), kxy.sum()
    m = n - 1  # leave pair i out of both samples
    loo = ((sx - 2 * kxx.sum(1)) / (m * (m - 1)) + (sy - 2 * kyy.sum(1)) / (m * (m - 1))
           - 2 * (sxy - kxy.sum(1) - kxy.sum(0) + np.diag(kxy)) / (m * m))
    full = sx / (n * (n - 1)) + sy / (n * (n - 1)) - 2 * sxy / (n * n)
    return float(full), float(np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum()))


def cli_row(seed: int) -> dict:
    """One default ``ebmppl fit`` run; the two MMD calls of its evaluation are recorded for their SEs."""
    from ebmppl.runs import evaluate as run_evaluation  # where fit_run's evaluation calls mmd

    recorded, original = [], run_evaluation.mmd
    run_evaluation.mmd = lambda x, y, *a, **k: (recorded.append((np.asarray(x), np.asarray(y))),
                                                original(x, y, *a, **k))[1]
    try:
        with tempfile.TemporaryDirectory() as out:
            ev = runs.fit_run(runs.FitConfig(seed=seed, out=out), progress_bar=False)
    finally:
        run_evaluation.mmd = original
    (mmd, se), (floor, floor_se) = jackknife_mmd(*recorded[0]), jackknife_mmd(*recorded[1])
    return dict(seed=seed, gap=ev["gap_nats"], mmd=mmd, se=se, floor=floor, floor_se=floor_se,
                z=(mmd - floor) / np.hypot(se, floor_se), warnings=len(ev["health_warnings"]),
                seconds=ev["train_seconds"])


def _ring():
    d = rings((1.0,), 0.15)
    return (lambda k, n: 100.0 * d.sample(k, n) + 50.0), (lambda x: d.log_prob((x - 50.0) / 100.0) - 2 * np.log(100.0))


def _rotated_gaussian():
    a = np.deg2rad(30.0)
    rot = jnp.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    sd, mean = jnp.array([3.0, 0.3]), jnp.array([-5.0, 2.0])
    cov = rot @ jnp.diag(sd**2) @ rot.T
    prec, log_norm = jnp.linalg.inv(cov), -0.5 * jnp.log(jnp.linalg.det(2 * jnp.pi * cov))
    return ((lambda k, n: mean + (jax.random.normal(k, (n, 2)) * sd) @ rot.T),
            (lambda x: -0.5 * jnp.einsum("...i,ij,...j->...", x - mean, prec, x - mean) + log_norm))


def _two_scales():
    means, sds = jnp.array([[-2.0, 0.0], [1.5, 1.0]]), jnp.array([0.15, 1.0])

    def sample(k, n):
        k1, k2 = jax.random.split(k)
        c = jax.random.bernoulli(k1, 0.5, (n,)).astype(int)
        return means[c] + sds[c][:, None] * jax.random.normal(k2, (n, 2))

    def log_p(x):
        lp = -0.5 * jnp.sum((x[..., None, :] - means) ** 2, -1) / sds**2 - 2 * jnp.log(sds) - jnp.log(2 * jnp.pi)
        return logsumexp(lp + jnp.log(0.5), -1)

    return sample, log_p


DATA = {"ring ×100 + 50": _ring, "rotated Gaussian, sds 3 and 0.3": _rotated_gaussian,
        "two modes, sds 0.15 and 1": _two_scales}


def api_row(name: str) -> dict:
    sample, log_p = DATA[name]()
    train, test = sample(jax.random.key(1), 4000), sample(jax.random.key(2), 4000)
    k = jax.random.key(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        result = fit(Energy.from_equinox(MLPEnergy(2, key=k), event_shape=(2,)), train, key=k, progress_bar=False)
        seconds = time.perf_counter() - t0
    lo, hi = np.asarray(train.min(0)), np.asarray(train.max(0))
    pad = 0.25 * (hi - lo)
    box = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
    log_z = {s: grid_log_partition(result.energy, box, 400, outer_scale=s) for s in (10.0, 30.0)}
    diff = np.asarray(log_p(test), np.float64) - np.asarray(log_likelihood(result.energy, test, log_z[10.0]), np.float64)
    return dict(data=name, gap=diff.mean(), gap_se=diff.std() / np.sqrt(diff.size), log_z10=log_z[10.0],
                log_z30=log_z[30.0], warnings=sum("Health" in type(w.message).__name__ for w in caught),
                seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--skip-cli", action="store_true")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    if not args.skip_cli:
        print("| seed | gap (nats) | MMD ± SE | floor ± SE | z | health warnings | train s |\n|---|---|---|---|---|---|---|")
        for seed in args.seeds:
            r = cli_row(seed)
            print(f"| {r['seed']} | {r['gap']:.3f} | {r['mmd']:.4f} ± {r['se']:.4f} | {r['floor']:.4f} ± "
                  f"{r['floor_se']:.4f} | {r['z']:.2f} | {r['warnings']} | {r['seconds']:.1f} |", flush=True)
    if not args.skip_api:
        print("\n| data | gap ± SE (nats) | log Z 10× / 30× | health warnings | s |\n|---|---|---|---|---|")
        for name in DATA:
            r = api_row(name)
            print(f"| {r['data']} | {r['gap']:.3f} ± {r['gap_se']:.3f} | {r['log_z10']:.3f} / {r['log_z30']:.3f} | "
                  f"{r['warnings']} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
