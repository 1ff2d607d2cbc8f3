"""Run folders: a whole training job (data, network, fit, evaluation, figures, report) in one call.

This is what ``ebmppl fit`` runs (:func:`fit_run`); ``ebmppl compare`` runs
:func:`compare_run`. A run folder holds::

    config.json       the options of the run (FitConfig)
    metrics.jsonl     one JSON line of metrics per training step
    checkpoint.ebm    the full training state (resumable, checksummed)
    evaluation.json   held-out log-likelihood, data entropy, MMD (2-D) or MMD (images);
                      a data file: log-likelihood (grid in 1-D/2-D, AIS beyond), Gaussian baseline, MMD
    density.png       2-D: data beside the learned density
    samples.png       model samples (2-D: over the density; digits: a grid; a data file of
                      another dimension: marginal and pairwise histograms against held-out data)
    curves.png        training curves
    health.png        training health: energies of data/negatives/noise, chain mixing, acceptance
    report.html       one page showing all of it, with health warnings and advice

The package is split by job; its public API is what it exports here:

* :mod:`~ebmppl.runs.config` — :class:`FitConfig` and the built-in datasets' measured defaults;
* :mod:`~ebmppl.runs.data` — reading and checking your data file, the train/test split;
* :mod:`~ebmppl.runs.training` — the network, optimiser, sampler and chain start a config asks for;
* :mod:`~ebmppl.runs.evaluate` — evaluation and figures;
* :mod:`~ebmppl.runs.report` — the HTML pages, from the templates in ``ebmppl/runs/templates``,
  every user-given value escaped;
* :mod:`~ebmppl.runs.pipeline` — :func:`fit_run`; :mod:`~ebmppl.runs.compare` — :func:`compare_run`;
* :mod:`~ebmppl.runs.folders` — reading a run folder back (:func:`load_run_energy`).

Examples
--------
>>> from ebmppl.runs import FitConfig
>>> FitConfig(dataset="eight_gaussians").resolved().num_mcmc_steps
16
"""

from ebmppl.runs.compare import compare_run
from ebmppl.runs.config import (DATASETS, FILE_DATASET, TOY_ALPHA, TOY_BUFFER, TOY_MCMC_STEPS, TOY_STEP, TOY_STEPS,
                                FitConfig)
from ebmppl.runs.data import DATA_SUFFIXES, load_data_file
from ebmppl.runs.folders import load_run_energy, load_trained_energy
from ebmppl.runs.pipeline import fit_run

__all__ = ["FitConfig", "fit_run", "compare_run", "load_run_energy", "load_trained_energy", "load_data_file",
           "DATASETS", "FILE_DATASET", "DATA_SUFFIXES", "TOY_STEPS", "TOY_BUFFER", "TOY_ALPHA", "TOY_STEP",
           "TOY_MCMC_STEPS"]
