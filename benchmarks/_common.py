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
RESULTS = ROOT / "benchmarks" / "results"


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


def matmul_peak_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Best float32 GEMM throughput of this machine through XLA (GFLOP/s), measured now."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    b = jax.random.normal(jax.random.key(1), (n, n))
    f = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(f(a, b))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, b))
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


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


__all__ = ["interleaved", "interleaved_times", "paired_speedup", "matmul_peak_gflops", "compiled_flops",
           "compiled_memory_bytes", "save", "machine", "block", "jnp"]
