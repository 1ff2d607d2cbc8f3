"""Shared helpers of the benchmark scripts: interleaved timing, matmul peak, memory, results."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
# where ``save`` writes: benchmarks/results/ unless EBMPPL_BENCH_RESULTS names another folder
# (run_gpu.py points it at benchmarks/results/<platform>/, or at a temporary folder in --smoke mode)
RESULTS = pathlib.Path(os.environ.get("EBMPPL_BENCH_RESULTS") or ROOT / "benchmarks" / "results")


def interleaved_times(runs: dict[str, Callable[[int], object]], repeats: int,
                      pause: float = 1.0) -> dict[str, list[float]]:
    """Seconds of every timed call of each callable: ``repeats`` rounds, each calling every contender once.

    One untimed warm call each first. Interleaving spreads any drift of the
    machine (frequency, other load) over all contenders instead of charging it
    to one. The order rotates every round, forwards then backwards, so every
    contender follows every other one equally often, and a pause precedes each timed call:
    PyTorch's OpenMP threads keep spinning for a while after their work ends
    and would otherwise steal the cores from whoever runs next.
    """
    for fn in runs.values():
        fn(0)
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        # rotations of the order, then of the reversed order: over 2n rounds every contender
        # runs right after every other one equally often
        base = names if (r // len(names)) % 2 == 0 else names[::-1]
        for name in base[r % len(names):] + base[:r % len(names)]:
            time.sleep(pause)
            t0 = time.perf_counter()
            runs[name](r + 1)
            times[name].append(time.perf_counter() - t0)
    return times


def interleaved(runs: dict[str, Callable[[int], object]], repeats: int, pause: float = 1.0) -> dict[str, float]:
    """Median seconds of each callable over :func:`interleaved_times`."""
    return {name: float(np.median(v)) for name, v in interleaved_times(runs, repeats, pause).items()}


def paired_speedup(times: dict[str, list[float]], ours: str, theirs: str) -> dict[str, float]:
    """How many times faster ``ours`` ran than ``theirs``, round by round.

    Both ran in the same round, seconds apart, so each round's ratio cancels
    the machine's slow drift; the median over rounds is the figure, the
    quartiles its spread.
    """
    ratios = np.asarray(times[theirs]) / np.asarray(times[ours])
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "rounds": int(ratios.size)}


def matmul_peak_gflops(n: int | None = None, repeats: int = 10, dtype=jnp.float32, all_devices: bool = True) -> float:
    """Best matrix-multiply throughput of this machine through XLA (GFLOP/s): the larger of :func:`matmul_peaks`.

    >>> matmul_peak_gflops(n=64, repeats=2) > 0
    True
    """
    return max(matmul_peaks(n, repeats, dtype, all_devices).values())


def matmul_peaks(n: int | None = None, repeats: int = 10, dtype=jnp.float32,
                 all_devices: bool = True) -> dict[str, float]:
    """Matrix-multiply throughputs through XLA (GFLOP/s), measured now.

    ``one_gemm``: one ``n × n`` product on one device (XLA:CPU spreads a big
    GEMM over its intra-op threads); ``one_per_device`` (only with more than
    one device and ``all_devices``): one such product per device at once (on
    CPU, one device per core). The larger is the machine's peak, not one
    core's. ``n`` defaults to 1024 on CPU and 8192 on an accelerator.

    >>> sorted(matmul_peaks(n=64, repeats=2))[0]
    'one_gemm'
    """
    def best_of(f, *args) -> float:
        jax.block_until_ready(f(*args))
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(*args))
            best = min(best, time.perf_counter() - t0)
        return best

    n = n or (1024 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    peaks = {"one_gemm": 2 * n**3 / best_of(jax.jit(lambda a, b: a @ b), a, b) / 1e9}
    devices = jax.devices()
    if all_devices and len(devices) > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.asarray(devices), ("d",)), PartitionSpec("d"))
        stack = lambda m: jax.device_put(jnp.broadcast_to(m, (len(devices), n, n)), sharding)  # noqa: E731
        seconds = best_of(jax.jit(lambda a, b: a @ b), stack(a), stack(b))
        peaks["one_per_device"] = 2 * n**3 * len(devices) / seconds / 1e9
    return peaks


def device_description() -> dict:
    """What the benchmarks ran on: platform, device kind and count, JAX version."""
    d = jax.devices()[0]
    kind = getattr(d, "device_kind", d.platform)
    return {"platform": d.platform, "device_kind": kind, "devices": len(jax.devices()), "jax": jax.__version__}


def compiled_flops(fn: Callable, *args) -> float:
    """FLOPs of one call of ``jit(fn)(*args)`` by XLA's cost analysis (loops must not be inside ``fn``)."""
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan")))


def compiled_memory_bytes(fn: Callable, *args) -> int:
    """Peak device memory XLA plans for one call: arguments + outputs + temporaries (bytes)."""
    m = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def machine() -> dict:
    return {"jax": jax.__version__, "backend": jax.default_backend(), "devices": len(jax.devices()),
            "device_kind": getattr(jax.devices()[0], "device_kind", jax.default_backend()),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}


def save(name: str, result: dict) -> pathlib.Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**result, "machine": machine()}, indent=2))
    os.replace(tmp, path)
    print(json.dumps(result))
    return path


def block(tree) -> None:
    jax.block_until_ready(tree)


__all__ = ["interleaved", "interleaved_times", "paired_speedup", "matmul_peak_gflops", "matmul_peaks", "compiled_flops",
           "compiled_memory_bytes", "device_description", "save", "machine", "block", "jnp"]
