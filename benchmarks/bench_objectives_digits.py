"""Objectives compared on the 8x8 digits: CD, DRL, multi-σ DSM, Energy Discrepancy, DSM and NCE, three seeds each.

Data: ``ebmppl.data.load_digits`` (1438 training and 359 held-out digits,
``(1, 8, 8)`` in ``[-1, 1]``). The pixels take 17 values, on which a density
is unbounded, so they are *dequantised*: pixel level ``k ∈ {0..16}`` becomes
``(k + u)/17 · 2 - 1`` with ``u ~ U(0, 1)`` (still in ``[-1, 1]``); the training
set holds :data:`COPIES` dequantised copies of each digit, the held-out set
one fixed draw. Log-likelihoods are of that 64-D continuous vector, in nats
per digit (``log P(levels) ≥ log p + 64 log(2/17)``).

Every objective trains on the same data for the same number of Adam steps
(β₁ = 0, ``LR`` for half the run, then a cosine decay to a tenth: the
library's digits recipe, ``ebmppl fit --dataset digits``), batch 128, an MLP
with hidden widths 256-256 (the recipe's) and a Gaussian base term
``‖x - mean‖²/(2·2²)`` so that every ``exp(-E)`` is normalisable on R⁶⁴:

* **CD** (persistent): the library's digits recipe — practical Langevin
  (step 1, noise 0.01, clamped to [-1, 1]), 20 steps per training step,
  replay buffer of 10 000 re-initialised 5 % uniformly on [-1, 1], α = 0.1;
* **DRL**: ``noise_conditional_mlp(scale_by_sigma=False)`` on a geometric
  ladder ``σ_max … DRL_SMALLEST`` plus the clean level σ = 0, 30 Langevin
  steps per recovery;
* **multi-σ DSM**: ``noise_conditional_mlp`` (E = f/σ) on a geometric ladder
  ``σ_max … MSDSM_SIGMA_MIN``, σ log-uniform (``continuous=True``);
* **Energy Discrepancy**: the plain MLP, ``t = 0.25 ×`` the data's mean
  pixel variance, 16 contrast points, ``w = 1``;
* **DSM** (σ = ``MSDSM_SIGMA_MIN``) and **NCE** (Gaussian noise fitted to the
  data, 1.5 × its s.d., 4 noise points per example): the plain MLP.

Measured per run: held-out log-likelihood by AIS (``ebmppl.log_partition``,
1000 temperatures, 256 chains, base fitted to the training data; for a
noise-conditional energy the density of its smallest level: σ = 0 for DRL,
σ_min for multi-σ DSM) ± its standard error; for multi-σ DSM also the
probability-flow ODE log-likelihood (Hutchinson trace) at the same level;
``ebmppl.goodness.digits_feature_distance`` of ``NUM_SAMPLES`` model samples
against the held-out digits (samples: MALA from uniform noise for the plain
energies, annealed Langevin for multi-σ DSM, DRL's progressive sampler for
DRL); training time. The table gives mean ± s.d. over the seeds.

Writes the digits section of ``docs/benchmarks/objectives.md`` (the two-moons
section of ``bench_objectives.py`` is kept) and
``docs/_static/objectives_digits.png`` (samples of seed 0), prints JSON lines.

Usage::

    python benchmarks/bench_objectives_digits.py [--steps 2000] [--seeds 3] [--methods "CD,DRL"] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import time
import warnings

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench_objectives import write_section
from ebmppl import Energy, buffer, fit, log_partition, recipes, sample, samplers
from ebmppl.data import load_digits
from ebmppl.evaluation import held_out_log_likelihood
from ebmppl.nn import MLPEnergy

ROOT = pathlib.Path(__file__).resolve().parents[1]
EVENT = (1, 8, 8)
COPIES = 4  # dequantised copies of each training digit
LR, WIDTHS, CONFINE = 1e-3, (256, 256), 2.0
SIGMA_MAX = 8.0  # about the largest distance between two digits (9.1): Song & Ermon's rule for σ_max
MSDSM_SIGMA_MIN, MSDSM_LEVELS = 0.05, 12
DRL_SMALLEST, DRL_LEVELS, DRL_STEPS = 0.05, 12, 30
ANNEALED_STEPS = 100
NUM_SAMPLES, MALA_WARMUP = 500, 1000
AIS_CHAINS, AIS_TEMPERATURES = 256, 1000
METHODS = ("CD (digits recipe)", "CD (density recipe)", "DRL", "multi-σ DSM", "Energy Discrepancy", "DSM", "NCE")


def dequantise(x: np.ndarray, key: jax.Array, copies: int = 1) -> jax.Array:
    """``copies`` dequantised draws of each digit: level ``k`` ↦ ``(k + U(0, 1))/17 · 2 - 1``."""
    levels = jnp.round((jnp.asarray(x) + 1.0) * 8.0)  # 0..16
    u = jax.random.uniform(key, (copies, *levels.shape))
    return ((levels[None] + u) / 17.0 * 2.0 - 1.0).reshape(-1, *levels.shape[1:])


def optimizer(steps: int) -> optax.GradientTransformation:
    """The library's digits recipe: Adam (β₁ = 0) at LR for half the run, then a cosine decay to LR/10."""
    half = steps // 2
    schedule = optax.join_schedules([optax.constant_schedule(LR),
                                     optax.cosine_decay_schedule(LR, max(1, steps - half), alpha=0.1)], [half])
    return optax.adam(schedule, b1=0.0, b2=0.999)


