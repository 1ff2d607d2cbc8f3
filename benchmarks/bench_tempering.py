"""Cost per effective sample: parallel tempering against NUTS on the four-mode target.

The target is :func:`ebmppl.targets.four_modes` (2-D, four Gaussians of sd 1
on the corners of a square of side 8 sd, weights 0.1/0.2/0.3/0.4). Both
samplers get the same gradient budget per chain (warm-up and draws): parallel
tempering (MALA at 8 levels, 14 gradients per step) runs ``--warmup`` +
``--draws`` steps; NUTS runs ``--warmup`` steps and as many draws as the rest
of the budget pays for, at its cost per step read from a pilot run. Replicates
with different keys alternate between the two (the order flips every
replicate), so slow drift of the machine is shared.

Per run: bulk ESS of the mode indicators (the worst of the four modes) and of
``x`` (the worst coordinate), per 1000 gradient evaluations and per second of
sampling (compile excluded; the draws' gradients, ``out.stats.num_grad_evals``),
the mode weights with their MCSE and the worst error in MCSE, and split R-hat.

Those ESS are only meaningful for a sampler that moves between modes. NUTS's
chains keep to the modes they start in: its ESS measures how well each chain
explores its own mode, and its MCSE is not the error of its mode weights. The
honest figure is the *effective sample size of the mode-weight estimate
against the known truth*: over the replicates, ``n_eff = Σ_k w_k(1 − w_k) /
Σ_k MSE_k`` with ``MSE_k`` the mean squared error of the estimated weight of
mode k — the number of independent exact draws that would estimate the
weights as well. Writes ``docs/benchmarks/tempering.md`` and
``benchmarks/results/tempering.json``.

Usage::

    python benchmarks/bench_tempering.py [--replicates 5] [--warmup 1000] [--draws 4000] [--table-only]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import jax
import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import ROOT, save  # noqa: E402

from ebmppl import sample, samplers  # noqa: E402
from ebmppl.compare import mode_weights  # noqa: E402
from ebmppl.diagnostics import ess, rhat  # noqa: E402
from ebmppl.targets import four_modes  # noqa: E402

DOC = ROOT / "docs" / "benchmarks" / "tempering.md"
NAMES = {"pt": "parallel tempering (MALA, R = 8)", "nuts": "NUTS"}


def run_one(name: str, target, key, warmup: int, draws: int) -> dict:
    sampler = samplers.parallel_tempering(kernel="mala", num_replicas=8) if name == "pt" else samplers.nuts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NUTS's stuck chains warn, as they should
        out = sample(target.energy, key, sampler=sampler, num_chains=4, num_warmup=warmup, num_samples=draws,
                     progress_bar=False)
    x = np.asarray(out.positions, np.float64)
    indicators = (target.modes.assign(x)[..., None] == np.arange(4)).astype(np.float64)
    w = mode_weights(x, target.modes)
    grads = float(np.sum(out.stats.num_grad_evals))
    seconds = float(out.timings["sampling"])
    ess_modes = float(np.nanmin(ess(indicators)))
    ess_x = float(np.min(ess(x)))
    return {
        "draws_per_chain": draws, "grad_evals": grads, "sampling_s": seconds, "warmup_s": float(out.timings["warmup"]),
        "grads_per_step": grads / (4 * draws),
        "ess_mode_indicator_min": ess_modes, "ess_x_min": ess_x,
        "ess_modes_per_1k_grads": 1000 * ess_modes / grads, "ess_x_per_1k_grads": 1000 * ess_x / grads,
        "ess_modes_per_s": ess_modes / seconds, "ess_x_per_s": ess_x / seconds,
        "rhat_max": float(max(np.max(rhat(x)), np.nanmax(rhat(indicators)))),
        "mode_weights": w.estimate.tolist(), "mode_mcse": w.mcse.tolist(), "mode_err_mcse_max": float(np.max(w.z)),
        "chains_visiting_every_mode": int(np.sum(np.all(w.per_chain > 0, axis=1))),
        "mode_switches_per_chain": float(np.median(np.sum(np.diff(target.modes.assign(x), axis=1) != 0, axis=1))),
    }


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--table-only", action="store_true", help="rewrite the docs table from the last results")
    args = parser.parse_args()
    if args.table_only:
        result = json.loads((ROOT / "benchmarks" / "results" / "tempering.json").read_text())
        write_doc(result)
        return result
    target = four_modes()
    truth = target.modes.weights

    pt_cost = 7 * 2  # 8 levels: the reference is drawn exactly; one MALA gradient and one refresh at each other level
    budget = (args.warmup + args.draws) * pt_cost
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pilot = sample(target.energy, jax.random.key(999), sampler="nuts", num_chains=4, num_warmup=args.warmup,
                       num_samples=200, progress_bar=False)
    nuts_cost = float(np.mean(pilot.stats.num_grad_evals))
    draws = {"pt": args.draws, "nuts": int((budget - args.warmup * nuts_cost) / nuts_cost)}
    print(f"budget {budget} gradients per chain; NUTS {nuts_cost:.2f} gradients per step -> {draws['nuts']} draws")

    runs: dict[str, list[dict]] = {"pt": [], "nuts": []}
    for r in range(args.replicates):
        for name in (("pt", "nuts") if r % 2 == 0 else ("nuts", "pt")):
            row = run_one(name, target, jax.random.key(r), args.warmup, draws[name])
            runs[name].append(row)
            print(name, r, {k: row[k] for k in ("sampling_s", "ess_mode_indicator_min", "ess_x_min", "rhat_max",
                                                 "mode_err_mcse_max")}, np.round(row["mode_weights"], 3).tolist(),
                  flush=True)

    summary = {}
    for name, rows in runs.items():
        est = np.array([row["mode_weights"] for row in rows])
        mse = np.mean((est - truth) ** 2, axis=0)
        n_eff = float(np.sum(truth * (1 - truth)) / np.sum(mse))
        grads = float(np.mean([row["grad_evals"] for row in rows]))
        seconds = float(np.mean([row["sampling_s"] for row in rows]))
        med = {k: float(np.median([row[k] for row in rows])) for k in rows[0] if isinstance(rows[0][k], float)}
        summary[name] = {**med, "grad_evals": grads, "sampling_s": seconds,
                         "mode_weights_mean": est.mean(0).tolist(), "mode_weights_rmse": np.sqrt(mse).tolist(),
                         "n_eff_weights_vs_truth": n_eff, "n_eff_weights_per_1k_grads": 1000 * n_eff / grads,
                         "n_eff_weights_per_s": n_eff / seconds,
                         "converged_runs": int(sum(row["rhat_max"] <= 1.01 and row["mode_err_mcse_max"] <= 4
                                                   for row in rows)),
                         "chains_visiting_every_mode": int(sum(row["chains_visiting_every_mode"] for row in rows))}
    ratio = {k: summary["pt"][k] / summary["nuts"][k] for k in
             ("ess_modes_per_1k_grads", "ess_x_per_1k_grads", "n_eff_weights_per_1k_grads", "n_eff_weights_per_s")}
    result = {"replicates": args.replicates, "warmup": args.warmup, "budget_grads_per_chain": budget,
              "nuts_grads_per_step_pilot": nuts_cost, "draws": draws, "runs": runs, "summary": summary,
              "pt_over_nuts": ratio}
    save("tempering", result)
    write_doc(result)
    return result


def write_doc(res: dict) -> None:
    s, n, rr = res["summary"], res["replicates"], res["pt_over_nuts"]
    f = lambda v, d=1: f"{v:,.{d}f}"  # noqa: E731
    lines = [
        "# Parallel tempering against NUTS on four modes", "",
        "Generated by `python benchmarks/bench_tempering.py`. Target: `ebmppl.targets.four_modes()` (2-D, four "
        "Gaussians of sd 1 on the corners of a square of side 8 sd, weights 0.1/0.2/0.3/0.4). Four chains; both "
        f"samplers get the same budget of **{res['budget_grads_per_chain']:,} gradient evaluations per chain** "
        f"(warm-up {res['warmup']} steps + draws): parallel tempering (MALA at 8 levels, 14 gradients per step) "
        f"draws {res['draws']['pt']:,} per chain, NUTS ({res['nuts_grads_per_step_pilot']:.2f} gradients per step) "
        f"{res['draws']['nuts']:,}. {n} replicates with different keys, alternating which sampler runs first; "
        "medians over replicates. Gradients and seconds are those of the draws (compile and warm-up excluded); "
        "NUTS's draws get what its cheaper warm-up left of the budget, hence its larger count.", "",
        "| | parallel tempering | NUTS | PT / NUTS |", "|---|---|---|---|",
        f"| gradient evaluations per run (4 chains, draws) | {f(s['pt']['grad_evals'], 0)} | "
        f"{f(s['nuts']['grad_evals'], 0)} | |",
        f"| sampling time per run (s) | {f(s['pt']['sampling_s'], 2)} | {f(s['nuts']['sampling_s'], 2)} | |",
        f"| split R-hat (max over x and mode indicators) | {s['pt']['rhat_max']:.3f} | "
        f"**{s['nuts']['rhat_max']:.2f}** | |",
        f"| mode weights (mean over replicates; truth 0.10/0.20/0.30/0.40) | "
        f"{'/'.join(f'{v:.3f}' for v in s['pt']['mode_weights_mean'])} | "
        f"**{'/'.join(f'{v:.3f}' for v in s['nuts']['mode_weights_mean'])}** | |",
        f"| mode-weight RMSE over replicates (worst mode) | {max(s['pt']['mode_weights_rmse']):.3f} | "
        f"**{max(s['nuts']['mode_weights_rmse']):.3f}** | |",
        f"| worst mode-weight error (in its own MCSE; median over replicates) | {s['pt']['mode_err_mcse_max']:.1f} | "
        f"{s['nuts']['mode_err_mcse_max']:.1f} | |",
        f"| runs converged (R-hat ≤ 1.01, weights within 4 MCSE) | {s['pt']['converged_runs']}/{n} | "
        f"**{s['nuts']['converged_runs']}/{n}** | |",
        f"| mode switches per chain (median) | {f(s['pt']['mode_switches_per_chain'], 0)} | "
        f"{f(s['nuts']['mode_switches_per_chain'], 0)} | |",
        f"| chains that visited all four modes | {s['pt']['chains_visiting_every_mode']}/{4 * n} | "
        f"{s['nuts']['chains_visiting_every_mode']}/{4 * n} | |",
        f"| bulk ESS of the mode indicators (worst mode) | {f(s['pt']['ess_mode_indicator_min'])} | "
        f"{f(s['nuts']['ess_mode_indicator_min'])} | |",
        f"| … per 1000 gradients | {s['pt']['ess_modes_per_1k_grads']:.2f} | "
        f"{s['nuts']['ess_modes_per_1k_grads']:.2f}"
        f" | {rr['ess_modes_per_1k_grads']:.1f} |",
        f"| bulk ESS of x (worst coordinate) | {f(s['pt']['ess_x_min'])} | {f(s['nuts']['ess_x_min'])} | |",
        f"| … per 1000 gradients | {s['pt']['ess_x_per_1k_grads']:.2f} | {s['nuts']['ess_x_per_1k_grads']:.2f} | "
        f"{rr['ess_x_per_1k_grads']:.1f} |",
        f"| **effective sample of the mode weights against the truth** | **{f(s['pt']['n_eff_weights_vs_truth'])}** |"
        f" **{f(s['nuts']['n_eff_weights_vs_truth'])}** | |",
        f"| … per 1000 gradients | {s['pt']['n_eff_weights_per_1k_grads']:.3f} | "
        f"{s['nuts']['n_eff_weights_per_1k_grads']:.4f} | **{rr['n_eff_weights_per_1k_grads']:.0f}** |",
        f"| … per second of sampling | {s['pt']['n_eff_weights_per_s']:.1f} | {s['nuts']['n_eff_weights_per_s']:.2f} "
        f"| **{rr['n_eff_weights_per_s']:.0f}** |", "",
        "How to read it. The ESS rows are ArviZ's rank-normalised bulk ESS, which pools the chains and so sees "
        "chains that disagree. An ESS (and its MCSE) is a valid measure only for a sampler that moves between the "
        "modes often enough for the chains to agree; for NUTS on this target it is not: its chains keep to their "
        f"modes for thousands of draws (split R-hat {s['nuts']['rhat_max']:.2f}; "
        f"{s['nuts']['chains_visiting_every_mode']} of {4 * n} chains saw all four modes at least once, with a "
        f"median {s['nuts']['mode_switches_per_chain']:.0f} mode switches in {res['draws']['nuts']:,} draws, "
        f"against {s['pt']['mode_switches_per_chain']:.0f} in {res['draws']['pt']:,} for parallel tempering), "
        "the ESS that remains counts a handful of mode switches, and NUTS's ESS per second is no comparison of "
        "efficiency. What compares like with like is the effective sample of the "
        "mode-weight estimate against the known truth: over the replicates, "
        "`n_eff = Σ_k w_k(1 − w_k) / Σ_k MSE_k`, the number of independent exact draws that would estimate the four "
        "weights as well (mean squared error over the replicates; "
        f"{n} replicates give it to about ±{100 * np.sqrt(2 / (4 * n)):.0f} %). Root-mean-square error of the "
        f"weights: parallel tempering {max(s['pt']['mode_weights_rmse']):.3f} at worst, NUTS "
        f"{max(s['nuts']['mode_weights_rmse']):.3f}. "
        + ("NUTS's own MCSE is large enough to cover its error here (worst error "
           f"{max(r['mode_err_mcse_max'] for r in res['runs']['nuts']):.1f} MCSE over the replicates): it does cross, "
           "rarely, and its diagnostics say honestly that it knows little — R-hat above 1.01 flags every run. "
           if max(r['mode_err_mcse_max'] for r in res['runs']['nuts']) <= 4 else
           "NUTS's MCSE understates its error (worst error "
           f"{max(r['mode_err_mcse_max'] for r in res['runs']['nuts']):.1f} MCSE): its chains never left their "
           "modes often enough for the ESS to see it. ")
        + f"On the same gradient budget parallel tempering's estimate of the weights is worth "
        f"**{rr['n_eff_weights_per_1k_grads']:.0f}×** as many exact draws per gradient as NUTS's "
        f"(**{rr['n_eff_weights_per_s']:.0f}×** per second of sampling; time ratios on a shared 2-core machine are "
        "rough, the per-gradient ratio is the hardware-free one).", "",
    ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
