"""Overhead of ``ebmppl.sample`` over a hand-written BlackJAX loop, measured in one process.

Both sides run MALA with the same fixed step size on the same target, the
same number of chains and draws, and return every draw: the reference is
``jit(scan(vmap(blackjax.mala kernel)))``; ebmppl is the public ``sample()``
call (chunked scan, stats, validation, result assembly; warm-up off). Both
are compiled before timing; runs are interleaved and the median is kept.

Usage::

    python benchmarks/bench_sample_overhead.py [--chains 64] [--draws 2000] [--dim 10] [--repeats 7]

Prints a JSON line with the times and the ratio ebmppl / reference (≤ 1.1 is the bar).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import blackjax
import jax
import jax.numpy as jnp
import numpy as np

import ebmppl
from ebmppl.targets import gaussian


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=64)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=pathlib.Path, default=None, help="optional JSON file for the result")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    a = rng.normal(size=(args.dim, args.dim))
    target = gaussian(rng.normal(size=args.dim), a @ a.T / args.dim + np.eye(args.dim))
    energy = target.energy
    step_size = 0.05
    init = jax.random.normal(jax.random.key(0), (args.chains, args.dim))
    sampler = ebmppl.samplers.mala(step_size=step_size)

    # --- reference: the loop a BlackJAX user writes by hand
    logdensity = lambda x: -energy.energy_fn(energy.params, x)
    kernel = blackjax.mala.build_kernel()

    @jax.jit
    def reference(key, positions):
        states = jax.vmap(blackjax.mala.init, in_axes=(0, None))(positions, logdensity)

        def one_step(states, key):
            keys = jax.random.split(key, args.chains)
            states, info = jax.vmap(kernel, in_axes=(0, 0, None, None))(keys, states, logdensity, step_size)
            return states, (states.position, info.acceptance_rate)

        _, (xs, acc) = jax.lax.scan(one_step, states, jax.random.split(key, args.draws))
        return jnp.swapaxes(xs, 0, 1), jnp.swapaxes(acc, 0, 1)

    def run_ebmppl(key):
        out = ebmppl.sample(energy, key, sampler=sampler, num_chains=args.chains, num_warmup=0,
                            num_samples=args.draws, init=init, adapt=False, progress_bar=False)
        return jax.block_until_ready(out.positions)

    def run_reference(key):
        return jax.block_until_ready(reference(key, init))

    # compile both (first calls), and check they return the same layout
    x_ref = run_reference(jax.random.key(1))[0]
    x_ours = run_ebmppl(jax.random.key(1))
    assert x_ref.shape == x_ours.shape, (x_ref.shape, x_ours.shape)

    times = {"ebmppl": [], "reference": []}
    for r in range(args.repeats):  # interleaved
        for name, fn in (("ebmppl", run_ebmppl), ("reference", run_reference)):
            t0 = time.perf_counter()
            fn(jax.random.key(100 + r))
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    result = {
        "benchmark": "sample_overhead_mala",
        "chains": args.chains, "draws": args.draws, "dim": args.dim, "repeats": args.repeats,
        "ebmppl_s": med["ebmppl"], "reference_s": med["reference"],
        "ratio_ebmppl_over_reference": med["ebmppl"] / med["reference"],
        "jax": jax.__version__, "blackjax": blackjax.__version__,
    }
    print(json.dumps(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
