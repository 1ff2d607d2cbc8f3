"""A run's evaluation and figures: held-out log-likelihood, MMD, model samples; density, samples and curve plots."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl import recipes
from ebmppl.distributed import is_primary
from ebmppl.evaluation import grid_log_partition, log_likelihood, mmd
from ebmppl.fit import FitResult
from ebmppl.normalisability import NotNormalisableError
from ebmppl.runs.config import FitConfig
from ebmppl.runs.data import read_data
from ebmppl.runs.training import negative_sampler
from ebmppl.samplers import sample, ula

__all__ = ["evaluate", "evaluate_file", "model_samples"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: pathlib.Path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` (process 0 alone under ``jax.distributed``) and free it."""
    if is_primary():
        fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)


def _finish(evaluation: dict[str, Any], result: FitResult, run: pathlib.Path) -> dict[str, Any]:
    """Draw the training curves; the evaluation with its floats rounded to 5 digits."""
    from ebmppl.plots import plot_training_curves

    _save(plot_training_curves(result.history), run / "curves.png")
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in evaluation.items()}


def _samples_over_density(energy, samples: np.ndarray, limits, **labels):
    """Model samples (orange) over the learned density on ``limits`` = (x0, x1, y0, y1)."""
    from ebmppl.plots import plot_density_2d

    fig, ax = _pyplot().subplots(figsize=(6, 5), layout="constrained")
    plot_density_2d(energy, ax, limits)
    ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.5, color="tab:orange", label=f"{len(samples)} model samples")
    ax.set(xlim=limits[:2], ylim=limits[2:], title="model samples over the learned density", **labels)
    ax.legend(loc="upper right", fontsize=8)
    return fig


def _gaussian_log_likelihood(train: np.ndarray, test: np.ndarray) -> float:
    """Mean held-out log-likelihood of the Gaussian fitted (maximum likelihood) to ``train``: a baseline."""
    train, test = np.asarray(train, np.float64), np.asarray(test, np.float64)
    mean = train.mean(0)
    cov = np.atleast_2d(np.cov(train, rowvar=False, bias=True)) + 1e-9 * np.eye(train.shape[1])
    sign, logdet = np.linalg.slogdet(cov)
    if sign <= 0:
        return float("nan")
    r = test - mean
    maha = np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r)
    return float(np.mean(-0.5 * (maha + logdet + train.shape[1] * math.log(2 * math.pi))))


def evaluate(cfg: FitConfig, result: FitResult, train: jax.Array, test: jax.Array, limits, density,
             run: pathlib.Path) -> dict[str, Any]:
    """Evaluate a run on a built-in dataset and draw its figures into ``run``.

    2-D: held-out log-likelihood (log Z on a grid), the data's own
    log-likelihood (-entropy) and the gap between them; digits: sample grids.
    Both: MMD of model samples against held-out data, and the train-vs-test floor.

    Examples
    --------
    A small network after five training steps on 256 draws of two moons (a real
    run trains for thousands; :func:`~ebmppl.runs.fit_run` does all of this):

    >>> import pathlib, tempfile
    >>> from ebmppl import fit
    >>> from ebmppl.data import toy
    >>> from ebmppl.runs import FitConfig
    >>> from ebmppl.runs.training import build_energy, negative_sampler
    >>> cfg = FitConfig(dataset="two_moons", steps=5, widths=(8,)).resolved()
    >>> moons = toy("two_moons")
    >>> train, test = moons.sample(jax.random.key(0), 256), moons.sample(jax.random.key(1), 100)
    >>> result = fit(build_energy(cfg, train), jax.random.key(2), train, num_steps=5, recipe="density",
    ...              sampler=negative_sampler(cfg), progress_bar=False)
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> evaluation = evaluate(cfg, result, train, test, moons.limits, None, run)
    >>> evaluation["steps"], "test_log_likelihood" in evaluation, sorted(p.name for p in run.iterdir())
    (5, True, ['curves.png', 'density.png', 'samples.png'])
    """
    from ebmppl.plots import plot_fit_2d, plot_image_grid

    evaluation: dict[str, Any] = {"dataset": cfg.dataset, "steps": int(result.state.step)}
    n = min(2000, test.shape[0])
    samples = model_samples(cfg, result, n)
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
        _save(fig, run / "density.png")
        _save(_samples_over_density(result.energy, np.asarray(samples), limits, aspect="equal"), run / "samples.png")
    else:
        _save(plot_image_grid(np.asarray(samples[:64]), title="model samples (persistent negatives)"),
              run / "samples.png")
        _save(plot_image_grid(np.asarray(test[:64]), title="held-out data"), run / "density.png")
    return _finish(evaluation, result, run)