def train_one(name: str, seed: int, train: jax.Array, steps: int):
    """Build and train one model; returns ``(fit result, seconds, warnings)``."""
    from ebmppl.noise import NoiseLadder, noise_conditional_mlp
    from ebmppl.objectives.mcmc_free import energy_discrepancy
    from ebmppl.objectives.multiscale import multiscale_dsm
    from ebmppl.objectives.recovery_likelihood import diffusion_recovery_likelihood

    flat = train.reshape(train.shape[0], -1)
    center = [float(c) for c in jnp.mean(flat, axis=0)]
    k_net, k_fit = jax.random.key(seed), jax.random.key(1000 + seed)
    opt = optimizer(steps)
    if name in ("DRL", "multi-σ DSM"):
        if name == "DRL":
            ladder = NoiseLadder.geometric(SIGMA_MAX, 0.0, DRL_LEVELS, smallest_positive=DRL_SMALLEST)
        else:
            ladder = NoiseLadder.geometric(SIGMA_MAX, MSDSM_SIGMA_MIN, MSDSM_LEVELS)
        energy = noise_conditional_mlp(k_net, EVENT, ladder, hidden=WIDTHS, scale_by_sigma=name != "DRL",
                                       confinement_scale=CONFINE, confinement_center=center)
        objective = (diffusion_recovery_likelihood(energy, opt, num_steps=DRL_STEPS) if name == "DRL"
                     else multiscale_dsm(energy, opt, continuous=True))
        options = dict(objective=objective)
    else:
        net = MLPEnergy(64, WIDTHS, confinement_scale=CONFINE, confinement_center=center, key=k_net)
        energy = Energy.from_equinox(net, event_shape=EVENT)
        if name == "CD (density recipe)":  # fit's default for 64-D vectors: its own confinement, so none here
            energy = Energy.from_equinox(MLPEnergy(64, WIDTHS, key=k_net), event_shape=(64,))
            train = flat
            options = dict(objective="cd", optimizer=opt, recipe="density")
        elif name == "CD (digits recipe)":
            options = dict(objective="cd", optimizer=opt, num_mcmc_steps=20, alpha=0.1,
                           sampler=samplers.langevin(step_size=1.0, noise_scale=0.01, clamp=(-1.0, 1.0)),
                           chain_init=buffer.replay_buffer(10_000, 0.05, buffer.uniform_noise(-1.0, 1.0)))
        elif name == "Energy Discrepancy":
            t = 0.25 * float(jnp.mean(jnp.var(flat, axis=0)))
            options = dict(objective=energy_discrepancy(energy, opt, t=t, num_negatives=16, w=1.0))
        elif name == "DSM":
            options = dict(objective="dsm", sigma=MSDSM_SIGMA_MIN, optimizer=opt)
        elif name == "NCE":
            options = dict(objective="nce", optimizer=opt, noise_mean=np.reshape(center, EVENT),
                           noise_scale=np.reshape(1.5 * np.asarray(jnp.std(flat, axis=0)) + 1e-3, EVENT),
                           noise_ratio=4)
        else:
            raise ValueError(name)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(energy, k_fit, train, num_steps=steps, batch_size=128, progress_bar=False, **options)
    seconds = time.perf_counter() - t0
    notes = sorted({str(w.message)[:160] for w in caught if "deprecat" not in str(w.message).lower()})
    return result, seconds, notes


