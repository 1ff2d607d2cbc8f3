"""Every log Z estimator on one trained energy: do they agree within their error bars?

A small MLP energy is fitted to two moons by contrastive divergence
(``ebmppl.fit``, about a minute on a laptop CPU); then
:func:`ebmppl.logz.compare_estimators` runs every registered estimator on it
(grid quadrature, exact to its discretisation error in 2-D; importance
sampling; forward AIS; tempered SMC; and any registered since, such as
parallel tempering's stepping stone) and tests every pair for a difference
beyond their combined standard errors (Bonferroni over the pairs, family-wise
α = 0.05). Prints the markdown table of ``docs/guide/log_z.md`` and writes
``benchmarks/results/logz_estimators.json``.

Usage::

    python benchmarks/bench_logz_estimators.py [--steps 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import jax
import optax

from ebmppl import Energy, buffer, fit, samplers
from ebmppl.data import two_moons
from ebmppl.logz import ESTIMATORS, compare_estimators
from ebmppl.nn import MLPEnergy

try:
    from _common import RESULTS
except ImportError:  # run from elsewhere
    from benchmarks._common import RESULTS


def train(steps: int, seed: int) -> tuple[Energy, float]:
    """A two-moons energy: an MLP (64, 64) with a Gaussian confinement, fitted by persistent CD with Langevin."""
    moons = two_moons()
    data = moons.sample(jax.random.key(seed), 10_000)
    net = MLPEnergy(2, (64, 64), confinement_scale=2.5, confinement_center=(0.5, 0.25),
                    key=jax.random.key(seed + 1))
    start = time.perf_counter()
    warnings.filterwarnings("ignore", message=".*persistent chains are not mixing")  # the table is about log Z
    result = fit(Energy.from_equinox(net, event_shape=(2,)), jax.random.key(seed + 2), data, num_steps=steps,
                 batch_size=128, optimizer=optax.adam(1e-3, b1=0.0), alpha=0.05, num_mcmc_steps=20,
                 sampler=samplers.langevin(step_size=0.005, noise_scale=0.1),
                 chain_init=buffer.replay_buffer(10_000, 0.05, buffer.uniform_noise(-2.5, 2.5)),
                 progress_bar=False)
    return result.energy, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of the energy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    energy, seconds = train(args.steps, args.seed)
    print(f"trained two moons in {seconds:.0f} s ({args.steps} steps)")
    methods = [m for m in ESTIMATORS if m in ("grid", "importance", "ais", "smc")]
    methods += [m for m in ESTIMATORS if m not in methods]  # registered since (stepping stone, ...)
    cmp = compare_estimators(energy, jax.random.key(args.seed + 3), methods,
                             options={"grid": {"limits": two_moons().limits, "resolution": 400}})
    print(cmp.to_markdown())
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"steps": args.steps, "seed": args.seed, "train_seconds": seconds, "agree": cmp.agree,
           "reliable": cmp.reliable, "z_critical": cmp.z_critical,
           "estimates": {m: None if e is None else {"log_z": e.log_z, "stderr": e.stderr, "ess": e.ess,
                                                    "reliable": e.reliable, "reason": e.reason,
                                                    "seconds": cmp.seconds[m]}
                         for m, e in cmp.estimates.items()},
           "pairs": [p._asdict() for p in cmp.pairs]}
    (RESULTS / "logz_estimators.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