def evaluate_file(cfg: FitConfig, result: FitResult, train: jax.Array, test: jax.Array,
                  run: pathlib.Path) -> dict[str, Any]:
    """Evaluate a run on a data file and draw its figures into ``run``; ``train``/``test`` and every reported number
    in the data's units.

    Held-out log-likelihood with log Z by a grid (1-D, 2-D) or by AIS beyond
    (with its standard error and the estimate's own verdict), beside a
    Gaussian fitted to the training rows; MMD of model samples against the
    held-out rows (and the train-vs-test floor) in standardised coordinates.

    Examples
    --------
    A small network after five training steps on a one-column data file:

    >>> import pathlib, tempfile
    >>> from ebmppl import fit
    >>> from ebmppl.runs import FitConfig
    >>> from ebmppl.runs.data import load_split
    >>> from ebmppl.runs.training import build_energy, negative_sampler
    >>> run = pathlib.Path(tempfile.mkdtemp())
    >>> rows = np.random.default_rng(0).normal(170.0, 8.0, 300).round(1)
    >>> _ = (run / "heights.csv").write_text("height\\n" + "\\n".join(map(str, rows)))
    >>> cfg = FitConfig(data=str(run / "heights.csv"), steps=5, widths=(8,)).resolved()
    >>> train, test, _, _ = load_split(cfg)
    >>> result = fit(build_energy(cfg, train), jax.random.key(0), train, num_steps=5, recipe="density",
    ...              sampler=negative_sampler(cfg), progress_bar=False)
    >>> evaluation = evaluate_file(cfg, result, train, test, run)
    >>> evaluation["dim"], evaluation["n_test"], evaluation["log_z_method"].split()[0]
    (1, 60, 'grid')
    """
    from ebmppl.evaluation import held_out_log_likelihood
    from ebmppl.logz import log_partition
    from ebmppl.plots import plot_fit_2d

    energy = result.energy  # in the data's units (recipe "density")
    # the energy the recipe trained, on z = (x - shift) / scale: the same normalising constant as `energy`
    # (its log-Jacobian offset cancels the change of variables), and one scale for every coordinate
    z_energy, shift, scale = recipes.standard_coordinates(energy)
    d = int(train.shape[1])
    evaluation: dict[str, Any] = {"dataset": cfg.data, "dim": d, "n_train": int(train.shape[0]),
                                  "n_test": int(test.shape[0]), "steps": int(result.state.step)}
    n = min(2000, test.shape[0])
    samples_x = np.asarray(model_samples(cfg, result, n))
    test_x = np.asarray(test)
    # MMD in the standardised coordinates: its kernel widths (0.1 to 2) are in units of each coordinate's sd
    train_z, test_z, samples_z = ((jnp.asarray(v) - shift) / scale for v in (train, test, samples_x))
    evaluation["mmd_samples_vs_test"] = mmd(samples_z[:n], test_z[:n])
    evaluation["mmd_train_vs_test"] = mmd(train_z[:n], test_z[:n])  # the noise floor of the MMD estimate
    try:
        if d <= 2:
            low = np.minimum(np.min(train_z, 0), np.min(test_z, 0)) - 1.0
            high = np.maximum(np.max(train_z, 0), np.max(test_z, 0)) + 1.0
            box = [float(v) for i in range(d) for v in (low[i], high[i])]
            log_z, log_z_se = grid_log_partition(z_energy, box, 400 if d == 2 else 4000, outer_scale=10.0), 0.0
            method = "grid (midpoint rule, in standardised units; a 10x wider coarse grid around the data box)"
            verdict = (True, "")
        else:
            chains, temperatures = 256, 1000
            est = log_partition(z_energy, jax.random.key(cfg.seed + 5), num_chains=chains,
                                num_temperatures=temperatures, base_scale=3.0, base_center=0.0)
            log_z, log_z_se = float(est.log_z), float(est.stderr)
            method = f"AIS ({chains} chains, {temperatures} temperatures, Gaussian base sd 3 in standardised units)"
            verdict = (bool(est.reliable), str(est.reason))
    except NotNormalisableError as e:  # no number rather than a truncated one: the report says why
        log_z, log_z_se, method = float("nan"), float("nan"), "not available (the energy failed the normalisability check)"
        verdict = (False, str(e))
    ll, ll_se = (held_out_log_likelihood(energy, test, log_z, log_z_se) if np.isfinite(log_z)
                 else (float("nan"), float("nan")))
    evaluation["log_z"] = log_z
    evaluation["log_z_stderr"] = log_z_se
    evaluation["log_z_method"] = method
    # the estimate's own verdict travels with the number: a report must not print an unreliable log Z plainly
    evaluation["log_z_reliable"], evaluation["log_z_reason"] = verdict
    evaluation["test_log_likelihood"] = ll
    evaluation["test_log_likelihood_se"] = ll_se
    evaluation["gaussian_log_likelihood"] = _gaussian_log_likelihood(train, test)

    _, names = read_data(cfg.data)
    names = names if names is not None and len(names) == d else [f"x{i}" for i in range(d)]
    if d == 2:
        lo, hi = np.min(test_x, 0), np.max(test_x, 0)
        pad = 0.1 * (hi - lo)
        limits = (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])
        fig = plot_fit_2d(energy, test_x, samples_x, limits, title=f"{pathlib.Path(cfg.data).name}: held-out data, "
                          "learned density, model samples")
        for ax in fig.axes[:3]:
            ax.set(xlabel=names[0], ylabel=names[1], aspect="auto")
        _save(fig, run / "density.png")
        fig = _samples_over_density(energy, samples_x, limits, xlabel=names[0], ylabel=names[1])
    else:
        density = None
        if d == 1:
            lo, hi = float(min(test_x.min(), samples_x.min())), float(max(test_x.max(), samples_x.max()))
            grid = np.linspace(lo, hi, 400, dtype=np.float32)[:, None]
            density = (grid[:, 0], np.exp(np.asarray(energy.logdensity(jnp.asarray(grid))) - evaluation["log_z"]))
        fig = _plot_pairs(test_x, samples_x, names, density)
    _save(fig, run / "samples.png")
    return _finish(evaluation, result, run)