def model_samples(name: str, energy, seed: int) -> tuple[jax.Array, str]:
    """``NUM_SAMPLES`` samples of a trained model and the name of the sampler that drew them."""
    from ebmppl.objectives.recovery_likelihood import recovery_sample
    from ebmppl.samplers.annealed import annealed_langevin

    key = jax.random.key(2000 + seed)
    if name == "DRL":
        out = recovery_sample(energy, key, NUM_SAMPLES, num_steps=DRL_STEPS, progress_bar=False)
        return out.samples, f"DRL progressive sampler ({DRL_LEVELS - 1} levels × {DRL_STEPS} steps)"
    if name == "multi-σ DSM":
        out = annealed_langevin(energy, key, NUM_SAMPLES, steps_per_level=ANNEALED_STEPS, progress_bar=False)
        return out.samples, f"annealed Langevin ({MSDSM_LEVELS} levels × {ANNEALED_STEPS} steps, denoised)"
    if name == "CD (density recipe)":  # its energy in the standardised coordinates it was trained in
        z_energy, shift, scale = recipes.standard_coordinates(energy)
        init = jax.random.uniform(jax.random.fold_in(key, 1), (NUM_SAMPLES, 64), minval=-3.0, maxval=3.0)
        out = sample(z_energy, key, sampler="mala", num_chains=NUM_SAMPLES, num_warmup=MALA_WARMUP, num_samples=1,
                     init=init, progress_bar=False)
        return (jnp.asarray(shift) + jnp.asarray(scale) * out.positions[:, 0],
                f"MALA from uniform noise ({MALA_WARMUP} adapted warm-up steps; standardised coordinates)")
    init = jax.random.uniform(jax.random.fold_in(key, 1), (NUM_SAMPLES, *EVENT), minval=-1.0, maxval=1.0)
    out = sample(energy, key, sampler="mala", num_chains=NUM_SAMPLES, num_warmup=MALA_WARMUP, num_samples=1,
                 init=init, progress_bar=False)
    return out.positions[:, 0], f"MALA from uniform noise ({MALA_WARMUP} adapted warm-up steps)"


def evaluate(name: str, result, seed: int, train: jax.Array, test: jax.Array) -> dict:
    from ebmppl.goodness import digits_feature_distance

    energy = result.energy
    train, test = (a.reshape(-1, *energy.event_shape) for a in (train, test))  # (1, 8, 8) or flat (64,)
    row: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        est = log_partition(energy, jax.random.key(3000 + seed), data=train, num_chains=AIS_CHAINS,
                            num_temperatures=AIS_TEMPERATURES)
        ll = held_out_log_likelihood(energy, test, est)
        row.update(log_z=float(est.log_z), log_z_stderr=float(est.stderr), log_z_reliable=bool(est.reliable),
                   ll=float(ll.mean), ll_stderr=float(ll.stderr), ais_seconds=time.perf_counter() - t0)
        if name == "multi-σ DSM":
            from ebmppl.logz.pf_ode import pf_ode_log_likelihood

            t0 = time.perf_counter()
            ode = pf_ode_log_likelihood(energy, jax.random.key(4000 + seed), test, num_steps=64, num_probes=4)
            row.update(pf_ode=float(ode.mean), pf_ode_stderr=float(ode.stderr), pf_ode_error=float(ode.ode_error),
                       pf_ode_prior_bias=float(ode.prior_bias), pf_ode_seconds=time.perf_counter() - t0)
        if name.startswith("CD"):  # also the persistent chains CD trained against (what its recipe calls samples)
            chains = result.state.buffer.samples
            if name == "CD (density recipe)":  # the recipe's chains live in standardised coordinates
                _, shift, scale = recipes.standard_coordinates(energy)
                chains = jnp.asarray(shift) + jnp.asarray(scale) * chains
            pick = np.random.default_rng(seed).choice(chains.shape[0], NUM_SAMPLES, replace=False)
            row["feature_distance_buffer"] = digits_feature_distance(chains[pick], test)
            row["buffer_samples"] = np.asarray(chains[pick[:64]])
        try:
            t0 = time.perf_counter()
            draws, sampler = model_samples(name, energy, seed)
            draws = jnp.asarray(draws)
            finite = jnp.all(jnp.isfinite(draws.reshape(draws.shape[0], -1)), axis=1)
            row["sampler"], row["finite_fraction"] = sampler, float(jnp.mean(finite))
            kept = draws[finite]
            row["feature_distance"] = (digits_feature_distance(kept, test) if kept.shape[0] >= 65 else float("nan"))
            row["samples"] = np.asarray(kept[:64])
            row["sampling_seconds"] = time.perf_counter() - t0
        except (FloatingPointError, ValueError) as err:
            row["sampler"], row["feature_distance"], row["sampling_error"] = "failed", float("nan"), str(err)[:200]
    row["warnings"] = sorted({str(w.message)[:200] for w in caught})
    return row


