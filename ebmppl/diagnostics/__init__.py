"""Diagnostics: conversion to ArviZ, R-hat, ESS, MCSE, summaries and plots.

Every ArviZ call lives in :mod:`ebmppl._arviz`; this package re-exports its
functions and adds the figures. The sampler comparison moved up to the
workflow layer as :func:`ebmppl.compare`; ``ebmppl.diagnostics.compare``,
``Comparison``, ``COLUMNS`` and ``moment_threshold`` still work for one
release, with an :class:`~ebmppl._deprecation.EbmpplDeprecationWarning`.

Examples
--------
>>> import numpy as np
>>> from ebmppl import diagnostics
>>> draws = np.random.default_rng(0).normal(size=(4, 500, 2))
>>> bool(np.all(diagnostics.rhat(draws) < 1.01)), diagnostics.ess(draws).shape
(True, (2,))
"""

from __future__ import annotations

import warnings
from typing import Any

from ebmppl._arviz import autocorr, ess, from_numpyro, mcse, plot_rank, plot_trace, rhat, summary, to_inference_data
from ebmppl._deprecation import EbmpplDeprecationWarning
from ebmppl.diagnostics.figures import plot_comparison

__all__ = ["to_inference_data", "from_numpyro", "summary", "rhat", "ess", "mcse", "autocorr", "plot_trace",
           "plot_rank", "plot_comparison"]

_MOVED = ("compare", "Comparison", "COLUMNS", "moment_threshold")
"""Names that moved to :mod:`ebmppl.compare` (the workflow layer); here for one release."""


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        # remove next release (an upward import kept for the old address)
        from ebmppl.compare import COLUMNS, Comparison, compare, moment_threshold

        moved = {"compare": compare, "Comparison": Comparison, "COLUMNS": COLUMNS, "moment_threshold": moment_threshold}
        warnings.warn(f"ebmppl.diagnostics.{name} is deprecated; use ebmppl.compare.{name} (ebmppl.compare for "
                      "the function). The old address will be removed in the next release.",
                      EbmpplDeprecationWarning, stacklevel=2)
        return moved[name]
    raise AttributeError(f"module 'ebmppl.diagnostics' has no attribute {name!r}")