def model_samples(cfg: FitConfig, result: FitResult, n: int) -> jax.Array:
    """Model samples in the data's units: the persistent negatives, run further with an exact sampler (the
    "density" recipe: in the standardised coordinates the negatives live in) or as they are (digits).

    Examples
    --------
    >>> from ebmppl import fit
    >>> from ebmppl.data import toy
    >>> from ebmppl.runs import FitConfig
    >>> from ebmppl.runs.training import build_energy, negative_sampler
    >>> cfg = FitConfig(dataset="two_moons", steps=5, widths=(8,)).resolved()
    >>> train = toy("two_moons").sample(jax.random.key(0), 256)
    >>> result = fit(build_energy(cfg, train), jax.random.key(1), train, num_steps=5, recipe="density",
    ...              sampler=negative_sampler(cfg), progress_bar=False)
    >>> model_samples(cfg, result, 50).shape
    (50, 2)
    """
    starts = result.state.buffer.samples
    if starts.shape[0] == 0:  # short-run / CD-k keep no buffer: start from the recipe's noise box
        box = 1.0 if cfg.dataset == "digits" else recipes.NOISE_BOX
        starts = jax.random.uniform(jax.random.key(cfg.seed + 3), (n, *result.energy.event_shape), minval=-box,
                                    maxval=box)
    if cfg.dataset == "digits":
        return starts[:n]
    starts = starts[jnp.arange(n) % starts.shape[0]]  # n chains: a buffer smaller than n starts several from a slot
    z_energy, shift, scale = recipes.standard_coordinates(result.energy)
    # the run's own sampler where it is Metropolis-corrected (exact); else exact-rate ULA at the run's step
    exact = negative_sampler(cfg) if cfg.sampler in ("mala", "barker") else ula(step_size=cfg.step_size)
    # 2000 warm-up steps (stalled chains restarted from healthy ones), then 50 draws of which the last is kept:
    # no acceptance in 50 draws means a chain is stuck (with 10, a chain accepting 30 % of proposals in a tail
    # would show none 3 % of the time: false alarms among 2000 chains)
    out = sample(z_energy, jax.random.key(cfg.seed + 2), sampler=exact,
                 num_chains=starts.shape[0], num_warmup=2000, num_samples=50, init=starts, progress_bar=False)
    return jnp.asarray(shift) + jnp.asarray(scale) * out.positions[:, -1]


def _plot_pairs(data: np.ndarray, samples: np.ndarray, names: list[str], density=None, max_dims: int = 6):
    """Marginal histograms (diagonal) and pairwise scatter (below it) of model samples against held-out data."""
    plt = _pyplot()
    k = min(data.shape[1], max_dims)
    size = (2.3 * k + 1.5, 2.3 * k + 0.6) if k > 1 else (6.5, 4.0)
    fig, axes = plt.subplots(k, k, figsize=size, layout="constrained", squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            lo = min(data[:, j].min(), samples[:, j].min())
            hi = max(data[:, j].max(), samples[:, j].max())
            if i == j:
                bins = np.linspace(lo, hi, 40)
                ax.hist(data[:, j], bins=bins, density=True, color="tab:blue", alpha=0.45, label="held-out data")
                ax.hist(samples[:, j], bins=bins, density=True, histtype="step", color="tab:orange", lw=1.5,
                        label="model samples")
                if density is not None:
                    ax.plot(*density, color="k", lw=1, label="learned density")
                ax.set_yticks([])
            else:
                ax.scatter(data[:, j], data[:, i], s=2, alpha=0.3, color="tab:blue")
                ax.scatter(samples[:, j], samples[:, i], s=2, alpha=0.3, color="tab:orange")
                ax.set_ylabel(names[i] if j == 0 else "")
            ax.set_xlabel(names[j] if i == k - 1 else "")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if k > 1:  # the empty upper triangle holds the legend
        fig.legend(handles, labels, loc="upper right", fontsize=9, frameon=False)
    else:
        axes[0, 0].legend(fontsize=8)
    shown = "" if data.shape[1] <= max_dims else f" (first {max_dims} of {data.shape[1]} coordinates)"
    fig.suptitle(f"model samples (orange) against held-out data (blue){shown}")
    return fig