def fmt(values: list[float], digits: int = 1) -> str:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return "—"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def main() -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first_seed .. first_seed + seeds - 1")
    parser.add_argument("--methods", default="", help="comma-separated subset (default: all)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny AIS and samplers: to test the script only")
    parser.add_argument("--from-log", default="", help="re-write the table from the output of an earlier run "
                        "(its JSON lines; the figure is left as it is)")
    args = parser.parse_args()
    if args.quick:
        global AIS_CHAINS, AIS_TEMPERATURES, MALA_WARMUP, ANNEALED_STEPS, NUM_SAMPLES
        AIS_CHAINS, AIS_TEMPERATURES, MALA_WARMUP, ANNEALED_STEPS, NUM_SAMPLES = 32, 50, 50, 5, 100
    chosen = [m.strip() for m in args.methods.split(",") if m.strip()] or list(METHODS)
    if set(chosen) - set(METHODS):
        raise SystemExit(f"unknown methods {sorted(set(chosen) - set(METHODS))}; choose among {METHODS}")

    from ebmppl.goodness import digit_classifier, digits_feature_distance

    t_start = time.perf_counter()
    x_train, _ = load_digits("train")
    x_test, _ = load_digits("test")
    train = dequantise(x_train, jax.random.key(10), COPIES)
    test = dequantise(x_test, jax.random.key(11))
    floor_idx = np.random.default_rng(0).choice(train.shape[0], NUM_SAMPLES, replace=False)
    floor = digits_feature_distance(dequantise(x_train, jax.random.key(12))[floor_idx % x_train.shape[0]], test)
    noise_fd = digits_feature_distance(jax.random.uniform(jax.random.key(13), (NUM_SAMPLES, *EVENT), minval=-1,
                                                          maxval=1), test)
    # reference points with an exact log-likelihood: Gaussians fitted to the (dequantised) training digits
    xf, tf = np.asarray(train, np.float64).reshape(train.shape[0], -1), np.asarray(test, np.float64).reshape(
        test.shape[0], -1)
    mu, cov = xf.mean(0), np.cov(xf, rowvar=False)
    d = tf - mu
    diag_ll = float(np.mean(-0.5 * np.sum(d**2 / np.diag(cov) + np.log(2 * np.pi * np.diag(cov)), axis=1)))
    _, logdet = np.linalg.slogdet(cov)
    full_ll = float(np.mean(-0.5 * (np.sum(d * np.linalg.solve(cov, d.T).T, axis=1) + logdet
                                    + xf.shape[1] * np.log(2 * np.pi))))
    baselines = {"diagonal": diag_ll, "full": full_ll}
    print(json.dumps({"classifier_test_accuracy": digit_classifier().test_accuracy, "fd_floor": floor,
                      "fd_uniform_noise": noise_fd, "gaussian_ll": baselines}), flush=True)

    if args.from_log:  # the table again, from earlier runs' JSON lines (several logs: seeds run side by side)
        rows, total = [], 0.0
        for log in args.from_log.split(","):
            lines_ = pathlib.Path(log).read_text().splitlines()
            rows += [json.loads(line) for line in lines_ if line.startswith('{"method"')]
            total += max([float(line.split()[3]) for line in lines_ if line.startswith("seed ")], default=0.0)
        done = len({r["seed"] for r in rows})
        write_outputs(rows, [m for m in chosen if any(r["method"] == m for r in rows)], args, total, floor, noise_fd,
                      test, done=done, baselines=baselines, figure=False)
        return rows
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in chosen:
            result, seconds, notes = train_one(name, seed, train, args.steps)
            row = {"method": name, "seed": seed, "train_seconds": seconds, "fit_warnings": notes,
                   **evaluate(name, result, seed, train, test)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("samples")}), flush=True)
        total = time.perf_counter() - t_start
        print(f"seed {seed} done, {total:.0f} s so far", flush=True)
        if not args.no_write:  # after every seed: a run cut short still leaves its table
            write_outputs(rows, chosen, args, total, floor, noise_fd, test, done=seed + 1 - args.first_seed,
                          baselines=baselines)
    return rows


