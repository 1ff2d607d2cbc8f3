"""Sharded sampling and training on every device vs one device (on CPU: forced XLA host devices).

* **Sampling** — the same ``ebmppl.sample`` call (MALA, 2048 chains, fixed
  step size, an MLP energy d = 16, 128-128) with ``devices=None`` and
  ``devices="all"``; the draws must be identical. Timed: the compiled
  sampling program (``out.timings["sampling"]``).
* **CD training** — the same ``fit`` call with ``devices=None`` and
  ``devices="all"`` in two settings: the MLP recipe of ``bench_cd_steps.py``
  (two moons, 2-128-128-128-1, batch 128, K = 20, replay buffer of 10,000) and
  the same recipe at batch 256. The per-device batch is reported.

Everything is compiled first and interleaved (``_common.interleaved_times``);
a speed-up is the median of the per-round ratios (one device / all devices,
both timed seconds apart in the same round) with its quartiles.

Where JAX sees fewer than 2 devices and XLA_FLAGS does not force a count, the
script re-runs itself with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``
(``--devices N`` for another count); that only adds devices on CPU, so on a
single accelerator it reports that there is nothing to shard and writes nothing.

Usage::

    python benchmarks/bench_sharding.py [--repeats 7] [--steps 400] [--devices 2]
"""

from __future__ import annotations

import os
import subprocess
import sys


def _forced_count(argv: list[str]) -> int:
    return int(argv[argv.index("--devices") + 1]) if "--devices" in argv else 2


if (__name__ == "__main__" and "--child" not in sys.argv
        and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", "")):
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={_forced_count(sys.argv)}"
    sys.exit(subprocess.run([sys.executable, *sys.argv, "--child"], env={**os.environ, "XLA_FLAGS": flags.strip()})
             .returncode)

import argparse

import jax
import numpy as np
import optax

import ebmppl
from _common import device_description, interleaved_times, paired_speedup, save
from ebmppl import buffer, samplers
from ebmppl.data import two_moons
from ebmppl.nn import MLPEnergy

FIT_BATCHES = (128, 256)  # 128: bench_cd_steps' MLP setting; 256: the earlier two-moons setting


def _ratio_stats(one: list[float], many: list[float]) -> dict[str, float]:
    """Median and quartiles of the per-round ratios one-device / all-devices."""
    return paired_speedup({"1": one, "all": many}, "all", "1")


def sampling(repeats: int, pause: float, draws: int) -> dict:
    """Sampling speed-up on all devices, and whether the draws are the same as on one."""
    energy = ebmppl.Energy.from_equinox(MLPEnergy(16, (128, 128), confinement_scale=3.0, key=jax.random.key(0)),
                                        event_shape=(16,))
    kw = dict(sampler=samplers.mala(step_size=0.05), num_chains=2048, num_warmup=0, num_samples=draws, adapt=False,
              progress_bar=False)
    timings: dict[str, list[float]] = {"1": [], "all": []}

    def run(devices, label):
        def go(seed):
            out = ebmppl.sample(energy, jax.random.key(seed), devices=devices, **kw)
            jax.block_until_ready(out.positions)
            timings[label].append(out.timings["sampling"])
        return go

    interleaved_times({"1": run(None, "1"), "all": run("all", "all")}, repeats, pause=pause)
    one, many = timings["1"][1:], timings["all"][1:]  # the warm-up call dropped: compiled-program time only
    same = bool(np.array_equal(np.asarray(ebmppl.sample(energy, jax.random.key(0), devices=None, **kw).positions),
                               np.asarray(ebmppl.sample(energy, jax.random.key(0), devices="all", **kw).positions)))
    return {"chains": kw["num_chains"], "draws": draws, "seconds": {"1": float(np.median(one)),
                                                                    "all": float(np.median(many))},
            "speedup": _ratio_stats(one, many), "draws_identical": same}


def training(repeats: int, pause: float, steps: int, batch: int, n: int) -> dict:
    """``fit`` on all devices vs one for the bench_cd_steps MLP recipe at one batch size."""
    data = two_moons().sample(jax.random.key(0), 10_000)
    mlp = ebmppl.Energy.from_equinox(MLPEnergy(2, (128, 128, 128), key=jax.random.key(1)), event_shape=(2,))
    chunk = min(steps, 200)
    fit_kw = dict(num_steps=steps, batch_size=batch, chunk_size=chunk, progress_bar=False, alpha=0.05,
                  num_mcmc_steps=20, optimizer=optax.adam(1e-3, b1=0.0),
                  sampler=samplers.langevin(step_size=0.005, noise_scale=0.1),
                  chain_init=buffer.replay_buffer(10_000, 0.05, buffer.uniform_noise(-2.5, 2.5)))

    def go(devices):
        return lambda seed: jax.block_until_ready(
            ebmppl.fit(mlp, jax.random.key(seed), data, devices=devices, **fit_kw).state.params)

    times = interleaved_times({"1": go(None), "all": go("all")}, repeats, pause=pause)
    return {"batch": batch, "per_device_batch": batch // n, "steps": steps, "chunk_size": chunk,
            "seconds": {k: float(np.median(v)) for k, v in times.items()},
            "steps_per_s": {k: steps / float(np.median(v)) for k, v in times.items()},
            "speedup": _ratio_stats(times["1"], times["all"])}


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=400, help="CD steps per timed fit")
    parser.add_argument("--draws", type=int, default=200, help="draws per timed sample call")
    parser.add_argument("--devices", type=int, default=2, help="CPU devices to force when JAX sees fewer than 2")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of rest before each timed call")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n = len(jax.devices())
    if n < 2:
        print(f"bench_sharding: JAX sees {n} {jax.default_backend()} device; nothing to shard, nothing written.")
        return None
    fits = {str(b): training(args.repeats, args.pause, args.steps, b, n) for b in FIT_BATCHES if b % n == 0}
    s = sampling(args.repeats, args.pause, args.draws)
    result = {
        "benchmark": "sharding", "devices": n, "device": device_description(), "repeats": args.repeats,
        "sampling": s, "fit": fits,
        # the figures of the previous layout, kept for older readers of the JSON
        "chains": s["chains"], "draws": s["draws"], "sampling_s": s["seconds"],
        "sampling_speedup": s["speedup"]["median"], "draws_identical": s["draws_identical"],
        "fit_speedup": fits[str(max(int(b) for b in fits))]["speedup"]["median"] if fits else None,
    }
    save("sharding", result)
    return result


if __name__ == "__main__":
    main()
