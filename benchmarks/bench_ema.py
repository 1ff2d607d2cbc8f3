"""Does a parameter EMA improve the held-out log-likelihood of digits trained by CD?

The 8x8 digits (``ebmppl.data.load_digits``), flattened to 64-D and
dequantised (uniform noise of one pixel step, 1/8, so a continuous density is
bounded: four noisy copies of the training split, one fixed draw for the test
split), an ``MLPEnergy(64, (128, 128))``, trained by ``fit``'s CD defaults
(recipe ``"density"``: standardised data, MALA negatives whose step follows
the energy, no energy penalty; Adam at 1e-3, cosine-decayed to 1e-4 over the
second half). Per seed, two runs with the same key and steps, ``ema=0.99`` and
``ema=0.999``: their raw parameters are checked bit-identical (the EMA does
not change training), so each seed gives three energies: raw, EMA 0.99, EMA 0.999.

Held-out log-likelihood (nats per digit, of the dequantised test digits) with
``log Z`` from forward AIS (``ebmppl.log_partition``, base fitted to the
training data), its standard error (test digits' spread and log Z's error
combined) and the AIS verdict; and the *paired* difference EMA − raw on the
same test digits, whose standard error carries both log Z errors. Writes
``benchmarks/results/ema.json`` (``ema_constant_lr.json`` with ``--optimizer constant``) and
``docs/benchmarks/ema.md`` (a section per setting measured; the text below its ``<!-- measured -->`` marker is
kept).

Usage::

    python benchmarks/bench_ema.py [--steps 3000] [--seeds 3] [--temperatures 3000] [--chains 256]
        [--optimizer default|constant]
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
import optax

from _common import ROOT, save
from ebmppl import Energy, fit, log_partition
from ebmppl.data import load_digits
from ebmppl.evaluation import held_out_log_likelihood
from ebmppl.logz import LogZWarning
from ebmppl.nn import MLPEnergy

PIXEL_STEP = 1.0 / 8.0  # digits take 17 values in [-1, 1]
DECAYS = (0.99, 0.999)


def dequantised(key, x):
    return x + PIXEL_STEP * jax.random.uniform(key, x.shape, minval=-0.5, maxval=0.5)


def data():
    train = load_digits("train")[0].reshape(-1, 64)
    test = load_digits("test")[0].reshape(-1, 64)
    return (dequantised(jax.random.key(10), jnp.asarray(np.concatenate([train] * 4))),
            dequantised(jax.random.key(11), jnp.asarray(test)))


def evaluate(energy: Energy, key, x_train, x_test, args) -> tuple[dict, np.ndarray, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogZWarning)  # the verdict is recorded in the table instead
        log_z = log_partition(energy, key, data=x_train, num_chains=args.chains,
                              num_temperatures=args.temperatures, num_mcmc_steps=args.mcmc_steps)
        ll = held_out_log_likelihood(energy, x_test, log_z)
    row = {"log_likelihood": ll.mean, "stderr": ll.stderr, "log_z": log_z.log_z, "log_z_stderr": log_z.stderr,
           "ess": float(log_z.ess), "reliable": bool(log_z.reliable), "ais_seconds": time.perf_counter() - t0}
    return row, np.asarray(energy.logdensity(x_test), np.float64), log_z.stderr


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--temperatures", type=int, default=3000)
    parser.add_argument("--mcmc-steps", type=int, default=4)
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--optimizer", choices=["default", "constant"], default="default",
                        help="fit's default schedule, or Adam(1e-3, b1=0) at a constant rate")
    args = parser.parse_args()
    x_train, x_test = data()
    t_start = time.perf_counter()
    seeds = []
    for seed in range(args.seeds):
        energy = Energy.from_equinox(MLPEnergy(64, widths=(128, 128), key=jax.random.key(seed)), event_shape=(64,))
        results, train_seconds = {}, []
        for decay in DECAYS:
            optimizer = None if args.optimizer == "default" else optax.adam(1e-3, b1=0.0, b2=0.999)
            t0 = time.perf_counter()
            results[decay] = fit(energy, jax.random.key(100 + seed), x_train, num_steps=args.steps, ema=decay,
                                 optimizer=optimizer, progress_bar=False, health=False)
            train_seconds.append(time.perf_counter() - t0)
        raw = results[DECAYS[0]].raw_energy
        identical = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(raw.params),
                                                             jax.tree.leaves(results[DECAYS[1]].raw_energy.params),
                                                             strict=True))
        key = jax.random.key(1000 + seed)
        rows = {}
        base, base_logp, base_se = evaluate(raw, key, x_train, x_test, args)
        rows["raw"] = base
        for decay in DECAYS:
            row, logp, se = evaluate(results[decay].energy, key, x_train, x_test, args)
            diff = logp - base_logp  # paired over the same test digits, then the log Z difference
            row["paired_diff"] = float(diff.mean() - (row["log_z"] - base["log_z"]))
            row["paired_stderr"] = math.sqrt(float(diff.var()) / diff.size + se**2 + base_se**2)
            rows[f"ema {decay}"] = row
        seeds.append({"seed": seed, "train_seconds": train_seconds, "raw_identical": identical, "rows": rows})
        print(json.dumps(seeds[-1]), flush=True)

    summary = {}
    for decay in DECAYS:
        d = np.array([s["rows"][f"ema {decay}"]["paired_diff"] for s in seeds])
        se = np.array([s["rows"][f"ema {decay}"]["paired_stderr"] for s in seeds])
        summary[f"ema {decay}"] = {"mean_paired_diff": float(d.mean()),
                                   "stderr_estimation": float(np.sqrt((se**2).sum()) / len(d)),
                                   "sd_across_seeds": float(d.std(ddof=1)) if len(d) > 1 else float("nan")}
    total = time.perf_counter() - t_start
    result = {"args": vars(args), "seeds": seeds, "summary": summary, "total_seconds": total}
    save(RESULT_NAMES[args.optimizer], result)
    write_markdown()
    return result


RESULT_NAMES = {"default": "ema", "constant": "ema_constant_lr"}


def write_markdown() -> None:
    """docs/benchmarks/ema.md: one section per optimizer setting measured (benchmarks/results/ema*.json), then
    the hand-written reading kept below the marker."""
    from _common import RESULTS

    sections = []
    for name in RESULT_NAMES.values():
        path = RESULTS / f"{name}.json"
        if path.exists():
            sections += section(json.loads(path.read_text())) + [""]
    out = ROOT / "docs" / "benchmarks" / "ema.md"
    existing = out.read_text() if out.exists() else ""
    marker = "<!-- measured -->"
    notes = existing.split(marker, 1)[1] if marker in existing else "\n"  # the reading below the marker stays
    out.write_text("# Parameter EMA on digits trained by CD\n\n" + "\n".join(sections) + "\n" + marker + notes)
    print(f"wrote {out}")


def section(result: dict) -> list[str]:
    args = result["args"]
    schedule = ("fit's default optimizer (Adam 1e-3, b1 = 0, cosine-decayed to 1e-4 over the second half)"
                if args["optimizer"] == "default" else "Adam at a constant 1e-3 (b1 = 0)")
    title = "fit's default learning-rate schedule" if args["optimizer"] == "default" else "constant learning rate"
    lines = [
        f"## {title}",
        "",
        f"The 8x8 digits as 64-D vectors, dequantised (uniform noise of one pixel step), "
        f"`MLPEnergy(64, (128, 128))`, `fit`'s CD defaults (recipe `\"density\"`: MALA negatives, no energy "
        f"penalty), {args['steps']} steps of {schedule}, batch 128. Per seed, `fit(..., ema=0.99)` and "
        f"`fit(..., ema=0.999)` with the same key: their raw parameters are bit-identical "
        f"({'checked' if all(s['raw_identical'] for s in result['seeds']) else 'NOT identical'}), the EMA does not "
        f"change training, so *raw* is the run without EMA. Held-out log-likelihood of the 359 dequantised test "
        f"digits in nats per digit; log Z by forward AIS ({args['chains']} chains, {args['temperatures']} "
        f"temperatures, {args['mcmc_steps']} MALA steps each, base fitted to the training data); error bars are "
        f"one standard error (test digits and log Z combined). *EMA − raw* is paired over the same test digits; "
        f"its error carries both log Z errors. Reproduce: "
        f"`python benchmarks/bench_ema.py --steps {args['steps']} --seeds {args['seeds']} --temperatures "
        f"{args['temperatures']} --chains {args['chains']} --optimizer {args['optimizer']}` "
        f"({result['total_seconds'] / 60:.1f} min here).",
        "",
        "| seed | parameters | held-out log-likelihood | log Z (AIS ESS, verdict) | EMA − raw (paired) |",
        "|---|---|---|---|---|",
    ]
    for s in result["seeds"]:
        for name, r in s["rows"].items():
            verdict = "reliable" if r["reliable"] else "UNRELIABLE"
            diff = f"{r['paired_diff']:+.2f} ± {r['paired_stderr']:.2f}" if "paired_diff" in r else ""
            lines.append(f"| {s['seed']} | {name} | {r['log_likelihood']:.2f} ± {r['stderr']:.2f} | "
                         f"{r['log_z']:.2f} ± {r['log_z_stderr']:.2f} (ESS {r['ess']:.0f}, {verdict}) | {diff} |")
    lines += ["",
              "| EMA decay | mean EMA − raw over seeds | its error (AIS + test digits) | spread across seeds (sd) |",
              "|---|---|---|---|"]
    for name, r in result["summary"].items():
        lines.append(f"| {name.split()[1]} | {r['mean_paired_diff']:+.2f} | ± {r['stderr_estimation']:.2f} | "
                     f"{r['sd_across_seeds']:.2f} |")
    return lines


if __name__ == "__main__":
    main()