def write_outputs(rows: list[dict], chosen: list[str], args, total: float, floor: float, noise_fd: float,
                  test: jax.Array, done: int, baselines: dict, figure: bool = True) -> None:
    """The digits section of ``docs/benchmarks/objectives.md`` and (with the samples in ``rows``) the figure."""
    from ebmppl.objectives.recovery_likelihood import DEFAULT_STEP_SCALE

    by = {name: [r for r in rows if r["method"] == name] for name in chosen}
    seeds_text = f"{done} seed{'s' if done > 1 else ''}"
    so_far = "" if done == args.seeds else f"; {done} of {args.seeds} seeds so far"
    lines = [
        f"The 8×8 digits (1438 training, 359 held-out), dequantised (pixel level k ↦ (k + U(0,1))/17·2 − 1, "
        f"{COPIES} copies of each training digit), {args.steps} Adam steps (β₁ = 0, {LR:g} then a cosine decay to a "
        f"tenth over the second half), batch 128, MLP 64-{'-'.join(map(str, WIDTHS))}-1 plus a Gaussian base term "
        f"(scale {CONFINE:g}) for every objective; {seeds_text} each (network initialisation, batches, chains). "
        f"Reproduce: `python benchmarks/bench_objectives_digits.py` ({total / 60:.0f} minutes here{so_far}).",
        "",
        "| objective | held-out log-likelihood, AIS (nats/digit) | AIS s.e. | PF-ODE log-likelihood | "
        "feature distance (samples vs held-out) | samples by | training time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in by.items():
        ode = fmt([r.get("pf_ode") for r in rs]) if any("pf_ode" in r for r in rs) else "—"
        se = max(r["ll_stderr"] for r in rs)
        unreliable = sum(not r["log_z_reliable"] for r in rs)
        flag = f" ({unreliable} of {len(rs)} log Z flagged unreliable)" if unreliable else ""
        fd, by_sampler = fmt([r["feature_distance"] for r in rs], 1), rs[0]["sampler"]
        if any("feature_distance_buffer" in r for r in rs):
            fd += f" (replay buffer: {fmt([r.get('feature_distance_buffer') for r in rs], 1)})"
            by_sampler += " (in brackets: CD's own persistent chains, its replay buffer)"
        lines.append(f"| {name} | {fmt([r['ll'] for r in rs])}{flag} | ≤ {se:.1f} | {ode} | {fd} | {by_sampler} | "
                     f"{fmt([r['train_seconds'] for r in rs], 0)} |")
    lines += [
        "",
        f"Mean ± s.d. over the seeds; \"AIS s.e.\" is the largest standard error of one seed's held-out "
        f"log-likelihood (the held-out digits' spread and log Z's error together). The feature distance is "
        f"`ebmppl.goodness.digits_feature_distance` (Fréchet distance of a small digit classifier's features, "
        f"{NUM_SAMPLES} samples against the 359 held-out digits): {floor:.2f} for {NUM_SAMPLES} dequantised "
        f"training digits (the floor), {noise_fd:.1f} for uniform noise. For scale, Gaussians fitted to the "
        f"training digits score {baselines['diagonal']:.1f} (diagonal covariance) and {baselines['full']:.1f} "
        f"(full covariance) nats per held-out digit (exact).",
        "",
        "- **CD (digits recipe)**: the command line's digits recipe (`ebmppl fit --dataset digits`): practical "
        "Langevin, step 1, noise 0.01, clamped to [−1, 1], 20 steps per training step, replay buffer 10 000 "
        "(5 % fresh uniform noise), α = 0.1. Its samples are MALA chains from noise on the energy it learned; its "
        "own persistent chains (in brackets) are what the recipe shows as samples.",
        "- **CD (density recipe)**: what `fit` does by default with 64-D vectors (`recipe=\"density\"`): the "
        "digits flattened and standardised per pixel, the recipe's own confinement ‖z‖²/18 instead of the base "
        "term, MALA negatives whose step follows the energy, no energy penalty (the setting of "
        "`benchmarks/bench_ema.py`); sampled by MALA in the standardised coordinates.",
        f"- **DRL**: noise-conditional MLP (E = f(x, σ), same widths and base term), {DRL_LEVELS} levels: "
        f"geometric {SIGMA_MAX:g} … {DRL_SMALLEST:g} and the clean σ = 0; {DRL_STEPS} Langevin steps per "
        f"recovery with the library's defaults (Metropolis-adjusted, step {DEFAULT_STEP_SCALE:g} δ_t², levels "
        f"weighted 1/δ_t²). Log-likelihood of the σ = 0 level (the data itself). No PF-ODE value: the "
        f"ODE runs in log σ and cannot start at σ = 0.",
        f"- **multi-σ DSM**: noise-conditional MLP (E = f(x, σ)/σ), {MSDSM_LEVELS} levels geometric "
        f"{SIGMA_MAX:g} … {MSDSM_SIGMA_MIN:g}, σ log-uniform on that range, λ(σ) = σ². Log-likelihoods (AIS and "
        f"PF-ODE: RK4 in log σ, 64 steps, Hutchinson trace with 4 probes) of the σ_min = {MSDSM_SIGMA_MIN:g} "
        f"level: the data smoothed by N(0, {MSDSM_SIGMA_MIN:g}² I) (like the DSM row).",
        "- **Energy Discrepancy**: t = 0.25 × the mean pixel variance, M = 16, w = 1. **DSM**: σ = "
        f"{MSDSM_SIGMA_MIN:g}. **NCE**: Gaussian noise, mean and 1.5 × s.d. of the data per pixel, ratio 4.",
        f"- Held-out log-likelihood: `log_partition(energy, key, data=train)` (forward AIS, {AIS_TEMPERATURES} "
        f"temperatures, {AIS_CHAINS} chains, MALA, Student-t base fitted to the training digits), then "
        "`held_out_log_likelihood` on the 359 dequantised held-out digits.",
        "- Times: wall-clock on a shared 2-core machine with other jobs running; compare them loosely.",
        "",
        "![samples of each objective](../_static/objectives_digits.png)",
    ]
    write_section("digits", "Objectives compared", "## Digits\n\n" + "\n".join(lines) + "\n")

    if not figure:
        return
    panels = [("held-out data", np.asarray(test[:64]), "(dequantised)")]
    for r in rows:
        if r["seed"] != 0:
            continue
        if "samples" in r:
            panels.append((r["method"], r["samples"], f"LL {r['ll']:.0f}, FD {r['feature_distance']:.1f}"))
        if "buffer_samples" in r:
            panels.append((f"{r['method']}: replay buffer", r["buffer_samples"],
                           f"FD {r['feature_distance_buffer']:.1f}"))
    per_line = 4 if len(panels) > 5 else len(panels)
    lines_of_panels = -(-len(panels) // per_line)
    fig, axes = plt.subplots(lines_of_panels, per_line, figsize=(2.7 * per_line, 3.0 * lines_of_panels + 0.4),
                             layout="constrained", squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, imgs, sub) in zip(axes.ravel(), panels):
        grid = np.full((8 * 9 - 1, 8 * 9 - 1), np.nan)
        for i, img in enumerate(np.asarray(imgs)[:64]):
            r, c = divmod(i, 8)
            grid[9 * r:9 * r + 8, 9 * c:9 * c + 8] = np.asarray(img).reshape(8, 8)
        ax.imshow(np.clip(grid, -1, 1), cmap="gray_r", vmin=-1, vmax=1)
        ax.set_title(f"{title}\n{sub}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"Digits, {args.steps} steps: samples of each objective (seed 0); LL = held-out log-likelihood "
                 f"(AIS), FD = feature distance")
    out_png = ROOT / "docs" / "_static" / "objectives_digits.png"
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    print(f"wrote {out_png}", flush=True)


if __name__ == "__main__":
    main()
