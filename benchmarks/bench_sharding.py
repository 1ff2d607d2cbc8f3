"""Sharded sampling and training on 2 devices vs 1 device (on CPU: two forced XLA host devices).

The same ``ebmppl.sample`` call (MALA, 2048 chains, fixed step size, an MLP
energy d = 16, 128-128) with ``devices=None`` and ``devices="all"``, and the
same ``fit`` call (the two-moons CD recipe, batch 256) — compiled first,
interleaved, medians. Where there are fewer than 2 devices the script
re-runs itself with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``.

Usage::

    python benchmarks/bench_sharding.py [--repeats 5]
"""

from __future__ import annotations

import os
import subprocess
import sys

if __name__ == "__main__" and "--child" not in sys.argv and "xla_force_host_platform_device_count" not in os.environ.get(
        "XLA_FLAGS", ""):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    sys.exit(subprocess.run([sys.executable, *sys.argv, "--child"], env=env).returncode)

import argparse

import jax
import numpy as np
import optax

import ebmppl
from _common import interleaved, save
from ebmppl import buffer, samplers
from ebmppl.data import two_moons
from ebmppl.nn import MLPEnergy


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = len(jax.devices())
    energy = ebmppl.Energy.from_equinox(MLPEnergy(16, (128, 128), base_scale=3.0, key=jax.random.key(0)),
                                        event_shape=(16,))
    kw = dict(sampler=samplers.mala(step_size=0.05), num_chains=2048, num_warmup=0, num_samples=200, adapt=False,
              progress_bar=False)
    timings: dict[str, list[float]] = {"1": [], "all": []}

    def run(devices):
        def go(seed):
            out = ebmppl.sample(energy, jax.random.key(seed), devices=devices, **kw)
            timings["1" if devices is None else "all"].append(out.timings["sampling"])
            return jax.block_until_ready(out.positions)
        return go

    interleaved({"1 device": run(None), f"{n} devices": run("all")}, args.repeats)
    sample_s = {k: float(np.median(v[1:])) for k, v in timings.items()}  # compiled-program time, first call dropped
    same = bool(np.array_equal(np.asarray(ebmppl.sample(energy, jax.random.key(0), **kw).positions),
                               np.asarray(ebmppl.sample(energy, jax.random.key(0), devices="all", **kw).positions)))

    data = two_moons().sample(jax.random.key(0), 10_000)
    mlp = ebmppl.Energy.from_equinox(MLPEnergy(2, (128, 128, 128), key=jax.random.key(1)), event_shape=(2,))
    fit_kw = dict(num_steps=200, batch_size=256, chunk_size=200, progress_bar=False, alpha=0.05, num_mcmc_steps=20,
                  optimizer=optax.adam(1e-3, b1=0.0), sampler=samplers.langevin(step_size=0.005, noise_scale=0.1),
                  chain_init=buffer.replay_buffer(10_000, 0.05, buffer.uniform_noise(-2.5, 2.5)))
    fit_s = interleaved({
        "1": lambda seed: jax.block_until_ready(ebmppl.fit(mlp, data, key=jax.random.key(seed), **fit_kw).state.params),
        "all": lambda seed: jax.block_until_ready(ebmppl.fit(mlp, data, key=jax.random.key(seed), devices="all",
                                                             **fit_kw).state.params),
    }, args.repeats)
    result = {
        "benchmark": "sharding", "devices": n, "chains": kw["num_chains"], "draws": kw["num_samples"],
        "sampling_s": sample_s, "sampling_speedup": sample_s["1"] / sample_s["all"],
        "draws_identical": same,
        "fit_s": fit_s, "fit_speedup": fit_s["1"] / fit_s["all"],
    }
    save("sharding", result)
    return result


if __name__ == "__main__":
    main()
