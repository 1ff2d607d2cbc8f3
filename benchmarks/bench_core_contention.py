"""What two busy cores give on this machine: the ceiling that sharding across CPU devices can reach.

Sharding a batch over one XLA device per core can at best run like independent
processes, one per core, each on its share. This script measures that ceiling
for the two workloads behind ``bench_sharding.py`` and ``bench_cd_steps.py``,
with nothing of ebmppl's sharding involved:

* **mala** — 200 MALA transitions of 1024 chains on the MLP energy of
  ``bench_sharding.py`` (d = 16, 128-128);
* **conv_score** — 100 Langevin steps of 64 images through ``ConvEnergy(width=32)``
  (the ConvNet CD step's score evaluations; its im2col formulation on CPU).

Each workload is timed (a) **solo**: one process pinned to core 0, one XLA
device, no intra-op threads; (b) **pair**: two such processes at once, pinned
to cores 0 and 1, started together after compiling; (c) **ebmppl sharded**:
twice the work (2048 chains / 128 images) split over 2 XLA devices, as
``ebmppl.sample`` and ``ebmppl.fit`` run it by default; (d) **one device**:
twice the work on one XLA device with XLA's default intra-op threading (both
cores). ``pair / solo`` is how much two busy cores slow each other (1.0: not at
all); ``sharded / pair`` is how close sharding gets to the ceiling (1.0: at
it); ``one device / pair`` is the best speed-up over one device that any
sharding could show on this machine.

Usage::

    python benchmarks/bench_core_contention.py [--seconds 10]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

WORKLOADS = ("mala", "conv_score")


def _program(workload: str, share: int):
    """(jitted function, its input) for ``share`` shares of the workload (1: one core's, 2: two cores')."""
    import jax
    import jax.numpy as jnp

    import ebmppl
    from ebmppl import samplers
    from ebmppl.nn import ConvEnergy, MLPEnergy
    from ebmppl.samplers import init_chains, run_chains

    if workload == "mala":
        energy = ebmppl.Energy.from_equinox(MLPEnergy(16, (128, 128), confinement_scale=3.0, key=jax.random.key(0)),
                                            event_shape=(16,))
        sampler = samplers.mala(step_size=0.05)
        params = sampler.default_params(16)
        ld = energy.logdensity_fn
        states = init_chains(sampler, ld, jax.random.key(1), jax.random.normal(jax.random.key(0), (1024 * share, 16)))
        return jax.jit(lambda s: run_chains(sampler, ld, jax.random.key(2), s, params, 200)[1]), states
    net = ConvEnergy(1, width=32, key=jax.random.key(1))
    score = jax.vmap(jax.grad(net))

    def chain(x):
        step = lambda x, _: (jnp.clip(x - 0.5 * score(x) + 0.005, -1.0, 1.0), None)  # noqa: E731
        return jax.lax.scan(step, x, None, length=100)[0]

    return jax.jit(chain), jax.random.uniform(jax.random.key(0), (64 * share, 1, 8, 8), minval=-1.0, maxval=1.0)


def _worker(workload: str, share: int, sharded: bool, start_at: float, seconds: float) -> None:
    """Compile, wait for ``start_at``, run for ``seconds``; print the median seconds per call as JSON."""
    import jax
    import numpy as np

    fn, x = _program(workload, share)
    if sharded:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        mesh = Mesh(np.array(jax.devices()), ("d",))
        x = jax.device_put(x, NamedSharding(mesh, PartitionSpec("d")))
    jax.block_until_ready(fn(x))
    time.sleep(max(0.0, start_at - time.time()))
    times, end = [], time.time() + seconds
    while time.time() < end:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": float(np.median(times)), "calls": len(times), "devices": len(jax.devices())}))


def _spawn(workload: str, share: int, mode: str, core: int | None, start_at: float, seconds: float):
    env = dict(os.environ)
    if mode == "sharded":
        env.pop("EBMPPL_CPU_DEVICES", None)
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip()
    else:
        env["EBMPPL_CPU_DEVICES"] = "1"
        if mode == "single_core":
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    args = [sys.executable, __file__, "--worker", workload, str(share), mode, str(start_at), str(seconds)]
    if core is not None:
        args = ["taskset", "-c", str(core), *args]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _result(proc) -> dict:
    out, _ = proc.communicate()
    return json.loads(out.strip().splitlines()[-1])


def measure(workload: str, seconds: float, compile_wait: float = 15.0) -> dict:
    """Solo, pair, sharded and one-device seconds per call of one workload (each kind started fresh)."""
    def run(specs):
        start_at = time.time() + compile_wait  # every process compiled before any starts timing
        procs = [_spawn(workload, share, mode, core, start_at, seconds) for share, mode, core in specs]
        return [_result(p) for p in procs]

    solo, = run([(1, "single_core", 0)])
    pair = run([(1, "single_core", 0), (1, "single_core", 1)])
    sharded, = run([(2, "sharded", None)])
    one_device, = run([(2, "one_device", None)])
    pair_s = max(p["seconds"] for p in pair)  # two shares done when the slower process is done
    return {"solo_s": solo["seconds"], "pair_s": [p["seconds"] for p in pair], "sharded_s": sharded["seconds"],
            "one_device_s": one_device["seconds"], "contention": pair_s / solo["seconds"],
            "sharded_over_ceiling": sharded["seconds"] / pair_s,
            "best_possible_speedup_over_one_device": one_device["seconds"] / pair_s,
            "sharded_speedup_over_one_device": one_device["seconds"] / sharded["seconds"]}


def main(argv: list[str] | None = None) -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per process")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("bench_core_contention: fewer than 2 usable cores; nothing to measure.")
        return {}
    from _common import save

    result = {"benchmark": "core_contention", "seconds": args.seconds,
              "workloads": {w: measure(w, args.seconds) for w in WORKLOADS}}
    save("core_contention", result)
    return result


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "sharded", float(sys.argv[5]), float(sys.argv[6]))
    else:
        main()
