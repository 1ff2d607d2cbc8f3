"""Diagnostics: conversion to ArviZ, R-hat, ESS, MCSE, summaries and plots."""

from ebmppl.diagnostics.arviz import (
    autocorr,
    ess,
    from_numpyro,
    mcse,
    plot_rank,
    plot_trace,
    rhat,
    summary,
    to_inference_data,
)

from ebmppl.diagnostics.compare import COLUMNS, Comparison, compare, moment_threshold
from ebmppl.diagnostics.figures import plot_comparison

__all__ = ["to_inference_data", "from_numpyro", "summary", "rhat", "ess", "mcse", "autocorr", "plot_trace",
           "plot_rank", "compare", "Comparison", "COLUMNS", "moment_threshold", "plot_comparison"]
