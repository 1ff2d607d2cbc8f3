"""Are ``log_partition``'s error bars and verdicts honest? Calibration over replicates, and a DSM digits energy.

Part ``calibration``: 50 replicate runs each of AIS and of importance sampling
on a 10-D Gaussian (known log Z) at budgets where the weights' ESS is
moderate, and at budgets where it is tiny. Prints, per setting, the median
ESS, the standard deviation (and mean) of ``(log_z − log Z) / stderr`` —
it should lie in [0.7, 1.4] where the verdict is reliable — and how many
estimates were flagged unreliable (every one with ESS < 5 must be).

Part ``digits``: an MLP energy trained by denoising score matching on the
scikit-learn digits (64-D), then its log Z by the default ``log_partition``
(forward AIS with a base fitted by a pilot), forward AIS with the base fitted
to the training data, reverse AIS from NUTS samples whose convergence is
checked, and independent importance sampling with a base fitted to those
samples. Prints every estimate with its verdict and whether the default agrees
with the importance estimate within their errors or flags itself.

Usage::

    python benchmarks/bench_logz_calibration.py [--part calibration|digits|all] [--replicates 50]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import ebmppl
from ebmppl.logz import LogZWarning, ais_bracket, log_partition
from ebmppl.targets import gaussian


def calibration(replicates: int) -> dict:
    d = 10
    scales = np.linspace(0.5, 2.0, d)
    mean = np.linspace(-1.0, 1.0, d)
    target = gaussian(mean, np.diag(scales**2))
    settings = {
        # name: (method, kwargs) -- the base is placed by hand so that the budget sets the ESS
        "ais K=3, base 1.2x (moderate ESS)": ("ais", dict(num_chains=256, num_temperatures=3, base_scale=1.2 * scales)),
        "ais K=5, base 1.3x (moderate ESS)": ("ais", dict(num_chains=256, num_temperatures=5, base_scale=1.3 * scales)),
        "ais K=10, base 3x (ESS < 5)": ("ais", dict(num_chains=256, num_temperatures=10, base_scale=3.0 * scales)),
        "importance base 1.5x (moderate ESS)": ("importance", dict(num_chains=1024, base_scale=1.5 * scales)),
        "importance base 1.3x (moderate ESS)": ("importance", dict(num_chains=256, base_scale=1.3 * scales)),
        "importance base 3x (ESS < 5)": ("importance", dict(num_chains=256, base_scale=3.0 * scales)),
    }
    out = {}
    for name, (method, kw) in settings.items():
        z, ess, reliable = [], [], []
        t0 = time.perf_counter()
        for r in range(replicates):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", LogZWarning)
                est = log_partition(target.energy, jax.random.key(1000 + r), method=method, base_center=mean,
                                    pilot_chains=32, **kw)
            z.append((est.log_z - target.log_z) / est.stderr)
            ess.append(est.ess)
            reliable.append(est.reliable)
        z, ess, reliable = np.array(z), np.array(ess), np.array(reliable)
        row = {
            "median_ess": float(np.median(ess)),
            "sd_z": float(np.std(z, ddof=1)),
            "mean_z": float(np.mean(z)),
            "sd_z_reliable_only": float(np.std(z[reliable], ddof=1)) if reliable.sum() > 2 else float("nan"),
            "flagged": int((~reliable).sum()),
            "ess_below_5": int((ess < 5).sum()),
            "ess_below_5_flagged": int(((ess < 5) & ~reliable).sum()),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        out[name] = row
        print(f"{name:40s} ESS {row['median_ess']:7.1f}  sd(z) {row['sd_z']:.2f}  mean(z) {row['mean_z']:+.2f}  "
              f"flagged {row['flagged']}/{replicates}  ESS<5: {row['ess_below_5']} ({row['ess_below_5_flagged']} "
              f"flagged)", flush=True)
    return out


def digits(steps: int) -> dict:
    import optax

    from ebmppl.data import load_digits
    from ebmppl.nn import MLPEnergy

    train, _ = load_digits("train")
    test, _ = load_digits("test")
    x = jnp.asarray(train.reshape(len(train), -1))
    x_test = jnp.asarray(test.reshape(len(test), -1))
    net = MLPEnergy(64, widths=(128, 128), base_scale=2.0, key=jax.random.key(0))
    energy = ebmppl.Energy.from_equinox(net, event_shape=(64,))
    t0 = time.perf_counter()
    result = ebmppl.fit(energy, x, key=jax.random.key(1), objective="dsm", num_steps=steps, progress_bar=False,
                        optimizer=optax.adam(1e-3))
    e = result.energy
    out: dict = {"train_seconds": round(time.perf_counter() - t0, 1)}
    print(f"DSM training: {steps} steps in {out['train_seconds']} s", flush=True)

    def record(name, fn):
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                est = fn()
            except ValueError as err:
                out[name] = {"refused": str(err)[:300]}
                print(f"{name:45s} refused: {str(err)[:200]}", flush=True)
                return None
        row = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
               for k, v in est._asdict().items()} if hasattr(est, "_asdict") else {}
        row["seconds"] = round(time.perf_counter() - t, 1)
        row["warnings"] = [str(w.message)[:200] for w in caught]
        out[name] = row
        print(f"{name:45s} {est}  [{row['seconds']} s]", flush=True)
        return est

    default = record("default log_partition", lambda: log_partition(e, jax.random.key(2)))
    record("forward AIS, base fitted to data", lambda: log_partition(e, jax.random.key(3), data=x))
    # samples of the energy: a few short MALA chains (typically not converged) and NUTS (checked)
    mala = ebmppl.sample(e, jax.random.key(4), sampler="mala", num_chains=4, num_warmup=300, num_samples=300,
                         progress_bar=False, init=x[:4])
    record("reverse AIS from short MALA chains", lambda: log_partition(e, jax.random.key(5), samples=mala))
    nuts = ebmppl.sample(e, jax.random.key(6), sampler="nuts", num_chains=4, num_warmup=500, num_samples=500,
                         progress_bar=False, init=x[:4])
    from ebmppl.diagnostics import ess, rhat

    draws = np.asarray(nuts.positions)
    out["nuts_max_rhat"], out["nuts_min_ess"] = float(np.max(rhat(draws))), float(np.min(ess(draws)))
    print(f"NUTS samples: max R-hat {out['nuts_max_rhat']:.3f}, min bulk ESS {out['nuts_min_ess']:.0f}", flush=True)
    bracket = record("bracket from NUTS samples", lambda: ais_bracket(e, jax.random.key(7), nuts,
                                                                      require_converged=False))
    imp = record("importance, Student-t fitted to NUTS samples",
                 lambda: log_partition(e, jax.random.key(8), method="importance", samples=nuts, num_chains=20000))
    imp2 = record("importance, Student-t fitted to data",
                  lambda: log_partition(e, jax.random.key(9), method="importance", data=x, num_chains=20000))
    if bracket is not None:
        print(f"bracket: lower {bracket.lower}\n         upper {bracket.upper}\n         consistent "
              f"{bracket.consistent}, reliable {bracket.reliable}: {bracket.reason}")
    if default is not None:
        for ref in (imp, imp2):
            if ref is None:
                continue
            se = math.hypot(default.stderr, ref.stderr)
            agree = abs(default.log_z - ref.log_z) <= 4 * se
            flag = " but flags itself unreliable" if not default.reliable else " AND CLAIMS RELIABLE"
            verdict = "agrees within 4 combined s.e." if agree else "disagrees" + flag
            print(f"default {default.log_z:.3f} ± {default.stderr:.3f} vs {ref.method} {ref.log_z:.3f} ± "
                  f"{ref.stderr:.3f} (reliable {ref.reliable}): {verdict}")
    ll = ebmppl.evaluation.held_out_log_likelihood(e, x_test, default) if default is not None else None
    if ll is not None:
        print(f"held-out log-likelihood with the default log Z: {ll!r}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["calibration", "digits", "all"], default="all")
    parser.add_argument("--replicates", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3000, help="DSM training steps on digits")
    args = parser.parse_args()
    results = {}
    if args.part in ("calibration", "all"):
        results["calibration"] = calibration(args.replicates)
    if args.part in ("digits", "all"):
        results["digits"] = digits(args.steps)
    print(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
