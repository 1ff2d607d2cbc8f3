"""Does ``inpaint`` with its defaults sample the conditional? Issue 15, finding 4, before and after.

"Before" is the old default run explicitly (practical Langevin, step 10, noise 0.005, no clamp, 200
steps from uniform noise on [-1, 1]); "after" is ``inpaint(energy, key, x, mask)`` with nothing else.

1. A 5-D Gaussian (random non-trivial covariance), coordinates 0 and 2 observed, 200 examples: fraction of
   non-finite completions; residual variance of one completion per example against the exact conditional
   variance; with ``num_samples=500`` on 16 examples, z-scores (estimate - truth) / MCSE of the conditional
   means and variances, and their mean and sd over 30 replicate runs (calibration: ~0 and ~1).
2. The same, practical Langevin with a stable step (0.01): the conditional variance it returns.
3. Standardised wine (scikit-learn), a Gaussian energy with the training half's mean and covariance, 50 %
   of the held-out half's entries missing: MSE of one completion, of the mean of 100 draws, of the exact
   conditional mean, and of mean imputation.

4. With ``--fitted``: the same wine split with an MLP energy trained by ``fit`` with its defaults (the
   issue's setting), old defaults against new.

5. Breast cancer (30-D, correlated): the previous default (MALA) against the new one (HMC, dense mass
   matrix, 4 chains per example), with the mixing check's ESS.

Usage: ``python benchmarks/bench_inpaint_defaults.py [--fitted]`` (a few minutes on 2 CPU cores; +2 min
with ``--fitted``).
"""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np

from ebmppl import diagnostics, samplers
from ebmppl.conditional import inpaint
from ebmppl.targets import gaussian

REPLICATES = 30
OLD = {"sampler": samplers.langevin(step_size=10.0, noise_scale=0.005), "num_steps": 200}


