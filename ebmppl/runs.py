"""Run folders: a whole training job (data, network, fit, evaluation, figures, report) in one call.

This is what ``ebmppl fit`` runs. A run folder holds::

    config.json       the options of the run
    metrics.jsonl     one JSON line of metrics per training step
    checkpoint.ebm    the full training state (resumable, checksummed)
    evaluation.json   held-out log-likelihood, data entropy, MMD (2-D) or MMD (images)
    density.png       2-D: data beside the learned density
    samples.png       model samples (2-D: over the density; digits: a grid)
    curves.png        training curves
    health.png        training health: energies of data/negatives/noise, chain mixing, acceptance
    report.html       one page showing all of it, with health warnings and advice
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ebmppl import buffer as buffers
from ebmppl.data import TOY_DENSITIES, load_digits, toy
from ebmppl.energy import Energy
from ebmppl.evaluation import grid_log_partition, log_likelihood, mmd
from ebmppl.fit import CHECKPOINT_NAME, FitResult, fit
from ebmppl.health import TrainingHealth
from ebmppl.nn import MLPEnergy
from ebmppl.samplers import available, get_sampler, langevin, sample, ula

__all__ = ["FitConfig", "fit_run", "compare_run", "load_run_energy", "DATASETS"]

DATASETS = sorted(TOY_DENSITIES) + ["digits"]


@dataclasses.dataclass
class FitConfig:
    """Options of a training run; ``None`` means the dataset's default (see :func:`FitConfig.resolved`).

    Examples
    --------
    >>> cfg = FitConfig(dataset="eight_gaussians", steps=100).resolved()
    >>> cfg.dataset, cfg.steps, cfg.widths
    ('eight_gaussians', 100, (128, 128, 128))
    """

    dataset: str = "two_moons"
    widths: tuple[int, ...] | None = None
    sampler: str = "langevin"
    init: str = "replay_buffer"
    steps: int | None = None
    batch_size: int = 128
    mcmc_steps: int = 20
    step_size: float | None = None
    noise_scale: float | None = None
    lr: float = 1e-3
    alpha: float | None = None
    buffer_size: int = 10_000
    reinit_prob: float = 0.05
    seed: int = 0
    out: str = "runs/fit"

    def resolved(self) -> FitConfig:
        """Fill the dataset defaults.

        Toy 2-D data: MLP 2-128-128-128-1 plus a Gaussian base term, 5000
        steps, Langevin with step 0.005 and noise √(2·0.005) = 0.1 (exact ULA,
        so the model learns the density at temperature 1), energy penalty
        alpha 0.05. Digits: MLP 64-256-256-1, 2000 steps, practical Langevin
        with step 1 and noise 0.01 clamped to [-1, 1], alpha 0.1.

        Examples
        --------
        >>> FitConfig().resolved().steps
        5000
        >>> FitConfig(dataset="digits").resolved().widths
        (256, 256)
        """
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(DATASETS)}.")
        if self.sampler not in available():
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {', '.join(available())}.")
        if self.init not in buffers.STRATEGIES:
            raise ValueError(f"unknown init {self.init!r}; choose one of {', '.join(sorted(buffers.STRATEGIES))}.")
        digits = self.dataset == "digits"
        defaults = {
            "widths": (256, 256) if digits else (128, 128, 128),
            "steps": 2000 if digits else 5000,
            "step_size": 1.0 if digits else 0.005,
            # a lighter L2 energy penalty on 2-D data: the penalty also pulls the energy of
            # far-away negatives towards 0, which fattens the tails of the learned density
            "alpha": 0.1 if digits else 0.05,
        }
        out = dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})
        if out.noise_scale is None:
            out.noise_scale = 0.01 if digits else math.sqrt(2 * out.step_size)
        for name in ("steps", "batch_size", "mcmc_steps", "buffer_size"):
            if getattr(out, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(out, name)}.")
        for name in ("step_size", "noise_scale", "lr"):
            if not getattr(out, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(out, name)}.")
        if not 0 <= out.reinit_prob <= 1:
            raise ValueError(f"reinit_prob must be in [0, 1], got {out.reinit_prob}.")
        out.widths = tuple(int(w) for w in out.widths)
        return out


def _load(cfg: FitConfig):
    """(train, test, limits or None, ToyDensity or None)."""
    if cfg.dataset == "digits":
        train, _ = load_digits("train", seed=cfg.seed)
        test, _ = load_digits("test", seed=cfg.seed)
        return jnp.asarray(train), jnp.asarray(test), None, None
    density = toy(cfg.dataset)
    k_train, k_test = jax.random.split(jax.random.key(10_000 + cfg.seed))
    return density.sample(k_train, 10_000), density.sample(k_test, 5_000), density.limits, density


def _build_energy(cfg: FitConfig, train: jax.Array) -> Energy:
    event_shape = tuple(train.shape[1:])
    if cfg.dataset == "digits":  # pixels are clamped to [-1, 1]: the density is normalisable as it is
        net = MLPEnergy(math.prod(event_shape), cfg.widths, key=jax.random.key(cfg.seed))
    else:  # a Gaussian base term 3 data-spreads wide keeps exp(-E) normalisable far from the data
        spread = 3.0 * float(jnp.max(jnp.std(train, axis=0)))
        center = [float(c) for c in jnp.mean(train, axis=0)]
        net = MLPEnergy(2, cfg.widths, base_scale=spread, base_center=center, key=jax.random.key(cfg.seed))
    return Energy.from_equinox(net, event_shape=event_shape)


def load_run_energy(run_dir: str | os.PathLike) -> tuple[Energy, FitConfig]:
    """The trained energy of a run folder written by :func:`fit_run` (``ebmppl fit``), and its config.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` has no ``config.json``.
    CheckpointError
        The checkpoint is missing, damaged, or does not match the config.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> _ = fit_run(FitConfig(steps=20, out=out), progress_bar=False)
    >>> energy, cfg = load_run_energy(out)
    >>> energy.event_shape, cfg.steps
    ((2,), 20)
    """
    from ebmppl.checkpoint import load_checkpoint

    run = pathlib.Path(run_dir)
    if not (run / "config.json").is_file():
        raise FileNotFoundError(f"{run} is not a run folder (no config.json); pass the --out folder of 'ebmppl fit'.")
    try:
        raw = json.loads((run / "config.json").read_text())
        cfg = FitConfig(**{k: tuple(v) if k == "widths" and v is not None else v for k, v in raw.items()}).resolved()
    except (TypeError, ValueError, AttributeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{run}/config.json is not a valid ebmppl run configuration ({err}); "
                         "pass a folder written by 'ebmppl fit'.") from None
    train, _, _, _ = _load(cfg)
    energy = _build_energy(cfg, train)
    state, _ = load_checkpoint(run / CHECKPOINT_NAME, _state_template(cfg, energy))
    return energy.with_params(state.params), cfg


def _state_template(cfg: FitConfig, energy: Energy):
    from ebmppl.objectives import contrastive_divergence

    chain_init = {"replay_buffer": lambda: buffers.replay_buffer(cfg.buffer_size, cfg.reinit_prob),
                  "short_run": buffers.short_run, "cd_k": buffers.cd_k}[cfg.init]()
    trainer = contrastive_divergence(energy, optax.adam(cfg.lr, b1=0.0, b2=0.999), sampler=_sampler(cfg, cfg.dataset == "digits"),
                                     chain_init=chain_init, num_mcmc_steps=cfg.mcmc_steps, alpha=cfg.alpha)
    return trainer.init(jax.random.key(0), energy.params)


def compare_run(target: str | None, sampler_names: list[str], *, out: str, chains: int = 4, warmup: int = 1000,
                samples: int = 1000, seed: int = 0, checkpoint: str | None = None,
                progress_bar: bool = True) -> Any:
    """Compare samplers on a built-in target or a trained run and write table, figures and a page to ``out``.

    Examples
    --------
    >>> import os, tempfile
    >>> out = tempfile.mkdtemp()
    >>> result = compare_run("gaussian", ["mala"], out=out, warmup=100, samples=100, progress_bar=False)
    >>> sorted(f for f in os.listdir(out) if f.endswith((".csv", ".html")))
    ['comparison.csv', 'report.html']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebmppl import diagnostics
    from ebmppl.targets import TARGETS

    if checkpoint is not None:
        energy, cfg = load_run_energy(checkpoint)
        subject: Any = energy
        name = f"trained {cfg.dataset} ({checkpoint})"
    else:
        if target not in TARGETS:
            raise ValueError(f"unknown target {target!r}; choose one of {', '.join(sorted(TARGETS))}.")
        subject, name = TARGETS[target](), target
    for s in sampler_names:
        if s not in available():
            raise ValueError(f"unknown sampler {s!r}; choose from {', '.join(available())}.")
    comparison = diagnostics.compare(subject, sampler_names, key=jax.random.key(seed), num_chains=chains,
                                     num_warmup=warmup, num_samples=samples, name=name, progress_bar=progress_bar)
    run = pathlib.Path(out)
    run.mkdir(parents=True, exist_ok=True)
    comparison.table.to_csv(run / "comparison.csv", index=False)
    (run / "comparison.md").write_text(comparison.to_markdown())
    fig = diagnostics.plot_comparison(comparison)
    fig.savefig(run / "comparison.png", dpi=100)
    plt.close(fig)
    figures = []
    for label, result in comparison.samples.items():
        if result is None or comparison.energy.dim > 10:
            continue
        idata = result.to_arviz()
        for kind, plot in (("trace", diagnostics.plot_trace), ("rank", diagnostics.plot_rank)):
            axes = plot(idata)
            fig = np.asarray(axes).ravel()[0].figure
            fig.suptitle(f"{label}: {kind}")
            fig.savefig(run / f"{kind}_{label}.png", dpi=80)
            plt.close(fig)
            figures.append(f"{kind}_{label}.png")
    table_html = comparison.table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="—")
    imgs = "".join(f'<figure><img src="{f}" alt="{f}"><figcaption>{f}</figcaption></figure>' for f in figures)
    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>ebmppl compare: {html.escape(name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}th,td{{border:1px solid #ccc;padding:3px 6px}}th{{background:#f4f4f4}}
img{{max-width:100%}}figure{{display:inline-block;width:48%;margin:0.5%}}</style></head><body>
<h1>Samplers on {html.escape(name)}</h1>
<p>{chains} chains, {warmup} warm-up and {samples} kept draws each, same initial positions and keys.
Rows with converged = False failed split R-hat &le; 1.01 or ESS &ge; 400.</p>
{table_html}<h2>Comparison</h2><img src="comparison.png" alt="comparison figure">
<h2>Trace and rank plots</h2>{imgs}</body></html>"""
    (run / "report.html").write_text(page)
    return comparison


def _sampler(cfg: FitConfig, digits: bool):
    if cfg.sampler == "langevin":
        return langevin(step_size=cfg.step_size, noise_scale=cfg.noise_scale, clamp=(-1.0, 1.0) if digits else None)
    if cfg.sampler == "ula":
        return ula(step_size=cfg.step_size)
    return get_sampler(cfg.sampler, step_size=cfg.step_size)


def _write_json(path: pathlib.Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def fit_run(cfg: FitConfig, *, resume: bool = False, overwrite: bool = False, progress_bar: bool = True) -> dict[str, Any]:
    """Train, evaluate and report into the run folder ``cfg.out``; returns the evaluation dict.

    Raises
    ------
    FileExistsError
        ``cfg.out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.

    Examples
    --------
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> evaluation = fit_run(FitConfig(steps=20, out=out), progress_bar=False)
    >>> evaluation["steps"], "test_log_likelihood" in evaluation
    (20, True)
    >>> fit_run(FitConfig(steps=20, out=out), progress_bar=False)
    Traceback (most recent call last):
    ...
    FileExistsError: ... already holds a run; pass --resume to continue it or --overwrite to replace it.
    """
    cfg = cfg.resolved()
    run = pathlib.Path(cfg.out)
    if (run / CHECKPOINT_NAME).exists() and not (resume or overwrite):
        raise FileExistsError(f"{run} already holds a run; pass --resume to continue it or --overwrite to replace it.")
    if overwrite and (run / CHECKPOINT_NAME).exists():
        (run / CHECKPOINT_NAME).unlink()
    run.mkdir(parents=True, exist_ok=True)
    _write_json(run / "config.json", dataclasses.asdict(cfg))

    digits = cfg.dataset == "digits"
    train, test, limits, density = _load(cfg)
    energy = _build_energy(cfg, train)
    if limits is not None:
        noise = buffers.uniform_noise(min(limits[0], limits[2]), max(limits[1], limits[3]))
    else:
        noise = buffers.uniform_noise(-1.0, 1.0)
    chain_init = {
        "replay_buffer": lambda: buffers.replay_buffer(cfg.buffer_size, cfg.reinit_prob, noise),
        "short_run": lambda: buffers.short_run(noise),
        "cd_k": buffers.cd_k,
    }[cfg.init]()
    health = TrainingHealth(energy, emit=False)
    result = fit(
        energy, train, key=jax.random.key(cfg.seed + 1), num_steps=cfg.steps, batch_size=cfg.batch_size,
        optimizer=optax.adam(cfg.lr, b1=0.0, b2=0.999), sampler=_sampler(cfg, digits), chain_init=chain_init,
        num_mcmc_steps=cfg.mcmc_steps, alpha=cfg.alpha, checkpoint_dir=run, resume=resume,
        progress_bar=progress_bar, config=dataclasses.asdict(cfg), callbacks=[health],
    )
    with open(run / "metrics.jsonl.tmp", "w") as f:
        keys = sorted(result.history)
        for i in range(len(result.history["loss"])):
            f.write(json.dumps({k: result.history[k][i].item() for k in keys}) + "\n")
    os.replace(run / "metrics.jsonl.tmp", run / "metrics.jsonl")

    evaluation = _evaluate(cfg, result, train, test, limits, density, run)
    evaluation["train_seconds"] = round(result.seconds, 2)
    evaluation["health_warnings"] = [f"step {step}: {msg}" for step, msg in health.warnings]
    _write_json(run / "evaluation.json", evaluation)
    import matplotlib.pyplot as plt

    fig = health.plot()
    fig.savefig(run / "health.png", dpi=110)
    plt.close(fig)
    _report(run, cfg, evaluation)
    return evaluation


def _model_samples(cfg: FitConfig, result: FitResult, n: int) -> jax.Array:
    """Model samples: the persistent negatives, run further with exact ULA (2-D) or as they are (images)."""
    starts = result.state.buffer.samples
    if starts.shape[0] == 0:  # short-run / CD-k keep no buffer: start from the held-out-free noise box
        starts = jax.random.uniform(jax.random.key(cfg.seed + 3), (n, *result.energy.event_shape), minval=-1, maxval=1)
    starts = starts[:n]
    if cfg.dataset == "digits":
        return starts
    out = sample(result.energy, jax.random.key(cfg.seed + 2), sampler=ula(step_size=cfg.step_size),
                 num_chains=starts.shape[0], num_warmup=2000, num_samples=1, init=starts, progress_bar=False)
    return out.positions[:, 0]


def _evaluate(cfg, result, train, test, limits, density, run) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ebmppl.plots import plot_density_2d, plot_fit_2d, plot_image_grid, plot_training_curves

    evaluation: dict[str, Any] = {"dataset": cfg.dataset, "steps": int(result.state.step)}
    n = min(2000, test.shape[0])
    samples = _model_samples(cfg, result, n)
    evaluation["mmd_samples_vs_test"] = mmd(samples[:n], test[:n])
    evaluation["mmd_train_vs_test"] = mmd(train[:n], test[:n])  # the noise floor of the MMD estimate
    if limits is not None:
        box = (limits[0] - 1, limits[1] + 1, limits[2] - 1, limits[3] + 1)
        log_z = grid_log_partition(result.energy, box, 400, outer_scale=10.0)
        evaluation["log_z"] = log_z
        evaluation["test_log_likelihood"] = float(log_likelihood(result.energy, test, log_z).mean())
        if density is not None and density.log_prob is not None:
            h, se = density.entropy(jax.random.key(cfg.seed + 4))
            evaluation["data_log_likelihood"] = -h  # the best any model can reach: -entropy
            evaluation["data_log_likelihood_se"] = se
            evaluation["gap_nats"] = -h - evaluation["test_log_likelihood"]
        fig = plot_fit_2d(result.energy, np.asarray(test), np.asarray(samples), limits,
                          title=f"{cfg.dataset}: data, learned density, model samples")
        fig.savefig(run / "density.png", dpi=110)
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
        plot_density_2d(result.energy, ax, limits)
        pts = np.asarray(samples)
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.5, color="tab:orange", label=f"{len(pts)} model samples")
        ax.set(xlim=limits[:2], ylim=limits[2:], aspect="equal", title="model samples over the learned density")
        ax.legend(loc="upper right", fontsize=8)
        fig.savefig(run / "samples.png", dpi=110)
        plt.close(fig)
    else:
        fig = plot_image_grid(np.asarray(samples[:64]), title="model samples (persistent negatives)")
        fig.savefig(run / "samples.png", dpi=110)
        plt.close(fig)
        fig = plot_image_grid(np.asarray(test[:64]), title="held-out data")
        fig.savefig(run / "density.png", dpi=110)
        plt.close(fig)
    fig = plot_training_curves(result.history)
    fig.savefig(run / "curves.png", dpi=110)
    plt.close(fig)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in evaluation.items()}


def _report(run: pathlib.Path, cfg: FitConfig, evaluation: dict[str, Any]) -> None:
    def table(d):
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in d.items()
                       if k != "health_warnings")
        return f"<table>{rows}</table>"

    notes = evaluation.get("health_warnings", [])
    health = ("<p>No warnings: energies bounded, chains mixing, acceptance in band.</p>" if not notes else
              "<ul class=warn>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")

    left = "data, learned density, samples" if cfg.dataset != "digits" else "held-out data"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ebmppl fit: {html.escape(cfg.dataset)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:0 2em 1em 0;display:inline-table;vertical-align:top}}
th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:14px}}th{{background:#f4f4f4}}
img{{max-width:100%;border:1px solid #eee;margin:0.5em 0}}.warn{{color:#a40}}</style></head><body>
<h1>ebmppl fit — {html.escape(cfg.dataset)}</h1>
<h2>Evaluation</h2>{table(evaluation)}<h2>Configuration</h2>{table(dataclasses.asdict(cfg))}
<h2>{left}</h2><img src="density.png" alt="{left}">
<h2>Model samples</h2><img src="samples.png" alt="model samples">
<h2>Training curves</h2><img src="curves.png" alt="training curves">
<h2>Training health</h2>{health}<img src="health.png" alt="training health">
</body></html>
"""
    tmp = run / ".report.html.tmp"
    tmp.write_text(page)
    os.replace(tmp, run / "report.html")
