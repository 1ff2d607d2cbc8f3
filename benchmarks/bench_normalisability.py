"""What ``assert_normalisable`` costs, and what ``log_partition`` said before it (findings 1 and 3 of issue 15).

Part ``cost``: wall time of the probe on energies of growing size, first call (tracing and compiling
included) and a repeat (compiled program reused), in this process.

Part ``before_after``: a ReLU JEM marginal (13-D) and "A AND NOT B" with weight 3 (2-D). "Before" is
``check_normalisable=False`` (the estimators exactly as they ran without the check); "after" is the default.

Run::

    python benchmarks/bench_normalisability.py [--part cost|before_after|all]
"""

from __future__ import annotations

import argparse
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp

import ebmppl
from ebmppl import Energy, NotNormalisableError, assert_normalisable, log_partition
from ebmppl.compose import negation
from ebmppl.evaluation import grid_log_partition
from ebmppl.jem import joint_energy
from ebmppl.nn import ConvEnergy, MLPEnergy
from ebmppl.targets import gaussian


def _timed(fn):
    t0 = time.perf_counter()
    try:
        out = fn()
    except NotNormalisableError as err:
        out = err
    return time.perf_counter() - t0, out


def cost() -> None:
    cases = {
        "2-D Gaussian": gaussian([0.0, 0.0], [[1.0, 0.3], [0.3, 0.5]]).energy,
        "10-D Neal's funnel": ebmppl.targets.neals_funnel(10).energy,
        "64-D MLP with base": Energy.from_equinox(MLPEnergy(64, (128, 128), base_scale=2.0, key=jax.random.key(0)),
                                                  event_shape=(64,)),
        "64-D ReLU JEM (10 classes)": joint_energy(eqx.nn.MLP(64, 10, 64, 2, activation=jax.nn.relu,
                                                              key=jax.random.key(1)), event_shape=(64,)).energy,
        "1x8x8 ConvEnergy (width 8)": Energy.from_equinox(ConvEnergy(1, width=8, key=jax.random.key(2)),
                                                          event_shape=(1, 8, 8)),
        "1x28x28 ConvEnergy (width 16)": Energy.from_equinox(ConvEnergy(1, width=16, key=jax.random.key(3)),
                                                             event_shape=(1, 28, 28)),
    }
    print(f"{'energy':32s} {'first call':>11s} {'repeat':>9s}  verdict")
    for name, energy in cases.items():
        first, out = _timed(lambda e=energy: assert_normalisable(e))
        again, _ = _timed(lambda e=energy: assert_normalisable(e))
        verdict = "normalisable" if not isinstance(out, Exception) else "NotNormalisableError"
        print(f"{name:32s} {first:10.2f}s {again:8.3f}s  {verdict}")


def before_after() -> None:
    warnings.simplefilter("ignore")
    jem = joint_energy(eqx.nn.MLP(13, 3, 16, 2, activation=jax.nn.relu, key=jax.random.key(3)),
                       event_shape=(13,)).energy
    a = gaussian([-1.0, 0.5], [[1.0, 0.2], [0.2, 0.8]]).energy
    b = gaussian([1.0, -0.5], [[0.8, 0.0], [0.0, 1.2]]).energy
    a_not_b = negation(a, b, 3.0)
    runs = [
        ("JEM 13-D, AIS K=1000", jem, lambda e, c: log_partition(e, jax.random.key(0), check_normalisable=c)),
        ("JEM 13-D, AIS K=3000", jem, lambda e, c: log_partition(e, jax.random.key(0), num_temperatures=3000,
                                                               check_normalisable=c)),
        ("JEM 13-D, importance", jem, lambda e, c: log_partition(e, jax.random.key(0), method="importance",
                                                               num_chains=4096, check_normalisable=c)),
        ("A AND NOT B (w=3), grid", a_not_b, lambda e, c: grid_log_partition(e, (-8, 8, -8, 8), 400,
                                                                            check_normalisable=c)),
        ("A AND NOT B (w=3), AIS", a_not_b, lambda e, c: log_partition(e, jax.random.key(0), check_normalisable=c)),
    ]
    u = None
    for name, energy, run in runs:
        for check in (False, True):
            seconds, out = _timed(lambda r=run, e=energy, c=check: r(e, c))
            if isinstance(out, Exception):
                text = f"NotNormalisableError: {str(out)[:150]}..."
                u = out.report.direction if out.report is not None else u
            elif isinstance(out, float):
                text = f"{out:.6g}"
            else:
                text = f"{out.log_z:.6g} ± {out.stderr:.3g} (ess {out.ess:.1f}, reliable={out.reliable})"
            print(f"{name:26s} {'after ' if check else 'before'} {seconds:6.1f}s  {text}", flush=True)
    if u is not None:  # the last direction reported for the JEM is printed in its message; here, E along it
        print("E along the reported direction of the last error:",
              [round(float(a_not_b.energy(t * jnp.asarray(u))), 1) for t in (1.0, 1e2, 1e3, 1e4)])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["cost", "before_after", "all"], default="all")
    args = parser.parse_args()
    if args.part in ("cost", "all"):
        cost()
    if args.part in ("before_after", "all"):
        before_after()
