"""The run pipeline of ``ebmppl fit``: data → network → :func:`ebmppl.fit` → evaluation → figures → report."""

from __future__ import annotations

import json
import os
import pathlib
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from ebmppl import recipes
from ebmppl.distributed import is_primary, on_primary, primary_flag
from ebmppl.fit import CHECKPOINT_NAME, FitResult, fit
from ebmppl.health import TrainingHealth
from ebmppl.logz import LogZWarning
from ebmppl.runs.config import FitConfig
from ebmppl.runs.data import load_split
from ebmppl.runs.evaluate import evaluate, evaluate_file
from ebmppl.runs.folders import check_same_data
from ebmppl.runs.report import fit_report, write_json, write_text
from ebmppl.runs.training import build_energy, chain_init, negative_sampler, optimizer
from ebmppl.samplers import ChainHealthWarning

__all__ = ["fit_run"]


def fit_run(cfg: FitConfig, *, resume: bool = False, overwrite: bool = False, progress_bar: bool = True,
            callbacks: Sequence[Callable[..., Any]] = ()) -> dict[str, Any]:
    """Train, evaluate and report into the run folder ``cfg.out``; returns the evaluation dict.

    Training is :func:`ebmppl.fit` with its ``"density"`` recipe (2-D data and
    data files; see :meth:`FitConfig.resolved`) or the digits recipe.
    With ``cfg.data`` (a file, see :func:`~ebmppl.runs.load_data_file`) the rows are split
    into training and held-out rows (``cfg.test_fraction``, a permutation
    seeded by ``cfg.seed``); the recipe standardises them with the training
    rows' mean and standard deviation and returns the energy in the data's
    units, and the run is evaluated in those units: held-out log-likelihood
    with log Z by a grid (1-D, 2-D) or
    by AIS (:func:`ebmppl.log_partition`, with its standard error) beyond,
    beside the log-likelihood of a Gaussian fitted to the training rows;
    figures: the learned density in 2-D, marginal and pairwise histograms of
    model samples against held-out data otherwise.

    ``callbacks`` are passed to :func:`ebmppl.fit` (after the training-health monitor).

    Raises
    ------
    FileExistsError
        ``cfg.out`` already holds a run and neither ``resume`` nor ``overwrite`` is set.
    ValueError
        A bad data file (see :func:`~ebmppl.runs.load_data_file`), or ``resume`` with a data
        file whose training rows differ from the run's.

    Examples
    --------
    Five training steps of a small network on eight Gaussians (a real run trains thousands of steps of
    the default d-128-128-128-1 network); the evaluation compares the held-out log-likelihood with the
    data's own (minus its entropy):

    >>> import tempfile
    >>> cfg = FitConfig(dataset="eight_gaussians", steps=5, widths=(8,), out=tempfile.mkdtemp())
    >>> evaluation = fit_run(cfg, progress_bar=False)
    >>> evaluation["steps"], "test_log_likelihood" in evaluation, "gap_nats" in evaluation
    (5, True, True)
    >>> fit_run(cfg, progress_bar=False)
    Traceback (most recent call last):
    ...
    FileExistsError: ... already holds a run; pass --resume to continue it or --overwrite to replace it.
    """
    cfg = cfg.resolved()
    run = pathlib.Path(cfg.out)
    # under jax.distributed every process computes, process 0's run folder decides and only process 0 writes
    if primary_flag((run / CHECKPOINT_NAME).exists()) and not (resume or overwrite):
        raise FileExistsError(f"{run} already holds a run; pass --resume to continue it or --overwrite to replace it.")
    digits = cfg.dataset == "digits"
    train, test, limits, density = load_split(cfg)
    if resume and not digits:
        on_primary(check_same_data, run, cfg, train)
    if overwrite:
        on_primary((run / CHECKPOINT_NAME).unlink, missing_ok=True)
    on_primary(run.mkdir, parents=True, exist_ok=True)
    write_json(run / "config.json", cfg.to_json())

    energy = build_energy(cfg, train)
    # digits: the pixel range; else fit's "density" recipe, whose chains live in standardised units
    health = TrainingHealth(energy if digits else recipes.confined(energy), emit=False)
    result = fit(
        energy, jax.random.key(cfg.seed + 1), train, num_steps=cfg.steps, batch_size=cfg.batch_size,
        optimizer=optimizer(cfg), sampler=negative_sampler(cfg), chain_init=chain_init(cfg),
        num_mcmc_steps=cfg.num_mcmc_steps, alpha=cfg.alpha, checkpoint_dir=run, resume=resume,
        progress_bar=progress_bar, config=cfg.to_json(), callbacks=[health, *callbacks], health=health,
        recipe="none" if digits else "density",
        **({} if cfg.sampler_params is None else {"sampler_params": cfg.sampler_params}),
    )
    _write_metrics(run / "metrics.jsonl", result)

    # the evaluation's own doubts (stuck sampling chains, an untrustworthy log Z) belong in the report:
    # "no warnings" must not be printed over draws the sampler itself disowned
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cfg.data is not None:
            evaluation = evaluate_file(cfg, result, train, test, run)
        else:
            evaluation = evaluate(cfg, result, train, test, limits, density, run)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)  # still shown on stderr
    evaluation["train_seconds"] = round(result.seconds, 2)
    evaluation["health_warnings"] = ([f"step {step}: {msg}" for step, msg in health.warnings]
                                     + _evaluation_notes(evaluation, caught))
    write_json(run / "evaluation.json", evaluation)
    import matplotlib.pyplot as plt

    fig = health.plot()
    if is_primary():
        fig.savefig(run / "health.png", dpi=110)
    plt.close(fig)
    write_text(run / "report.html", fit_report(cfg, evaluation))
    return evaluation


def _write_metrics(path: pathlib.Path, result: FitResult) -> None:
    """One JSON line of metrics per training step, written atomically (by process 0 alone)."""
    if not is_primary():
        return
    keys = sorted(result.history)
    lines = (json.dumps({k: result.history[k][i].item() for k in keys}) for i in range(len(result.history["loss"])))
    tmp = path.with_name(f"{path.name}.tmp")
    with open(tmp, "w") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def _evaluation_notes(evaluation: dict[str, Any], caught: list[warnings.WarningMessage]) -> list[str]:
    """What the evaluation itself doubts: no log Z, sampler or log-Z warnings, a model below the Gaussian baseline."""
    notes = []
    if evaluation.get("log_z_reliable") is False and not np.isfinite(evaluation.get("log_z", 0.0)):
        notes.append(f"evaluation: no log Z and no held-out log-likelihood: {evaluation['log_z_reason']}")
    notes += [f"evaluation: {w.category.__name__}: {w.message}" for w in caught
              if issubclass(w.category, (ChainHealthWarning, LogZWarning))]
    base = evaluation.get("gaussian_log_likelihood")
    if base is not None and evaluation["test_log_likelihood"] + 2 * evaluation.get("test_log_likelihood_se", 0.0) < base:
        notes.append(f"evaluation: the held-out log-likelihood {evaluation['test_log_likelihood']:.3f} is below that of "
                     f"a Gaussian fitted to the training rows ({base:.3f}): the model has not learned the data yet "
                     "(train longer: --steps; or check the health warnings above).")
    return notes