def old_defaults(energy, key, x, mask, **kw):
    init = jax.random.uniform(jax.random.fold_in(key, 1), x.shape, minval=-1.0, maxval=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.asarray(inpaint(energy, key, x, mask, init=init, **{**OLD, **kw}))
        except FloatingPointError as err:  # the new inpaint refuses to return them; the old returned NaN
            return f"FloatingPointError: {str(err)[:90]}..."


def conditional(mean, cov, observed, x_obs):
    miss = [j for j in range(len(mean)) if j not in observed]
    gain = cov[np.ix_(miss, observed)] @ np.linalg.inv(cov[np.ix_(observed, observed)])
    cond_cov = cov[np.ix_(miss, miss)] - gain @ cov[np.ix_(observed, miss)]
    return miss, mean[miss] + (x_obs - mean[observed]) @ gain.T, cond_cov


def by_chain(draws, num_chains=4):
    """``(n, k, d)`` draws of ``inpaint(num_samples=k)`` as ``(n · num_chains, k / num_chains, d)`` chains:
    draw ``j`` of an example comes from its chain ``j % num_chains`` (MCSEs need the chains, not the
    interleaved sequence, whose lag-``num_chains`` autocorrelation Geyer's truncation would miss)."""
    n, k, d = draws.shape
    return draws.reshape(n, k // num_chains, num_chains, d).swapaxes(1, 2).reshape(n * num_chains, -1, d)


def gaussian_5d():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    cov, mean = a @ a.T / 5 + 0.3 * np.eye(5), rng.normal(size=5)
    energy = gaussian(mean, cov).energy
    x = rng.multivariate_normal(mean, cov, size=200).astype(np.float32)
    mask = np.zeros(x.shape, bool)
    mask[:, [0, 2]] = True
    miss, mu, cv = conditional(mean, cov, [0, 2], x[:, [0, 2]].astype(np.float64))
    print("## 5-D Gaussian, coordinates 0 and 2 observed (200 examples)")
    print(f"true conditional variances {np.round(np.diag(cv), 3).tolist()}")
    before = old_defaults(energy, jax.random.key(0), x, mask)
    shown = before if isinstance(before, str) else f"NaN fraction {np.isnan(before).mean():.2f}"
    print(f"before (old defaults): {shown}")
    stable = old_defaults(energy, jax.random.key(2), np.repeat(x[:1], 2000, 0), np.repeat(mask[:1], 2000, 0),
                          sampler_params={"step_size": 0.01}, num_steps=500)
    print("before, stable step 0.01 (2000 chains, one example): variances "
          f"{np.round(stable[:, miss].var(0).astype(float), 5).tolist()}")
    t0 = time.perf_counter()
    after = np.asarray(inpaint(energy, jax.random.key(0), x, mask))
    resid = after[:, miss] - mu
    print(f"after (defaults, one completion each, {time.perf_counter() - t0:.1f} s): NaN fraction "
          f"{np.isnan(after).mean():.2f}; residual variances {np.round(resid.var(0), 3).tolist()} "
          f"(± {np.round(np.diag(cv) * np.sqrt(2 / len(x)), 3).tolist()})")
    draws = np.asarray(inpaint(energy, jax.random.key(1), x[:16], mask[:16], num_samples=500), np.float64)
    r = by_chain(draws[:, :, miss] - mu[:16, None])
    z_mean = r.mean((0, 1)) / diagnostics.mcse(r)
    z_var = ((r**2).mean((0, 1)) - np.diag(cv)) / diagnostics.mcse(r**2)
    print(f"after (num_samples=500, 16 examples): ESS {np.round(diagnostics.ess(r)).astype(int).tolist()}, "
          f"z(mean) {np.round(z_mean, 2).tolist()}, z(var) {np.round(z_var, 2).tolist()}")
    zs = []
    for k in range(REPLICATES):  # calibration: the z-scores over independent runs should be ~N(0, 1)
        draws = np.asarray(inpaint(energy, jax.random.key(100 + k), x[:16], mask[:16], num_samples=500), np.float64)
        r = by_chain(draws[:, :, miss] - mu[:16, None])
        zs.append(np.concatenate([r.mean((0, 1)) / diagnostics.mcse(r),
                                  ((r**2).mean((0, 1)) - np.diag(cv)) / diagnostics.mcse(r**2)]))
    zs = np.array(zs)
    print(f"after, {REPLICATES} replicate runs: z(mean) mean {np.round(zs[:, :3].mean(0), 2).tolist()} "
          f"sd {np.round(zs[:, :3].std(0), 2).tolist()}; z(var) mean {np.round(zs[:, 3:].mean(0), 2).tolist()} "
          f"sd {np.round(zs[:, 3:].std(0), 2).tolist()}")


def wine_split():
    """Standardised wine: training half, held-out half, and a mask hiding half of each held-out row (at least one)."""
    from sklearn.datasets import load_wine

    x = load_wine().data
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    train, test = x[::2], x[1::2]
    rng = np.random.default_rng(7)
    mask = rng.random(test.shape) < 0.5
    mask[np.arange(len(test)), rng.integers(0, test.shape[1], len(test))] = False
    return train, test, mask


def wine():
    train, test, mask = wine_split()
    mean, cov = train.mean(0).astype(np.float64), np.cov(train.T)
    energy = gaussian(mean, cov).energy
    exact = test.astype(np.float64).copy()
    for i in range(len(test)):
        obs = np.flatnonzero(mask[i])
        miss, mu, _ = conditional(mean, cov, list(obs), test[i, obs].astype(np.float64))
        exact[i, miss] = mu

    def mse(v):
        return float(np.mean(((v - test) ** 2)[~mask]))

    print("\n## Standardised wine, Gaussian energy of the training half, 50 % of the held-out half missing")
    before = old_defaults(energy, jax.random.key(0), test, mask)
    print(f"before (old defaults): {before if isinstance(before, str) else f'MSE {mse(before):.4g}'}")
    single = np.asarray(inpaint(energy, jax.random.key(0), test, mask))
    draws = np.asarray(inpaint(energy, jax.random.key(1), test, mask, num_samples=100))
    print(f"after: one completion MSE {mse(single):.3f}; mean of 100 draws MSE {mse(draws.mean(1)):.3f}; "
          f"exact conditional mean MSE {mse(exact):.3f}; "
          f"mean imputation MSE {mse(np.broadcast_to(mean, test.shape)):.3f}")


def fitted_wine():
    """The issue's setting: an MLP energy trained by ``fit`` with its defaults, then inpainting held-out rows."""
    from ebmppl import Energy, fit
    from ebmppl.nn import MLPEnergy

    train, test, mask = wine_split()
    energy = fit(Energy.from_equinox(MLPEnergy(13, key=jax.random.key(0)), event_shape=(13,)), train,
                 key=jax.random.key(1), progress_bar=False).energy

    def mse(v):
        return float(np.mean(((v - test) ** 2)[~mask]))

    print("\n## Standardised wine, MLP energy fitted by fit() with its defaults on the training half")
    before = old_defaults(energy, jax.random.key(0), test, mask)
    shown = before if isinstance(before, str) else f"MSE {mse(before):.6g}, max |x| {np.abs(before).max():.4g}"
    print(f"before (old defaults): {shown}")
    draws = np.asarray(inpaint(energy, jax.random.key(1), test, mask, num_samples=100))
    print(f"after: mean of 100 draws MSE {mse(draws.mean(1)):.3f}; one draw MSE {mse(draws[:, -1]):.3f}; "
          f"mean imputation MSE {mse(np.broadcast_to(train.mean(0), test.shape)):.3f}")


def breast_cancer():
    """Second trial, finding 1: a 30-D correlated conditional (standardised breast-cancer rows, the exact
    Gaussian of the 427 training rows, 30 % of the 142 held-out rows' entries hidden, 400 draws). The
    previous default (MALA, one chain per example) against the new one; ESS figures are each example's
    worst missing coordinate, from the same check ``inpaint`` warns with."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    import ebmppl.conditional as conditional_module

    train, test = train_test_split(load_breast_cancer().data, test_size=142, random_state=0)
    mu0, sd0 = train.mean(0), train.std(0)
    train, test = (train - mu0) / sd0, (test - mu0) / sd0
    mean, cov = train.mean(0), np.cov(train.T)
    energy = gaussian(mean, cov).energy
    mask = np.random.default_rng(0).random(test.shape) > 0.3
    x = np.where(mask, test, np.nan).astype(np.float32)
    exact, sd = test.copy(), np.ones_like(test)
    for i in range(len(test)):
        obs = list(np.flatnonzero(mask[i]))
        if len(obs) < test.shape[1]:
            miss, mu, c = conditional(mean, cov, obs, test[i, obs])
            exact[i, miss], sd[i, miss] = mu, np.sqrt(np.diag(c))
    seen = {}
    check = conditional_module._check_mixing

    def spy(sampler, ess, m, *args):
        seen["ess"] = np.where(m, np.inf, np.asarray(ess)).reshape(m.shape[0], -1).min(1)
        return check(sampler, ess, m, *args)

    conditional_module._check_mixing = spy
    print("\n## Breast cancer (30-D), exact Gaussian of the training rows, 30 % of 142 held-out rows hidden, "
          "400 draws")
    print(f"exact conditional mean MSE {float(np.mean(((exact - test) ** 2)[~mask])):.3f}")
    try:
        for label, kw in [("before (MALA, 1 chain per example)", {"sampler": "mala", "num_chains": 1}),
                          ("before + 4 chains (MALA)", {"sampler": "mala"}),
                          ("after (defaults)", {})]:
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                d = np.asarray(inpaint(energy, jax.random.key(0), x, mask, num_samples=400, **kw), np.float64)
            took = time.perf_counter() - start
            miss = ~mask
            err = (np.abs(d.mean(1) - exact) / sd)[miss]
            ratio = (d.std(1) / sd)[miss]
            mse = lambda v: float(np.mean(((v - test) ** 2)[miss]))  # noqa: E731
            ess = seen["ess"][np.isfinite(seen["ess"])] / 400
            warned = [str(w.message)[:70] for w in caught if "did not mix" in str(w.message)]
            print(f"{label}: {took:.1f} s; MSE of the mean of 400 draws {mse(d.mean(1)):.3f}, of 50 "
                  f"{mse(d[:, :50].mean(1)):.3f}, of one {mse(d[:, 0]):.3f}; max |mean error| / conditional sd "
                  f"{err.max():.2f}; draw sd / true sd {ratio.min():.2f}-{ratio.max():.2f}; worst-coordinate "
                  f"ESS / draws min {ess.min():.3f}, median {np.median(ess):.3f}; mixing warning: "
                  f"{warned[0] + '...' if warned else 'none'}")
    finally:
        conditional_module._check_mixing = check


if __name__ == "__main__":
    import sys

    gaussian_5d()
    wine()
    breast_cancer()
    if "--fitted" in sys.argv:  # adds about 2 min (training)
        fitted_wine()
